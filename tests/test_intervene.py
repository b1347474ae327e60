"""The intervention sampler I(t, k, s, Y'), the observational sampler, the Figure-2 grid and the
image-folder dump."""
import json

import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from genint_fast.directions import discover_svd, save_directions
from genint_fast.generators import tiny_biggan
from genint_fast.intervene import (InterventionSampler, ObservationalSampler, dump_image_folder,
                                   intervention_grid, reference_ranges)
from genint_fast.ops import reference


@pytest.fixture(scope="module")
def gen():
    return tiny_biggan(seed=0, decay=0.8)


@pytest.fixture(scope="module")
def dirs(gen):
    return discover_svd(gen, 12)


def _sampler(gen, dirs, **kw):
    args = dict(truncation=0.9, top_k=10, m=3, scale=2.0, batch_size=6, seed=0)
    args.update(kw)
    return InterventionSampler(gen, dirs, **args)


def test_same_seed_same_stream(gen, dirs):
    a, b = _sampler(gen, dirs, seed=7), _sampler(gen, dirs, seed=7)
    for _ in range(2):
        (xa, ya, ra), (xb, yb, rb) = next(a), next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ra.idx, rb.idx) and torch.equal(ra.alpha, rb.alpha)
        assert torch.equal(ra.z, rb.z)
    xc, _, rc = _sampler(gen, dirs, seed=8).sample()
    assert not torch.equal(xa.shape == xc.shape and rc.z, ra.z)
    # state_dict / load_state_dict resume the stream
    s = _sampler(gen, dirs, seed=3)
    s.sample()
    state = s.state_dict()
    x1, _, _ = s.sample()
    s.load_state_dict(state)
    x2, _, _ = s.sample()
    assert torch.equal(x1, x2)


def test_labels_uniform_and_independent_of_nuisance(gen, dirs):
    s = _sampler(gen, dirs, seed=11)
    labels, _, idx, _, _ = s.steer_latents(30_000)
    counts = torch.bincount(labels, minlength=gen.num_classes)
    assert counts.sum() == 30_000
    assert chisquare(counts.numpy()).pvalue > 1e-3
    # classes never seen: ids stay in range
    assert int(labels.min()) >= 0 and int(labels.max()) < gen.num_classes
    # the first chosen direction is independent of the label
    table = torch.zeros(gen.num_classes, 10)
    table.index_put_((labels, idx[:, 0]), torch.ones(30_000), accumulate=True)
    assert chi2_contingency(table.numpy()).pvalue > 1e-3
    # a skewed draw would fail the same test (the test has power)
    skew = torch.cat([labels, torch.zeros(600, dtype=torch.long)])
    assert chisquare(torch.bincount(skew, minlength=10).numpy()).pvalue < 1e-3


def test_set_mode_sets_the_coordinate(gen, dirs):
    s = _sampler(gen, dirs, mode="set", m=4, seed=2)
    _, _, rec = s.sample(16)
    u = dirs.u[rec.idx]                                         # (B, m, D)
    coord = ((rec.z_star - dirs.mu)[:, None, :] * u).sum(-1)    # (B, m)
    torch.testing.assert_close(coord, rec.alpha * dirs.latent_sd[rec.idx], atol=1e-5, rtol=0)
    # the other directions' coordinates are untouched (u orthonormal)
    others = torch.ones(16, dirs.k, dtype=torch.bool)
    others.scatter_(1, rec.idx, False)
    before = (rec.z - dirs.mu) @ dirs.u.T
    after = (rec.z_star - dirs.mu) @ dirs.u.T
    torch.testing.assert_close(after[others], before[others], atol=1e-5, rtol=0)


