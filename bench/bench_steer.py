"""pytest-benchmark view of the steering benchmark: `pytest bench/bench_steer.py --benchmark-enable`.
The ratio table (fused vs eager reference in the same run) is `genint-fast bench steer`."""
import pytest
import torch

from genint_fast.benchmarks.steer import make_inputs
from genint_fast.ops import reference, steer


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(65536, 128, 60, 5, torch.device("cpu"))


@pytest.mark.parametrize("impl", ["fused", "eager"])
def test_steer_forward(benchmark, inputs, impl):
    fn = steer if impl == "fused" else reference.steer
    benchmark.group = "steer forward B=65536 D=128 M=5"
    with torch.no_grad():
        benchmark(fn, *inputs, "add")
