"""Every command, fed a bad input (a corrupt image, a wrong folder, a file of another kind, a wrong
flag mix), ends with one line `genint-fast <command>: error: <what to do>` and exit status 2,
never a traceback. Tiny inputs: the whole file runs in well under a minute."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from conftest import HIDE_EXTENSION

from genint_fast.cli import main as cli_main
from genint_fast.cli import one_line

ROOT = Path(__file__).resolve().parents[1]
# A PNG signature followed by bytes that are no PNG: what a truncated download looks like.
GARBAGE_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
TRAIN = ["steps=1", "batch_size=4", "progress=false", "log_every=1", "mode=erm", "lr=0.05"]


def _png(path: Path, value=0, side=12):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(path)


def _broken(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GARBAGE_PNG)


def _run(argv, capsys):
    rc = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def f(tmp_path_factory):
    """The inputs: a corrupt image, a text file, a folder with one corrupt image among good ones,
    folders where nothing is readable, a small GAN checkpoint (trained on the folder with the
    corrupt image), its directions, and classifier checkpoints with 10, 9 and 16 classes."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli_errors")
    old_cache = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")   # the validation cache stays here
    ns = SimpleNamespace(root=root)
    ns.corrupt = root / "corrupt.png"
    _broken(ns.corrupt)
    ns.notes = root / "notes.txt"
    ns.notes.write_text("not a checkpoint\n")
    ns.mixed = root / "mixed"
    for c in ("a", "b"):
        for i in range(3):
            _png(ns.mixed / c / f"{i}.png", 40 * i + (100 if c == "b" else 0))
    _broken(ns.mixed / "a" / "broken.png")
    ns.allbad = root / "allbad"
    _broken(ns.allbad / "a" / "broken.png")
    _broken(ns.allbad / "b" / "broken.png")

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        ns.gan = root / "gan.pt"
        assert cli_main(["gan", "--data", str(ns.mixed), "--out", str(ns.gan), "--steps", "1",
                         "--batch-size", "2", "--ch", "4", "--latent-dim", "8",
                         "--log-every", "0", "--checkpoint-every", "0"]) == 0
        ns.gan_log = out.getvalue()
        ns.dirs = root / "dirs.safetensors"
        assert cli_main(["directions", "--generator", str(ns.gan), "--out", str(ns.dirs),
                         "--k", "4"]) == 0
        ns.run10 = root / "run10"
        assert cli_main(["train", *TRAIN, "data_size=32", "eval_size=10",
                         f"out={ns.run10}"]) == 0
        ns.ckpt10 = ns.run10 / "checkpoint.pt"
        for n in (9, 16):
            folder = root / f"classes{n}"
            for i in range(n):
                _png(folder / f"{i:02d}_c" / "x.png", 10 * i, side=8)
            assert cli_main(["train", *TRAIN, f"data=folder:{folder}", "image_size=8",
                             f"out={root / f'run{n}'}"]) == 0
            setattr(ns, f"ckpt{n}", root / f"run{n}" / "checkpoint.pt")
    assert ns.gan.is_file() and ns.dirs.is_file() and ns.ckpt10.is_file()
    assert ns.ckpt9.is_file() and ns.ckpt16.is_file()
    # a backgrounds-challenge tree and a cue-conflict tree where nothing is readable
    ns.bg = root / "bg"
    for v in ("original", "mixed_same", "mixed_rand"):
        for i, c in enumerate(("dog", "bird")):
            _broken(ns.bg / v / f"{i:02d}_{c}" / "broken.png")
    ns.cue = root / "cue"
    _broken(ns.cue / "cat" / "cat1-dog2.png")
    ns.mapping = root / "mapping.json"
    ns.mapping.write_text(json.dumps({"a": [0], "b": [1]}))
    ns.run_corrupt = root / "run_corrupt"
    _broken(ns.run_corrupt / "checkpoint.pt")
    ns.demo_out = root / "demo_out"
    _broken(ns.demo_out / "gan.pt")
    yield ns
    if old_cache is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old_cache


