"""Style-transfer interventions (genint_fast.transfer, issue 6) with small random feature nets."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import requires_cuda

from genint_fast.features import (REFERENCE_LAYERS, LayerFeatures, load_small_vgg, save_small_vgg,
                                  small_vgg, train_small_vgg, vgg19_features,
                                  vgg19_weights_file)
from genint_fast.transfer import StyleTransfer, TransferStream, reference_layer_weights


def _pairs(b, size=24, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    # Content: smooth images (low-resolution noise upsampled), like photos more than noise.
    low = torch.rand(b, 3, 4, 4, generator=g, dtype=dtype)
    content = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear",
                                              align_corners=False)
    # Style: a different colour and texture statistic (dark, bluish, high-frequency stripes).
    stripes = (torch.arange(size, dtype=dtype) % 4 < 2).to(dtype).view(1, 1, 1, size)
    style = 0.6 * torch.rand(b, 3, size, size, generator=g, dtype=dtype) ** 3 + 0.4 * stripes
    style[:, 2] = style[:, 2] * 0.5 + 0.5
    return content, style.clamp(0, 1)


@pytest.fixture(scope="module")
def net():
    return small_vgg(seed=0)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_loss_halves_content_bounded(net, optimizer):
    content, style = _pairs(3, size=16)
    tr = StyleTransfer(net, optimizer=optimizer, steps=25)
    res = tr.run(content, style, final_eval=True)
    s0, s1 = res.style[0], res.style[-1]
    c1 = res.content[-1]
    assert res.images.shape == content.shape
    assert torch.all(s1 < 0.5 * s0), (s0, s1)
    # Content term bounded: finite, below what the style image itself would cost as the
    # result, and held down by its weight (a 1e6 content weight keeps it 2x lower).
    with torch.no_grad():
        fc, fs = net(content)[3], net(style)[3]          # conv2_2, the content layer
        style_copy_cost = 0.1 * (fc - fs).square().flatten(1).mean(1)
    assert torch.isfinite(c1).all() and torch.all(c1 < style_copy_cost), (c1, style_copy_cost)
    held = StyleTransfer(net, optimizer=optimizer, steps=25, content_weight=1e6).run(
        content, style, final_eval=True).content[-1] / 1e7
    assert torch.all(held < 0.5 * c1), (held, c1)
    assert torch.all(res.content[0] == 0)                # starts at the content image
    assert tr.run(content, style, steps=0).images.equal(content)
    assert res.images.min() >= 0 and res.images.max() <= 1


@pytest.mark.parametrize("optimizer,restart", [("lbfgs", False), ("lbfgs", True),
                                               ("adam", False)])
def test_batch_equals_single_runs_float64(optimizer, restart):
    """B pairs at once == B single-pair runs with the same steps, in float64: |diff| <= 1e-9.
    (The only differences are float rounding in the batched convolutions.)"""
    net64 = small_vgg(seed=1).double()
    content, style = _pairs(4, size=16, seed=3, dtype=torch.float64)
    tr = StyleTransfer(net64, optimizer=optimizer, steps=(8, 12), seed=5, restart=restart)
    n = tr.draw_steps()
    batched = tr.run(content, style, steps=n).images
    singles = torch.cat([tr.run(content[i:i + 1], style[i:i + 1], steps=n).images
                         for i in range(4)])
    assert batched.dtype == torch.float64
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-9)
    assert not batched.equal(content)


def test_batch_equals_single_runs_float32_adam(net):
    """float32, Adam: batched vs single within 1e-4 (conv rounding differs with the batch)."""
    content, style = _pairs(4, size=16, seed=4)
    tr = StyleTransfer(net, optimizer="adam", steps=10)
    batched = tr(content, style)
    singles = torch.cat([tr(content[i:i + 1], style[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-4)


def test_steps_drawn_per_batch_seeded(net):
    a = StyleTransfer(net, steps=(20, 70), seed=7)
    b = StyleTransfer(net, steps=(20, 70), seed=7)
    da = [a.draw_steps() for _ in range(20)]
    assert da == [b.draw_steps() for _ in range(20)]
    assert all(20 <= d <= 70 for d in da) and len(set(da)) > 3
    c = StyleTransfer(net, steps=(2, 4), seed=1, optimizer="adam")
    state = c.state_dict()
    r1 = c.run(*_pairs(1, size=8))
    c.load_state_dict(state)
    r2 = c.run(*_pairs(1, size=8))
    assert r1.steps == r2.steps and 2 <= r1.steps <= 4 and len(r1.style) == r1.steps
    assert r1.images.equal(r2.images)


def test_sizes_resized_or_rejected(net):
    content, _ = _pairs(2, size=16)
    _, style = _pairs(2, size=24)
    out = StyleTransfer(net, steps=2, optimizer="adam")(content, style)
    assert out.shape == content.shape
    with pytest.raises(ValueError, match="style images are \\(24, 24\\) but content images are"):
        StyleTransfer(net, steps=2, resize="error")(content, style)
    with pytest.raises(ValueError, match="3 style images for 2 content images"):
        StyleTransfer(net, steps=2)(content, torch.rand(3, 3, 16, 16))
    # channels_last inputs work (the optimiser state is laid out per pair).
    cl = content.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(StyleTransfer(net, steps=2)(cl, cl), StyleTransfer(
        net, steps=2)(content, content))
    # One style image for the whole batch is allowed.
    assert StyleTransfer(net, steps=1)(content, style[:1]).shape == content.shape


def test_bad_inputs(net):
    content, style = _pairs(2, size=8)
    tr = StyleTransfer(net, steps=1)
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        tr(content * 2 - 1, style)
    with pytest.raises(ValueError, match="\\(B, 3, H, W\\)"):
        tr(content[:, :1], style)
    with pytest.raises(ValueError, match="floating point"):
        tr((content * 255).to(torch.uint8), style)
    with pytest.raises(ValueError, match="NaN"):
        tr(torch.full_like(content, float("nan")), style)
    with pytest.raises(ValueError, match="kernel must be one of"):
        StyleTransfer(net, kernel="cubic")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        StyleTransfer(net, optimizer="sgd")
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        StyleTransfer(net, steps=(5, 2))
    with pytest.raises(ValueError, match="no layer 'conv9_9'"):
        StyleTransfer(net, style_layers=["conv9_9"])
    with pytest.raises(ValueError, match="unknown layer 'conv4_1'"):
        small_vgg(layers=("conv4_1",))


def test_missing_vgg_weights_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = vgg19_weights_file()
    assert path.parent == tmp_path / "hub" / "checkpoints" and path.name == "vgg19-dcbb9e9d.pth"
    with pytest.raises(FileNotFoundError) as err:
        vgg19_features("cache")
    assert str(path.parent) in str(err.value) and path.name in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vgg19_features(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(RuntimeError, match="not a VGG19 checkpoint"):
        vgg19_features(bad)


def test_vgg19_from_file_reference_layers(tmp_path, monkeypatch):
    """A torchvision-format VGG19 state dict (random values) in the cache folder loads; the
    maps are the pre-ReLU conv outputs at conv1_1 .. conv3_1 (conv2_2 is the content layer)."""
    from torchvision.models import vgg19

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        full = vgg19(weights=None)
    path = vgg19_weights_file()
    path.parent.mkdir(parents=True)
    torch.save(full.state_dict(), str(path))
    feats = vgg19_features("cache")
    assert feats.layers == REFERENCE_LAYERS and feats.channels == [64, 64, 128, 128, 256]
    x = torch.rand(1, 3, 16, 16)
    maps = feats(x)
    norm = (x - feats.mean) / feats.std
    torch.testing.assert_close(maps[0], full.features[0](norm))
    assert (maps[0] < 0).any()  # before the ReLU
    assert [m.shape[-1] for m in maps] == [16, 16, 8, 8, 4]
    tr = StyleTransfer(feats, steps=1)
    assert tr.content_idx == [3] and tr.style_idx is None


def test_reference_weights_match_gram_mse(net):
    """poly2 with 1/C^4 per layer equals the reference's mse of Grams G = F F^T / (C H W)."""
    content, style = _pairs(2, size=16)
    tr = StyleTransfer(net, steps=1, content_weight=0.0, style_weight=1.0)
    res = tr.run(content, style, steps=1)
    with torch.no_grad():
        total = torch.zeros(2)
        for fx, fy in zip(net(content), net(style)):
            c, n = fx.shape[1], fx.shape[2] * fx.shape[3]
            gx = fx.flatten(2) @ fx.flatten(2).transpose(1, 2) / (c * n)
            gy = fy.flatten(2) @ fy.flatten(2).transpose(1, 2) / (c * n)
            total += (gx - gy).square().flatten(1).mean(1)
    torch.testing.assert_close(res.style[0], total, rtol=1e-4, atol=1e-10)
    assert reference_layer_weights("gaussian", [4, 8]) == [1.0, 1.0]


