"""`genint-fast eval <protocol>`: checkpoints alone, several side by side, reports, errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from genint_fast.cli import main as cli_main

TINY = ["steps=2", "data_size=64", "batch_size=16", "progress=false", "log_every=1",
        "checkpoint_every=2", "lr=0.05", "mode=erm"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two small erm checkpoints on the built-in colored digits (different seeds), trained
    long enough to learn the colour shortcut in distribution."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        assert cli_main(["train", *TINY, "steps=120", "data_size=400", f"seed={seed}",
                         "eval_size=20", f"out={root / f'erm{seed}'}"]) == 0
    return root


def test_eval_of_a_checkpoint_whose_training_folder_was_deleted(tmp_path, capsys):
    from genint_fast.data import export_biased_digits
    export_biased_digits(str(tmp_path / "digits"), splits=("train", "test-ood"),
                         sizes={"train": 48, "test-ood": 30})
    train_dir = tmp_path / "digits" / "train"
    assert cli_main(["train", *TINY, f"data=folder:{train_dir}", "image_size=24",
                     f"out={tmp_path / 'run'}"]) == 0
    capsys.readouterr()
    shutil.rmtree(train_dir)
    assert cli_main(["eval", "accuracy", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                     "--folder", str(tmp_path / "digits" / "test-ood"),
                     "--out", str(tmp_path / "ev")]) == 0
    res = json.loads(capsys.readouterr().out)
    # --size defaults to the training size (image_size=24), not 32, and folder-trained
    # checkpoints read folders with the standard centre crop
    assert res["images"]["size"] == 24 and res["images"]["crop_fraction"] == 0.875
    assert res["images"]["n"] == 30 and res["rows"][0]["checkpoint"] == "run"


def test_several_checkpoints_side_by_side(two_runs, tmp_path, capsys):
    a, b = two_runs / "erm0" / "checkpoint.pt", two_runs / "erm1" / "checkpoint.pt"
    assert cli_main(["eval", "accuracy", "--checkpoint", f"first={a}", str(b), "--n", "40",
                     "--out", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["checkpoint"] for r in res["rows"]] == ["first", "erm1"]
    md = (tmp_path / "accuracy.md").read_text()
    assert "| first | 120 |" in md and "| erm1 | 120 |" in md
    # each row equals that checkpoint evaluated alone
    assert cli_main(["eval", "accuracy", "--checkpoint", str(b), "--n", "40",
                     "--out", str(tmp_path / "alone")]) == 0
    alone = json.loads(capsys.readouterr().out)["rows"][0]
    assert (alone["top1"], alone["top5"]) == (res["rows"][1]["top1"], res["rows"][1]["top5"])


def test_eval_without_a_protocol_is_accuracy(two_runs, tmp_path, capsys):
    """`genint-fast eval --checkpoint C ...` (the form before the protocols arrived) runs the
    accuracy protocol."""
    ckpt = str(two_runs / "erm0" / "checkpoint.pt")
    assert cli_main(["eval", "--checkpoint", ckpt, "--n", "40", "--out", str(tmp_path)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli_main(["eval", "accuracy", "--checkpoint", ckpt, "--n", "40",
                     "--out", str(tmp_path / "b")]) == 0
    named = json.loads(capsys.readouterr().out)
    assert plain["protocol"] == named["protocol"] == "accuracy"
    assert plain["rows"][0]["top1"] == named["rows"][0]["top1"]


def test_accuracy_on_built_in_digits_reports_the_groups(two_runs, tmp_path, capsys):
    """Worst-group, average-group and bias-conflicting accuracy equal a hand computation from
    the checkpoint's own predictions and the split's recorded stroke ids."""
    from genint_fast.data.digits import make_biased_digits
    from genint_fast.eval.checkpoints import load_classifier

    ckpt = two_runs / "erm0" / "checkpoint.pt"
    assert cli_main(["eval", "accuracy", "--checkpoint", str(ckpt), "--split", "test-ood",
                     "--n", "300", "--out", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out)
    row = res["rows"][0]
    ds = make_biased_digits("colored", "test-ood", 1.0, n=300)
    pred = load_classifier(ckpt).logits(ds.images).argmax(1)
    hit = (pred == ds.labels).float()
    accs = {}
    for c in range(10):
        for s in range(10):
            sel = (ds.labels == c) & (ds.nuisance[:, 0] == s)
            if sel.any():
                accs[(c, s)] = (float(hit[sel].mean()), int(sel.sum()))
    assert row["average_group"] == pytest.approx(sum(a for a, _ in accs.values()) / len(accs))
    assert row["worst_group"] == pytest.approx(min(a for a, n in accs.values() if n >= 5))
    conflicting = ds.nuisance[:, 0] != ds.labels
    assert row["conflicting"] == pytest.approx(float(hit[conflicting].mean()))
    assert res["groups"]["conflicting"] == int(conflicting.sum())
    assert "worst-group (%)" in (tmp_path / "accuracy.md").read_text()


def test_corruptions_with_a_baseline(two_runs, tmp_path, capsys):
    a, b = two_runs / "erm0" / "checkpoint.pt", two_runs / "erm1" / "checkpoint.pt"
    args = ["eval", "corruptions", "--checkpoint", str(a), "--baseline", f"base={b}",
            "--split", "test-id", "--n", "40", "--corruptions", "gaussian_noise", "snow",
            "--severities", "1", "5", "--out", str(tmp_path), "--workers", "0",
            "--batch-size", "10"]
    assert cli_main(args) == 0
    res = json.loads(capsys.readouterr().out)
    rows = {r["checkpoint"]: r for r in res["rows"]}
    assert set(rows) == {"erm0", "base"} and rows["base"]["is_baseline"]
    assert rows["base"]["ce_vs_baseline"] == pytest.approx(100.0)
    assert not res["complete"] and "mce" not in rows["erm0"]
    for r in rows.values():
        assert set(r["errors"]) == {"gaussian_noise", "snow"}
        assert all(len(v) == 2 for v in r["errors"].values())
    # in distribution the model is right from colour; severity 5 snow (a dense bright layer)
    # hides the strokes' colour far more than severity 1
    assert rows["erm0"]["clean_err"] < 0.3
    assert rows["erm0"]["errors"]["snow"][1] > rows["erm0"]["errors"]["snow"][0] + 0.2
    # the result does not depend on the batch size or on worker processes
    assert cli_main(args[:-4] + ["--workers", "2", "--batch-size", "40"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["errors"] for r in again["rows"]] == [r["errors"] for r in res["rows"]]
    assert "rel. mCE vs base" in (tmp_path / "corruptions.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["eval", "accuracy", "--checkpoint", "{bad}"], "is not a checkpoint"),
    (["eval", "accuracy", "--checkpoint", "{missing}"], "no checkpoint at"),
    (["eval", "accuracy", "--checkpoint", "{a}", "{a}"], "two checkpoints are named"),
    (["eval", "accuracy", "--checkpoint", "{a}", "--size", "64"], "--size applies to --folder"),
    (["eval", "corruptions", "--checkpoint", "{a}", "--corruptions", "rain"],
     "unknown corruption"),
    (["eval", "corruptions", "--checkpoint", "{a}", "--severities", "6"], "severities"),
    (["eval", "accuracy", "--checkpoint", "{a}", "--head", "shape"], "needs ensemble"),
])
def test_bad_input_gets_one_sentence(two_runs, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    fill = {"bad": str(bad), "missing": str(tmp_path / "nope.pt"),
            "a": str(two_runs / "erm0" / "checkpoint.pt")}
    argv = [a.format(**fill) for a in argv] + ["--out", str(tmp_path / "ev")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ev").exists()     # nothing half-written


# ---------------------------------------------------------------------------- folder protocols
def _checkpoint(path, num_classes, *, heads="single", seed=0, image_size=32):
    """A genint-fast checkpoint of a random smallcnn trained (nominally) on a folder."""
    from genint_fast.train.checkpoint import FORMAT, save_atomic
    from genint_fast.classifier.models import build_model
    torch.manual_seed(seed)
    model = build_model("smallcnn", num_classes, heads)
    cfg = {"model": "smallcnn", "num_classes": num_classes, "heads": heads,
           "data": "folder:/gone/train", "image_size": image_size, "data_seed": 0}
    save_atomic({"format": FORMAT, "step": 7, "config": cfg, "model": model.state_dict()}, path)
    return path


def _photos(root, names, size=40, seed=0):
    """Small real photos (scikit-image) as PNG files root/<folder>/<file>."""
    import numpy as np
    from PIL import Image
    from skimage import data
    rng = np.random.default_rng(seed)
    srcs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i, name in enumerate(names):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        img = srcs[i % len(srcs)]
        r, c = rng.integers(0, 100, 2)
        Image.fromarray(img[r:r + 300, c:c + 300]).resize((size, size)).save(p)


def test_objectnet_through_the_cli_equals_the_scoring_on_the_same_logits(tmp_path, capsys):
    from genint_fast.eval.checkpoints import load_classifier
    from genint_fast.eval.objectnet import objectnet_topk, objectnet_transform
    from PIL import Image
    ckpt = _checkpoint(tmp_path / "m.pt", 6)
    _photos(tmp_path / "on", [f"{c}/{i}.png" for c in ("alarm", "bench", "cup", "zebra")
                              for i in range(3)])
    (tmp_path / "on" / "cup" / "broken.png").write_bytes(b"not an image")
    mapping = {"alarm": [0, 1], "bench": [2], "cup": [3, 4], "ghost": [5]}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    assert cli_main(["eval", "objectnet", "--checkpoint", str(ckpt), "--folder",
                     str(tmp_path / "on"), "--mapping", str(tmp_path / "map.json"),
                     "--out", str(tmp_path / "ev")]) == 0
    res = json.loads(capsys.readouterr().out)
    # zebra is not mapped (not counted), ghost has no folder, the broken file is skipped
    assert res["images"]["n"] == 9 and res["classes_used"] == 3
    assert res["missing_folders"] == ["ghost"] and res["images"]["skipped_files"] == 1
    clf = load_classifier(ckpt)
    tf = objectnet_transform(32)
    files = [tmp_path / "on" / c / f"{i}.png" for c in ("alarm", "bench", "cup") for i in range(3)]
    x = torch.stack([tf(Image.open(f)) for f in files])
    targets = [f.parent.name for f in files]
    sub = {k: v for k, v in mapping.items() if k != "ghost"}
    want = objectnet_topk(clf.logits(x), targets, sub)
    want_r = objectnet_topk(clf.logits(x), targets, sub, restricted=True)
    row = res["rows"][0]
    assert (row["top1"], row["top5"]) == (want["top1"], want["top5"])
    assert (row["restricted_top1"], row["restricted_top5"]) == (want_r["top1"], want_r["top5"])
    # a mapping that names no folder under DIR is refused in one sentence
    (tmp_path / "none.json").write_text(json.dumps({"ghost": [1]}))
    assert cli_main(["eval", "objectnet", "--checkpoint", str(ckpt), "--folder",
                     str(tmp_path / "on"), "--mapping", str(tmp_path / "none.json"),
                     "--out", str(tmp_path / "ev2")]) == 2
    assert "none of the 1 class folders" in capsys.readouterr().err


def test_backgrounds_and_shape_bias_through_the_cli(tmp_path, capsys):
    from genint_fast.eval.backgrounds import IN9_CLASSES
    ckpt9 = _checkpoint(tmp_path / "in9.pt", 9)
    names = [f"{v}/val/{i:02d}_{c}/{k}.png" for v in ("original", "mixed_same", "mixed_rand")
             for i, c in enumerate(IN9_CLASSES[:3]) for k in range(2)]
    _photos(tmp_path / "bg", names)
    assert cli_main(["eval", "backgrounds", "--checkpoint", str(ckpt9), "--folder",
                     str(tmp_path / "bg"), "--out", str(tmp_path / "ev")]) == 0
    res = json.loads(capsys.readouterr().out)
    row = res["rows"][0]
    assert res["images"]["per_variant"] == {"original": 6, "mixed_same": 6, "mixed_rand": 6}
    assert row["bg_gap"] == pytest.approx(row["mixed_same"] - row["mixed_rand"])
    # each accuracy is the share of the variant's images the 9-way argmax gets right
    from genint_fast.eval.checkpoints import load_classifier
    from genint_fast.eval.sources import folder_images
    clf = load_classifier(ckpt9)
    imgs = folder_images(tmp_path / "bg" / "mixed_rand" / "val", size=32)
    x, y = imgs.take(6)
    assert row["mixed_rand"] == pytest.approx(100 * float((clf.logits(x).argmax(1) == y)
                                                          .float().mean()))
    # shape bias: a 16-class model on cue-conflict names; shape == texture images left out
    ckpt16 = _checkpoint(tmp_path / "cue.pt", 16)
    _photos(tmp_path / "cue", ["cat/cat1-elephant1.png", "cat/cat2-clock2.png",
                               "knife/knife1-knife1.png", "bear/bear3-truck1.png"])
    assert cli_main(["eval", "shape-bias", "--checkpoint", str(ckpt16), "--folder",
                     str(tmp_path / "cue"), "--out", str(tmp_path / "ev")]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["n_conflict"] == 3 and row["n_excluded"] == 1
    decided = row["shape_decisions"] + row["texture_decisions"]
    assert decided <= 3
    if decided:
        assert row["shape_bias"] == pytest.approx(100 * row["shape_decisions"] / decided)
    # a folder that is not the backgrounds challenge gets one sentence
    assert cli_main(["eval", "backgrounds", "--checkpoint", str(ckpt9), "--folder",
                     str(tmp_path / "cue"), "--out", str(tmp_path / "ev3")]) == 2
    assert "lacks mixed_same/" in capsys.readouterr().err


def test_gradcam_sheet_for_an_ensemble_head(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "ens.pt", 10, heads="ensemble")
    ckpt2 = _checkpoint(tmp_path / "ens2.pt", 10, heads="ensemble", seed=1)
    assert cli_main(["eval", "gradcam", "--checkpoint", f"a={ckpt}", f"b={ckpt2}", "--data",
                     "digits:colored:0.9", "--images", "4", "--head", "shape",
                     "--out", str(tmp_path / "ev")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["checkpoint"] for r in res["rows"]] == ["a", "b"] and res["head"] == "shape"
    assert all(len(r["predicted"]) == 4 for r in res["rows"])
    assert (tmp_path / "ev" / "gradcam.png").read_bytes()[:4] == b"\x89PNG"
