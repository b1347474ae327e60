"""pytest-benchmark view of direction discovery and intervened generation:
`pytest bench/bench_generate.py --benchmark-enable`. The ratio table (ours vs baseline in the
same run, on the biggan-deep-128 architecture) is `genint-fast bench generate`; this file uses
the tiny BigGAN so that it stays quick."""
import pytest
import torch

from genint_fast.directions import discover_sampled, discover_svd
from genint_fast.generators import tiny_biggan
from genint_fast.intervene import InterventionSampler


@pytest.fixture(scope="module")
def gen():
    return tiny_biggan(seed=0, decay=0.8)


@pytest.mark.parametrize("method", ["svd", "sampled"])
def test_directions(benchmark, gen, method):
    benchmark.group = "directions tiny BigGAN k=10"
    if method == "svd":
        d = benchmark(discover_svd, gen, 10)
    else:
        d = benchmark.pedantic(discover_sampled, args=(gen, 10, 5000),
                               kwargs=dict(incremental=False, blas_threads=1), rounds=1)
    assert d.k == 10


@pytest.mark.parametrize("batch", [1, 16])
def test_generate_16(benchmark, gen, batch):
    sampler = InterventionSampler(gen, discover_svd(gen, 10), top_k=10, m=3, seed=0)
    benchmark.group = "16 intervened images, tiny BigGAN"

    def run():
        for _ in range(16 // batch):
            sampler.sample(batch)

    benchmark(run)
