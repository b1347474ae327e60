"""One data-source grammar (genint_fast.data.sources) read by every command: digits:V[:RHO],
folder:DIR and a bare DIR mean the same everywhere."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genint_fast.cli import main
from genint_fast.data.sources import Source, parse_source


def test_parse_source_forms_and_refusals(tmp_path):
    assert parse_source("digits:colored") == Source("digits", variant="colored", rho=1.0)
    assert parse_source("digits:textured:0.9") == Source("digits", variant="wildlife", rho=0.9)
    assert str(parse_source("digits:cmnist")) == "digits:cmnist:1"
    assert parse_source(f"folder:{tmp_path}") == parse_source(str(tmp_path)) == \
        Source("folder", root=str(tmp_path))
    assert str(parse_source(str(tmp_path))) == f"folder:{tmp_path}"
    for bad, words in (("digits:purple", "names no built-in variant"),
                       ("digits:colored:x", "has a bad RHO"),
                       ("digits:colored:2", "RHO must be in [0, 1]"),
                       (str(tmp_path / "nope"), "is not an existing folder"),
                       (f"folder:{tmp_path / 'nope'}", "is not an existing folder"),
                       ("", "is empty")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_source(bad, flag="--data")
    assert parse_source(str(tmp_path / "later"), must_exist=False).root == str(tmp_path / "later")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of 32x32 colour images, 12 each."""
    root = tmp_path_factory.mktemp("src") / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("form", ["folder:{}", "{}"])
def test_every_command_reads_folder_and_bare_dir(folder, form, tmp_path, capsys):
    spec = form.format(folder)
    gan = tmp_path / "gan.pt"
    assert main(["gan", "--data", spec, "--out", str(gan), "--steps", "1", "--batch-size", "2",
                 "--ch", "4", "--latent-dim", "8", "--log-every", "0",
                 "--checkpoint-every", "0"]) == 0
    assert main(["cgn", "--data", spec, "--out", str(tmp_path / "cgn.pt"), "--steps", "1",
                 "--batch-size", "2", "--ch", "8", "--feature-net", "none",
                 "--log-every", "0"]) == 0
    run = tmp_path / "run"
    assert main(["train", f"data={spec}", "mode=erm", "steps=1", "batch_size=4", "image_size=32",
                 "progress=false", "threads=1", f"out={run}"]) == 0
    cfg = json.loads(json.dumps(__import__("torch").load(run / "checkpoint.pt",
                                                         weights_only=False)["config"]))
    assert cfg["data"] == f"folder:{folder}"        # one spelling stored
    assert main(["transfer", "--content", spec, "--style", spec, "--count", "2", "--steps", "1",
                 "--features", "small:random", "--out", str(tmp_path / "t.png")]) == 0
    assert main(["analyze", "correlation", "--generator", str(gan), "--data", spec, "--n", "20",
                 "--num-directions", "2", "--top-k", "2", "--m", "1", "--steps", "2"]) == 0
    for flag in ("--data", "--folder"):
        assert main(["eval", "accuracy", "--checkpoint", str(run / "checkpoint.pt"), flag, spec,
                     "--out", str(tmp_path / "eval")]) == 0
        assert json.loads((tmp_path / "eval" / "accuracy.json").read_text())
    capsys.readouterr()
    assert main(["eval", "accuracy", "--checkpoint", str(run / "checkpoint.pt"),
                 "--folder", "digits:colored"]) == 2
    assert "--folder takes an image folder" in capsys.readouterr().err
