"""Small-image CGN (genint_fast.cgn): composition, mask range, shuffler, counterfactual sampler,
style loss, training resume (bitwise, across SIGKILL) and the `genint-fast cgn` command.

Everything here is tiny (ch=8, batches of 4-8, a few steps) and runs on one thread; no feature
network is trained (feature_net="none" or a random small_vgg)."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genint_fast.cgn import (CGNConfig, CGNTrainConfig, CounterfactualSampler, SmallCGN,
                             load_cgn, read_cgn_checkpoint, shuffle_texture, train_cgn)
from genint_fast.cgn.small import MASK_MAX, MASK_MIN
from genint_fast.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in these tests (tiny ops; the machine is shared), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_cgn(num_classes=10, seed=0, **kw) -> SmallCGN:
    torch.manual_seed(seed)
    return SmallCGN(CGNConfig(num_classes=num_classes, ch=8, **kw))


def toy_data(n=24, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, 3, 32, 32, generator=g) * 0.5 - 0.25
    images = images + (labels.float() / classes - 0.4)[:, None, None, None]
    return images.clamp(-1, 1), labels


def tensors_equal(a, b, where="") -> None:
    """Recursive bitwise comparison of checkpoint contents (tensors, dicts, lists, scalars)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            tensors_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


# ------------------------------------------------------------------------- mechanisms
def test_composition_shapes_and_factual_counterfactual():
    cgn = tiny_cgn().eval()
    u, y = cgn.sample_noise(6, torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        out = cgn(u, y, torch.Generator().manual_seed(7))
        assert out.mask.shape == (6, 1, 32, 32)
        assert out.foreground.shape == out.background.shape == out.image.shape == (6, 3, 32, 32)
        assert torch.equal(out.image, out.mask * out.foreground + (1 - out.mask) * out.background)
        # counterfactual with the factual classes, noise and generator state = the factual one
        cf = cgn.counterfactual(y, y, y, generator=torch.Generator().manual_seed(7),
                                u_shape=u, u_texture=u, u_background=u)
        for part in ("mask", "foreground", "background", "image"):
            assert torch.equal(getattr(cf, part), getattr(out, part)), part
        # changing the texture class changes the foreground only: the mechanisms are independent
        cf2 = cgn.counterfactual(y, (y + 1) % 10, y, generator=torch.Generator().manual_seed(7),
                                 u_shape=u, u_texture=u, u_background=u)
    assert torch.equal(cf2.mask, out.mask) and torch.equal(cf2.background, out.background)
    assert not torch.allclose(cf2.foreground, out.foreground)
    assert torch.equal(cf2.image, cf2.mask * cf2.foreground + (1 - cf2.mask) * cf2.background)
    with pytest.raises(ValueError, match="labels must be in"):
        cgn(u, torch.full((6,), 10))


@pytest.mark.parametrize("init,gain", [("orthogonal", 0.1), ("normal", 0.5)])
def test_mask_stays_in_open_unit_interval(init, gain):
    cgn = tiny_cgn(init=init, init_gain=gain)
    g = torch.Generator().manual_seed(3)
    u = cgn.sample_noise(8, g) * 100.0
    y = torch.randint(10, (8,), generator=g)
    lo, hi = torch.tensor(MASK_MIN), torch.tensor(MASK_MAX)  # the float32 bounds of the clamp
    for train in (True, False):
        cgn.train(train)
        with torch.no_grad():
            out = cgn(u, y, g)
            m2 = cgn.mask(-u * 10, y)
        for m in (out.mask, m2):
            assert torch.isfinite(m).all()
            assert float(m.min()) >= float(lo) and float(m.max()) <= float(hi)
            assert float(m.min()) > 0 and float(m.max()) < 1
        assert float(out.image.abs().max()) <= 1.0


def test_shuffler_is_a_per_sample_cyclic_shift():
    b = 16
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(b, 3, 1, 1)
    x = x + torch.arange(3.0).view(1, 3, 1, 1) * 10_000  # distinct values per channel too
    shifts = torch.stack([torch.arange(b) * 3 % 32, torch.arange(b) * 7 % 32], 1)
    out = shuffle_texture(x, shifts=shifts)
    tiled = x.repeat(1, 1, 2, 2)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        # crop of the 2x2 tiling at offset (dy, dx) == a cyclic roll of the sample by (-dy, -dx)
        assert torch.equal(out[i], tiled[i, :, dy:dy + 32, dx:dx + 32])
        assert torch.equal(out[i], torch.roll(x[i], shifts=(-dy, -dx), dims=(1, 2)))
    # drawn shifts: every sample keeps its pixel multiset, different samples get different shifts
    drawn = shuffle_texture(x, torch.Generator().manual_seed(0))
    again = shuffle_texture(x, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)
    assert torch.equal(drawn.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    offsets = drawn[:, 0, 0, 0].long()                 # = x[dy, dx] = 32 * dy + dx
    assert len(set(offsets.tolist())) >= b - 2         # 16 draws of 1024 shifts
    for i, o in enumerate(offsets.tolist()):
        assert torch.equal(drawn[i], torch.roll(x[i], shifts=(-(o // 32), -(o % 32)), dims=(1, 2)))


def test_the_background_window_is_a_random_crop_without_wrap_around():
    from genint_fast.cgn.small import crop_texture

    b = 64
    x = torch.arange(40 * 40, dtype=torch.float32).view(1, 1, 40, 40).repeat(b, 3, 1, 1)
    x = x + torch.arange(3.0).view(1, 3, 1, 1) * 10_000
    offsets = torch.stack([torch.arange(b) % 9, torch.arange(b) * 5 % 9], 1)
    out = crop_texture(x, 32, offsets=offsets)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], x[i, :, dy:dy + 32, dx:dx + 32])
    drawn = crop_texture(x, 32, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, crop_texture(x, 32, torch.Generator().manual_seed(0)))
    corner = drawn[:, 0, 0, 0].long()                   # = 40 * dy + dx
    dy, dx = corner // 40, corner % 40
    assert int(dy.max()) <= 8 and int(dx.max()) <= 8 and len(set(corner.tolist())) >= 20
    # a window is contiguous: every row steps by one pixel, no seam
    assert torch.equal(drawn[:, 0].diff(dim=2), torch.ones(b, 32, 31))


def test_a_cgn_with_a_cropped_background_draws_32x32_trains_and_reloads(tmp_path):
    cfg = CGNConfig(num_classes=2, ch=8, bg_crop=8)
    cgn = SmallCGN(cfg)
    assert cgn.background.fc.out_features == 8 * 10 * 10      # a 10x10 map -> 40x40 pixels
    assert cgn.texture.fc.out_features == 8 * 8 * 8
    out = cgn(cgn.sample_noise(4), torch.tensor([0, 1, 0, 1]))
    assert out.background.shape == out.image.shape == (4, 3, 32, 32)
    cf = cgn.counterfactual(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([1, 1]))
    assert cf.image.shape == (2, 3, 32, 32)
    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2
    tc = CGNTrainConfig(steps=2, batch_size=4, feature_net="none", log_every=0)
    train_cgn(x, y, tmp_path / "c.pt", model_config=cfg, train_config=tc, log=lambda s: None)
    assert load_cgn(tmp_path / "c.pt").config.bg_crop == 8
    for bad in (-4, 6):
        with pytest.raises(ValueError, match="bg_crop must be 0 or a positive multiple of 4"):
            CGNConfig(bg_crop=bad)


# --------------------------------------------------------------------------- sampler
def test_counterfactual_labels_are_independent():
    from scipy.stats import chi2_contingency

    sampler = CounterfactualSampler(tiny_cgn(), batch_size=500, labels="uniform", seed=0)
    recs = [sampler.sample()[2] for _ in range(10)]
    shape = torch.cat([r.shape for r in recs]).numpy()
    tex = torch.cat([r.texture for r in recs]).numpy()
    bg = torch.cat([r.background for r in recs]).numpy()
    assert shape.shape == (5000,)

    def table(a, b):
        t = np.zeros((10, 10))
        np.add.at(t, (a, b), 1)
        return t

    for other in (tex, bg):
        assert chi2_contingency(table(shape, other)).pvalue > 1e-3
    assert chi2_contingency(table(tex, bg)).pvalue > 1e-3
    # the test can fail: a texture tied to the shape is flagged at once
    assert chi2_contingency(table(shape, shape)).pvalue < 1e-6
    assert chi2_contingency(table(shape, np.where(np.arange(5000) % 4 == 0, tex, shape))
                            ).pvalue < 1e-6


def test_permute_mode_and_per_mask_groups():
    cgn = tiny_cgn()
    sampler = CounterfactualSampler(cgn, batch_size=32, labels="permute", seed=1)
    moved = 0
    for _ in range(3):
        images, y, rec = sampler.sample()
        assert images.shape == (32, 3, 32, 32) and torch.equal(y, rec.shape)
        assert torch.equal(rec.labels(), torch.stack([rec.shape, rec.texture, rec.background], 1))
        for other in (rec.texture, rec.background):
            assert torch.equal(other.sort().values, y.sort().values)
            moved += int((other != y).sum())
    assert moved > 0

    # per_mask=k: groups of k share the shape label and the mask. Stub the textures (+1 / -1)
    # so that the image is 2m - 1 and the mask can be read back.
    def flat_textures(u, y, generator=None, *, which="texture"):
        return torch.full((u.shape[0], 3, 32, 32), 1.0 if which == "texture" else -1.0)

    cgn.textures = flat_textures
    k = 4
    sampler = CounterfactualSampler(cgn, batch_size=14, per_mask=k, seed=2)
    images, y, rec = sampler.sample()
    assert images.shape[0] == 14 and y.shape == (14,)
    groups = [slice(s, min(s + k, 14)) for s in range(0, 14, k)]
    for gsl in groups:
        assert (y[gsl] == y[gsl][0]).all()
        assert (images[gsl] == images[gsl][:1]).all()
    assert not torch.equal(images[0], images[k])                # fresh mask noise per group


def test_sampler_is_deterministic_by_seed_and_state():
    cgn = tiny_cgn()
    a, b, c = (CounterfactualSampler(cgn, batch_size=8, seed=s) for s in (5, 5, 6))
    xa, ya, ra = next(a)
    xb, yb, rb = next(b)
    xc, yc, rc = next(c)
    assert torch.equal(xa, xb) and torch.equal(ra.labels(), rb.labels())
    assert not torch.equal(xa, xc)
    state = a.state_dict()
    want = a.sample()
    d = CounterfactualSampler(cgn, batch_size=8, seed=99)
    d.load_state_dict(state)
    got = d.sample()
    assert torch.equal(want[0], got[0]) and torch.equal(want[2].labels(), got[2].labels())
    assert not torch.equal(want[0], xa)


# ------------------------------------------------------------------------ style loss
def test_style_loss_is_gram_matching_with_gradient():
    from genint_fast.cgn.train import SMALL_LAYERS, _style_loss
    from genint_fast.features import small_vgg

    net = small_vgg(layers=SMALL_LAYERS, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g).requires_grad_(True)
    y = torch.rand(4, 3, 32, 32, generator=g) * 0.5
    w = [0.05, 0.1, 0.01]
    same = _style_loss(net, w, x, x.detach())
    assert 0.0 <= same.item() < 1e-9                       # only the sqrt's epsilon
    same.backward()
    assert torch.isfinite(x.grad).all()                    # no NaN from sqrt at 0
    x.grad = None
    assert _style_loss(net, [0.0, 0.0, 0.0], x, y).item() == 0.0
    loss = _style_loss(net, w, x, y)
    assert loss.item() > 1e3 * same.item()

    def gram(f):  # the reference's F F^T / (C H W)
        f = f.flatten(2)
        return f @ f.transpose(1, 2) / f[0].numel()

    # sum_l w_l^2 * RMS of the Gram difference per pair, batch mean
    want = sum(wi ** 2 * ((gram(a) - gram(b)) ** 2).mean((1, 2)).sqrt().mean()
               for wi, a, b in zip(w, net(x), net(y)))
    torch.testing.assert_close(loss, want, rtol=1e-4, atol=0)
    loss.backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


# -------------------------------------------------------------------------- training
@pytest.mark.parametrize("d_noise, ema", [(0.0, 0.0), (0.1, 0.0), (0.0, 0.9)])
def test_train_resume_is_exact_with_style_loss_and_conv_disc(tmp_path, monkeypatch, d_noise, ema):
    """In process: 4 steps straight == 2 steps + resume to 4 (conv D with batch norm, a random
    small_vgg standing in for the trained feature net, with and without instance noise, with
    and without the weights' moving average)."""
    import genint_fast.cgn.train as cgn_train
    from genint_fast.features import small_vgg

    net = small_vgg(layers=cgn_train.SMALL_LAYERS, seed=0)
    monkeypatch.setattr(cgn_train, "style_feature_net",
                        lambda spec, device="cpu", log=None: (net, lambda w: [w[0], w[1], w[2]]))
    images, labels = toy_data()
    mc = CGNConfig.for_variant("wildlife", num_classes=3, ch=8, disc="conv")
    kw = dict(model_config=mc, log=lambda m: None)

    def tc(steps):
        return CGNTrainConfig.for_variant("wildlife", steps=steps, batch_size=4, checkpoint_every=0,
                                          style_scale=5e5, seed=3, d_noise=d_noise, ema=ema)

    s = train_cgn(images, labels, tmp_path / "a.pt", train_config=tc(4), **kw)
    assert s["steps"] == 4 and s["style"] > 0 and all(np.isfinite(s[k]) for k in ("d", "g_adv"))
    train_cgn(images, labels, tmp_path / "b.pt", train_config=tc(2), **kw)
    assert read_cgn_checkpoint(tmp_path / "b.pt")["step"] == 2
    train_cgn(images, labels, tmp_path / "b.pt", train_config=tc(4), **kw)
    a, b = (torch.load(tmp_path / n, weights_only=False) for n in ("a.pt", "b.pt"))
    assert a["step"] == b["step"] == 4
    tensors_equal(a, b)
    cgn = load_cgn(tmp_path / "a.pt")
    assert cgn.num_classes == 3 and cgn.steps_trained == 4 and not cgn.training
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    if ema:   # the sampled weights are the average: between the start and the trained weights
        w = a["G_ema"]["texture.fc.weight"]
        assert torch.equal(cgn.texture.fc.weight, w)
        assert not torch.equal(w, a["G"]["texture.fc.weight"])
    else:
        assert a["G_ema"] is None


_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from genint_fast.cgn import CGNConfig, CGNTrainConfig, train_cgn
    out, action = sys.argv[1:3]
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    images = torch.rand(24, 3, 32, 32, generator=g) * 2 - 1
    mc = CGNConfig.for_variant("colored", num_classes=3, ch=8)
    tc = CGNTrainConfig.for_variant("colored", steps=8, batch_size=4, feature_net="none",
                                    checkpoint_every=2, log_every=1, seed=5)
    def log(msg):
        print(msg, flush=True)
        if action == "slow":
            time.sleep(0.4)
    train_cgn(images, labels, out, model_config=mc, train_config=tc, log=log)
""")


def _spawn(out, action):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(out), action], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


def test_sigkill_then_resume_is_bitwise_equal(tmp_path):
    """MLP discriminator with dropout (global RNG) and the sampling generator: a run killed with
    SIGKILL after its first checkpoint and resumed ends bitwise equal to an uninterrupted run."""
    full, killed = tmp_path / "full.pt", tmp_path / "killed.pt"
    pf = _spawn(full, "run")
    pk = _spawn(killed, "slow")
    t0 = time.time()
    while not killed.exists():
        if pk.poll() is not None:
            raise AssertionError(f"ended early: {pk.stderr.read().decode()[-2000:]}")
        if time.time() - t0 > 60:
            pk.kill()
            raise AssertionError("no checkpoint within 60 s")
        time.sleep(0.02)
    pk.send_signal(signal.SIGKILL)
    pk.wait()
    assert pk.returncode == -signal.SIGKILL
    step = read_cgn_checkpoint(killed)["step"]
    assert step in (2, 4, 6), step                    # killed part-way, at a checkpoint
    _finish(pf)
    log = _finish(_spawn(killed, "run"))
    assert f"resumed {killed} at step {step}" in log
    a, b = read_cgn_checkpoint(full), read_cgn_checkpoint(killed)
    assert a["step"] == b["step"] == 8
    assert set(a) >= {"G", "D", "opt_g", "opt_d", "rng", "torch_rng"}
    tensors_equal(a, b)


def test_resume_refuses_changed_settings_and_foreign_files(tmp_path):
    images, labels = toy_data()
    out = tmp_path / "c.pt"
    tc = CGNTrainConfig(steps=1, batch_size=4, feature_net="none", checkpoint_every=0)
    quiet = dict(log=lambda m: None)
    train_cgn(images, labels, out, model_config=CGNConfig(num_classes=3, ch=8), train_config=tc,
              **quiet)
    with pytest.raises(ValueError, match=r"model config differs in ch \(8 there, 16 now\)"):
        train_cgn(images, labels, out, model_config=CGNConfig(num_classes=3, ch=16),
                  train_config=tc, **quiet)
    tc2 = CGNTrainConfig(steps=2, batch_size=4, feature_net="none", lr_g=2e-4)
    with pytest.raises(ValueError, match=r"settings differ in lr_g"):
        train_cgn(images, labels, out, model_config=CGNConfig(num_classes=3, ch=8),
                  train_config=tc2, **quiet)
    assert read_cgn_checkpoint(out)["step"] == 1          # refused before any work
    # resume=False starts afresh under the same name
    s = train_cgn(images, labels, out, model_config=CGNConfig(num_classes=3, ch=16),
                  train_config=tc, resume=False, **quiet)
    assert s["steps"] == 1 and read_cgn_checkpoint(out)["model_config"]["ch"] == 16

    torch.save({"step": 3, "G": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a CGN checkpoint"):
        train_cgn(images, labels, tmp_path / "other.pt", train_config=tc, **quiet)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="cannot read CGN checkpoint"):
        load_cgn(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="genint-fast cgn"):
        load_cgn(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train_cgn(images * 3, labels, tmp_path / "x.pt", train_config=tc, **quiet)


# ------------------------------------------------------------------------------- CLI
def _image_folder(root: Path, classes=("a", "b"), per_class=4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def test_cli_defaults_per_variant_and_overrides():
    from genint_fast.cli.cgn import _configs
    from genint_fast.cli import build_parser

    args = build_parser().parse_args(["cgn", "--data", "digits:double-colored", "--out", "x"])
    mc, tc = _configs(args, "double-colored", 10, None)
    assert (mc.disc, mc.init, mc.init_gain, mc.ch) == ("mlp", "orthogonal", 0.2, 32)
    assert mc.d_spectral_norm and not mc.out_batchnorm
    assert tc.lambda_mask == 0.3 and tc.style_weights == [0.0, 0.05, 0.0, 0.05]
    args = build_parser().parse_args(["cgn", "--data", "digits:colored", "--out", "x",
                                      "--lambda-mask", "0.5", "--ch", "8", "--steps", "7"])
    mc, tc = _configs(args, "colored", 10, None)
    assert (mc.init_gain, mc.ch, tc.lambda_mask, tc.steps) == (0.1, 8, 0.5, 7)
    assert tc.style_weights == [0.05, 0.1, 0.01, 0.0] and tc.lr_g == tc.lr_d == 1e-3
    assert tc.style_scale == 50.0            # small feature net; 5e3 (reference) for vgg16
    args = build_parser().parse_args(["cgn", "--data", "digits:colored", "--out", "x",
                                      "--disc", "mlp"])
    assert _configs(args, "colored", 10, None)[0].disc == "mlp"
    args = build_parser().parse_args(["cgn", "--data", "digits:colored", "--out", "x",
                                      "--lambda-mask", "0.5", "--ch", "8", "--steps", "7"])
    mc, tc = _configs(args, None, 4, None)                 # an image folder: the colored choices
    assert (mc.disc, mc.init, mc.init_gain, mc.num_classes) == ("mlp+colour-free", "orthogonal",
                                                                0.1, 4)
    assert tc.lambda_mask == 0.5                            # (given on the command line)
    # the reference preset: the authors' small CGN, flags still override
    args = build_parser().parse_args(["cgn", "--data", "digits:wildlife", "--out", "x",
                                      "--preset", "reference", "--steps", "9"])
    mc, tc = _configs(args, "wildlife", 10, None)
    assert (mc.ch, mc.out_batchnorm, mc.d_spectral_norm, mc.disc) == (64, True, False, "conv")
    assert (mc.init, mc.init_gain) == ("normal", 0.03)
    assert (tc.lr_g, tc.lr_d, tc.batch_size, tc.steps, tc.betas) == (2e-4, 2e-4, 16, 9,
                                                                      (0.5, 0.999))
    assert tc.lambda_mask == 0.3 and tc.style_weights == [0.01, 0.05, 0.0, 0.01]


def test_cli_trains_resumes_and_writes_the_sheet(tmp_path, capsys):
    data = _image_folder(tmp_path / "imgs")
    ckpt, sheet = tmp_path / "cgn.pt", tmp_path / "sheet.png"
    base = ["cgn", "--data", str(data), "--out", str(ckpt), "--batch-size", "4",
            "--feature-net", "none", "--log-every", "1"]
    assert cli_main([*base, "--steps", "2", "--ch", "8", "--samples", str(sheet)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["steps"] == 2 and summary["classes"] == ["a", "b"]
    assert summary["model_config"]["disc"] == "mlp+colour-free"
    assert summary["train_config"]["lambda_mask"] == 0.1
    assert 0 < summary["mask"]["mean"] < 1 and summary["mask"]["n"] == 500
    assert any(line.startswith("cgn step 2/2") for line in lines)
    cgn = load_cgn(ckpt)
    assert cgn.num_classes == 2 and cgn.config.ch == 8 and cgn.steps_trained == 2
    from PIL import Image

    with Image.open(sheet) as im:   # 2 class columns, 4 factual + 3 counterfactual rows, pad 2
        assert im.size == (2 * 34 + 2, 7 * 34 + 2)
    # resume: settings not given come from the checkpoint (ch=8 here)
    assert cli_main([*base, "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert f"resumed {ckpt} at step 2" in out and json.loads(out.strip().splitlines()[-1])["steps"] == 3
    assert cli_main([*base, "--steps", "4", "--ch", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ch (8 there, 16 now)" in err and len(err.splitlines()) == 1


def test_cli_bad_inputs_end_in_one_line(tmp_path, capsys):
    data = _image_folder(tmp_path / "imgs", per_class=2)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    base = ["--batch-size", "4", "--steps", "1", "--feature-net", "none", "--ch", "8"]
    cases = {
        "missing folder": ["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m.pt")],
        "text file as --out": ["--data", str(data), "--out", str(text)],
        "folder as --out": ["--data", str(data), "--out", str(tmp_path)],
        "batch 1": ["--data", str(data), "--out", str(tmp_path / "m.pt"), "--batch-size", "1"],
        "feature net": ["--data", str(data), "--out", str(tmp_path / "m.pt"),
                        "--feature-net", "resnet"],
        "lr": ["--data", str(data), "--out", str(tmp_path / "m.pt"), "--lr-g", "0"],
        "ch": ["--data", str(data), "--out", str(tmp_path / "m.pt"), "--ch", "0"],
    }
    for name, argv in cases.items():
        assert cli_main(["cgn", *base, *argv]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("genint-fast cgn: error:"), (name, err)
        assert "Traceback" not in err
    assert text.read_text() == "not a checkpoint\n" and not (tmp_path / "m.pt").exists()
    # a corrupt image in the folder is skipped and counted, as the training loaders do
    (data / "b" / "broken.png").write_bytes(b"this is not a png")
    assert cli_main(["cgn", *base, "--data", str(data), "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image file(s)" in out and "broken.png" in out
    # a folder with no readable image is refused with one sentence
    bad = tmp_path / "bad"
    (bad / "a").mkdir(parents=True)
    (bad / "a" / "broken.png").write_bytes(b"this is not a png")
    assert cli_main(["cgn", *base, "--data", str(bad), "--out", str(tmp_path / "m2.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.png" in err and "can be decoded" in err
    assert not (tmp_path / "m2.pt").exists()


@pytest.mark.parametrize("disc", ["mlp", "mlp+colour-free", "conv", "projection"])
@pytest.mark.parametrize("sn", [True, False])
def test_discriminators_score_each_image_and_spectral_norm_is_applied(disc, sn):
    from genint_fast.cgn import build_discriminator

    cfg = CGNConfig(num_classes=4, ch=8, disc=disc, d_spectral_norm=sn)
    torch.manual_seed(0)
    d = build_discriminator(cfg)
    x, y = torch.rand(5, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3, 0])
    out = d(x, y)
    assert out.shape == (5,) and torch.isfinite(out).all()
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    normed = [m for m in layers if hasattr(m, "parametrizations") or hasattr(m, "sn_u")]
    if sn or disc == "projection":          # the projection D always has spectral norm
        assert len(normed) == len(layers)
    else:
        assert not normed
    # the label matters: the same image scored under another class differs
    assert not torch.allclose(d.eval()(x, y), d(x, (y + 1) % 4))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_output_scaled_spectral_norm_matches_torchs_parametrization(kind):
    """Values, input and weight gradients (first and second order) of spectral_scaled equal
    those of torch's spectral_norm over several training forwards (the power-iteration vectors
    advance alike) and in eval; a state dict with the parametrization's keys loads."""
    from torch.nn.utils.parametrizations import spectral_norm

    from genint_fast.cgn.small import spectral_scaled

    torch.manual_seed(0)
    base = (torch.nn.Linear(12, 7) if kind == "linear"
            else torch.nn.Conv2d(3, 5, 3, stride=2, padding=1))
    x = torch.randn((4, 12) if kind == "linear" else (4, 3, 9, 9), dtype=torch.float64)
    base = base.double()
    theirs = copy.deepcopy(base)
    torch.manual_seed(1)
    theirs = spectral_norm(theirs)
    torch.manual_seed(1)
    mine = spectral_scaled(base)
    assert torch.equal(mine.sn_u, theirs.parametrizations.weight[0]._u)
    for mode in ("train", "train", "train", "eval"):
        for m in (mine, theirs):
            m.train(mode == "train")
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        a, b = mine(xs[0]), theirs(xs[1])
        torch.testing.assert_close(a, b)
        ga = torch.autograd.grad((a ** 2).sum(), [xs[0], mine.weight], create_graph=True)
        gb = torch.autograd.grad((b ** 2).sum(),
                                 [xs[1], theirs.parametrizations.weight.original],
                                 create_graph=True)
        for p, q in zip(ga, gb):
            torch.testing.assert_close(p, q)
        # second order: the gradient of the input gradient's norm with respect to the weight
        torch.testing.assert_close(
            torch.autograd.grad(ga[0].square().sum(), mine.weight)[0],
            torch.autograd.grad(gb[0].square().sum(), theirs.parametrizations.weight.original)[0])
    torch.testing.assert_close(mine.sn_v, theirs.parametrizations.weight[0]._v)
    fresh = spectral_scaled(copy.deepcopy(base))
    fresh.load_state_dict(theirs.state_dict())
    assert torch.equal(fresh.sn_v, mine.sn_v) and torch.equal(fresh.weight, mine.weight)
    with pytest.raises(TypeError, match="nn.Linear or nn.Conv2d"):
        spectral_scaled(torch.nn.BatchNorm2d(3))


@pytest.mark.parametrize("spectral", [False, True])
@pytest.mark.parametrize("with_e", [False, True])
def test_linear_of_cat_matches_autograd_through_cat(spectral, with_e):
    """linear_of_cat(layer, x, e) equals layer(cat([x, e], 1)) in values, first and second
    derivatives (x, e, weight, bias; gradcheck in float64), forms no input gradient for an x
    that needs none, and takes any leading dims without e."""
    from torch.nn.utils.parametrizations import spectral_norm

    from genint_fast.cgn.small import linear_of_cat, spectral_scaled

    torch.manual_seed(0)
    base = torch.nn.Linear(9 + (3 if with_e else 0), 5).double()
    layer = spectral_scaled(copy.deepcopy(base)).eval() if spectral else base
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    e = torch.randn(4, 3, dtype=torch.float64, requires_grad=True) if with_e else None
    inputs = (x, e, layer.weight, layer.bias) if with_e else (x, layer.weight, layer.bias)

    def mine(x, *rest):
        e = rest[0] if with_e else None
        return linear_of_cat(layer, x, e)

    def reference(x, *rest):
        e, w, b = (rest if with_e else (None, *rest))
        xc = x if e is None else torch.cat([x, e], 1)
        if spectral:    # eval: sigma = u . (W v) with the layer's fixed vectors
            w = w / torch.vdot(layer.sn_u, torch.mv(w, layer.sn_v))
        return torch.nn.functional.linear(xc, w, b)

    torch.testing.assert_close(mine(*inputs), reference(*inputs))
    assert torch.autograd.gradcheck(mine, inputs)
    assert torch.autograd.gradgradcheck(mine, inputs)
    g1 = torch.autograd.grad(mine(*inputs).square().sum(), inputs)
    g2 = torch.autograd.grad(reference(*inputs).square().sum(), inputs)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    if spectral:    # and like torch's own parametrization in training mode
        torch.manual_seed(3)
        ours = spectral_scaled(copy.deepcopy(base))
        torch.manual_seed(3)
        theirs = spectral_norm(copy.deepcopy(base))
        xc = x.detach() if e is None else torch.cat([x, e], 1).detach()
        torch.testing.assert_close(linear_of_cat(ours, x.detach(), None if e is None
                                                 else e.detach()), theirs(xc))
    # an input that needs no gradient gets none formed (the discriminator step's images): no
    # matrix product in the backward has the (B, out) x (out, in) shape of an input gradient
    from torch.profiler import profile

    out = linear_of_cat(layer, x.detach(), e)
    with profile(record_shapes=True) as prof:
        grads = torch.autograd.grad(out.sum(), [layer.weight] + ([e] if with_e else []))
    mm_shapes = [ev.input_shapes[:2] for ev in prof.events() if ev.name == "aten::mm"]
    assert all(g is not None for g in grads) and mm_shapes
    assert not [s for s in mm_shapes if s[0] == [4, 5] and s[1][1] >= 9], mm_shapes
    if not with_e:
        y = linear_of_cat(layer, torch.randn(2, 3, 9, dtype=torch.float64))
        assert y.shape == (2, 3, 5)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("size", [(4, 4), (3, 5)])
def test_nearest_up_conv_equals_upsample_then_conv(bias, size):
    """NearestUpConv2d equals nn.Upsample(2, nearest) + nn.Conv2d with the same parameters in
    values and first and second derivatives (float64 gradcheck); it refuses other geometries."""
    from genint_fast.layers import NearestUpConv2d

    torch.manual_seed(0)
    fused = NearestUpConv2d(3, 2, 3, padding=1, bias=bias).double()
    plain = torch.nn.Conv2d(3, 2, 3, padding=1, bias=bias).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)

    def reference(x, *params):
        w, b = (params if bias else (params[0], None))
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)

    def mine(x, *params):
        return torch.func.functional_call(fused, dict(zip(names, params)), (x,))

    names = [n for n, _ in fused.named_parameters()]
    params = tuple(fused.parameters())
    torch.testing.assert_close(mine(x, *params), reference(x, *params))
    torch.testing.assert_close(fused(x), plain(F.interpolate(x, scale_factor=2, mode="nearest")))
    assert torch.autograd.gradcheck(mine, (x, *params))
    assert torch.autograd.gradgradcheck(mine, (x, *params))
    with pytest.raises(ValueError, match="3x3 convolution with padding 1"):
        NearestUpConv2d(3, 2, 3, padding=1, stride=2)


def test_uniform_dropout_keeps_share_scales_and_is_seeded():
    from genint_fast.cgn.small import UniformDropout

    d = UniformDropout(0.4)
    x = torch.ones(200, 500)
    torch.manual_seed(0)
    a = d(x)
    torch.manual_seed(0)
    assert torch.equal(a, d(x))
    kept = a != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.01
    assert torch.allclose(a[kept], torch.full_like(a[kept], 1 / 0.6))
    x.requires_grad_(True)
    g, = torch.autograd.grad(d(x).sum(), x)
    assert torch.allclose(g.unique(), torch.tensor([0.0, 1 / 0.6]))
    assert torch.equal(d.eval()(x), x)
    assert torch.equal(UniformDropout(1.0)(x), torch.zeros_like(x))


def test_colour_free_view_ignores_stroke_colour_and_its_branch_sees_only_it():
    from genint_fast.cgn.small import ColourFreeBranchDiscriminator, colour_free

    torch.manual_seed(0)
    stroke = (torch.rand(2, 1, 32, 32) > 0.8).float()
    red = stroke * torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1) * 2 - 1
    blue = stroke * torch.tensor([0.2, 0.3, 0.5]).view(1, 3, 1, 1) * 2 - 1
    assert torch.allclose(colour_free(red), colour_free(blue), atol=1e-3)
    # on a coloured background, and with the brighter colour inside or outside the stroke
    g, p = torch.tensor([0.2, 0.8, 0.3]).view(1, 3, 1, 1), torch.tensor([0.9, 0.9, 0.7])
    on_green = (stroke * p.view(1, 3, 1, 1) + (1 - stroke) * g) * 2 - 1
    dark_on_pale = (stroke * g + (1 - stroke) * p.view(1, 3, 1, 1)) * 2 - 1
    assert torch.allclose(colour_free(red), colour_free(on_green), atol=1e-3)
    assert torch.allclose(colour_free(red), colour_free(dark_on_pale), atol=1e-3)
    assert not torch.allclose(colour_free(red), colour_free(stroke.roll(3, -1) * 2 - 1))
    d = ColourFreeBranchDiscriminator(CGNConfig(num_classes=4)).eval()
    y = torch.tensor([0, 1])
    # the two images differ only in colour: the colour-free branch scores them alike, the
    # full branch does not
    assert torch.allclose(d.shape(colour_free(red), y), d.shape(colour_free(blue), y), atol=1e-3)
    assert not torch.allclose(d(red, y), d(blue, y))
    assert torch.allclose(d(red, y), d.full(red, y) + d.shape(colour_free(red), y))
    # the branch joins over the warm-up: absent before it, half-way in its middle, whole after
    start, end = d.WARM_UP
    d.warm_up(0)
    assert torch.equal(d(red, y), d.full(red, y))
    d.warm_up((start + end) // 2)
    assert torch.allclose(d(red, y), d.full(red, y) + 0.5 * d.shape(colour_free(red), y))
    d.warm_up(end + 10)
    assert torch.allclose(d(red, y), d.full(red, y) + d.shape(colour_free(red), y))
    assert "branch_weight" not in d.state_dict()           # derived from the step, not saved


def test_presets_load_and_match_the_reference_facts():
    from genint_fast.cgn.presets import PRESETS, REFERENCE_STEPS, preset_configs

    assert PRESETS == ("default", "reference")
    for variant in ("colored", "double-colored", "wildlife", None):
        for preset in PRESETS:
            mc, tc = preset_configs(preset, variant)
            SmallCGN(mc)                                   # builds
            assert tc.steps == (REFERENCE_STEPS if preset == "reference" else
                                6000 if variant in ("double-colored", "wildlife") else 9000)
    mc, tc = preset_configs("reference", "colored")
    assert REFERENCE_STEPS == 48000 and tc.batch_size == 16 and mc.disc == "mlp"
    # the reference architecture is the one the authors' checkpoints load into
    from genint_fast.cgn.reference import REFERENCE_CONFIG
    ref = SmallCGN(REFERENCE_CONFIG("colored"))
    assert {k: v.shape for k, v in SmallCGN(mc).state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()}
    # strokes on black (cmnist, hue, rotation) get the colored settings, not the textured ones
    for variant in ("cmnist", "hue"):
        assert preset_configs("default", variant) == preset_configs("default", "colored")
    # rotation: the colored choices plus the border prior, which double-colored and wildlife
    # take too; colored and a folder (objects may touch the border) go without it
    mc, tc = preset_configs("default", "rotation")
    assert mc == preset_configs("default", "colored")[0] and tc.lambda_border == 1.0
    for variant, weight in (("colored", 0.0), ("double-colored", 1.0), ("wildlife", 1.0),
                            (None, 0.0)):
        assert preset_configs("default", variant)[1].lambda_border == weight
    assert preset_configs("reference", "wildlife")[1].lambda_border == 0.0
    # the default preset's measured departures from the reference; the reference keeps its own
    assert preset_configs("default", "colored")[0].disc == "mlp+colour-free"
    assert preset_configs("default", "double-colored")[0].disc == "mlp"
    mc, tc = preset_configs("default", "wildlife")
    assert (mc.init, mc.init_gain, tc.lambda_mask, mc.disc) == ("orthogonal", 0.1, 0.1, "mlp")
    # wildlife: the background window and up to three tries checked at step 3000;
    # double-colored: two tries checked at the end against the shape bar; the other
    # variants train one CGN with the reference's cyclic shift
    assert (mc.bg_crop, tc.tries, tc.check_at, tc.min_shape_consistency) == (8, 3, 3000, 0.0)
    mc, tc = preset_configs("default", "double-colored")
    assert (mc.bg_crop, tc.tries, tc.check_at, tc.min_shape_consistency) == (0, 2, 0, 0.9)
    for variant in ("colored", "rotation", None):
        mc, tc = preset_configs("default", variant)
        assert (mc.bg_crop, tc.tries, tc.check_at, tc.min_shape_consistency) == (0, 1, 0, 0.0)
    assert preset_configs("reference", "double-colored")[1].min_shape_consistency == 0.0
    mc, tc = preset_configs("reference", "wildlife")
    assert (mc.init, mc.init_gain, tc.lambda_mask, mc.disc) == ("normal", 0.03, 0.3, "conv")
    assert (mc.bg_crop, tc.tries) == (0, 1)
    mc, _ = preset_configs("default", "colored", model_overrides={"disc": "mlp"})
    assert mc.disc == "mlp"                                # overrides still win
    with pytest.raises(ValueError, match="unknown CGN preset"):
        preset_configs("fast")


def test_border_mean_and_the_border_prior_keeps_masks_off_the_frame(tmp_path):
    from genint_fast.cgn import mask_statistics
    from genint_fast.cgn.train import border_mean

    m = torch.zeros(2, 1, 8, 8)
    m[0] = 1.0                                  # a mask over everything
    m[1, :, 2:-2, 2:-2] = 1.0                   # a mask inside the 2-pixel ring only
    assert border_mean(m).tolist() == [1.0, 0.0]
    m[1, :, 0, :] = 1.0                         # one full row of the ring: 8 of its 48 pixels
    assert torch.allclose(border_mean(m)[1], torch.tensor(8 / 48))
    assert torch.allclose(border_mean(m, 1)[1], torch.tensor(8 / 28))
    # training: the prior lowers the masks' border mean, from the same start and draws
    x, y = torch.rand(16, 3, 32, 32) * 2 - 1, torch.arange(16) % 4
    borders = {}
    for weight in (0.0, 20.0):
        tc = CGNTrainConfig(steps=12, batch_size=8, feature_net="none", lambda_border=weight,
                            log_every=0, checkpoint_every=0)
        out = train_cgn(x, y, tmp_path / f"b{weight}.pt", train_config=tc, log=lambda s: None,
                        model_config=CGNConfig(num_classes=4, ch=8, init_gain=0.5))
        assert 0.0 <= out["mask_border"] <= 1.0
        borders[weight] = mask_statistics(load_cgn(tmp_path / f"b{weight}.pt"))["border_mean"]
    assert borders[20.0] < 0.5 * borders[0.0], borders
    with pytest.raises(ValueError, match="lambda_border must be >= 0"):
        CGNTrainConfig(lambda_border=-1.0)


def test_a_checkpoint_older_than_a_training_field_resumes_with_its_default(tmp_path):
    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2
    mc = CGNConfig(num_classes=2, ch=8)
    tc = CGNTrainConfig(steps=1, batch_size=4, feature_net="none", log_every=0)
    train_cgn(x, y, tmp_path / "c.pt", model_config=mc, train_config=tc, log=lambda s: None)
    state = torch.load(tmp_path / "c.pt", weights_only=False)
    del state["train_config"]["lambda_border"]          # as written before the field existed
    torch.save(state, tmp_path / "c.pt")
    tc2 = CGNTrainConfig(steps=2, batch_size=4, feature_net="none", log_every=0)
    assert train_cgn(x, y, tmp_path / "c.pt", model_config=mc, train_config=tc2,
                     log=lambda s: None)["steps"] == 2
    tc3 = CGNTrainConfig(steps=3, batch_size=4, feature_net="none", log_every=0,
                         lambda_border=1.0)
    with pytest.raises(ValueError, match="differ in lambda_border"):
        train_cgn(x, y, tmp_path / "c.pt", model_config=mc, train_config=tc3, log=lambda s: None)


def _cgn_with_masks(mask_fn):
    """A SmallCGN whose shape mechanism is replaced by a hand-made mask."""
    cgn = SmallCGN(CGNConfig(ch=8)).eval()
    cgn.mask = lambda u, y: mask_fn(u.shape[0]).clamp(MASK_MIN, MASK_MAX)
    return cgn


def test_the_failed_decomposition_warning_fires_on_a_hand_made_failure():
    from genint_fast.cgn import decomposition_warnings, mask_statistics

    def disc(n):                 # a centred blob covering ~18% of the image: a good mask
        yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        m = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 7.7 ** 2).float()
        return m.expand(n, 1, 32, 32)

    good = mask_statistics(_cgn_with_masks(disc))
    assert abs(good["mean"] - 0.18) < 0.02 and good["border_mean"] < 0.01
    assert decomposition_warnings(good, 0.18) == []
    # the failure seen on a colored MNIST folder: masks that cover the background
    inverse = mask_statistics(_cgn_with_masks(lambda n: 1 - disc(n)))
    warnings = decomposition_warnings(inverse, 0.18)
    assert any("cover the image border" in w for w in warnings)
    assert any("far from the data's foreground share" in w for w in warnings)
    assert any("cover the image border" in w for w in decomposition_warnings(inverse))
    empty = mask_statistics(_cgn_with_masks(lambda n: torch.zeros(n, 1, 32, 32)))
    assert any("almost empty" in w for w in decomposition_warnings(empty))
    soft = mask_statistics(_cgn_with_masks(lambda n: torch.full((n, 1, 32, 32), 0.3)))
    assert any("near 0 or 1" in w for w in decomposition_warnings(soft))
    # the failure of the reference preset at 48k steps: some classes draw a frame (the
    # texture carries their digit), the rest decompose; the average hides it, the per-class
    # border does not
    cgn = SmallCGN(CGNConfig(ch=8)).eval()
    framed = (2, 7)
    cgn.mask = lambda u, y: torch.where(
        sum(y == c for c in framed).bool().view(-1, 1, 1, 1), 1 - disc(len(y)),
        disc(len(y))).clamp(MASK_MIN, MASK_MAX)
    stats = mask_statistics(cgn)
    assert stats["border_mean"] < 0.5 and stats["border_by_class"][2] > 0.9
    assert stats["border_by_class"][0] < 0.01
    warnings = decomposition_warnings(stats, 0.18)
    assert [w for w in warnings if "cover the image border" in w] == [
        "the masks of 2 classes (2, 7) cover the image border (mean mask > 0.5 on the outer 2 "
        "pixels): for them the shape mechanism draws the background, not the object"]
    assert not any("classes" in w for w in decomposition_warnings(good, 0.18))


