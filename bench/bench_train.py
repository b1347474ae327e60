"""pytest-benchmark view of the trainer benchmark: `pytest bench/bench_train.py --benchmark-enable`.
The overlapped-vs-sequential table is `genint-fast bench train`."""
import pytest

from genint_fast.benchmarks.train import _seconds_per_step


@pytest.mark.parametrize("producer", ["thread", "inline"])
def test_train_step(benchmark, producer):
    import torch

    benchmark.group = "trainer genint step (small32 GAN, smallcnn)"
    benchmark.pedantic(_seconds_per_step, args=(producer, 12, 2, torch.device("cpu"), 1),
                       rounds=1, iterations=1)