@pytest.mark.parametrize("kernel", ["gaussian", "bn", "linear"])
def test_other_kernels_reduce_style_loss(net, kernel):
    content, style = _pairs(2, size=12)
    res = StyleTransfer(net, kernel=kernel, optimizer="adam", steps=10).run(content, style,
                                                                             final_eval=True)
    assert torch.all(res.style[-1] < res.style[0])


def test_custom_feature_module_list_output():
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.b = torch.nn.Conv2d(4, 6, 3, padding=1, stride=2)

        def forward(self, x):
            h = self.a(x)
            return [h, self.b(torch.relu(h))]

    content, style = _pairs(2, size=12)
    tr = StyleTransfer(Two(), style_layers=[0, 1], content_layers=[1], optimizer="adam",
                       steps=30)
    res = tr.run(content, style, final_eval=True)
    assert torch.all(res.style[-1] < 0.5 * res.style[0])


def test_stream_labels_are_content_labels(net):
    content, style = _pairs(6, size=8)
    labels = torch.arange(6)
    real = [(content[:3], labels[:3]), (content[3:], labels[3:])]

    def interventions():  # generator-style batches in [-1, 1], with labels and a record
        while True:
            yield style * 2 - 1, torch.full((4,), 9), None

    tr = StyleTransfer(net, optimizer="adam", steps=(1, 3), seed=0)
    stream = TransferStream(tr, real, interventions())
    batches = [next(stream) for _ in range(3)]
    assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
    x, _ = batches[0]
    assert x.shape == (3, 3, 8, 8) and 0 <= x.min() and x.max() <= 1
    once = TransferStream(tr, real, interventions(), cycle=False)
    next(once), next(once)
    with pytest.raises(StopIteration):
        next(once)