# (id, argv built from the inputs, phrase the one error line must hold)
CASES = [
    # ---- bench (reads no images or checkpoints: a wrong output file, a wrong name or device)
    ("bench unknown name", lambda f: ["bench", "nosuch"], "unknown benchmark 'nosuch'"),
    ("bench json is a folder", lambda f: ["bench", "steer", "--quick", "--json", f.root],
     "is a folder; give a .json file name"),
    ("bench bad device", lambda f: ["bench", "steer", "--quick", "--device", "foo"],
     "unknown device 'foo'; use --device cpu or cuda[:N]"),
    # ---- gan
    ("gan nothing readable", lambda f: ["gan", "--data", f.allbad, "--out", f.root / "g.pt",
                                        "--steps", "1"],
     "none of its image files can be decoded (2 files"),
    ("gan corrupt image as data", lambda f: ["gan", "--data", f.corrupt, "--out",
                                             f.root / "g.pt"],
     "is not an existing folder"),
    ("gan text file as checkpoint", lambda f: ["gan", "--data", f.mixed, "--out", f.notes,
                                               "--steps", "1", "--ch", "4", "--latent-dim", "8"],
     "cannot read GAN checkpoint"),
    ("gan classifier as checkpoint", lambda f: ["gan", "--data", f.mixed, "--out", f.ckpt10,
                                                "--steps", "1", "--ch", "4",
                                                "--latent-dim", "8"],
     "is not a GAN checkpoint"),
    ("gan out is a folder", lambda f: ["gan", "--data", f.mixed, "--out", f.root],
     "is a folder; give a checkpoint file name"),
    # ---- directions
    ("directions text file as generator", lambda f: ["directions", "--generator", f.notes,
                                                     "--out", f.root / "d.safetensors"],
     "cannot read GAN checkpoint"),
    ("directions corrupt file as generator", lambda f: ["directions", "--generator", f.corrupt,
                                                        "--out", f.root / "d.safetensors"],
     "cannot read GAN checkpoint"),
    ("directions classifier as generator", lambda f: ["directions", "--generator", f.ckpt10,
                                                      "--out", f.root / "d.safetensors"],
     "is not a GAN checkpoint"),
    ("directions out is a folder", lambda f: ["directions", "--generator", f.gan,
                                              "--out", f.root],
     "is a folder; give a .safetensors file name"),
    # ---- generate
    ("generate text file as directions", lambda f: ["generate", "--generator", f.gan,
                                                    "--directions", f.notes,
                                                    "--grid", f.root / "g.png"],
     "is not a readable safetensors directions file"),
    ("generate checkpoint as directions", lambda f: ["generate", "--generator", f.gan,
                                                     "--directions", f.gan,
                                                     "--grid", f.root / "g.png"],
     "is not a readable safetensors directions file"),
    ("generate corrupt generator", lambda f: ["generate", "--generator", f.corrupt,
                                              "--directions", f.dirs, "--grid", f.root / "g.png"],
     "cannot read GAN checkpoint"),
    ("generate reference ranges in add mode", lambda f: ["generate", "--generator", f.gan,
                                                         "--directions", f.dirs, "--dump",
                                                         f.root / "dump_add",
                                                         "--reference-ranges"],
     "add --mode set"),
    ("generate rows without grid", lambda f: ["generate", "--generator", f.gan, "--directions",
                                              f.dirs, "--dump", f.root / "dump_rows",
                                              "--rows", "0-3"],
     "give --grid PNG too"),
    ("generate dump into a file", lambda f: ["generate", "--generator", f.gan, "--directions",
                                             f.dirs, "--dump", f.notes],
     "exists and is not a folder"),
    ("generate nothing to do", lambda f: ["generate", "--generator", f.gan, "--directions",
                                          f.dirs],
     "give --grid PNG and/or --dump DIR"),
    # ---- cgn
    ("cgn nothing readable", lambda f: ["cgn", "--data", f.allbad, "--out", f.root / "c.pt",
                                        "--steps", "1", "--feature-net", "none"],
     "none of its image files can be decoded (2 files"),
    ("cgn gan as checkpoint", lambda f: ["cgn", "--data", f.mixed, "--out", f.gan,
                                         "--steps", "1", "--feature-net", "none"],
     "is not a CGN checkpoint"),
    ("cgn text file as checkpoint", lambda f: ["cgn", "--data", f.mixed, "--out", f.notes,
                                               "--steps", "1", "--feature-net", "none"],
     "cannot read CGN checkpoint"),
    ("cgn corrupt feature net", lambda f: ["cgn", "--data", f.mixed, "--out", f.root / "c.pt",
                                           "--steps", "1", "--batch-size", "2", "--ch", "4",
                                           "--feature-net", f"vgg16:{f.corrupt}"],
     "not a PyTorch checkpoint this command can read"),
    # ---- data
    ("data validate a file", lambda f: ["data", "validate", f.corrupt],
     "does not exist or is not a folder"),
    ("data export into a file", lambda f: ["data", "export", "--out", f.notes, "--splits",
                                           "val", "--n-val", "4"],
     "exists and is not a folder"),
    # ---- train (the trainer's own checks, as they are)
    ("train text file as config", lambda f: ["train", "--config", f.notes],
     "must hold a mapping of keys to values"),
    ("train nothing readable", lambda f: ["train", *TRAIN, f"data=folder:{f.allbad}",
                                          "image_size=8", f"out={f.root / 'tr_bad'}"],
     "none of its image files can be decoded"),
    ("train corrupt checkpoint resumed", lambda f: ["train", *TRAIN, "data_size=32",
                                                    "eval_size=10", f"out={f.run_corrupt}",
                                                    "--resume"],
     "cannot read checkpoint"),
    ("train classifier as generator", lambda f: ["train", *TRAIN, "data_size=32",
                                                 "eval_size=10", "mode=genint",
                                                 f"generator={f.ckpt10}",
                                                 f"out={f.root / 'tr_gen'}"],
     "is not a GAN checkpoint"),
    # ---- transfer
    ("transfer nothing readable", lambda f: ["transfer", "--content", f.allbad, "--style",
                                             "digits:colored", "--count", "1",
                                             "--out", f.root / "t.png"],
     "none of its image files can be decoded"),
    ("transfer text file as features", lambda f: ["transfer", "--content", "digits:colored",
                                                  "--style", "digits:colored", "--count", "2",
                                                  "--features", f.notes,
                                                  "--out", f.root / "t.png"],
     "cannot read the small feature network"),
    ("transfer corrupt vgg19", lambda f: ["transfer", "--content", "digits:colored", "--style",
                                          "digits:colored", "--count", "2",
                                          "--features", f"vgg19:{f.corrupt}",
                                          "--out", f.root / "t.png"],
     "not a PyTorch checkpoint this command can read"),
    ("transfer classifier as generator", lambda f: ["transfer", "--content", "digits:colored",
                                                    "--generator", f.ckpt10, "--directions",
                                                    f.dirs, "--count", "2",
                                                    "--out", f.root / "t.png"],
     "is not a GAN checkpoint"),
    ("transfer text file as directions", lambda f: ["transfer", "--content", "digits:colored",
                                                    "--generator", f.gan, "--directions",
                                                    f.notes, "--count", "2",
                                                    "--out", f.root / "t.png"],
     "is not a readable safetensors directions file"),
    ("transfer out is a folder", lambda f: ["transfer", "--content", "digits:colored",
                                            "--style", "digits:colored", "--out", f.root],
     "must be an image file name"),
    # ---- analyze (each analysis)
    ("analyze correlation corrupt generator", lambda f: ["analyze", "correlation",
                                                         "--generator", f.corrupt, "--n", "20"],
     "cannot read GAN checkpoint"),
    ("analyze correlation reference ranges in add mode", lambda f: [
        "analyze", "correlation", "--generator", f.gan, "--n", "20", "--reference-ranges"],
     "add --mode set"),
    ("analyze bound nothing readable", lambda f: ["analyze", "bound", "--generator", f.gan,
                                                  "--data", f"folder:{f.allbad}", "--n", "20",
                                                  "--top-k", "4"],
     "none of its image files can be decoded"),
    ("analyze bound text file as directions", lambda f: ["analyze", "bound", "--generator",
                                                         f.gan, "--directions", f.notes,
                                                         "--n", "20"],
     "is not a readable safetensors directions file"),
    ("analyze bound top-k beyond the directions", lambda f: ["analyze", "bound",
                                                             "--generator", f.gan, "--n", "20"],
     "pass --top-k 8 or less"),
    ("analyze interventions text file as readers", lambda f: [
        "analyze", "interventions", "--generator", f.gan, "--readers", f.notes, "--n", "20",
        "--top-k", "4"],
     "cannot read measuring readers"),
    ("analyze interventions gan as readers", lambda f: [
        "analyze", "interventions", "--generator", f.gan, "--readers", f.gan, "--n", "20",
        "--top-k", "4"],
     "is not a measuring readers"),
    # ---- demo
    ("demo out is a file", lambda f: ["demo", "--quick", "--out", f.notes],
     "give a folder for the report"),
    ("demo corrupt cached gan", lambda f: ["demo", "--quick", "--out", f.demo_out,
                                           "--methods", "erm,gan-aug", "--seeds", "1"],
     "delete the cached"),
    # ---- eval (each protocol)
    ("eval accuracy text file as checkpoint", lambda f: ["eval", "accuracy", "--checkpoint",
                                                         f.notes, "--out", f.root / "ev"],
     "cannot read checkpoint"),
    ("eval accuracy gan as checkpoint", lambda f: ["eval", "accuracy", "--checkpoint", f.gan,
                                                   "--out", f.root / "ev"],
     "is not a checkpoint"),
    ("eval accuracy nothing readable", lambda f: ["eval", "accuracy", "--checkpoint", f.ckpt10,
                                                  "--folder", f.allbad, "--out", f.root / "ev"],
     "none of its image files can be decoded"),
    ("eval accuracy out is a file", lambda f: ["eval", "accuracy", "--checkpoint", f.ckpt10,
                                               "--out", f.notes],
     "give a folder for the reports"),
    ("eval corruptions gan as baseline", lambda f: ["eval", "corruptions", "--checkpoint",
                                                    f.ckpt10, "--baseline", f.gan, "--n", "4",
                                                    "--out", f.root / "ev"],
     "is not a checkpoint"),
    ("eval corruptions nothing readable", lambda f: ["eval", "corruptions", "--checkpoint",
                                                     f.ckpt10, "--folder", f.allbad,
                                                     "--workers", "0", "--out", f.root / "ev"],
     "none of its image files can be decoded"),
    ("eval objectnet text file as mapping", lambda f: ["eval", "objectnet", "--checkpoint",
                                                       f.ckpt10, "--folder", f.mixed,
                                                       "--mapping", f.notes,
                                                       "--out", f.root / "ev"],
     "is not valid JSON"),
    ("eval objectnet nothing readable", lambda f: ["eval", "objectnet", "--checkpoint",
                                                   f.ckpt10, "--folder", f.allbad,
                                                   "--mapping", f.mapping,
                                                   "--out", f.root / "ev"],
     "none of its image files can be decoded"),
    ("eval backgrounds corrupt checkpoint", lambda f: ["eval", "backgrounds", "--checkpoint",
                                                       f.corrupt, "--folder", f.bg,
                                                       "--out", f.root / "ev"],
     "cannot read checkpoint"),
    ("eval backgrounds nothing readable", lambda f: ["eval", "backgrounds", "--checkpoint",
                                                     f.ckpt9, "--folder", f.bg,
                                                     "--out", f.root / "ev"],
     "none of its image files can be decoded"),
    ("eval shape-bias gan as checkpoint", lambda f: ["eval", "shape-bias", "--checkpoint",
                                                     f.gan, "--folder", f.cue,
                                                     "--out", f.root / "ev"],
     "is not a checkpoint"),
    ("eval shape-bias nothing readable", lambda f: ["eval", "shape-bias", "--checkpoint",
                                                    f.ckpt16, "--folder", f.cue,
                                                    "--out", f.root / "ev"],
     "none of its image files can be decoded"),
    ("eval gradcam text file as checkpoint", lambda f: ["eval", "gradcam", "--checkpoint",
                                                        f.notes, "--out", f.root / "ev"],
     "cannot read checkpoint"),
    ("eval gradcam nothing readable", lambda f: ["eval", "gradcam", "--checkpoint", f.ckpt10,
                                                 "--folder", f.allbad, "--out", f.root / "ev"],
     "none of its image files can be decoded"),
]

