"""Deep Feature Reweighting (train/dfr.py, mode dfr): balanced subsets and the refit layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genint_fast.train import load_config
from genint_fast.train.dfr import _fit, _to_layer, balanced_subset, embeddings, fit_last_layer
from genint_fast.train.trainer import Trainer, load_digits_split


def test_balanced_subset_by_hand():
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = balanced_subset(groups, np.random.default_rng(0))
    assert np.bincount(groups[idx]).tolist() == [2, 2, 2]
    assert len(set(idx.tolist())) == 6 and (np.diff(idx) > 0).all()


@pytest.mark.parametrize("classes", [2, 3])
def test_layer_equals_the_standardised_logistic_regression(classes):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, (120, 5))
    y = np.arange(120) % classes
    x[:, 0] += y
    scaler, lr = _fit(x, y, 0.5, 0)
    w, b = _to_layer(scaler, lr, classes + 1)      # one class absent from the data
    z = x @ w.T + b
    f = lr.decision_function(scaler.transform(x))
    if classes == 2:
        assert np.allclose(z[:, 1] - z[:, 0], f)
    else:
        assert np.allclose(z[:, :classes], f)
    assert (z.argmax(1) < classes).all() and (z.argmax(1) == lr.predict(scaler.transform(x))).all()


def test_trainer_refits_only_the_last_layer(tmp_path):
    base = ["data=digits:colored:0.8", "data_size=160", "batch_size=16", "progress=false",
            "threads=1", "checkpoint_every=1000", "lr=0.05", "steps=10"]
    erm = Trainer(load_config(None, base + ["mode=erm", f"out={tmp_path / 'erm'}"]))
    erm.fit()
    ck = tmp_path / "erm" / "checkpoint.pt"
    cfg = load_config(None, base + ["mode=dfr", f"init_weights={ck}", "val_size=300",
                                    "dfr_retrains=2", f"out={tmp_path / 'dfr'}"])
    dfr = Trainer(cfg)
    row = dfr.fit()
    assert (tmp_path / "dfr" / "checkpoint.pt").is_file() and row["dfr_subset"] > 0
    before, after = erm.model.state_dict(), dfr.model.state_dict()
    for k in before:
        if not k.startswith("head."):
            assert torch.equal(before[k], after[k]), k
    # the layer is what fit_last_layer gives on the ERM model's features of the val split
    from genint_fast.eval.groups import group_ids

    images, labels, nz = load_digits_split(dfr.cfg, "val", 300, nuisance=True)
    x = embeddings(erm.model, images, normalise=erm.normalise)
    res = fit_last_layer(x, labels.numpy(), group_ids(labels, nz).numpy(), num_classes=10,
                         retrains=2, seed=0)
    assert np.allclose(after["head.weight"].numpy(), res["weight"], atol=1e-6)
    assert np.allclose(after["head.bias"].numpy(), res["bias"], atol=1e-4)
    with pytest.raises(ValueError, match="dfr retrains the last layer"):
        load_config(None, ["mode=dfr"])
