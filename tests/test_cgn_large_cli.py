"""`genint-fast cgn --large` and its recipe configs/cgn/imagenet.yaml: the recipe holds the
reference's ImageNet settings and expands into valid flags; a missing weights file (BigGAN,
U^2-Net, VGG16) or a wrong flag mix is one sentence and exit status 2, found before torch is
imported where no torch is needed to find it; and a tiny end-to-end run on the CPU (a random
tiny BigGAN, a random U^2-Net-P file, a random VGG16 file) trains, checkpoints, writes its sheet
and resumes bitwise."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from genint_fast.cli import build_parser
from genint_fast.cli import main as cli_main
from genint_fast.cli.recipes import expand

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "cgn" / "imagenet.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread (hundreds of tiny ops; the machine is shared), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _parse(argv):
    parser = build_parser()
    return parser.parse_args(expand(parser, argv))


# ------------------------------------------------------------------------------- the recipe

def test_recipe_holds_the_reference_imagenet_settings():
    """The facts of the reference's imagenet/train_cgn.py and imagenet/config.py (CGN.md)."""
    from genint_fast.cli.cgn_large import _large_config

    args = _parse(["cgn", "--config", str(RECIPE)])
    assert args.large and args.biggan == "biggan-deep-256" and args.feature_net == "vgg16"
    assert (args.steps, args.accumulate, args.batch_size) == (300, 4000, 1)
    assert (args.lr_shape, args.lr_texture, args.lr_background) == (8e-6, 3e-5, 1e-5)
    assert args.truncation == 1.0 and args.power_iteration and args.device == "cuda"
    tc = _large_config(args, None)
    assert (tc.updates, tc.accumulate, tc.batch_size, tc.truncation) == (300, 4000, 1, 1.0)
    assert (tc.lr_shape, tc.lr_texture, tc.lr_background) == (8e-6, 3e-5, 1e-5)
    assert tc.betas == (0.9, 0.999)
    loss = tc.loss
    assert (loss.l1, loss.binary, loss.mask, loss.background) == (100.0, 300.0, 500.0, 2000.0)
    assert loss.perceptual == (4.0, 4.0, 4.0, 4.0) and loss.texture == (0.0, 5.0, 5.0, 0.0)
    assert loss.mask_interval == (0.1, 0.9)
    # the library's defaults are the same reference run
    from genint_fast.cgn.large import LargeCGNTrainConfig

    assert tc == LargeCGNTrainConfig(checkpoint_every=tc.checkpoint_every,
                                     log_every=tc.log_every)
    comments = [line for line in RECIPE.read_text().splitlines() if line.startswith("#")]
    assert any("You provide" in line for line in comments)
    assert any("genint-fast cgn --config configs/cgn/imagenet.yaml" in line for line in comments)


def test_recipe_expands_into_flags_of_the_command_and_key_value_wins():
    parser = build_parser()
    argv = expand(parser, ["cgn", "--config", str(RECIPE), "steps=7", "lambda-texture=0,1,2,3"])
    assert argv[0] == "cgn" and "--large" in argv
    cgn = next(a for a in parser._actions
               if isinstance(a, argparse._SubParsersAction)).choices["cgn"]
    flags = {o for a in cgn._actions for o in a.option_strings}
    tokens = argv[1:]
    assert tokens and all(t.split("=", 1)[0] in flags for t in tokens), tokens
    # one flag per key of the recipe (the two KEY=VALUE replace the recipe's own values)
    raw = yaml.safe_load(RECIPE.read_text())
    assert len(tokens) == len(raw) - sum(v is False for v in raw.values())
    assert "--steps=7" in tokens and "--steps=300" not in tokens
    args = parser.parse_args(argv)
    assert args.steps == 7 and args.lambda_texture == "0,1,2,3"
    assert args.lambda_perceptual == "4,4,4,4"
    from genint_fast.cli.cgn_large import _check_large_flags, _large_config

    _check_large_flags(args)                      # every value the recipe sets is valid
    tc = _large_config(args, None)
    assert tc.updates == 7 and tc.loss.texture == (0.0, 1.0, 2.0, 3.0)
    assert tc.loss.perceptual == (4.0, 4.0, 4.0, 4.0)


