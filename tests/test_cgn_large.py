"""The large-image CGN on tiny configurations (CPU): one training step, one counterfactual, the
U^2-Net loader and the VGG16 feature network's files and layer names."""
import pytest
import torch
from torch import nn

from genint_fast.cgn.large import (CHECKPOINT_FORMAT, LargeCGN, LargeCGNLossConfig,
                                   LargeCGNTrainer, large_cgn_losses, load_large_cgn,
                                   load_large_cgn_checkpoint, save_large_cgn_checkpoint,
                                   texture_image)
from genint_fast.cgn.u2net import U2NET, U2NETP, load_u2net
from genint_fast.features import small_vgg, vgg16_features
from genint_fast.generators import tiny_biggan

FEATURE_LAYERS = ("relu1_1", "relu1_2", "relu2_2", "relu3_1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These are hundreds of tiny ops; a second OpenMP thread only adds synchronisation (10x
    # slower when the other core is busy).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _generator():
    g = tiny_biggan("tiny", seed=0)
    # Self-attention starts with gamma = 0 (no gradient reaches its convs); a pretrained model
    # has gamma != 0.
    for m in g.modules():
        if isinstance(getattr(m, "gamma", None), nn.Parameter):
            with torch.no_grad():
                m.gamma.fill_(0.5)
    return g


def _saliency():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(),
                             nn.Conv2d(4, 1, 3, padding=1), nn.Sigmoid())


def _cgn(**kw):
    g = _generator()
    # a forward with autograd on leaves spectral norm's `weight` as a non-leaf tensor; copying
    # must still work
    g(g.sample_latents(1), torch.tensor([1]), 1.0).sum()
    return LargeCGN(g, _saliency(), **kw)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ training

def test_one_step_gradients_only_reach_the_mechanisms():
    cgn = _cgn()
    feats = small_vgg(layers=FEATURE_LAYERS)
    trainer = LargeCGNTrainer(cgn, feats, accumulate=2)
    frozen = {"biggan_gt": cgn.biggan_gt, "saliency": cgn.saliency, "features": feats}
    before_frozen = {k: _snapshot(m) for k, m in frozen.items()}
    before_mech = {k: _snapshot(m) for k, m in cgn.mechanisms.items()}

    losses = trainer.step(2, torch.Generator().manual_seed(5))   # backward only (accumulate 2)
    assert set(losses) == {"l1", "perceptual", "binary", "mask", "texture", "background",
                           "total"}
    assert all(isinstance(v, float) and v == v and abs(v) < float("inf")
               for v in losses.values())
    assert not trainer.last_step_updated and trainer.updates == 0

    # Which parameters can receive a gradient at all for this (u, y): a probe through each
    # mechanism's own output (tiny random BigGANs have dead ReLU paths).
    u, y = cgn.sample_inputs(2, 1.0, torch.Generator().manual_seed(5))
    for name, mech in cgn.mechanisms.items():
        probe = _generator()
        probe.load_state_dict(mech.state_dict())
        w = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        (probe(u, y, 1.0) * w).sum().backward()
        reachable = {k for k, p in probe.named_parameters() if p.grad.abs().sum() > 0}
        assert len(reachable) > 0.8 * len(list(probe.parameters()))
        for k, p in mech.named_parameters():
            assert p.grad is not None, f"{name}.{k} got no gradient"
            if k in reachable:
                assert p.grad.abs().sum() > 0, f"{name}.{k} got a zero gradient"
    for name, module in frozen.items():
        for k, p in module.named_parameters():
            assert not p.requires_grad and p.grad is None, f"{name}.{k} got a gradient"

    trainer.step(2, torch.Generator().manual_seed(6))            # second call: Adam steps
    assert trainer.last_step_updated and trainer.updates == 1
    for name, module in frozen.items():
        assert _same(before_frozen[name], _snapshot(module)), f"{name} changed"
        assert all(p.grad is None for p in module.parameters())
    for name, module in cgn.mechanisms.items():
        after = _snapshot(module)
        assert any(not torch.equal(before_mech[name][k], after[k]) for k in after), \
            f"{name} did not change"
        assert all(p.grad is None for p in module.parameters())   # zeroed after the update
    assert cgn.biggan_gt.training is False and cgn.saliency.training is False


