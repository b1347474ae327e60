"""YAML recipes and KEY=VALUE for gan, cgn and demo (genint_fast.cli.recipes): precedence, errors,
every shipped recipe parses, and a recipe drives a real (tiny) run."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genint_fast.cli import build_parser
from genint_fast.cli import main as cli_main
from genint_fast.cli.recipes import expand

ROOT = Path(__file__).resolve().parents[1]
COMMAND_RECIPES = sorted((ROOT / "configs").glob("*/*.yaml"))


def _parse(argv):
    parser = build_parser()
    return parser.parse_args(expand(parser, argv))


def test_precedence_recipe_then_key_value_then_flags(tmp_path):
    r = tmp_path / "g.yaml"
    r.write_text("data: digits:colored\nout: g.pt\nsteps: 5\nlr-g: 1.0e-3\nno_resume: true\n")
    a = _parse(["gan", "--config", str(r)])
    assert (a.data, a.out, a.steps, a.lr_g, a.no_resume) == ("digits:colored", "g.pt", 5, 1e-3,
                                                             True)
    a = _parse(["gan", "--config", str(r), "steps=7", "lr_g=0.5", "no-resume=false"])
    assert (a.steps, a.lr_g, a.no_resume) == (7, 0.5, False)
    a = _parse(["gan", f"--config={r}", "steps=7", "--steps", "9"])
    assert a.steps == 9
    # KEY=VALUE alone, without a recipe; a value of a flag that looks like KEY=VALUE stays its value
    a = _parse(["gan", "data=digits:colored", "--out", "a=b.pt", "steps=3"])
    assert (a.data, a.out, a.steps) == ("digits:colored", "a=b.pt", 3)
    # lists become the comma lists the demo's flags take
    a = _parse(["demo", "--config", str(ROOT / "configs/demo/cmnist_table.yaml")])
    assert a.methods == "erm,groupdro,jtt,dfr,gan-aug,genint,cgn,real+cgn"
    assert (a.variant, a.seeds, a.select, a.cgn_set) == ("cmnist", 5, "val", 10000)


def test_bad_recipes_are_one_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: digits:colored\nlamda: 3\n")
    assert cli_main(["gan", "--config", str(bad), "out=x.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genint-fast gan: error: unknown key 'lamda' in recipe")
    assert "latent-dim" in err and len(err.splitlines()) == 1
    assert cli_main(["cgn", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "no recipe at" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("steps: [1, 2\n")
    assert cli_main(["gan", "--config", str(tmp_path / "broken.yaml")]) == 2
    err = capsys.readouterr().err
    assert "recipe" in err and "is not valid YAML" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert cli_main(["demo", "--config", str(tmp_path / "list.yaml")]) == 2
    assert "must hold a mapping" in capsys.readouterr().err
    assert cli_main(["gan", "data=digits:colored", "out=x.pt", "no-resume=maybe"]) == 2
    assert "is a switch; give true or false" in capsys.readouterr().err
    # a wrong value gets the flag's own argparse message
    with pytest.raises(SystemExit):
        _parse(["gan", "data=digits:colored", "out=x.pt", "loss=hing"])
    assert "invalid choice: 'hing'" in capsys.readouterr().err


@pytest.mark.parametrize("path", COMMAND_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_command_recipe_parses(path):
    command = path.parent.name
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict) and raw
    args = _parse([command, "--config", str(path)])
    assert args.command == command
    for key, value in raw.items():
        got = getattr(args, key.replace("-", "_"))
        want = ",".join(map(str, value)) if isinstance(value, list) else value
        assert got == want, key
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any("You provide" in line for line in comments) and len(comments) >= 4


def test_a_recipe_drives_a_tiny_gan_and_cgn_run(tmp_path, capsys):
    g = tmp_path / "g.pt"
    assert cli_main(["gan", "--config", str(ROOT / "configs/gan/digits_colored.yaml"),
                     f"out={g}", "samples=", "steps=1", "ch=4", "latent-dim=8",
                     "checkpoint-every=1", "log-every=1"]) == 0
    assert g.is_file()
    c = tmp_path / "c.pt"
    assert cli_main(["cgn", "--config", str(ROOT / "configs/cgn/default.yaml"), f"out={c}",
                     "samples=", "steps=1", "feature-net=none", "ch=4", "log-every=1"]) == 0
    assert c.is_file()
    out = capsys.readouterr().out
    assert "1" in out


def test_gan_no_class_bn_reaches_the_checkpoint(tmp_path):
    """--no-class-bn (or `no-class-bn=true`) trains the GAN whose class enters through gen_z
    only; the default keeps class-conditional batch norm."""
    import torch

    for extra, want in (([], True), (["no-class-bn=true"], False)):
        g = tmp_path / f"g{want}.pt"
        assert cli_main(["gan", "--data", "digits:colored", "--out", str(g), "--steps", "1",
                         "--ch", "4", "--latent-dim", "8", *extra]) == 0
        state = torch.load(g, map_location="cpu", weights_only=False)
        assert state["model_config"]["class_bn"] is want
