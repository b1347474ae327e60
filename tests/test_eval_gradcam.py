"""Grad-CAM maps and sheets (genint_fast.eval.gradcam, through torchcam)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from genint_fast.eval.gradcam import default_target_layer, gradcam, gradcam_sheet
from genint_fast.classifier.models import EnsembleModel, SmallCNN, _Pooled, build_model

from conftest import requires_cuda


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Quadrants(nn.Module):
    """Hand-set net whose decision is made by one known region each:
    class 1 = mean of the (rectified) red channel over the top-left quadrant,
    class 0 = mean of the (rectified) green channel over the bottom-right quadrant.
    Inputs are normalised to [-1, 1], so black pixels give 0 after the ReLU."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].bias.zero_()
            self.features[0].weight[0, 0] = 1.0  # channel 0 <- red
            self.features[0].weight[1, 1] = 1.0  # channel 1 <- green

    def forward(self, x):
        a = self.features(x)
        h, w = a.shape[2] // 2, a.shape[3] // 2
        red_tl = a[:, 0, :h, :w].mean((1, 2))
        green_br = a[:, 1, h:, w:].mean((1, 2))
        return torch.stack([green_br, red_tl], 1)


def _quadrant(flat_index, size):
    r, c = divmod(int(flat_index), size)
    return ("top" if r < size // 2 else "bottom") + "-" + ("left" if c < size // 2 else "right")


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               and not m._backward_pre_hooks for m in model.modules())


def test_map_peaks_in_the_region_that_decides_the_class():
    s = 32
    model = Quadrants()
    assert default_target_layer(model) == "features.1"
    both = torch.zeros(1, 3, s, s)
    both[0, 0, 3:9, 5:11] = 1.0      # red blob in the top-left quadrant
    both[0, 1, 20:27, 18:24] = 1.0   # green blob in the bottom-right quadrant
    # Same image, two classes: each map goes where that class's evidence is.
    m1 = gradcam(model, both, classes=torch.tensor([1]))[0]
    m0 = gradcam(model, both, classes=torch.tensor([0]))[0]
    assert _quadrant(m1.argmax(), s) == "top-left"
    assert _quadrant(m0.argmax(), s) == "bottom-right"
    assert 3 <= m1.argmax() // s < 9 and 5 <= m1.argmax() % s < 11
    assert m1[:16, :16].mean() > 10 * m1[16:, 16:].mean()
    assert m0[16:, 16:].mean() > 10 * m0[:16, :16].mean()

    # Predicted class (classes=None): an image bright only top-left is class 1, its map peaks
    # top-left; one bright only bottom-right is class 0, its map peaks bottom-right.
    only = torch.zeros(2, 3, s, s)
    only[0, 0, 2:10, 2:10] = 1.0
    only[1, 1, 22:30, 17:25] = 1.0
    assert model(only * 2 - 1).argmax(1).tolist() == [1, 0]
    maps = gradcam(model, only)
    assert maps.shape == (2, s, s)
    assert _quadrant(maps[0].argmax(), s) == "top-left"
    assert _quadrant(maps[1].argmax(), s) == "bottom-right"


@pytest.mark.parametrize("name,px", [("smallcnn", 32), ("resnet18", 64)])
@pytest.mark.parametrize("heads", ["single", "ensemble"])
def test_every_model_kind_gives_clean_maps_and_leaves_the_model_as_it_was(name, px, heads):
    torch.manual_seed(0)
    model = build_model(name, 10, heads).train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    stats = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    layer = dict(model.named_modules())[default_target_layer(model)]
    expected = {("smallcnn", "single"): "features.2.2", ("smallcnn", "ensemble"):
                "backbone.features.2.2", ("resnet18", "single"): "layer4",
                ("resnet18", "ensemble"): "backbone.layer4"}[name, heads]
    assert default_target_layer(model) == expected

    x = torch.rand(3, 3, px, px)
    classes = torch.tensor([0, 3, 7])
    head_names = ["mean"] + (["shape", "texture", "background"] if heads == "ensemble" else [])
    maps = {}
    for head in head_names:
        m = gradcam(model, x, classes=classes, head=head)
        assert m.shape == (3, px, px) and m.dtype == torch.float32
        assert torch.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
        maps[head] = m
    assert gradcam(model, x, head="mean").shape == (3, px, px)  # predicted classes

    if heads == "ensemble":  # the heads have different (random) weights -> different maps
        assert not torch.allclose(maps["shape"], maps["texture"], atol=1e-4)
        assert not torch.allclose(maps["shape"], maps["background"], atol=1e-4)
    # no leftover hooks, train mode restored everywhere, BN statistics and .grad untouched
    assert not layer._forward_hooks and not layer._backward_hooks
    assert _no_hooks(model)
    assert all(m.training for m in model.modules())
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.num_batches_tracked, stats[1])
    assert all(p.grad is None for p in model.parameters())