def test_record_equals_what_was_applied(gen, dirs):
    for mode in ("add", "set"):
        s = _sampler(gen, dirs, mode=mode, seed=5)
        images, labels, rec = s.sample()
        assert torch.equal(rec.labels, labels) and len(rec) == 6
        assert rec.idx.shape == (6, 3) and rec.alpha.shape == (6, 3)
        assert rec.alpha.abs().max() <= 2.0
        assert all(len(set(r)) == 3 and max(r) < 10 for r in rec.idx.tolist())
        sig, steps = (dirs.step, rec.alpha) if mode == "add" else \
            (None, rec.alpha * dirs.latent_sd[rec.idx])
        expect = reference.steer(rec.z, dirs.u, sig, dirs.mu, rec.idx, steps, mode)
        torch.testing.assert_close(rec.z_star, expect, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            again = gen(expect, rec.labels, rec.truncation)
        torch.testing.assert_close(images, again, atol=1e-5, rtol=1e-4)
        dense = rec.dense(dirs.k)
        assert dense.shape == (6, dirs.k)
        assert torch.equal(dense.gather(1, rec.idx), rec.alpha)
        assert int((dense != 0).sum()) == int((rec.alpha != 0).sum())
        rows = rec.rows()
        assert rows[0]["label"] == int(labels[0]) and rows[0]["directions"] == rec.idx[0].tolist()


def test_add_mode_moves_along_step_u(gen, dirs):
    s = _sampler(gen, dirs, m=1, seed=9)
    _, _, rec = s.sample(8)
    j, a = rec.idx[:, 0], rec.alpha[:, 0]
    expect = rec.z + (dirs.step[j] * a)[:, None] * dirs.u[j] - dirs.mu
    torch.testing.assert_close(rec.z_star, expect, atol=1e-5, rtol=1e-5)


def test_ranges(gen, dirs):
    r = reference_ranges(12)
    assert r[0].tolist() == [-3.0, 3.0] and r[11].tolist() == [-8.0, 8.0]
    s = _sampler(gen, dirs, ranges=r, seed=4)
    _, _, idx, alpha, _ = s.steer_latents(2000)
    assert idx.shape == (2000, 3)
    lo, hi = r[idx, 0], r[idx, 1]
    assert ((alpha >= lo - 1e-6) & (alpha <= hi + 1e-6)).all() and alpha.abs().max() > 5.0


def test_observational_sampler(gen):
    s = ObservationalSampler(gen, truncation=0.2, batch_size=5, seed=1)
    x, y, rec = next(s)
    assert x.shape == (5, 3, 32, 32) and rec.idx.shape == (5, 0) and rec.mode == "none"
    assert rec.z.abs().max() <= 0.4 + 1e-6
    with torch.no_grad():
        torch.testing.assert_close(x, gen(rec.z, y, 0.2))
    x2, y2, _ = ObservationalSampler(gen, truncation=0.2, batch_size=5, seed=1).sample()
    assert torch.equal(x, x2) and torch.equal(y, y2)
    only = ObservationalSampler(gen, batch_size=50, classes=[2, 7]).sample()[1]
    assert set(only.tolist()) <= {2, 7}


def test_bad_arguments(gen, dirs):
    with pytest.raises(ValueError, match="top_k"):
        _sampler(gen, dirs, top_k=13)
    with pytest.raises(ValueError, match="m must be"):
        _sampler(gen, dirs, m=11)
    with pytest.raises(ValueError, match="mode"):
        _sampler(gen, dirs, mode="mul")
    with pytest.raises(ValueError, match="scale"):
        _sampler(gen, dirs, scale=-1.0)
    with pytest.raises(ValueError, match="ranges"):
        _sampler(gen, dirs, ranges=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="truncation"):
        _sampler(gen, dirs, truncation=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        _sampler(gen, dirs, batch_size=0)
    with pytest.raises(ValueError, match="classes"):
        _sampler(gen, dirs, classes=[99])
    with pytest.raises(ValueError, match="do not match"):
        _sampler(tiny_biggan(seed=3), dirs)


def test_figure2_grid(gen, dirs):
    z = gen.sample_latents(3, 0.9, generator=torch.Generator().manual_seed(0))
    img = intervention_grid(gen, dirs, rows=[0, 4, 7], steps=5, scale=2.0, truncation=0.9,
                            class_ids=[1, 2, 3], base_z=z)
    assert img.shape == (15, 3, 32, 32)
    grid = img.view(3, 5, 3, 32, 32)
    with torch.no_grad():
        # the middle column is step 0: the unedited image of the row (mu = 0 for the SVD path)
        torch.testing.assert_close(grid[:, 2], gen(z, torch.tensor([1, 2, 3]), 0.9),
                                   atol=1e-5, rtol=1e-4)
        # the last column of row 1 is direction 4 at +2
        z4 = z[1:2] + 2.0 * dirs.step[4] * dirs.u[4]
        torch.testing.assert_close(grid[1, 4], gen(z4, torch.tensor([2]), 0.9)[0],
                                   atol=1e-5, rtol=1e-4)
    assert not torch.allclose(grid[0, 0], grid[0, 4])
    with pytest.raises(ValueError, match="grid rows"):
        intervention_grid(gen, dirs, rows=[12])


def test_dump_and_generate_command(gen, dirs, tmp_path):
    out = dump_image_folder(_sampler(gen, dirs, batch_size=4), tmp_path / "dump", 10)
    lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(lines) == 10
    for row in lines:
        f = out / row["file"]
        assert f.is_file() and f.parent.name == f"{row['label']:04d}"
        assert len(row["directions"]) == len(row["steps"]) == 3
    from PIL import Image
    assert Image.open(out / lines[0]["file"]).size == (32, 32)

    from genint_fast.cli import main
    path = save_directions(discover_svd(tiny_biggan(seed=2), 8), tmp_path / "d.safetensors")
    rc = main(["generate", "--generator", "random:tiny:2", "--directions", str(path),
               "--grid", str(tmp_path / "g.png"), "--rows", "0-3", "--cols", "5",
               "--dump", str(tmp_path / "cli"), "--count", "6", "--mode", "set",
               "--reference-ranges", "--batch-size", "3"])
    assert rc == 0
    w, h = Image.open(tmp_path / "g.png").size
    assert (w, h) == (5 * 34 + 2, 4 * 34 + 2)  # torchvision grid, padding 2
    assert len((tmp_path / "cli" / "records.jsonl").read_text().splitlines()) == 6
    # a file for another generator is refused with one line
    assert main(["generate", "--generator", "random:tiny:3", "--directions", str(path),
                 "--grid", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sampler_on_device_and_half(device, dtype):
    g = tiny_biggan(seed=1, device=device)
    d = discover_svd(g, 8)
    g = g.to(dtype)
    s1 = InterventionSampler(g, d, top_k=8, m=2, batch_size=4, seed=3)
    s2 = InterventionSampler(g, d, top_k=8, m=2, batch_size=4, seed=3)
    x1, y1, r1 = s1.sample()
    x2, y2, r2 = s2.sample()
    assert x1.device.type == device and x1.dtype == dtype and y1.device.type == device
    assert torch.isfinite(x1.float()).all()
    assert torch.equal(x1, x2) and torch.equal(r1.alpha, r2.alpha)
    expect = reference.steer(r1.z, d.u.to(device), d.step.to(device), d.mu.to(device),
                             r1.idx, r1.alpha, "add")
    torch.testing.assert_close(r1.z_star, expect, atol=1e-5, rtol=1e-5)
