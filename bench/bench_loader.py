"""pytest-benchmark view of the loader benchmark:
`pytest bench/bench_loader.py --benchmark-enable`.  The ratio table (DALI vs torch DataLoader in
the same run, images/s) is `genint-fast bench loader`."""
import pytest
import torch

from genint_fast.benchmarks.loader import make_jpeg_tree
from genint_fast.data.loader import dali_available, make_loader

N = 2000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_jpeg_tree(str(tmp_path_factory.mktemp("jpegs")), N)


@pytest.mark.parametrize("impl", [
    pytest.param("dali", marks=pytest.mark.skipif(not dali_available(),
                                                  reason="needs NVIDIA DALI")),
    "torch"])
def test_loader_epoch(benchmark, root, impl):
    ld = make_loader(root, loader=impl, batch_size=256, size=64, augment="standard",
                     num_threads=2, cache_path=f"{root}/.validate.json")
    benchmark.group = f"loader epoch, {N} 64x64 JPEGs, 2 threads"

    def epoch():
        return sum(x.shape[0] for x, _ in ld)

    n = benchmark.pedantic(epoch, rounds=2, warmup_rounds=1)
    assert n == N
    assert isinstance(ld.labels, torch.Tensor)
