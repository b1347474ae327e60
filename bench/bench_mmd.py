"""pytest-benchmark view of the MMD benchmark: `pytest bench/bench_mmd.py --benchmark-enable`.
The ratio table (ours vs the eager and the inductor-compiled plain PyTorch in the same run,
GFLOP/s, memory bar included) is `genint-fast bench mmd`."""
import pytest
import torch

from genint_fast.benchmarks.mmd import gaussian_inputs, gram_loss_plain
from genint_fast.ops import MMDTarget, mmd, reference


@pytest.fixture(scope="module")
def gaussian():
    x, y = gaussian_inputs(1, 4096, 4096, 128, torch.device("cpu"))
    return x.requires_grad_(), y, reference.gaussian_default_gamma(y)


@pytest.fixture(scope="module")
def compiled_reference(gaussian):
    x, y, gamma = gaussian
    fn = torch.compile(reference.mmd, backend="inductor", fullgraph=True)
    fn(x, y, "gaussian", gamma=gamma).backward()  # compile outside the timed region
    return fn


@pytest.mark.parametrize("impl", ["fused", "materialised", "inductor"])
def test_gaussian_forward_backward(benchmark, gaussian, impl, request):
    x, y, gamma = gaussian
    fn = {"fused": mmd, "materialised": reference.mmd}.get(impl)
    if fn is None:
        fn = request.getfixturevalue("compiled_reference")
    benchmark.group = "gaussian MMD forward+backward B=1 N=M=4096 C=128"
    benchmark(lambda: fn(x, y, "gaussian", gamma=gamma).backward())


@pytest.fixture(scope="module")
def gram():
    g = torch.Generator().manual_seed(1)
    fx = torch.randn(8, 256, 4096, generator=g).requires_grad_()
    fy = torch.randn(1, 256, 4096, generator=g)
    return fx, MMDTarget(fy.transpose(1, 2), "poly2"), torch.bmm(fy, fy.transpose(1, 2)) / 4096


@pytest.mark.parametrize("impl", ["fused", "plain"])
def test_poly2_forward_backward(benchmark, gram, impl):
    fx, target, gy = gram
    benchmark.group = "poly2 MMD forward+backward B=8 N=4096 C=256"
    if impl == "fused":
        benchmark(lambda: mmd(fx.transpose(1, 2), target, "poly2").backward())
    else:
        benchmark(lambda: gram_loss_plain(fx, gy).mean().backward())