# Commands that log progress to stderr before the error (the error is still one line, the last).
LOGS_TO_STDERR = ("train",)


@pytest.mark.parametrize("argv_of, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_line(f, capsys, argv_of, phrase):
    argv = argv_of(f)
    rc, out, err = _run(argv, capsys)
    assert rc == 2, (argv, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert lines, (argv, out)
    assert lines[-1].startswith(f"genint-fast {argv[0]}: error: "), lines
    assert phrase in lines[-1], lines[-1]
    if argv[0] not in LOGS_TO_STDERR:
        assert len(lines) == 1, lines
    assert sum("error:" in line for line in lines) == 1


def test_every_command_and_protocol_has_a_case():
    ids = [c[0] for c in CASES]
    for cmd in ("bench", "gan", "directions", "generate", "cgn", "data validate", "data export",
                "train", "transfer", "analyze correlation", "analyze bound",
                "analyze interventions", "demo", "eval accuracy", "eval corruptions",
                "eval objectnet", "eval backgrounds", "eval shape-bias", "eval gradcam"):
        assert any(i.startswith(cmd + " ") for i in ids), cmd


# ------------------------------------------------------------ corrupt images among good ones

def test_gan_skips_a_corrupt_image_and_counts_it(f):
    # the fixture trained the GAN on the folder with one corrupt image among six good ones
    assert "skipped 1 unreadable image file(s) of 7" in f.gan_log and "broken.png" in f.gan_log
    assert "training data: 6 images, 2 classes" in f.gan_log


def test_transfer_skips_a_corrupt_image_and_counts_it(f, capsys):
    from genint_fast.cli.transfer import load_images

    x, y = load_images(str(f.mixed), 6, 16, 0, "content")
    assert x.shape == (6, 3, 16, 16) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image file(s)" in err and "broken.png" in err


def test_data_validate_lists_the_corrupt_image(f, capsys):
    rc, out, err = _run(["data", "validate", f.mixed, "--no-cache"], capsys)
    assert rc == 1 and "1 unreadable" in out and "broken.png" in out and not err


# ---------------------------------------------------------------------- generate --dump twice

def test_a_second_dump_into_one_folder_is_refused_unless_overwrite(f, capsys):
    dump = f.root / "dump_twice"
    base = ["generate", "--generator", f.gan, "--directions", f.dirs, "--dump", dump,
            "--batch-size", "2", "--top-k", "4", "--m", "2"]
    assert _run([*base, "--count", "4"], capsys)[0] == 0
    first = (dump / "records.jsonl").read_text()
    rc, _, err = _run([*base, "--count", "3"], capsys)
    assert rc == 2 and "holds an earlier dump" in err and "--overwrite" in err
    assert (dump / "records.jsonl").read_text() == first     # nothing touched
    assert _run([*base, "--count", "3", "--overwrite"], capsys)[0] == 0
    records = [json.loads(line) for line in (dump / "records.jsonl").read_text().splitlines()]
    files = sorted(str(p.relative_to(dump)) for p in dump.rglob("*.png"))
    assert len(records) == 3 and sorted(r["file"] for r in records) == files


def test_generate_scale_flags_are_distinct_and_the_old_name_still_works(f, capsys):
    from genint_fast.cli import build_parser

    p = build_parser()
    a = p.parse_args(["generate", "--generator", "g", "--directions", "d", "--scale", "2.5"])
    b = p.parse_args(["generate", "--generator", "g", "--directions", "d",
                      "--dump-scale", "2.5", "--grid-scale", "1.5"])
    assert a.scale == b.scale == 2.5 and a.grid_scale == 3.0 and b.grid_scale == 1.5
    with pytest.raises(SystemExit):
        p.parse_args(["generate", "--help"])
    text = capsys.readouterr().out
    assert "--grid-scale S" in text and "--dump-scale S, --scale S" in text
    assert "not used by --dump" in text and "not used by --grid" in text


def test_reference_ranges_in_set_mode_still_work(f, capsys):
    rc, _, err = _run(["generate", "--generator", f.gan, "--directions", f.dirs, "--dump",
                       f.root / "dump_set", "--count", "2", "--batch-size", "2", "--top-k", "4",
                       "--m", "2", "--mode", "set", "--reference-ranges"], capsys)
    assert rc == 0, err


# ------------------------------------------------------------------------- the error line

def test_one_line_turns_torch_notices_into_what_they_mean():
    msg = ("cannot read checkpoint x.pt (Weights only load failed. In PyTorch 2.6, we changed "
           "...\nPlease file an issue\n\nCheck the documentation)")
    assert one_line(msg) == ("cannot read checkpoint x.pt: not a PyTorch checkpoint this command "
                             "can read (corrupt, truncated or another kind of file)")
    msg = "cannot read VGG16 weights from w.pt (UnpicklingError: Weights only load failed. x)"
    assert one_line(msg) == ("cannot read VGG16 weights from w.pt: not a PyTorch checkpoint this "
                             "command can read (corrupt, truncated or another kind of file)")
    msg = ("cannot read checkpoint t.pt (PytorchStreamReader failed reading zip archive: failed "
           "finding central directory. This is an internal miniz error...)")
    assert one_line(msg) == ("cannot read checkpoint t.pt: the file is truncated or corrupt (not "
                             "a complete PyTorch checkpoint); write it again")
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 5000)) <= 600


