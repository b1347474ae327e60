"""Shape consistency of CGN masks (genint_fast.diagnostics.shape): the reader and the measure."""
from __future__ import annotations

import pytest
import torch

from genint_fast.diagnostics.shape import (cgn_shape_diversity, digit_shapes, mask_transfer,
                                           shape_consistency, shape_diversity,
                                           train_shape_reader)


@pytest.fixture(scope="module")
def reader():
    torch.set_num_threads(1)
    return train_shape_reader(steps=150)


class _StubCGN:
    """Masks are colour-free digits: the true class's shape (faithful) or another class's."""

    num_classes = 10
    device = torch.device("cpu")

    def __init__(self, shift, split="test", per_class=None):
        x, y = digit_shapes(split, n=2000, seed=0)
        self.by_class = [x[y == c][:per_class, :1] for c in range(10)]
        self.shift = shift

    def eval(self):
        return self

    def sample_noise(self, n, g):
        return torch.rand(n, 1, generator=g)

    def mask(self, u, y):
        picks = [self.by_class[(int(c) + self.shift) % 10] for c in y]
        return torch.stack([p[int(v * (p.shape[0] - 1))] for p, v in zip(picks, u[:, 0])])


def test_reader_reads_held_out_digit_shapes(reader):
    _, acc = reader
    assert acc > 0.8


def test_consistency_is_high_for_faithful_shapes_and_low_for_wrong_ones(reader):
    net, acc = reader
    faithful = shape_consistency(_StubCGN(0), net, n=500)
    wrong = shape_consistency(_StubCGN(3), net, n=500)   # every mask is class + 3's shape
    assert faithful > 0.8 and faithful == pytest.approx(acc, abs=0.1)
    assert wrong < 0.15


def test_mask_transfer_separates_varied_shapes_from_collapsed_ones():
    """Masks drawn from many real train-pool shapes per class teach a net to read held-out digits
    about as well as real digits do; masks that collapse to 2 shapes per class (each one its
    class, so shape consistency would be perfect) teach much less."""
    torch.set_num_threads(1)
    varied, real = mask_transfer(_StubCGN(0, "train"), steps=150, n=2000, test_n=500, fits=1)
    collapsed, none = mask_transfer(_StubCGN(0, "train", per_class=2), steps=150, n=2000,
                                    test_n=500, real=False, fits=1)
    assert none is None and real > 0.7
    assert varied > real - 0.1
    assert collapsed < varied - 0.3


def test_shape_diversity_is_zero_for_one_shape_and_one_for_disjoint_shapes():
    a = torch.zeros(1, 1, 4, 4)
    a[..., :2, :] = 1
    b = 1 - a                                              # disjoint from a
    same = torch.cat([a, a, a, b, b])
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert shape_diversity(same, labels, num_classes=2) == 0.0
    mixed = torch.cat([a, b, a, b])
    labels = torch.tensor([0, 0, 1, 1])
    assert shape_diversity(mixed, labels, num_classes=2) == pytest.approx(1.0)


def test_cgn_shape_diversity_is_lower_for_collapsed_shapes():
    varied, real = cgn_shape_diversity(_StubCGN(0, "train"), n=1000)
    collapsed, _ = cgn_shape_diversity(_StubCGN(0, "train", per_class=2), n=1000)
    assert varied == pytest.approx(real, abs=0.05)
    assert collapsed < 0.5 * varied
