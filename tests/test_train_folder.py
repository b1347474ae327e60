"""Everyday training (issue 14): classes inferred from an image folder, a mismatch refused,
unreadable files skipped and reported, the generator named and an untrained one warned about,
normalisation following the model (and recorded for evaluation), torchvision weights as
init_weights."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from genint_fast.data import export_biased_digits
from genint_fast.train import Trainer, build_model, load_checkpoint, load_config
from genint_fast.train.trainer import evaluate, load_weights, normalise

SMALL = ["batch_size=4", "progress=false", "log_every=1", "checkpoint_every=100",
         "image_size=16", "lr=0.05"]


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    """A 2-class image folder (digits 0 and 1 of the exported benchmark) with one corrupt file."""
    base = tmp_path_factory.mktemp("folders")
    export_biased_digits(str(base / "digits"), splits=("train",), sizes={"train": 60})
    two = base / "two"
    for cls in ("0", "1"):
        shutil.copytree(base / "digits" / "train" / cls, two / cls)
    (two / "1" / "zz_corrupt.png").write_bytes(b"this is not a png")
    return two


def _trainer(tmp_path, root, *extra, log=None):
    cfg = load_config(None, [*SMALL, f"data=folder:{root}", f"out={tmp_path / 'run'}", *extra])
    return Trainer(cfg, log=log if log is not None else (lambda msg: None))


def test_num_classes_inferred_from_the_folder_and_recorded(tmp_path, two_classes):
    logs = []
    tr = _trainer(tmp_path, two_classes, "mode=erm", "epochs=2", log=logs.append)
    assert tr.cfg.num_classes == 2 and tr.model.head.out_features == 2
    n_good = sum(1 for p in two_classes.rglob("*.png")) - 1
    assert tr.data.n == n_good and len(tr.data.skipped) == 1
    # epochs replace steps: 2 epochs of the readable images at 4 per step
    assert tr.cfg.steps == math.ceil(2 * (n_good // 4))
    # the skipped file is reported: count, a file and the reason, in one line
    (line,) = [m for m in logs if m.startswith("skipped")]
    assert f"skipped 1 unreadable image file(s) of {n_good + 1} in {two_classes}" in line
    assert "zz_corrupt.png (" in line and "\n" not in line
    # folder data normalises with ImageNet's mean/std (normalize=auto)
    assert tr.cfg.normalize == "imagenet"
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(tr.normalise(x), (x - mean) / std)
    tr.cfg.steps = 1
    tr.fit()
    st = load_checkpoint(tr.checkpoint_path)
    assert (st["config"]["num_classes"], st["config"]["normalize"]) == (2, "imagenet")
    from genint_fast.eval.checkpoints import load_classifier
    clf = load_classifier(tr.checkpoint_path)
    assert clf.num_classes == 2 and clf.mean == (0.485, 0.456, 0.406)
    assert clf.std == (0.229, 0.224, 0.225) and clf.size == 16
    assert torch.allclose(clf.logits(x), tr.model.eval()(tr.normalise(x)))


def test_num_classes_mismatch_refused(tmp_path, two_classes):
    with pytest.raises(ValueError) as info:
        _trainer(tmp_path, two_classes, "mode=erm", "num_classes=10")
    msg = str(info.value)
    assert "has 2 class folders but num_classes is 10; set num_classes=2" in msg
    assert msg.count(". ") == 0 and "\n" not in msg
    with pytest.raises(ValueError, match="built-in digits have 10 classes but num_classes is 3"):
        Trainer(load_config(None, ["mode=erm", "num_classes=3", "data_size=40", *SMALL,
                                   f"out={tmp_path / 'd'}"]), log=lambda m: None)


def test_cli_reports_the_mismatch_in_one_line(tmp_path, two_classes, capsys):
    from genint_fast.cli import main as cli_main
    assert cli_main(["train", *SMALL, "mode=erm", f"data=folder:{two_classes}", "num_classes=10",
                     f"out={tmp_path / 'cli'}"]) == 2
    err = capsys.readouterr().err
    assert "set num_classes=2" in err and "Traceback" not in err


def test_untrained_generator_warned_about(tmp_path):
    logs = []
    tiny = ["data_size=40", "gen_batch_size=4", "num_directions=8", "top_k=8", "m=3", *SMALL]
    tr = Trainer(load_config(None, ["mode=genint", *tiny, f"out={tmp_path / 'a'}"]),
                 log=logs.append)
    assert tr.cfg.num_classes == 10
    (named,) = [m for m in logs if m.startswith("generator: random:small32:0")]
    assert "random weights, untrained" in named
    (warning,) = [m for m in logs if m.startswith("WARNING")]
    assert "random:small32:0" in warning and "untrained" in warning
    assert "generator=" in warning and "\n" not in warning
    # a generator read from files is named with its weights, and no warning
    from genint_fast.generators import save_biggan_folder, tiny_biggan
    folder = save_biggan_folder(tiny_biggan(), tmp_path / "biggan")
    logs.clear()
    Trainer(load_config(None, ["mode=genint", *tiny, f"generator={folder}",
                               f"out={tmp_path / 'b'}"]), log=logs.append)
    (named,) = [m for m in logs if m.startswith("generator: ")]
    assert str(folder) in named and "weights loaded" in named
    assert not [m for m in logs if m.startswith("WARNING")]
    # modes without a generator say nothing about one
    logs.clear()
    Trainer(load_config(None, ["mode=erm", *tiny, f"out={tmp_path / 'c'}"]), log=logs.append)
    assert not [m for m in logs if "generator" in m]


def test_digits_with_the_small_cnn_keep_the_half_normalisation(tmp_path):
    tr = Trainer(load_config(None, ["mode=erm", "data_size=40", *SMALL, f"out={tmp_path}"]),
                 log=lambda m: None)
    assert tr.cfg.normalize == "half" and tr.normalise is normalise
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(6) % 10
    # evaluate's default is the digits' normalisation; a name or the trainer's function agree
    assert evaluate(tr.model, images, labels) == evaluate(tr.model, images, labels,
                                                          normalize=tr.normalise)
    assert evaluate(tr.model, images, labels) == evaluate(tr.model, images, labels,
                                                          normalize="half")
    # a ResNet on the digits is a torchvision model: ImageNet statistics
    cfg = load_config(None, ["mode=erm", "model=resnet18", "data_size=40", *SMALL,
                             f"out={tmp_path / 'r'}"])
    assert Trainer(cfg, log=lambda m: None).cfg.normalize == "imagenet"
    # an explicit choice wins
    cfg = load_config(None, ["mode=erm", "normalize=imagenet", "data_size=40", *SMALL,
                             f"out={tmp_path / 'i'}"])
    assert Trainer(cfg, log=lambda m: None).cfg.normalize == "imagenet"


def test_init_checkpoint_brings_its_normalisation(tmp_path, two_classes):
    first = _trainer(tmp_path / "a", two_classes, "mode=erm", "steps=1", "normalize=half")
    first.fit()
    tr = _trainer(tmp_path / "b", two_classes, "mode=erm", f"init_weights={first.checkpoint_path}")
    assert tr.cfg.normalize == "half"            # auto follows the checkpoint it starts from
    assert torch.equal(tr.model.head.weight, first.model.head.weight)


# ---------------------------------------------------------------------------- init_weights
def test_torchvision_state_dict_loads_into_our_resnet(tmp_path):
    import torchvision
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    ours = build_model("resnet18", 1000)
    load_weights(ours, path, name="resnet18")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), ref(x))
    # a training script's checkpoint ({"state_dict": ...}, DataParallel "module." keys) too
    wrapped = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in
                                            ref.state_dict().items()}}, wrapped)
    again = build_model("resnet18", 1000)
    load_weights(again, wrapped, name="resnet18")
    with torch.no_grad():
        assert torch.equal(again.eval()(x), ref(x))
    # into an ensemble: the backbone, and the head copied into each mechanism's head
    ens = build_model("resnet18", 1000, heads="ensemble")
    load_weights(ens, path, name="resnet18")
    with torch.no_grad():
        assert torch.allclose(ens.eval()(x), ref(x), atol=1e-5)
    # the wrong class count: one sentence saying what to set
    with pytest.raises(ValueError, match=r"has 1000 classes .* set num_classes=1000$"):
        load_weights(build_model("resnet18", 10), path, name="resnet18")
    # the wrong architecture: says which it is
    r50 = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), r50)
    with pytest.raises(ValueError) as info:
        load_weights(build_model("resnet18", 1000), r50, name="resnet18")
    msg = str(info.value)
    assert "does not fit the model resnet18 (it holds resnet50 weights)" in msg
    assert msg.endswith("set model=resnet50 or pass resnet18 weights") and "\n" not in msg
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read init_weights .*; pass a PyTorch"):
        load_weights(build_model("resnet18", 10), junk, name="resnet18")


def test_torchvision_weights_fine_tune_on_a_folder(tmp_path, two_classes):
    import torchvision
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None, num_classes=2)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    tr = _trainer(tmp_path, two_classes, "mode=erm", "model=resnet18", f"init_weights={path}")
    assert (tr.cfg.num_classes, tr.cfg.normalize) == (2, "imagenet")
    assert torch.equal(tr.model.fc.weight, ref.fc.weight)
