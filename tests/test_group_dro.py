"""Group DRO (train/group_dro.py, mode groupdro) against a hand computation."""
from __future__ import annotations

import math

import pytest
import torch

from genint_fast.train import load_config
from genint_fast.train.group_dro import GroupDRO
from genint_fast.train.trainer import Trainer


def _ce(logits, y):
    return math.log(sum(math.exp(v) for v in logits)) - logits[y]


def test_loss_and_weights_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    groups = torch.tensor([0, 0, 2, 2])       # group 1 and 3 absent from the batch
    rows = logits.tolist()
    ce = [_ce(r, int(y)) for r, y in zip(rows, labels)]
    L = [(ce[0] + ce[1]) / 2, 0.0, (ce[2] + ce[3]) / 2, 0.0]
    eta = 0.5
    q = [0.25 * math.exp(eta * v) for v in L]
    q = [v / sum(q) for v in q]
    dro = GroupDRO(4, eta)
    loss = dro.loss(logits, labels, groups)
    assert loss.item() == pytest.approx(sum(a * b for a, b in zip(q, L)), rel=1e-6)
    assert dro.q.tolist() == pytest.approx(q, rel=1e-6)
    # a second step starts from the updated weights
    q2 = [a * math.exp(eta * v) for a, v in zip(q, L)]
    q2 = [v / sum(q2) for v in q2]
    dro.loss(logits, labels, groups)
    assert dro.q.tolist() == pytest.approx(q2, rel=1e-6)
    # the gradient flows through the group means, weighted by the (detached) new q
    x = logits.clone().requires_grad_(True)
    GroupDRO(4, eta).loss(x, labels, groups).backward()
    p = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(labels, 2).float()
    w = torch.tensor([q[0] / 2, q[0] / 2, q[2] / 2, q[2] / 2])[:, None]
    assert torch.allclose(x.grad, w * (p - onehot), atol=1e-6)


def test_bad_inputs_are_one_sentence():
    with pytest.raises(ValueError, match="at least one group"):
        GroupDRO(0)
    with pytest.raises(ValueError, match="group ids must lie in"):
        GroupDRO(2).loss(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(ValueError, match="groupdro needs group labels"):
        load_config(None, ["mode=groupdro", "data=folder:/nowhere"])


TINY = ["mode=groupdro", "data=digits:colored:0.8", "data_size=160", "batch_size=16",
        "progress=false", "threads=1", "checkpoint_every=1000", "log_every=2", "lr=0.05",
        "dro_eta=0.1"]


def test_trainer_upweights_groups_and_resumes_exactly(tmp_path):
    whole = Trainer(load_config(None, TINY + ["steps=8", f"out={tmp_path / 'w'}"]))
    present = torch.unique(whole.groups)
    assert present.numel() > 10      # rho 0.8: off-colour groups exist
    # only the groups present get a weight (an empty one would scale the loss down), indexed
    # 0..k-1, starting uniform
    assert torch.equal(present, torch.arange(whole.dro.num_groups))
    assert torch.allclose(whole.dro.q, torch.full_like(whole.dro.q, 1 / present.numel()))
    whole.fit()
    q = whole.dro.q
    assert q.sum().item() == pytest.approx(1.0)
    assert not torch.allclose(q, torch.full_like(q, 1 / present.numel()))
    first = Trainer(load_config(None, TINY + ["steps=4", f"out={tmp_path / 's'}"]))
    first.fit()
    second = Trainer(load_config(None, TINY + ["steps=8", f"out={tmp_path / 's'}"]))
    assert second.resume()
    second.fit()
    assert torch.equal(second.dro.q, whole.dro.q)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[k], v), k
