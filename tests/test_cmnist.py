"""digits:cmnist, DomainBed's ColoredMNIST on the real-MNIST digits: environments, label noise,
determinism, and the two-class plumbing through the trainer, the export and the demo."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from genint_fast.data.digits import (CMNIST_CLASSES, CMNIST_ENVIRONMENTS, CMNIST_LABEL_NOISE,
                                     export_biased_digits, make_biased_digits, mnist_digits,
                                     num_classes_of, shape_pools)


def _within(rate, p, n, z=4.0):
    """|rate - p| within z binomial standard errors."""
    return abs(rate - p) <= z * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("split", ["train", "val", "test-id", "test-ood"])
def test_environments_label_noise_and_colour_flips(split):
    ds = make_biased_digits("cmnist", split, n=4000)
    digit = torch.from_numpy(mnist_digits()[1])[ds.source]
    clean = (digit >= 5).long()
    assert ds.classes == list(CMNIST_CLASSES) and ds.num_classes == 2 == num_classes_of("cmnist")
    noisy = (ds.labels != clean).float()
    assert _within(noisy.mean().item(), CMNIST_LABEL_NOISE, len(ds))
    colour = ds.nuisance[:, 0]
    # colour id 0 is red, 1 green; blue is empty and the background black
    red, green = ds.images[:, 0].amax((1, 2)), ds.images[:, 1].amax((1, 2))
    assert torch.equal((green > 0).long(), colour) and torch.equal((red > 0).long(), 1 - colour)
    assert int(ds.images[:, 2].max()) == 0 and torch.all(ds.nuisance[:, 1] == -1)
    envs = sorted(torch.unique(ds.environment).tolist())
    assert envs == ([2] if split == "test-ood" else [0, 1])
    for e in envs:
        sel = ds.environment == e
        flipped = (colour[sel] != ds.labels[sel]).float().mean().item()
        assert _within(flipped, CMNIST_ENVIRONMENTS[e], int(sel.sum())), (split, e, flipped)
    assert torch.equal(ds.follows[:, 0], colour == ds.labels)
    # the colour flip is drawn against the noisy label, so against the clean one it is weaker
    if split == "test-ood":
        assert (colour == clean).float().mean().item() > 0.2


def test_deterministic_disjoint_shapes_and_rho_refused():
    a, b = make_biased_digits("cmnist", "train", seed=3, n=500), \
        make_biased_digits("cmnist", "train", seed=3, n=500)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.environment, b.environment)
    test = make_biased_digits("cmnist", "test-ood", seed=3, n=500)
    assert not set(a.source.tolist()) & set(test.source.tolist())
    with pytest.raises(ValueError, match="cmnist has no rho"):
        make_biased_digits("cmnist", "train", rho=0.7)
    # rho 0: colours independent of the label in every split (for the measuring readers)
    dec = make_biased_digits("cmnist", "train", rho=0.0, n=4000)
    assert _within((dec.nuisance[:, 0] == dec.labels).float().mean().item(), 0.5, 4000)
    assert torch.all(dec.environment == -1)


def test_export_names_class_folders_and_records_environments(tmp_path):
    man = export_biased_digits(str(tmp_path), variant="cmnist", splits=("train",),
                               sizes={"train": 40})
    assert man["classes"] == list(CMNIST_CLASSES)
    assert sorted(p.name for p in (tmp_path / "train").iterdir() if p.is_dir()) == \
        list(CMNIST_CLASSES)
    rows = list(csv.DictReader(open(tmp_path / "train" / "nuisance.csv")))
    assert len(rows) == 40 and {r["environment"] for r in rows} == {"0", "1"}
    assert all(r["file"].startswith(CMNIST_CLASSES[int(r["label"])] + "/") for r in rows)


def test_trainer_builds_a_two_class_head_and_groupdro_has_four_groups(tmp_path):
    from genint_fast.train.config import load_config
    from genint_fast.train.trainer import Trainer

    keys = ["data=digits:cmnist", "data_size=200", "batch_size=16", "progress=false",
            "threads=1", "checkpoint_every=1000", "log_every=5", "steps=3"]
    t = Trainer(load_config(None, keys + ["mode=groupdro", f"out={tmp_path / 'g'}"]))
    assert t.cfg.num_classes == 2 and t.dro.num_groups == 4    # class x colour
    t.fit()
    with pytest.raises(ValueError, match="built-in digits have 2 classes but num_classes is 10"):
        Trainer(load_config(None, keys + ["num_classes=10", f"out={tmp_path / 'e'}"]))


def test_quick_demo_on_cmnist_selects_on_validation_and_reports_environments(tmp_path):
    from genint_fast.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--quick", "--variant", "cmnist", "--methods", "erm,groupdro,jtt,dfr,cgn",
               "--select", "val", "--out", str(out), "--threads", "2"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["select"] == "val"
    for method in ("erm", "groupdro", "jtt", "dfr", "cgn"):
        run = res["methods"][method]["runs"][0]
        assert set(run["environments"]) == {"+80%", "+90%", "-90%"}
        assert run["environments"]["-90%"] == pytest.approx(run["ood"], abs=1e-6)
        assert 0 <= run["ood_worst_group"] <= run["ood_average_group"] <= 1
        # the selected weights are what the row measured (dfr fits once, choosing its C on
        # its own half of the val split)
        assert (out / "runs" / f"{method}_seed0" / "best.pt").is_file() == (method != "dfr")
    md = (out / "results.md").read_text()
    assert "| method | +90% | +80% | -90% | -90% worst-group | -90% average-group |" in md
    assert "training-domain validation" in md
    assert 0.0 <= res["cgn"]["shape_consistency"] <= 1.0


def test_oracle_selection_reads_the_val_ood_split_and_folders_are_refused(tmp_path):
    from genint_fast.train.config import load_config
    from genint_fast.train.trainer import Trainer

    vo = make_biased_digits("cmnist", "val-ood", n=300)
    val = make_biased_digits("cmnist", "val", n=300)
    assert torch.all(vo.environment == 2)     # the test environment, on the val digit shapes
    assert set(vo.source.tolist()) <= set(shape_pools(0)["val"].tolist())
    keys = ["mode=erm", "data=digits:cmnist", "data_size=64", "batch_size=16", "progress=false", "threads=1",
            "checkpoint_every=1000", "steps=2", "val_size=300"]
    t = Trainer(load_config(None, keys + ["select=oracle", f"out={tmp_path / 'o'}"]))
    assert torch.equal(t.selector.images, vo.images) and torch.equal(t.selector.labels, vo.labels)
    t = Trainer(load_config(None, keys + ["select=val", f"out={tmp_path / 'v'}"]))
    assert torch.equal(t.selector.images, val.images)
    with pytest.raises(ValueError, match="oracle selects on the built-in digits"):
        load_config(None, ["select=oracle", f"data=folder:{tmp_path}"])
