"""The CGNs' settings have one owner, genint_fast.cgn_config (torch-free): the old import paths
give the same objects, and `genint-fast cgn --help` reads every default and meaning from its
fields and presets, so the two cannot drift apart."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from genint_fast import cgn_config
from genint_fast.cli import cgn as cli_cgn
from genint_fast.cli.recipes import shown

ROOT = Path(__file__).resolve().parents[1]


def _helps() -> dict:
    """{dest: help text} of `genint-fast cgn`'s options, as --help prints them."""
    p = argparse.ArgumentParser()
    cli_cgn.register(p.add_subparsers())
    cgn = p._subparsers._group_actions[0].choices["cgn"]   # argparse has no public accessor
    return {a.dest: " ".join(a.help.split()) for a in cgn._actions if a.help}


def test_old_import_paths_give_the_same_objects():
    from genint_fast import cgn
    from genint_fast.cgn import large, large_train, presets, small, train

    assert small.CGNConfig is cgn.CGNConfig is cgn_config.CGNConfig
    assert small.DISCRIMINATORS is cgn_config.DISCRIMINATORS
    assert train.CGNTrainConfig is cgn.CGNTrainConfig is cgn_config.CGNTrainConfig
    assert train.STYLE_WEIGHTS is cgn_config.STYLE_WEIGHTS
    assert presets.preset_configs is cgn_config.preset_configs
    for name in ("PRESETS", "DEFAULT_STEPS", "DEFAULT_EMA", "REFERENCE_STEPS", "FOLDER_VARIANT",
                 "CGNConfig", "CGNTrainConfig"):
        assert getattr(presets, name) is getattr(cgn_config, name), name
    assert large.LargeCGNLossConfig is cgn_config.LargeCGNLossConfig
    assert large_train.LargeCGNTrainConfig is cgn_config.LargeCGNTrainConfig
    assert large_train.LargeCGNLossConfig is cgn_config.LargeCGNLossConfig
    from genint_fast import generator_spec
    from genint_fast.generators import base

    assert base.check_truncation is generator_spec.check_truncation


def test_cgn_config_imports_no_torch():
    code = 'import sys, genint_fast.cgn_config; assert "torch" not in sys.modules'
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_help_shows_the_configs_defaults():
    text = _helps()
    large = cgn_config.LargeCGNTrainConfig()
    steps = text["steps"]
    for variant in ("colored", "double-colored"):     # per variant: 9000 and 6000
        n = cgn_config.preset_configs("default", variant)[1].steps
        assert f"{n} on " in steps and variant in steps.split(f"{n} on ")[1].split(";")[0]
    assert f"reference: {cgn_config.REFERENCE_STEPS}" in steps
    assert f"(default {large.updates})" in steps
    assert f"(default {large.accumulate})" in text["accumulate"]
    assert f"(default {shown(large.loss.perceptual)})" in text["lambda_perceptual"]
    d = cgn_config.preset_configs("default", "colored")[1]
    w = cgn_config.preset_configs("default", "wildlife")[1]
    mask = text["lambda_mask"]
    assert shown(d.lambda_mask) in mask and shown(w.lambda_mask) in mask
    assert f"(default {shown(large.loss.binary)})" in mask


def test_cgn_help_output_shows_the_default_step_counts(capsys, monkeypatch):
    """What `genint-fast cgn --help` prints: the step counts of both presets and of --large,
    read from the configs (so a changed default cannot leave a stale number in the help)."""
    from genint_fast.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        main(["cgn", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    large = cgn_config.LargeCGNTrainConfig()
    for number in (cgn_config.DEFAULT_STEPS, cgn_config.REFERENCE_STEPS, large.updates,
                   large.accumulate):
        assert str(number) in text, number
    assert f"{cgn_config.DEFAULT_STEPS} on double-colored, wildlife, rotation; --preset " \
           f"reference: {cgn_config.REFERENCE_STEPS})" in text
    assert f"(default {large.accumulate})" in text
    assert f"{large.updates} updates of {large.accumulate} accumulated" in text


_CLASSES = {"train": cgn_config.LargeCGNTrainConfig, "loss": cgn_config.LargeCGNLossConfig}


def _field_flags():
    """(dest, config class, field, the --large (class, field) or None) of every `cgn` flag that
    sets a config field."""
    model = cli_cgn._MODEL_FLAGS              # the CGNConfig fields; the rest are training's
    rows = [(dest, cgn_config.CGNConfig if name in model else cgn_config.CGNTrainConfig, name,
             None if big is None else (_CLASSES[big[0]], big[1]))
            for dest, name, big in cli_cgn._SMALL_FIELDS]
    rows.append(("feature_net", cgn_config.CGNTrainConfig, "feature_net", None))
    rows += [(dest, _CLASSES[kind], name, None) for dest, (kind, name), _ in cli_cgn._LARGE_FIELDS]
    return rows


@pytest.mark.parametrize("dest, cls, name, big", _field_flags(),
                         ids=[row[0] for row in _field_flags()])
def test_flag_help_is_the_field_s_help(dest, cls, name, big):
    """Every flag that sets a config field starts with the field's help; a flag both modes read
    also carries the --large field's help (unless it is the same) and default."""
    from genint_fast.config_fields import field_help

    text = _helps()[dest]
    meaning = " ".join(field_help(cls, name).split())
    assert text.startswith(meaning)
    train = cgn_config.LargeCGNTrainConfig()
    configs = {_CLASSES["train"]: train, _CLASSES["loss"]: train.loss}
    if cls in configs:                 # a --large-only flag: the large config's default
        assert text.startswith(f"{meaning} (default {shown(getattr(configs[cls], name))})")
    if big is not None:
        value = shown(getattr(configs[big[0]], big[1]))
        big_meaning = " ".join(field_help(*big).split())
        tail = text[len(meaning):]
        if big_meaning == meaning:
            assert f"; --large: default {value}" in tail
        else:
            assert f"; --large: {big_meaning} (default {value})" in tail


def test_every_config_flag_is_given_or_unset():
    """Flags that set config fields default to None: a preset, the variant or a resumed
    checkpoint supplies the value when the flag is left out."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    cli_cgn.register(sub)
    args = p.parse_args(["cgn"])
    for dest, _, _ in cli_cgn._SMALL_FIELDS:
        assert getattr(args, dest) is None
    for dest, _, _ in cli_cgn._LARGE_FIELDS:
        assert getattr(args, dest) is None
