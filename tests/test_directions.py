"""GANSpace directions: the exact SVD shortcut against the sampled PCA estimator, persistence
with metadata and refusal of files made for another generator."""
import pytest
import torch

from genint_fast.directions import (Directions, discover, discover_sampled, discover_svd,
                                    latent_std, load_directions, save_directions)
from genint_fast.generators import SmallGANConfig, SmallGenerator, tiny_biggan


@pytest.fixture(scope="module")
def gen():
    # gen_z's z-block gets singular values 0.8**j, a spread spectrum as in trained models
    return tiny_biggan(seed=0, decay=0.8)


@pytest.fixture(scope="module")
def svd_dirs(gen):
    return discover_svd(gen, 10, truncation=0.8)


def _agree(a: Directions, b: Directions, k=10):
    cos_u = (a.u[:k] * b.u[:k]).sum(1).abs()
    cos_c = (a.components[:k] * b.components[:k]).sum(1).abs()
    rel_sigma = (b.sigma[:k] / a.sigma[:k] - 1).abs()
    return cos_u, cos_c, rel_sigma


def test_latent_std_matches_samples():
    from genint_fast.generators import truncated_latents
    z = truncated_latents(200_000, 1, 0.6, generator=torch.Generator().manual_seed(0))
    assert abs(float(z.std()) / latent_std(0.6) - 1) < 0.01


def test_svd_directions_are_orthonormal(svd_dirs, gen):
    eye = torch.eye(10)
    torch.testing.assert_close(svd_dirs.u @ svd_dirs.u.T, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(svd_dirs.components @ svd_dirs.components.T, eye, atol=1e-5,
                               rtol=0)
    assert (svd_dirs.sigma[:-1] >= svd_dirs.sigma[1:]).all()
    assert svd_dirs.meta["method"] == "svd" and svd_dirs.meta["k"] == 10
    assert svd_dirs.meta["generator_id"] == gen.generator_id


def test_svd_agrees_with_sampled_pca(gen, svd_dirs):
    sampled = discover_sampled(gen, 10, 20_000, truncation=0.8, batch_size=2000, seed=1,
                               incremental=False, blas_threads=1)
    assert sampled.meta["method"] == "pca"
    cos_u, cos_c, rel_sigma = _agree(svd_dirs, sampled)
    assert cos_u.mean() >= 0.95, cos_u
    assert cos_c.mean() >= 0.95, cos_c
    assert rel_sigma.max() <= 0.05, rel_sigma
    assert sampled.mu.abs().max() < 0.05  # the latent mean of a symmetric sampler


def test_incremental_pca_path_agrees(gen, svd_dirs, monkeypatch):
    from sklearn.decomposition import IncrementalPCA

    sizes = []
    real_fit = IncrementalPCA.partial_fit

    def spy(self, X, *args, **kwargs):
        sizes.append(X.shape[0])
        return real_fit(self, X, *args, **kwargs)

    monkeypatch.setattr(IncrementalPCA, "partial_fit", spy)
    sampled = discover_sampled(gen, 10, 4_000, truncation=0.8, batch_size=700, seed=2,
                               incremental=True, blas_threads=1)
    assert sampled.meta["method"] == "incremental-pca" and sampled.meta["n_samples"] == 4000
    # streamed in bounded chunks (256 rows; the last one < 512), every sample used once
    assert sum(sizes) == 4000 and max(sizes) < 512 and sizes[0] == 256
    cos_u, cos_c, rel_sigma = _agree(svd_dirs, sampled)
    assert cos_u.mean() >= 0.95, cos_u
    assert rel_sigma.max() <= 0.1, rel_sigma


def test_auto_method_and_small_generator():
    small = SmallGenerator(SmallGANConfig(ch=4, latent_dim=16)).eval()
    d = discover(small, 8)  # gen_z is linear in z: the shortcut is taken
    assert d.meta["method"] == "svd" and d.u.shape == (8, 16)
    s = discover(small, 4, method="sampled", n_samples=500, batch_size=250)
    assert s.meta["method"] == "pca" and s.u.shape == (4, 16)
    torch.testing.assert_close(s.u.norm(dim=1), torch.ones(4))


def test_bad_arguments(gen):
    with pytest.raises(ValueError, match="k must be in"):
        discover_svd(gen, 0)
    with pytest.raises(ValueError, match="k must be in"):
        discover_svd(gen, gen.latent_dim + 1)
    with pytest.raises(ValueError, match="method"):
        discover(gen, 4, method="ica")
    with pytest.raises(ValueError, match="n_samples"):
        discover_sampled(gen, 4, 1)
    with pytest.raises(ValueError, match="truncation"):
        discover_svd(gen, 4, truncation=2.0)


def test_save_load_round_trip(svd_dirs, gen, tmp_path):
    path = save_directions(svd_dirs, tmp_path / "d.safetensors")
    back = load_directions(path, gen)
    for name in ("u", "sigma", "mu", "components", "act_mean"):
        assert torch.equal(getattr(svd_dirs, name), getattr(back, name)), name
    assert back.meta == svd_dirs.meta
    for key in ("generator_id", "layer", "latent_dim", "k", "n_samples", "method", "seed"):
        assert key in back.meta


def test_mismatch_is_refused(svd_dirs, tmp_path):
    path = save_directions(svd_dirs, tmp_path / "d.safetensors")
    other = tiny_biggan(seed=5)
    with pytest.raises(ValueError, match="do not match generator"):
        load_directions(path, other)
    # same id and architecture, different weights
    same_id = tiny_biggan(seed=0, decay=0.8)
    with torch.no_grad():
        same_id.model.generator.gen_z.weight_orig.mul_(1.5)
    with pytest.raises(ValueError, match="weights differ"):
        load_directions(path, same_id)
    small = SmallGenerator(SmallGANConfig(ch=4, latent_dim=32)).eval()
    with pytest.raises(ValueError, match="recompute them with `genint-fast directions"):
        load_directions(path, small)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="genint-fast directions"):
        load_directions(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_directions(junk)
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a genint-fast directions file"):
        load_directions(tmp_path / "other.safetensors")


def test_directions_command(tmp_path, capsys):
    from genint_fast.cli import main

    out = tmp_path / "d.safetensors"
    assert main(["directions", "--generator", "random:tiny:1", "--out", str(out), "--k", "6"]) == 0
    d = load_directions(out)
    assert d.k == 6 and d.meta["method"] == "svd" and d.meta["generator_id"] == "random:tiny:seed=1"
    assert main(["directions", "--generator", "random:tiny:1", "--out", str(out), "--k", "4",
                 "--method", "sampled", "--samples", "300", "--batch-size", "100"]) == 0
    assert load_directions(out).meta["n_samples"] == 300
    assert main(["directions", "--generator", "random:tiny:1", "--out", str(out), "--k", "99"]) == 2
    assert "k must be in" in capsys.readouterr().err
