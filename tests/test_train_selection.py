"""Model selection by training-domain validation (train/selection.py, select=val)."""
from __future__ import annotations

import json

import pytest
import torch

from genint_fast.train import load_config
from genint_fast.train.checkpoint import load_checkpoint
from genint_fast.train.trainer import Trainer, evaluate, load_digits_split

BASE = ["mode=erm", "steps=24", "data_size=192", "batch_size=16", "progress=false",
        "log_every=4", "checkpoint_every=1000", "lr=0.2", "threads=1", "select=val",
        "val_every=4", "val_size=150"]


def cfg(tmp_path, *extra):
    return load_config(None, BASE + [f"out={tmp_path}", *extra])


def test_selection_keeps_the_best_validation_checkpoint(tmp_path):
    tr = Trainer(cfg(tmp_path))
    tr.fit()
    scores = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    scores = [(r["step"], r["val_top1"]) for r in scores if set(r) == {"step", "val_top1"}]
    assert [s for s, _ in scores] == [4, 8, 12, 16, 20, 24]
    best_step, best = max(scores, key=lambda t: (t[1], -t[0]))     # ties: the earlier step
    st = load_checkpoint(tmp_path / "best.pt")
    assert st["step"] == best_step and tr.selector.best_step == best_step
    # the run ends with the selected weights; checkpoint.pt keeps the last ones (resume)
    for k, v in st["model"].items():
        assert torch.equal(tr.model.state_dict()[k], v), k
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 24
    images, labels = load_digits_split(tr.cfg, "val", 150)
    assert evaluate(tr.model, images, labels)[0] == pytest.approx(best)


def test_selection_survives_a_resume(tmp_path):
    whole = Trainer(cfg(tmp_path / "whole"))
    whole.fit()
    first = Trainer(cfg(tmp_path / "split", "steps=12"))
    first.fit()
    second = Trainer(cfg(tmp_path / "split"))
    assert second.resume()
    second.fit()
    assert second.selector.state_dict() == whole.selector.state_dict()


def test_select_val_on_a_folder_needs_val_data(tmp_path):
    with pytest.raises(ValueError, match="val_data is needed for select=val"):
        load_config(None, ["mode=erm", f"data=folder:{tmp_path}", "select=val"])
    with pytest.raises(ValueError, match='select must be "last", "val" or "oracle"'):
        load_config(None, ["mode=erm", "select=best"])


def test_select_val_reads_a_validation_folder(tmp_path):
    from genint_fast.data import export_biased_digits

    export_biased_digits(str(tmp_path / "d"), splits=("train", "val"),
                         sizes={"train": 64, "val": 30})
    tr = Trainer(load_config(None, ["mode=erm", "steps=4", "batch_size=16", "progress=false",
                                    "threads=1", "select=val", "val_every=2", "image_size=32",
                                    f"data=folder:{tmp_path / 'd' / 'train'}",
                                    f"val_data=folder:{tmp_path / 'd' / 'val'}",
                                    f"out={tmp_path / 'run'}"]))
    assert tr.selector.images.shape == (30, 3, 32, 32)
    tr.fit()
    assert tr.selector.best_step in (2, 4) and (tmp_path / "run" / "best.pt").is_file()