def test_a_class_whose_masks_copy_the_background_in_part_is_named():
    # wildlife's failure: class 8's masks draw the digit plus the lighter squares of its
    # checkerboard background (0.19 on the border ring, 1.9x the strokes' area); the other
    # classes decompose, the averages look fine and the classifier learns checkerboard = 8
    from genint_fast.cgn import decomposition_warnings, mask_statistics

    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 7.7 ** 2).float()       # ~18% of the image
    checker = ((yy // 6 + xx // 6) % 2 == 0).float()
    leaky = torch.maximum(disc, 0.5 * checker)              # mean ~0.34, ring ~0.25

    def cgn_with(bad, mask):
        cgn = SmallCGN(CGNConfig(ch=8)).eval()
        cgn.mask = lambda u, y: torch.where((y == bad).view(-1, 1, 1, 1), mask,
                                            disc).clamp(MASK_MIN, MASK_MAX)
        return cgn

    shares = [0.18] * 10
    stats = mask_statistics(cgn_with(8, leaky))
    assert stats["mean_by_class"][8] > 0.3 and stats["mean_by_class"][0] < 0.2
    assert stats["border_mean"] < 0.1
    warnings = decomposition_warnings(stats, 0.18, share_by_class=shares)
    partial = [w for w in warnings if "draw part of the background" in w]
    assert len(partial) == 1 and partial[0].startswith("the masks of class 8 (0.2") \
        and "x its strokes' area" in partial[0]
    # the ring alone names it when the per-class shares are unknown (an image folder)
    assert any("class 8 (" in w for w in decomposition_warnings(stats, None))
    # a class with masks far larger than its strokes but an empty border: named only when the
    # per-class shares are known
    fat = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 11 ** 2).float()         # ~37%, ring 0
    stats = mask_statistics(cgn_with(1, fat))
    assert not any("part of the background" in w for w in decomposition_warnings(stats, 0.2))
    assert any(w.startswith("the masks of class 1 (0.00 on the border, 2.") for w in
               decomposition_warnings(stats, 0.2, share_by_class=shares))
    # masks of every class at their strokes' area and off the border: quiet
    good = mask_statistics(cgn_with(0, disc))
    assert decomposition_warnings(good, 0.18, share_by_class=shares) == []


def test_the_per_class_foreground_share_of_the_built_in_digits():
    from genint_fast.data.shapes import foreground_share

    by_class = foreground_share(by_class=True)
    assert len(by_class) == 10 and min(by_class) == by_class[1]       # a 1 has the least ink
    # 500 digits per class: the classes' mean is the overall share
    assert abs(sum(by_class) / 10 - foreground_share()) < 1e-6


def test_the_shares_a_variant_checks_its_masks_against():
    from genint_fast.data.shapes import foreground_share, variant_foreground_shares

    share, by_class = variant_foreground_shares("wildlife")
    assert share == foreground_share() and by_class == foreground_share(by_class=True)
    # cmnist's two classes are digit ranges, not digits: no per-class values
    assert variant_foreground_shares("cmnist") == (foreground_share(), None)
    assert variant_foreground_shares(None) == (None, None)               # a folder: unknown


def _scripted_warnings(monkeypatch, script):
    """Make decomposition_warnings answer from `script` (one list per call); returns the calls'
    mask statistics as seen."""
    import genint_fast.cgn.sampler as sampler

    seen = []

    def fake(stats, share=None, *, share_by_class=None, min_shape_consistency=0.0):
        seen.append(stats)
        return list(script[len(seen) - 1])

    monkeypatch.setattr(sampler, "decomposition_warnings", fake)
    return seen


def test_tries_keep_the_first_cgn_without_a_warning(tmp_path, monkeypatch):
    from genint_fast.cgn import train_cgn_checked
    from genint_fast.cgn_config import TRY_SEED_STRIDE

    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2
    mc = CGNConfig(num_classes=2, ch=8)
    tc = CGNTrainConfig(steps=4, batch_size=4, feature_net="none", log_every=0, seed=3,
                        tries=3, check_at=2)
    # try 1 warns at its check (step 2), try 2 passes its check and the end
    seen = _scripted_warnings(monkeypatch, [["masks over the border"], [], []])
    logs = []
    out = tmp_path / "cgn.pt"
    s = train_cgn_checked(x, y, out, model_config=mc, train_config=tc, log=logs.append)
    second = 3 + TRY_SEED_STRIDE
    assert len(seen) == 3 and s["warnings"] == [] and s["seed"] == second
    assert [(t["seed"], t["steps"], t["warnings"]) for t in s["tries"]] == [
        (3, 2, ["masks over the border"]), (second, 4, [])]
    assert load_cgn(tmp_path / "cgn.seed3.pt").steps_trained == 2        # kept, not deleted
    assert not (tmp_path / f"cgn.seed{3 + 2 * TRY_SEED_STRIDE}.pt").exists()
    assert any("gives way at step 2: masks over the border" in line for line in logs)
    kept = read_cgn_checkpoint(out)
    assert kept["step"] == 4 and kept["train_config"]["seed"] == second
    # the kept try is the plain run of its seed: checked at step 2 and resumed = uninterrupted
    plain = tmp_path / "plain.pt"
    train_cgn(x, y, plain, model_config=mc, train_config=replace(tc, seed=second, tries=1),
              log=lambda m: None)
    for k, v in read_cgn_checkpoint(plain)["G"].items():
        assert torch.equal(v, kept["G"][k]), k
    # a finished run resumes OUT alone; with OUT gone the tries make the same choice again
    _scripted_warnings(monkeypatch, [[]])
    logs.clear()
    assert train_cgn_checked(x, y, out, model_config=mc, train_config=tc,
                             log=logs.append)["seed"] == second
    assert any("resuming it alone" in line for line in logs)
    out.unlink()
    _scripted_warnings(monkeypatch, [["masks over the border"], [], []])
    assert train_cgn_checked(x, y, out, model_config=mc, train_config=tc,
                             log=lambda m: None)["seed"] == second
    for k, v in read_cgn_checkpoint(out)["G"].items():
        assert torch.equal(v, kept["G"][k]), k


def test_tries_that_all_warn_keep_the_last_one_trained_in_full(tmp_path, monkeypatch):
    from genint_fast.cgn import train_cgn_checked
    from genint_fast.cgn_config import TRY_SEED_STRIDE

    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2
    tc = CGNTrainConfig(steps=3, batch_size=4, feature_net="none", log_every=0, tries=2,
                        check_at=1)
    _scripted_warnings(monkeypatch, [["a"], ["b"]])     # the last try is not checked early
    logs = []
    s = train_cgn_checked(x, y, tmp_path / "c.pt", model_config=CGNConfig(num_classes=2, ch=8),
                          train_config=tc, log=logs.append)
    assert s["warnings"] == ["b"] and s["seed"] == TRY_SEED_STRIDE
    assert [t["steps"] for t in s["tries"]] == [1, 3]
    assert read_cgn_checkpoint(tmp_path / "c.pt")["step"] == 3
    assert "every try raised a warning" in logs[-1]


def test_one_try_checks_the_masks_in_place(tmp_path):
    from genint_fast.cgn import train_cgn_checked

    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2
    tc = CGNTrainConfig(steps=2, batch_size=4, feature_net="none", log_every=0)
    s = train_cgn_checked(x, y, tmp_path / "c.pt", model_config=CGNConfig(num_classes=2, ch=8),
                          train_config=tc, foreground_share=1e-6, log=lambda m: None)
    assert "tries" not in s and sorted(tmp_path.iterdir()) == [tmp_path / "c.pt"]
    assert s["mask"]["n"] == 500 and any("foreground share" in w for w in s["warnings"])
    for bad in (dict(tries=0), dict(check_at=-1)):
        with pytest.raises(ValueError, match="tries must be >= 1 and check_at >= 0"):
            CGNTrainConfig(**bad)


def test_cli_tries_report_every_try_and_the_kept_seed(tmp_path, capsys, monkeypatch):
    from genint_fast.cgn_config import TRY_SEED_STRIDE

    data = _image_folder(tmp_path / "imgs")
    ckpt = tmp_path / "cgn.pt"
    _scripted_warnings(monkeypatch, [["masks over the border"], [], []])
    assert cli_main(["cgn", "--data", str(data), "--out", str(ckpt), "--batch-size", "4",
                     "--feature-net", "none", "--ch", "8", "--steps", "3", "--tries", "2",
                     "--check-at", "1", "--log-every", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["train_config"]["seed"] == TRY_SEED_STRIDE and summary["warnings"] == []
    assert [t["steps"] for t in summary["tries"]] == [1, 3]
    assert any(line.startswith("kept try 2/2 (seed 1000)") for line in lines)
    assert not any(line.startswith("WARNING") for line in lines)
    assert load_cgn(ckpt).steps_trained == 3


def test_a_low_shape_consistency_is_a_warning_only_when_a_bar_is_set():
    from genint_fast.cgn import decomposition_warnings

    stats = {"mean": 0.18, "border_mean": 0.0, "binary_share": 0.95, "shape_consistency": 0.87}
    assert decomposition_warnings(stats, 0.18) == []                  # no bar: informative only
    assert decomposition_warnings(stats, 0.18, min_shape_consistency=0.85) == []
    (w,) = decomposition_warnings(stats, 0.18, min_shape_consistency=0.9)
    assert "87.0% of the masks as the asked digit (bar 90%)" in w
    assert decomposition_warnings({k: v for k, v in stats.items() if k != "shape_consistency"},
                                  0.18, min_shape_consistency=0.9) == []
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_shape_consistency is a share in"):
            CGNTrainConfig(min_shape_consistency=bad)


def test_tries_give_way_to_masks_that_draw_the_wrong_digits(tmp_path, monkeypatch):
    import genint_fast.cgn.sampler as sampler
    from genint_fast.cgn import train_cgn_checked
    from genint_fast.cgn_config import TRY_SEED_STRIDE

    # masks whose areas and borders look right (an untrained CGN's would warn for themselves)
    monkeypatch.setattr(sampler, "mask_statistics", lambda cgn, seed=0: {
        "mean": 0.18, "border_mean": 0.0, "binary_share": 0.95, "n": 500})

    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2
    mc = CGNConfig(num_classes=2, ch=8)
    tc = CGNTrainConfig(steps=3, batch_size=4, feature_net="none", log_every=0, tries=3,
                        check_at=1, min_shape_consistency=0.9)
    with pytest.raises(ValueError, match="only the built-in digits variants have"):
        train_cgn_checked(x, y, tmp_path / "c.pt", model_config=mc, train_config=tc)
    assert not list(tmp_path.iterdir())                       # refused before any training
    # a reader that reads the first try's masks badly and the second's well
    reads = iter([0.5, 0.95, 0.96])
    seen = []

    def check(cgn):
        seen.append(cgn.steps_trained)
        return next(reads)

    logs = []
    s = train_cgn_checked(x, y, tmp_path / "c.pt", model_config=mc, train_config=tc,
                          shape_check=check, log=logs.append)
    assert seen == [1, 1, 3] and s["seed"] == TRY_SEED_STRIDE and s["warnings"] == []
    assert s["mask"]["shape_consistency"] == 0.96
    assert "50.0% of the masks as the asked digit" in s["tries"][0]["warnings"][0]
    assert any("gives way at step 1" in line for line in logs)
    # the bar is a rule of choice, not a training setting: the kept run resumes under another
    s = train_cgn_checked(x, y, tmp_path / "c.pt", model_config=mc,
                          train_config=replace(tc, min_shape_consistency=0.5, steps=4),
                          shape_check=lambda cgn: 0.6, log=lambda m: None)
    assert s["steps"] == 4 and s["warnings"] == []


def test_shape_check_maps_cmnist_digits_to_its_two_classes():
    from genint_fast.diagnostics.shape import shape_check

    class Reader(torch.nn.Module):   # reads every mask as the digit 7
        def forward(self, x):
            return F.one_hot(torch.full((x.shape[0],), 7), 10).float()

    torch.manual_seed(0)
    cgn = SmallCGN(CGNConfig(num_classes=2, ch=8)).eval()
    # on cmnist a 7 is class 1 (digits 5-9): the share of masks asked for class 1
    g = torch.Generator().manual_seed(0)
    asked = torch.randint(2, (1000,), generator=g)
    assert shape_check(Reader(), "cmnist")(cgn) == pytest.approx(asked.float().mean().item())
    assert shape_check(Reader(), "colored")(cgn) == 0.0       # no class 7 among two classes


def test_cli_refuses_a_shape_bar_on_an_image_folder(tmp_path, capsys):
    data = _image_folder(tmp_path / "imgs")
    assert cli_main(["cgn", "--data", str(data), "--out", str(tmp_path / "c.pt"),
                     "--min-shape-consistency", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "--min-shape-consistency needs the shape reader of the built-in digits" in err
    assert not (tmp_path / "c.pt").exists()


def test_cli_reports_shape_consistency_on_built_in_digits(tmp_path, capsys, monkeypatch):
    import genint_fast.cgn_config as cgn_config

    monkeypatch.setenv("GENINT_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cgn_config, "SHAPE_READER_STEPS", 5)   # a quick reader: plumbing only
    out = tmp_path / "cgn.pt"
    assert cli_main(["cgn", "--data", "digits:double-colored", "--out", str(out), "--steps",
                     "2", "--batch-size", "4", "--ch", "8", "--feature-net", "none",
                     "--tries", "1", "--min-shape-consistency", "1", "--log-every", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    sc = summary["mask"]["shape_consistency"]
    assert 0.0 <= sc < 1.0 and summary["train_config"]["min_shape_consistency"] == 1.0
    assert any(f"shape consistency {sc:.1%}" in line for line in lines)
    assert any(line.startswith("WARNING") and "as the asked digit (bar 100%)" in line
               for line in lines)
    assert (tmp_path / "cache" / "features" / "shape_reader_mnist_seed0_5.pt").is_file()