def test_losses_start_at_reconstruction_and_follow_the_config():
    cgn = _cgn()
    feats = small_vgg(layers=FEATURE_LAYERS)
    u, y = cgn.sample_inputs(2, 1.0, torch.Generator().manual_seed(0))
    out = cgn(u, y, 1.0)
    # the copies start as the frozen generator: x_gen == x_gt, no reconstruction error
    assert torch.allclose(out["foreground"], out["x_gt"])
    assert torch.allclose(out["x_gen"], out["x_gt"], atol=1e-6)
    base = large_cgn_losses(cgn, out, feats, LargeCGNLossConfig(),
                            torch.Generator().manual_seed(0))
    assert base["l1"].item() < 1e-4 and abs(base["perceptual"].item()) < 1e-4
    m = out["mask"].detach()
    entropy = -(m * torch.log2(m) + (1 - m) * torch.log2(1 - m)).mean()
    assert torch.allclose(base["binary"], 300 * entropy, rtol=1e-5)
    sal_bg = cgn.saliency(out["background"]).mean()
    assert torch.allclose(base["background"], 2000 * sal_bg, rtol=1e-5)
    cfg = LargeCGNLossConfig(binary=0.0, background=1.0, mask_interval=(0.9, 0.95))
    other = large_cgn_losses(cgn, out, feats, cfg, torch.Generator().manual_seed(0))
    assert other["binary"].item() == 0.0
    assert torch.allclose(other["background"], sal_bg, rtol=1e-5)
    mean_m = m.flatten(1).mean(1)
    assert torch.allclose(other["mask"], 500 * torch.relu(0.9 - mean_m).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="weights but the feature network returns 4"):
        large_cgn_losses(cgn, out, feats, LargeCGNLossConfig(perceptual=(1.0, 1.0)))


def test_texture_image_takes_patches_from_the_most_probable_region():
    img = torch.full((1, 3, 64, 64), -1.0)
    img[:, :, 10:50, 15:55] = 0.6                      # a flat square around (30, 35)
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    prob = torch.exp(-((rows - 30) ** 2 + (cols - 35) ** 2) / 50.0).view(1, 1, 64, 64)
    tex = texture_image(img, prob, patch=15, grid=6, candidates=20, work_size=128,
                        generator=torch.Generator().manual_seed(0))
    assert tex.shape == img.shape
    assert torch.allclose(tex, torch.full_like(tex, 0.6), atol=1e-3)


# ------------------------------------------------------------------------ counterfactuals

def test_counterfactual_shapes_and_factual_consistency():
    cgn = _cgn()
    u, y = cgn.sample_inputs(3, 0.5, torch.Generator().manual_seed(2))
    factual = cgn(u, y, 0.5)
    same = cgn.counterfactual(u, y, y, y, truncation=0.5)
    assert torch.allclose(same["x_gen"], factual["x_gen"], atol=1e-6)
    cf = cgn.counterfactual(u, 1, torch.tensor([2, 3, 4]), 5, truncation=0.5)
    assert cf["x_gen"].shape == (3, 3, 32, 32) and cf["mask"].shape == (3, 1, 32, 32)
    assert cf["mask"].min() > 0 and cf["mask"].max() < 1
    assert cf["labels"].tolist() == [[1, 2, 5], [1, 3, 5], [1, 4, 5]]
    assert not cf["x_gen"].requires_grad
    with pytest.raises(ValueError, match="class ids"):
        cgn.counterfactual(u, 10, 0, 0)


def test_power_iteration_mode_and_checkpoint_roundtrip(tmp_path):
    cgn = _cgn(power_iteration=True)
    assert cgn.f_shape.training and not cgn.biggan_gt.training
    u_buf = _snapshot(cgn.f_shape)
    cgn.counterfactual(cgn.sample_inputs(1)[0], 0, 1, 2)     # sampling: no power iteration
    assert _same(u_buf, _snapshot(cgn.f_shape)) and cgn.f_shape.training
    cgn.eval()
    assert not cgn.f_shape.training

    cgn = _cgn()
    trainer = LargeCGNTrainer(cgn, small_vgg(layers=FEATURE_LAYERS))
    trainer.step(1, torch.Generator().manual_seed(0))
    path = save_large_cgn_checkpoint(tmp_path / "large.pt", cgn, trainer, extra={"note": 1})
    fresh = _cgn()
    fresh_trainer = LargeCGNTrainer(fresh, small_vgg(layers=FEATURE_LAYERS))
    blob = load_large_cgn_checkpoint(path, fresh, fresh_trainer)
    assert blob["format"] == CHECKPOINT_FORMAT and blob["extra"] == {"note": 1}
    for name in ("f_shape", "f_text", "f_bg"):
        assert _same(_snapshot(getattr(cgn, name)), _snapshot(getattr(fresh, name)))
    assert fresh_trainer.updates == 1
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a large CGN checkpoint"):
        load_large_cgn_checkpoint(tmp_path / "bad.pt", fresh)


# ------------------------------------------------------------------------------- U^2-Net

def test_u2net_missing_file_names_it(tmp_path):
    missing = tmp_path / "weights" / "u2net.pth"
    with pytest.raises(FileNotFoundError, match="u2net.pth") as exc:
        load_u2net(missing)
    assert str(missing) in str(exc.value)
    with pytest.raises(FileNotFoundError, match="u2net.pth"):
        LargeCGN(_generator(), missing)