def test_train_and_cache_small_vgg(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(40, 3, 16, 16, generator=g)
    labels = torch.arange(40) % 2
    images[labels == 1, 0] = 1.0  # class 1: red channel saturated
    state, acc = train_small_vgg(images, labels, steps=30, batch_size=16, lr=5e-3,
                                 return_accuracy=True)
    assert acc > 0.6
    path = save_small_vgg(state, tmp_path / "net.pt")
    loaded = load_small_vgg(path)
    assert isinstance(loaded, LayerFeatures)
    torch.testing.assert_close(loaded.body[0].weight, state["0.weight"])
    with pytest.raises(FileNotFoundError):
        load_small_vgg(tmp_path / "missing.pt")


def test_cli_writes_grid(tmp_path, net):
    netfile = save_small_vgg({k: v for k, v in net.body.state_dict().items()},
                             tmp_path / "net.pt")
    out = tmp_path / "grid.png"
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "genint_fast.cli", "transfer", "--content",
           "digits:wildlife", "--style", "digits:double-colored", "--features", str(netfile),
           "--count", "3", "--steps", "3", "--optimizer", "adam", "--out", str(out),
           "--threads", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    im = Image.open(out)
    # 3 rows of (content | style | result) 32x32 tiles with 2-pixel padding.
    assert im.size == (3 * 34 + 2, 3 * 34 + 2)
    bad = subprocess.run(cmd[:-4] + ["--features", "vgg19", "--out", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(env, TORCH_HOME=str(tmp_path)))
    assert bad.returncode == 2 and "VGG19 weights not found" in bad.stderr
    assert bad.stderr.count("\n") == 1


@requires_cuda
def test_cuda_batch_matches_cpu():
    net = small_vgg(seed=0)
    content, style = _pairs(2, size=16)
    cpu = StyleTransfer(net, optimizer="adam", steps=5)(content, style)
    gpu = StyleTransfer(small_vgg(seed=0, device="cuda"), optimizer="adam", steps=5)(
        content.cuda(), style.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=2e-3)
