"""Shape consistency of CGN masks (genint_fast.diagnostics.shape): the reader and the measure."""
from __future__ import annotations

import pytest
import torch

from genint_fast.diagnostics.shape import digit_shapes, shape_consistency, train_shape_reader


@pytest.fixture(scope="module")
def reader():
    torch.set_num_threads(1)
    return train_shape_reader(steps=150)


class _StubCGN:
    """Masks are colour-free digits: the true class's shape (faithful) or another class's."""

    num_classes = 10
    device = torch.device("cpu")

    def __init__(self, shift):
        x, y = digit_shapes("test", n=2000, seed=0)
        self.by_class = [x[y == c][:, :1] for c in range(10)]
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
