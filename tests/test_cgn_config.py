"""The CGNs' settings have one owner, genint_fast.cgn_config (torch-free): the old import paths
give the same objects, and `genint-fast cgn --help` reads every default and meaning from its
fields and presets, so the two cannot drift apart."""
import argparse
import dataclasses

import pytest

from genint_fast import cgn_config
from genint_fast.cli import cgn as cli_cgn
from genint_fast.cli.recipes import shown


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
    assert train.CGNTrainConfig is cgn.CGNTrainConfig is cgn_config.CGNTrainConfig
    assert train.STYLE_WEIGHTS is cgn_config.STYLE_WEIGHTS
    assert presets.preset_configs is cgn_config.preset_configs
    assert presets.DEFAULT_STEPS == cgn_config.DEFAULT_STEPS
    assert large.LargeCGNLossConfig is cgn_config.LargeCGNLossConfig
    assert large_train.LargeCGNTrainConfig is cgn_config.LargeCGNTrainConfig
    from genint_fast import generator_spec
    from genint_fast.generators import base

    assert base.check_truncation is generator_spec.check_truncation


def test_help_shows_the_configs_defaults():
    text = _helps()
    large = cgn_config.LargeCGNTrainConfig()
    steps = text["steps"]
    assert f"default {cgn_config.DEFAULT_STEPS}" in steps
    assert f"reference: {cgn_config.REFERENCE_STEPS}" in steps
    assert f"(default {large.updates})" in steps
    assert f"(default {large.accumulate})" in text["accumulate"]
    assert f"(default {shown(large.loss.perceptual)})" in text["lambda_perceptual"]
    d = cgn_config.preset_configs("default", "colored")[1]
    w = cgn_config.preset_configs("default", "wildlife")[1]
    mask = text["lambda_mask"]
    assert shown(d.lambda_mask) in mask and shown(w.lambda_mask) in mask
    assert f"(default {shown(large.loss.binary)})" in mask


@pytest.mark.parametrize("dest, cls, name", [
    ("steps", cgn_config.CGNTrainConfig, "steps"),
    ("lr_g", cgn_config.CGNTrainConfig, "lr_g"),
    ("ch", cgn_config.CGNConfig, "ch"),
    ("feature_net", cgn_config.CGNTrainConfig, "feature_net"),
    ("lr_texture", cgn_config.LargeCGNTrainConfig, "lr_texture"),
    ("lambda_background", cgn_config.LargeCGNLossConfig, "background"),
])
def test_flag_help_is_the_field_s_help(dest, cls, name):
    meaning = next(f for f in dataclasses.fields(cls) if f.name == name).metadata["help"]
    assert _helps()[dest].startswith(" ".join(meaning.split()))


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
