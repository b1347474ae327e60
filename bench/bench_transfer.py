"""pytest-benchmark view of the transfer benchmark: `pytest bench/bench_transfer.py
--benchmark-enable`. The ratio table (batched B = 8 vs a loop of 8 single transfers in the same
run, bar 2x) is `genint-fast bench transfer`."""
import pytest
import torch

from genint_fast.benchmarks.transfer import digit_pairs
from genint_fast.features import project_small_vgg
from genint_fast.transfer import StyleTransfer


@pytest.fixture(scope="module")
def setup():
    net = project_small_vgg()
    content, style, _ = digit_pairs(8, 64, torch.device("cpu"))
    return net, content, style


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("impl", ["batched", "loop"])
def test_transfer_8_pairs(benchmark, setup, impl, optimizer):
    net, content, style = setup
    tr = StyleTransfer(net, optimizer=optimizer, steps=20)
    benchmark.group = f"transfer 8 pairs 64x64 small-vgg {optimizer} 20 steps"
    if impl == "batched":
        benchmark(lambda: tr(content, style))
    else:
        benchmark(lambda: [tr(content[i:i + 1], style[i:i + 1]) for i in range(8)])
