"""Just Train Twice (train/jtt.py, mode jtt): the upsampled set against a hand computation."""
from __future__ import annotations

import pytest
import torch

from genint_fast.train import load_config
from genint_fast.train.trainer import Trainer, load_digits_split, logits_of


def test_upsampled_indices_by_hand():
    from genint_fast.train.jtt import upsample_indices

    idx = upsample_indices(torch.tensor([False, True, False, True]), 3)
    assert idx.tolist() == [0, 1, 2, 3, 1, 3, 1, 3]
    counts = torch.bincount(idx, minlength=4).tolist()
    assert counts == [1, 3, 1, 3]
    assert upsample_indices(torch.tensor([True, False]), 1).tolist() == [0, 1]
    with pytest.raises(ValueError, match="jtt_upweight must be >= 1"):
        upsample_indices(torch.tensor([True]), 0)


def test_trainer_trains_on_the_identification_runs_errors(tmp_path):
    keys = ["mode=jtt", "data=digits:colored:0.8", "data_size=160", "batch_size=16",
            "progress=false", "threads=1", "checkpoint_every=1000", "lr=0.05", "steps=3",
            "jtt_id_epochs=1", "jtt_upweight=4", f"out={tmp_path}"]
    tr = Trainer(load_config(None, keys))
    # the errors are those of the saved identification model on the un-augmented images
    from genint_fast.eval.checkpoints import load_classifier

    ident = load_classifier(tmp_path / "jtt_identification" / "checkpoint.pt")
    assert ident.step == 10                                     # 1 epoch of 160 / 16
    images, labels = load_digits_split(tr.cfg, "train", 160)
    pred = torch.cat([lg.argmax(1) for _, lg in logits_of(ident.model, images)])
    errors = pred != labels
    assert torch.equal(tr.jtt_errors, errors) and 0 < int(errors.sum()) < 160
    assert tr.data.n == 160 + 3 * int(errors.sum())
    tr.fit()
    # a second trainer on the same folder reuses the identification run (same errors)
    again = Trainer(load_config(None, keys))
    assert torch.equal(again.jtt_errors, errors)
    with pytest.raises(ValueError, match="jtt runs on in-memory data"):
        load_config(None, ["mode=jtt", "data=folder:/x"])