def test_ensemble_head_map_equals_the_single_model_with_that_head():
    torch.manual_seed(1)
    net = SmallCNN(10).eval()
    ens = EnsembleModel(_Pooled(net.features), net.head.in_features, 10).eval()
    ens.heads[1].load_state_dict(net.head.state_dict())
    x = torch.rand(4, 3, 32, 32)
    c = torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(gradcam(ens, x, classes=c, head="texture"),
                               gradcam(net, x, classes=c), atol=1e-5, rtol=0)
    assert not ens.training and not any(m.training for m in ens.modules())


def test_uint8_no_grad_and_frozen_parameters():
    torch.manual_seed(2)
    model = build_model("smallcnn", 10).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    ref = gradcam(model, x.float() / 255)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        got = gradcam(model, x)
    torch.testing.assert_close(got, ref)
    # a custom normalise is used
    other = gradcam(model, x, normalise=lambda t: t * 3.0)
    assert not torch.allclose(other, ref)


def test_sheet_writes_a_png_that_grows_with_rows(tmp_path):
    from PIL import Image

    torch.manual_seed(3)
    single = build_model("smallcnn", 10)
    ens = build_model("smallcnn", 10, "ensemble")
    x = torch.rand(3, 3, 32, 32)
    y = torch.tensor([0, 1, 2])
    names = [f"class{i}" for i in range(10)]
    p1 = gradcam_sheet({"single": (single, "mean")}, x, y, tmp_path / "one.png", class_names=names)
    p3 = gradcam_sheet({"single": (single, "mean"), "ens shape": (ens, "shape"),
                        "ens background": (ens, "background")}, x, y, tmp_path / "sub" / "three.png")
    assert p1 == tmp_path / "one.png" and p3 == tmp_path / "sub" / "three.png"
    with Image.open(p1) as a, Image.open(p3) as b:
        assert a.format == b.format == "PNG"
        assert b.size[1] > a.size[1] and b.size[0] == a.size[0]
        b.load()
    # overwriting works and no temporary file is left behind
    gradcam_sheet({"single": single}, x, y, p1)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["one.png", "three.png"]


def test_bad_inputs_raise_value_error(tmp_path):
    model = build_model("smallcnn", 10).train()
    ens = build_model("smallcnn", 10, "ensemble")
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        gradcam(model, x[0])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        gradcam(model, x[:, :1])
    with pytest.raises(ValueError, match="not already normalised"):
        gradcam(model, x * 2 - 1)
    with pytest.raises(ValueError, match="unknown head"):
        gradcam(ens, x, head="colour")
    with pytest.raises(ValueError, match="single head; use head='mean'"):
        gradcam(model, x, head="shape")
    with pytest.raises(ValueError, match="not a module.*closest: layer"):
        gradcam(build_model("resnet18", 10), torch.rand(1, 3, 64, 64), target_layer="layer5")
    with pytest.raises(ValueError, match="one integer class per image"):
        gradcam(model, x, classes=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="below the model's 10 classes"):
        gradcam(model, x, classes=torch.tensor([1, 10]))
    # an error raised while torchcam's hooks are in place still leaves the model clean
    assert _no_hooks(model) and all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="non-empty dict"):
        gradcam_sheet({}, x, torch.tensor([0, 1]), tmp_path / "s.png")
    with pytest.raises(ValueError, match="one integer class per image"):
        gradcam_sheet({"m": (model, "mean")}, x, torch.tensor([0]), tmp_path / "s.png")
    with pytest.raises(ValueError, match="unknown head"):
        gradcam_sheet({"m": (ens, "colour")}, x, torch.tensor([0, 1]), tmp_path / "s.png")
    assert not any(tmp_path.iterdir())


@requires_cuda
def test_cuda_model_with_cpu_images_matches_cpu():
    torch.manual_seed(4)
    model = build_model("smallcnn", 10, "ensemble").eval()
    x = torch.rand(3, 3, 32, 32)
    c = torch.tensor([0, 5, 9])
    ref = gradcam(model, x, classes=c, head="shape")
    got = gradcam(model.cuda(), x, classes=c, head="shape")
    assert got.device.type == "cpu"
    torch.testing.assert_close(got, ref, atol=2e-3, rtol=0)