def test_the_console_script_exits_2_with_one_line(f):
    proc = subprocess.run([sys.executable, "-m", "genint_fast.cli", "gan", "--data",
                           str(f.allbad), "--out", str(f.root / "g.pt")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("genint-fast gan: error: image folder")
    assert "none of its image files can be decoded (2 files" in proc.stderr


def test_error_message_of_system_and_import_errors():
    from genint_fast.cli import error_message

    exc = IsADirectoryError(21, "Is a directory", "/tmp/out")
    assert error_message(exc) == ("/tmp/out: Is a directory; check the path (and that it is "
                                  "the kind of file or folder this option wants)")
    assert error_message(FileNotFoundError("no GAN checkpoint at x.pt")) == \
        "no GAN checkpoint at x.pt"
    exc = ModuleNotFoundError("No module named 'torchcam'", name="torchcam")
    assert error_message(exc) == ("the Python module 'torchcam' is not installed; pip install "
                                  "the package that provides it")


def test_a_command_without_the_built_extension_says_how_to_build_it(f):
    # Hide the built extension, as on a checkout that was never built: a command that needs the
    # fused ops ends with the build instruction, in one line.
    code = (
        HIDE_EXTENSION +
        "from genint_fast.cli import main\n"
        f"sys.exit(main(['generate', '--generator', {str(f.gan)!r}, '--directions', "
        f"{str(f.dirs)!r}, '--grid', {str(f.root / 'nobuild.png')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("genint-fast generate: error: genint_fast's native extension")
    assert "python setup.py build_ext --inplace" in err