def test_large_cgn_loader_fails_before_building(tmp_path, monkeypatch):
    import genint_fast.generators as generators

    def no_build(*a, **k):
        raise AssertionError("BigGAN was loaded before the file checks")

    monkeypatch.setattr(generators, "load_generator", no_build)
    with pytest.raises(FileNotFoundError, match="u2net.pth"):
        load_large_cgn("biggan-deep-256", tmp_path / "u2net.pth", device="cpu",
                       cache_dir=tmp_path / "empty")
    u2 = tmp_path / "u2netp.pth"
    torch.save(U2NETP().state_dict(), u2)
    with pytest.raises(FileNotFoundError, match="vgg16.pth"):
        load_large_cgn("random:tiny", u2, vgg16_weights=tmp_path / "vgg16.pth",
                       u2net_kind="u2netp")
    with pytest.raises(FileNotFoundError, match="biggan-deep-256"):
        load_large_cgn("biggan-deep-256", u2, u2net_kind="u2netp", with_features=False,
                       cache_dir=tmp_path / "empty")


def test_u2net_strict_keys_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = U2NETP()
    n_params = sum(p.numel() for p in net.parameters())
    assert 1.0e6 < n_params < 1.3e6
    # the published key layout
    keys = net.state_dict().keys()
    for k in ("stage1.rebnconvin.conv_s1.weight", "stage1.rebnconv7.bn_s1.running_var",
              "stage1.rebnconv6d.conv_s1.bias", "stage5.rebnconv4.conv_s1.weight",
              "stage5d.rebnconv1d.bn_s1.num_batches_tracked", "side6.weight", "outconv.bias"):
        assert k in keys
    with torch.no_grad():      # non-trivial running statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "u2netp.pth"
    torch.save(net.state_dict(), path)
    loaded = load_u2net(path, kind="u2netp")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    net.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = net(x)
    out = loaded(x)
    assert out.shape == (2, 1, 32, 32) and torch.equal(out, ref)
    assert out.min() > 0 and out.max() < 1

    state = net.state_dict()
    state["stage1.rebnconvin.conv_s1.weightX"] = state.pop("stage1.rebnconvin.conv_s1.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys: stage1\.rebnconvin\.conv_s1\.weight"):
        load_u2net(tmp_path / "bad.pth", kind="u2netp")
    with pytest.raises(ValueError, match=r"unexpected keys: stage1\.rebnconvin\.conv_s1\.weightX"):
        load_u2net(tmp_path / "bad.pth", kind="u2netp")
    # a U2NETP file is not a U2NET file (same keys, other shapes)
    with pytest.raises(ValueError, match="kind='u2netp'"):
        load_u2net(path, kind="u2net")


def test_u2net_full_size():
    net = U2NET()
    assert 43.5e6 < sum(p.numel() for p in net.parameters()) < 44.5e6
    assert net.state_dict().keys() == U2NETP().state_dict().keys()


# ---------------------------------------------------------------------------------- VGG16

def test_vgg16_missing_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        vgg16_features(tmp_path / "nothere.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        vgg16_features("cache")


def test_relu_layer_names():
    torch.manual_seed(0)
    feats = vgg16_features(None, layers=("conv1_2", "relu1_2", "conv2_1", "relu2_1"))
    assert feats.channels == [64, 64, 128, 128]
    c12, r12, c21, r21 = feats(torch.rand(2, 3, 16, 16))
    assert c12.min() < 0 and r12.min() >= 0
    assert torch.equal(r12, torch.relu(c12)) and torch.equal(r21, torch.relu(c21))
    with pytest.raises(ValueError, match="unknown layer 'relu9_1'"):
        vgg16_features(None, layers=("relu9_1",))
    # conv names keep their meaning (outputs before the ReLU) in the small network too
    small = small_vgg(layers=("conv1_1", "relu1_1"))
    c, r = small(torch.rand(1, 3, 8, 8))
    assert c.min() < 0 and torch.equal(r, torch.relu(c))


def test_vgg16_from_file(tmp_path):
    from genint_fast.features import _vgg16_body

    torch.manual_seed(0)
    body = _vgg16_body()
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in body.state_dict().items()}, path)
    feats = vgg16_features(path, layers=("relu1_2", "conv2_1"))
    x = torch.rand(1, 3, 16, 16)
    r12, c21 = feats(x)
    h = body[:6]((x - feats.mean) / feats.std)   # conv1_1 .. pool1, conv2_1
    torch.testing.assert_close(c21, h)
    assert feats.channels == [64, 128] and r12.min() >= 0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="not a VGG16 checkpoint"):
        vgg16_features(tmp_path / "bad.pth")
