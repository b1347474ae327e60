"""digits:rotation, the geometric within-class nuisance (issue 22): class means and spread
honoured, OOD independence, the rotation itself, determinism; the angle measures on hand-made
values; the angle reader's round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genint_fast.data.digits import (ROTATION_MEANS, ROTATION_RANGE, ROTATION_SD, angle_bin,
                                     make_biased_digits, rotate_masks)
from genint_fast.data.shapes import digit_masks
from genint_fast.diagnostics.nuisance import (format_measures_table, load_readers,
                                              measure_images, save_readers, train_readers,
                                              value_measures, value_reference)


def test_rotate_masks_turns_counter_clockwise_and_keeps_the_identity():
    m = np.zeros((2, 32, 32), np.float32)
    m[:, 4:16, 15:17] = 1.0                   # a vertical bar in the top half, at the centre
    out = rotate_masks(m, np.array([0.0, 90.0]))
    assert np.allclose(out[0], m[0], atol=1e-5)
    ys, xs = np.nonzero(out[1] > 0.5)
    # a quarter turn counter-clockwise (as displayed) takes the top half to the left half
    assert xs.max() < 16 and abs(ys.mean() - 15.5) < 1.0


def test_class_means_spread_ood_and_determinism():
    tr = make_biased_digits("rotation", "train", n=5000)
    dev = tr.nuisance_value - torch.from_numpy(ROTATION_MEANS).float()[tr.labels]
    for c in range(10):
        d = dev[tr.labels == c]
        assert abs(d.mean().item()) < 4 * ROTATION_SD / math.sqrt(d.numel())
        assert d.std().item() == pytest.approx(ROTATION_SD, rel=0.1)
    assert torch.equal(tr.nuisance[:, 0], torch.from_numpy(angle_bin(tr.nuisance_value.numpy())))
    # the nearest class mean names the class P(|N(0, 4)| < 5) = 79% of the time
    assert 0.74 < (tr.nuisance[:, 0] == tr.labels).float().mean().item() < 0.84
    # pixels: the digit's own mask, rotated by the drawn angle, in white on black
    masks, _ = digit_masks("mnist")
    i = 11
    want = rotate_masks(masks[tr.source[i].item()][None], tr.nuisance_value[i:i + 1].numpy())
    want = np.rint(np.clip(want[0], 0, 1) * 255)
    for ch in range(3):
        assert np.abs(tr.images[i, ch].numpy().astype(float) - want).max() <= 1
    ood = make_biased_digits("rotation", "test-ood", n=5000)
    assert abs((ood.nuisance[:, 0] == ood.labels).float().mean().item() - 0.1) < 0.02
    a = ood.nuisance_value
    assert a.abs().max().item() <= ROTATION_RANGE and a.std().item() == pytest.approx(
        2 * ROTATION_RANGE / math.sqrt(12), rel=0.05)          # uniform on +- the range
    for c in (0, 9):       # independent of the class: every class spans the whole range
        assert a[ood.labels == c].min() < -40 and a[ood.labels == c].max() > 40
    half = make_biased_digits("rotation", "train", rho=0.5, n=4000)
    assert abs(half.follows[:, 0].float().mean().item() - 0.5) < 0.03
    again = make_biased_digits("rotation", "train", n=5000)
    assert torch.equal(again.images, tr.images)
    assert torch.equal(again.nuisance_value, tr.nuisance_value)


def test_angle_measures_by_hand():
    ref_y = torch.arange(10).repeat_interleave(101)
    ref_a = torch.from_numpy(ROTATION_MEANS).float()[ref_y] + torch.linspace(-6, 6, 101).repeat(10)
    labels = torch.tensor([0, 1, 1, 9])
    a = torch.tensor([-44.0, -33.0, 10.0, 60.0])     # near, near, far, beyond the last mean
    m = value_measures(a, labels, ref_a, ref_y, "rotation")
    # nearest class mean: -44 -> 0, -33 -> 1 (-35 +- 5), 10 -> 5 (wrong for 1), 60 -> 9
    assert m["class_from_angle"] == pytest.approx(3 / 4)
    # each class's range: about +- 5.7 degrees (central 95% of +- 6): 10 and 60 are outside
    assert m["outside_class_range"] == pytest.approx(2 / 4)
    assert m["angle_read"] == 1.0
    with pytest.raises(ValueError, match="no continuous nuisance"):
        value_measures(a, labels, ref_a, ref_y, "colored")


def test_angle_reader_round_trip_and_measures(tmp_path):
    readers = train_readers("rotation", class_steps=20, nuisance_steps=5, n=200)
    assert readers.angle_reader is not None and "angle_mean_abs_error_deg" in readers.accuracy
    save_readers(readers, tmp_path / "r.pt")
    back = load_readers(tmp_path / "r.pt")
    tr = make_biased_digits("rotation", "val", n=100)
    x = tr.float_images()
    got = back.read_angle(x, tr.labels)
    assert torch.allclose(got, readers.read_angle(x, tr.labels))
    assert got.shape == (100,) and got.abs().max().item() <= ROTATION_RANGE
    ref = value_reference(back, x, tr.labels)
    rows = {"val": measure_images(back, x, tr.labels, reference=ref)}
    assert 0 <= rows["val"]["class_from_angle"] <= 1
    assert "angle outside its class's training range (%)" in format_measures_table({"rows": rows})
    # readers without a continuous nuisance: no reference, no angle
    colored = train_readers("colored", class_steps=2, nuisance_steps=2, n=100)
    assert value_reference(colored, x, tr.labels) is None
    with pytest.raises(ValueError, match="no angle reader"):
        colored.read_angle(x, tr.labels)


def test_the_demo_report_says_why_each_variant():
    from genint_fast.demo.config import WHY_VARIANT, why_variant

    assert "viewpoint" in why_variant("rotation") and "colour shifts" in why_variant("hue")
    assert why_variant("colored") == WHY_VARIANT == why_variant("wildlife")
