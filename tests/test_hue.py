"""digits:hue, the continuous within-class nuisance (issue 22): class means and spread honoured,
OOD independence, determinism; the hue read-out and measures on hand-made images."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genint_fast.data.digits import HUE_SD, hue_bin, hue_to_rgb, make_biased_digits
from genint_fast.diagnostics.nuisance import hue_measures, read_hue


def _dev(h, y):
    return (h - y.float() / 10 + 0.5) % 1.0 - 0.5


def test_class_means_spread_ood_and_determinism():
    tr = make_biased_digits("hue", "train", n=5000)
    dev = _dev(tr.nuisance_value, tr.labels)
    for c in range(10):
        d = dev[tr.labels == c]
        assert abs(d.mean().item()) < 4 * HUE_SD / math.sqrt(d.numel())     # mean c / 10
        assert d.std().item() == pytest.approx(HUE_SD, rel=0.1)
    # the id is the nearest class mean: ~90% of hues at sd 0.03 with means 0.1 apart
    assert torch.equal(tr.nuisance[:, 0], torch.from_numpy(hue_bin(tr.nuisance_value.numpy())))
    assert 0.85 < (tr.nuisance[:, 0] == tr.labels).float().mean().item() < 0.93
    # pixels: the stroke has exactly the drawn hue at full saturation
    i = 7
    stroke = tr.images[i].reshape(3, -1).float().amax(1) / 255
    want = torch.from_numpy(hue_to_rgb(tr.nuisance_value[i:i + 1].numpy())[0]).float()
    assert torch.allclose(stroke, want, atol=1 / 255 + 1e-6)
    ood = make_biased_digits("hue", "test-ood", n=5000)
    assert abs((ood.nuisance[:, 0] == ood.labels).float().mean().item() - 0.1) < 0.02
    # uniform hues: a tenth in each bin whatever the class
    counts = torch.bincount(ood.nuisance[:, 0], minlength=10).float() / 5000
    assert counts.min().item() > 0.08 and counts.max().item() < 0.12
    half = make_biased_digits("hue", "train", rho=0.5, n=4000)
    assert abs(half.follows[:, 0].float().mean().item() - 0.5) < 0.03
    again = make_biased_digits("hue", "train", n=5000)
    assert torch.equal(again.images, tr.images) and torch.equal(again.nuisance_value,
                                                                 tr.nuisance_value)


def _images(hues, side=8):
    """Hand-made images: a bright square of each hue on black, plus one all-black image."""
    rgb = torch.from_numpy(hue_to_rgb(np.asarray(hues))).float()
    x = torch.zeros(len(hues) + 1, 3, 16, 16)
    x[:-1, :, 4:4 + side, 4:4 + side] = rgb[:, :, None, None]
    return x


def test_read_hue_and_the_measures_by_hand():
    hues = [0.0, 0.12, 0.55, 0.98]
    got = read_hue(_images(hues))
    assert torch.allclose(got[:-1], torch.tensor(hues), atol=2e-3)
    assert math.isnan(got[-1].item())
    # reference: each class's hues spread evenly over mean +- 0.05
    ref_y = torch.arange(10).repeat_interleave(101)
    ref_h = (ref_y.float() / 10 + torch.linspace(-0.05, 0.05, 101).repeat(10)) % 1.0
    labels = torch.tensor([0, 1, 1, 5])
    h = torch.tensor([0.98, 0.12, 0.55, 0.5])      # near, near, far (class 1 at 0.55), exact
    m = hue_measures(h, labels, ref_h, ref_y)
    # nearest class mean: 0.98 -> 0, 0.12 -> 1, 0.55 -> 5 (wrong for label 1), 0.5 -> 5
    assert m["class_from_hue"] == pytest.approx(3 / 4)
    # range of each class: about +- 0.0475 (central 95% of +-0.05): only 0.55 for class 1 is out
    assert m["outside_class_range"] == pytest.approx(1 / 4)
    assert m["hue_read"] == 1.0
    m = hue_measures(torch.tensor([float("nan"), 0.1]), torch.tensor([0, 1]), ref_h, ref_y)
    assert m["hue_read"] == 0.5 and m["class_from_hue"] == 0.5 and m["outside_class_range"] == 0.5


def test_quick_demo_reports_the_hue_measures(tmp_path):
    import json

    from genint_fast.cli import main

    out = tmp_path / "hue"
    assert main(["demo", "--quick", "--variant", "hue", "--methods", "gan-aug", "--out",
                 str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["measures"]["rows"]
    for name, r in rows.items():
        assert 0 <= r["class_from_hue"] <= 1 and 0 <= r["outside_class_range"] <= 1, name
    # the real training images: most hues inside their own class's range, the class readable
    assert rows["training images"]["outside_class_range"] < 0.2
    assert rows["training images"]["class_from_hue"] > 0.75
    assert "hue outside its class's training range (%)" in (out / "results.md").read_text()
