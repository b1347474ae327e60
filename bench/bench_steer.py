"""pytest-benchmark view of the steering benchmark:
`pytest bench/bench_steer.py --benchmark-enable`. The ratio table (fused vs the eager and the
inductor-compiled reference in the same run, GB/s against a copy) is `genint-fast bench steer`."""
import pytest
import torch

from genint_fast.benchmarks.steer import make_inputs
from genint_fast.ops import reference, steer


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(65536, 128, 60, 5, torch.device("cpu"))


@pytest.fixture(scope="module")
def compiled_reference(inputs):
    fn = torch.compile(reference.steer, backend="inductor", fullgraph=True)
    with torch.no_grad():
        fn(*inputs, "add")  # compile outside the timed region
    return fn


@pytest.mark.parametrize("impl", ["fused", "eager", "inductor"])
def test_steer_forward(benchmark, inputs, impl, request):
    fn = {"fused": steer, "eager": reference.steer}.get(impl)
    if fn is None:
        fn = request.getfixturevalue("compiled_reference")
    benchmark.group = "steer forward B=65536 D=128 M=5"
    with torch.no_grad():
        benchmark(fn, *inputs, "add")