def test_resume_keeps_the_checkpoint_settings_unless_a_flag_is_given():
    from genint_fast.cli.cgn_large import _large_config

    saved = _large_config(_parse(["cgn", "--large", "--out", "x.pt", "--accumulate", "3",
                                  "--lambda-l1", "7", "--steps", "5"]), None)
    state = {"extra": {"train_config": saved.to_dict()}}
    resumed = _large_config(_parse(["cgn", "--large", "--out", "x.pt", "--steps", "9"]), state)
    assert (resumed.updates, resumed.accumulate, resumed.loss.l1) == (9, 3, 7.0)
    fresh = _large_config(_parse(["cgn", "--large", "--out", "x.pt"]), None)
    assert (fresh.updates, fresh.accumulate, fresh.loss.l1) == (300, 4000, 100.0)


# ------------------------------------------------------------------ missing weights, bad mixes

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A random U^2-Net-P weights file and a random VGG16 weights file (the user's files in
    form; their values are never judged here)."""
    from genint_fast.cgn.u2net import U2NETP
    from genint_fast.features import _vgg16_body

    root = tmp_path_factory.mktemp("large_cli")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(U2NETP().state_dict(), root / "u2netp.pth")
        body = _vgg16_body()
    torch.save({f"features.{k}": v for k, v in body.state_dict().items()}, root / "vgg16.pth")
    return root


def _one_sentence(rc, out, err, phrase):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (out, err)
    assert "Traceback" not in out + err and len(lines) == 1, err
    assert lines[0].startswith("genint-fast cgn: error: "), lines
    message = lines[0][len("genint-fast cgn: error: "):]
    assert ". " not in message, message               # one sentence
    assert phrase in message, message
    return message


# (id, argv tail after `cgn`, phrase the one error line must hold); {u2} {vgg} {tmp} filled in
MISSING = [
    ("no --biggan", ["--large", "--out", "{tmp}/c.pt", "--u2net", "{u2}"],
     "needs --biggan: biggan-deep-256 (its config.json and pytorch_model.bin"),
    ("no --u2net", ["--large", "--out", "{tmp}/c.pt", "--biggan", "random:tiny"],
     "needs --u2net PATH, the U^2-Net weights file u2net.pth"),
    ("u2net file absent", ["--large", "--out", "{tmp}/c.pt", "--biggan", "random:tiny",
                           "--u2net", "{tmp}/weights/u2net.pth"],
     "weights/u2net.pth does not exist; give the U^2-Net weights file u2net.pth there"),
    ("u2netp file absent", ["--large", "--out", "{tmp}/c.pt", "--biggan", "random:tiny",
                            "--u2net", "{tmp}/nothere.pth", "--u2net-kind", "u2netp"],
     "give the U^2-Net weights file u2netp.pth there"),
    ("vgg16 file absent", ["--large", "--out", "{tmp}/c.pt", "--biggan", "random:tiny",
                           "--u2net", "{u2}", "--feature-net", "vgg16:{tmp}/vgg.pth"],
     "vgg.pth does not exist; give torchvision's ImageNet VGG16 weights, vgg16-397923af.pth"),
    ("biggan neither name nor folder", ["--large", "--out", "{tmp}/c.pt", "--biggan",
                                        "{tmp}/nobiggan", "--u2net", "{u2}"],
     "is neither a BigGAN-deep name (biggan-deep-128, biggan-deep-256, biggan-deep-512) nor a "
     "folder; give biggan-deep-256 or a folder holding its config.json and pytorch_model.bin"),
    ("the recipe without the user's files", ["--config", str(RECIPE), "u2net={tmp}/u2net.pth",
                                             "out={tmp}/c.pt", "samples="],
     "u2net.pth does not exist; give the U^2-Net weights file u2net.pth there"),
    # flag mixes
    ("data with --large", ["--large", "--data", "digits:colored", "--out", "{tmp}/c.pt"],
     "the large-image CGN (--large) needs no data"),
    ("small flag with --large", ["--large", "--out", "{tmp}/c.pt", "--lr-g", "0.1"],
     "does not use --lr-g (a small-CGN setting); leave --lr-g out"),
    ("large flag without --large", ["--data", "digits:colored", "--out", "{tmp}/c.pt",
                                    "--u2net", "{u2}"],
     "--u2net is a setting of the large-image CGN; add --large"),
    ("bad layer weights", ["--large", "--out", "{tmp}/c.pt", "--lambda-texture", "0,5,5"],
     "--lambda-texture takes 4 comma-separated numbers, one per VGG16 layer"),
]


def _fill(tail, files, tmp):
    return [t.format(u2=files / "u2netp.pth", vgg=files / "vgg16.pth", tmp=tmp) for t in tail]


@pytest.mark.parametrize("tail,phrase", [c[1:] for c in MISSING], ids=[c[0] for c in MISSING])
def test_missing_weights_are_one_sentence_before_torch(files, tmp_path, tail, phrase):
    """In a fresh interpreter: exit 2, one line, and torch never imported (the files are looked
    for first, so a user's mistake costs no start-up time)."""
    argv = ["cgn", *_fill(tail, files, tmp_path)]
    code = ("import sys\n"
            "from genint_fast.cli import main\n"
            f"rc = main({argv!r})\n"
            "print(rc, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.split()) == 2, (proc.stdout, proc.stderr)
    rc, torch_loaded = proc.stdout.split()
    _one_sentence(int(rc), "", proc.stderr, phrase)
    assert torch_loaded == "False", f"{argv} imported torch before refusing"
    assert not (tmp_path / "c.pt").exists()


def test_biggan_missing_from_its_cache_names_the_flag_and_files(files, tmp_path, capsys):
    rc = cli_main(["cgn", "--large", "--out", str(tmp_path / "c.pt"), "--biggan",
                   "biggan-deep-256", "--cache-dir", str(tmp_path / "empty"), "--u2net",
                   str(files / "u2netp.pth"), "--u2net-kind", "u2netp", "--feature-net",
                   f"vgg16:{files / 'vgg16.pth'}"])
    out, err = capsys.readouterr()
    msg = _one_sentence(rc, out, err, "--biggan biggan-deep-256: no weights for biggan-deep-256")
    assert "config.json" in msg and "pytorch_model.bin" in msg and "never downloads" in msg
    assert not (tmp_path / "c.pt").exists()
    # a folder without the two files
    (tmp_path / "bg").mkdir()
    rc = cli_main(["cgn", "--large", "--out", str(tmp_path / "c.pt"), "--biggan",
                   str(tmp_path / "bg"), "--u2net", str(files / "u2netp.pth"),
                   "--u2net-kind", "u2netp", "--feature-net", f"vgg16:{files / 'vgg16.pth'}"])
    out, err = capsys.readouterr()
    _one_sentence(rc, out, err, "lacks config.json and pytorch_model.bin")


def test_vgg16_missing_from_torchvisions_cache(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    rc = cli_main(["cgn", "--large", "--out", str(tmp_path / "c.pt"), "--biggan", "random:tiny",
                   "--u2net", str(files / "u2netp.pth"), "--u2net-kind", "u2netp"])
    out, err = capsys.readouterr()
    msg = _one_sentence(rc, out, err, "--feature-net vgg16 reads vgg16-397923af.pth from")
    assert "--feature-net vgg16:PATH" in msg and str(tmp_path / "torch_home") in msg
    rc = cli_main(["cgn", "--large", "--out", str(tmp_path / "c.pt"), "--biggan", "random:tiny",
                   "--u2net", str(files / "u2netp.pth"), "--feature-net", "small"])
    out, err = capsys.readouterr()
    _one_sentence(rc, out, err, "need ImageNet VGG16 features; give --feature-net vgg16:PATH")


def test_a_small_cgn_checkpoint_is_not_resumed_as_a_large_one(files, tmp_path, capsys):
    small = tmp_path / "small.pt"
    torch.save({"format": "genint_fast.small_cgn.v1"}, small)
    rc = cli_main(["cgn", "--large", "--out", str(small), "--biggan", "random:tiny",
                   "--u2net", str(files / "u2netp.pth"), "--u2net-kind", "u2netp",
                   "--feature-net", f"vgg16:{files / 'vgg16.pth'}"])
    out, err = capsys.readouterr()
    _one_sentence(rc, out, err, "is not a large CGN checkpoint")


# ------------------------------------------------------------------- a tiny end-to-end run

def _tiny_run(files, out, steps, samples=""):
    return ["cgn", "--config", str(RECIPE), "biggan=random:tiny",
            f"u2net={files / 'u2netp.pth'}", "u2net-kind=u2netp",
            f"feature-net=vgg16:{files / 'vgg16.pth'}", f"out={out}", f"samples={samples}",
            f"steps={steps}", "accumulate=2", "device=cpu", "threads=1"]


def _mechanisms(path):
    from genint_fast.cgn.large import read_large_cgn_checkpoint

    return read_large_cgn_checkpoint(path)


def test_tiny_run_trains_checkpoints_writes_the_sheet_and_resumes_bitwise(files, tmp_path,
                                                                           capsys):
    from PIL import Image

    from genint_fast.generators import load_generator

    ckpt, sheet = tmp_path / "large.pt", tmp_path / "sheet.png"
    assert cli_main(_tiny_run(files, ckpt, 2, sheet)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("large cgn update 1/2 (2 batches): l1 ") for line in lines)
    assert any(line.startswith("large cgn update 2/2 (4 batches): l1 ") for line in lines)
    summary = json.loads(lines[-1])
    assert (summary["updates"], summary["batches"], summary["updates_now"]) == (2, 4, 2)
    assert summary["generator"] == "random:tiny:seed=0" and summary["power_iteration"]
    assert set(summary["losses"]) == {"l1", "perceptual", "binary", "mask", "texture",
                                      "background", "total"}
    assert summary["train_config"]["loss"]["binary"] == 300.0

    blob = _mechanisms(ckpt)
    assert blob["trainer"]["updates"] == 2 and blob["trainer"]["steps"] == 4
    assert blob["extra"]["train_config"]["accumulate"] == 2 and blob["power_iteration"]
    start = load_generator("random:tiny").state_dict()
    for name in ("f_shape", "f_text", "f_bg"):
        trained = blob["mechanisms"][name]
        assert trained.keys() == start.keys()
        assert any(not torch.equal(trained[k], start[k]) for k in start
                   if k.endswith(("weight", "weight_orig", "bias"))), f"{name} did not train"
    # the sheet: 8 of the tiny BigGAN's 10 classes, rows mask, texture, background, composite,
    # BigGAN's image, counterfactual; 32-pixel images with 2-pixel padding
    with Image.open(sheet) as im:
        assert im.size == (8 * 34 + 2, 6 * 34 + 2)

    # resume to 3 updates == 3 updates in one go
    assert cli_main(_tiny_run(files, ckpt, 3)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "resuming" in lines[0] and json.loads(lines[-1])["updates_now"] == 1
    straight = tmp_path / "straight.pt"
    assert cli_main(_tiny_run(files, straight, 3)) == 0
    capsys.readouterr()
    a, b = _mechanisms(ckpt), _mechanisms(straight)
    for name in ("f_shape", "f_text", "f_bg"):
        for k, v in a["mechanisms"][name].items():
            assert torch.equal(v, b["mechanisms"][name][k]), f"{name}.{k} differs after resume"
    assert torch.equal(a["extra"]["rng"], b["extra"]["rng"])
    assert a["trainer"]["updates"] == b["trainer"]["updates"] == 3

    # a finished run is not trained further
    assert cli_main(_tiny_run(files, ckpt, 3)) == 0
    out = capsys.readouterr().out
    assert "has already trained 3 of 3 updates; nothing to do" in out
    assert json.loads(out.strip().splitlines()[-1])["updates_now"] == 0
