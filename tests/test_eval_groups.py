"""Group accuracies (genint_fast.eval.groups) against hand computations."""
from __future__ import annotations

import pytest
import torch

from genint_fast.eval.groups import bias_split, format_group_table, group_accuracy, group_ids


def test_group_ids_class_times_nuisance():
    labels = torch.tensor([0, 0, 1, 2])
    nuisance = torch.tensor([[0, -1], [3, -1], [1, -1], [9, -1]])
    assert group_ids(labels, nuisance).tolist() == [0, 3, 11, 29]
    both = torch.tensor([[0, 1], [3, 4], [1, 1], [9, 0]])
    assert group_ids(labels, both, slot=None).tolist() == [1, 34, 111, 290]
    assert group_ids(labels, both, slot=1).tolist() == [1, 4, 11, 20]
    with pytest.raises(ValueError, match="pick another slot"):
        group_ids(labels, nuisance, slot=1)          # colored digits have no background id
    with pytest.raises(ValueError, match="does not exist"):
        group_ids(labels, nuisance, slot=2)
    with pytest.raises(ValueError, match="one row per image"):
        group_ids(labels[:3], nuisance)


def test_worst_and_average_by_hand():
    # three groups: A (4 images, 3 right), B (2 images, 0 right), C (4 images, 4 right)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    groups = torch.tensor([5, 5, 5, 5, 7, 7, 9, 9, 9, 9])
    pred = torch.tensor([0, 0, 0, 3, 0, 0, 2, 2, 2, 2])
    r = group_accuracy(pred, labels, groups, min_count=1)
    assert r["overall"] == pytest.approx(7 / 10)
    assert r["average"] == pytest.approx((3 / 4 + 0 + 1) / 3)
    assert r["worst"] == 0.0 and r["worst_group"] == 7 and r["groups"] == 3
    assert r["per_group"] == {5: (4, 0.75), 7: (2, 0.0), 9: (4, 1.0)}
    # a group under min_count still counts in the average but cannot be the worst group
    r3 = group_accuracy(pred, labels, groups, min_count=3)
    assert r3["worst"] == 0.75 and r3["worst_group"] == 5 and r3["small_groups"] == 1
    assert r3["average"] == pytest.approx(r["average"])
    # when every group is small, the worst is taken over all of them
    assert group_accuracy(pred, labels, groups, min_count=100)["worst"] == 0.0


def test_bias_split_ignores_missing_slots():
    labels = torch.tensor([1, 1, 2, 3])
    nz = torch.tensor([[1, -1], [4, -1], [2, 2], [3, 0]])
    aligned, conflicting = bias_split(labels, nz)
    assert aligned.tolist() == [True, False, True, False]
    assert conflicting.tolist() == [False, True, False, False]   # [3, 0]: one id agrees


def test_bad_inputs_are_one_sentence():
    with pytest.raises(ValueError, match="integer ids"):
        group_accuracy(torch.tensor([0.5]), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="one entry per image"):
        group_accuracy(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="no images"):
        group_accuracy(torch.tensor([]).long(), torch.tensor([]).long(), torch.tensor([]).long())


def test_table_has_a_cell_per_present_group():
    labels = torch.tensor([0, 0, 1])
    g = group_ids(labels, torch.tensor([0, 2, 1]), num_ids=3)
    r = group_accuracy(torch.tensor([0, 1, 1]), labels, g, min_count=1)
    text = format_group_table(r, num_ids=3, slot_name="stroke")
    assert text.splitlines()[2] == "| 0 | 100 (1) |  | 0 (1) |"
    assert text.splitlines()[3] == "| 1 |  | 100 (1) |  |"
