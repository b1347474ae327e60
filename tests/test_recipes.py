"""Every shipped recipe (configs/*.yaml) loads and validates, with tiny stand-ins for the files
and folders the user provides; the paper recipes hold SPEC's numbers; `train --help` lists every
config key with its default (issue 14)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genint_fast.cli import main as cli_main
from genint_fast.train.config import (BIGGAN_NAMES, RANDOM_GENERATORS, TrainConfig, _yaml_text,
                                      field_default, load_config)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.fixture
def standins(tmp_path):
    """Tiny stand-ins for what the user provides: an image folder, a BigGAN weights folder, a
    classifier weights file, VGG19 weights (only their existence is checked at load time)."""
    folder = tmp_path / "imagenet" / "train"
    for cls in ("n01440764", "n01443537"):
        (folder / cls).mkdir(parents=True)
        (folder / cls / "a.png").write_bytes(b"stand-in")
    biggan = tmp_path / "biggan-deep-256"
    biggan.mkdir()
    (biggan / "config.json").write_text("{}")
    (biggan / "pytorch_model.bin").write_bytes(b"stand-in")
    weights = tmp_path / "resnet152.pth"
    weights.write_bytes(b"stand-in")
    vgg = tmp_path / "vgg19.pth"
    vgg.write_bytes(b"stand-in")
    cgn = tmp_path / "cgn.pt"
    cgn.write_bytes(b"stand-in")
    return {"folder": folder, "biggan": biggan, "weights": weights, "vgg": vgg, "cgn": cgn}


def _overrides(raw: dict, s: dict) -> dict:
    """key -> stand-in value for each user-provided path in the recipe, in the recipe's own
    form (a folder: spec stays a folder: spec, vgg19:FILE stays vgg19:FILE)."""
    out = {}
    data = str(raw.get("data", ""))
    if data.startswith("folder:"):
        out["data"] = f"folder:{s['folder']}"
    gen = raw.get("generator")
    if gen is not None and not str(gen).startswith("random:") and gen not in BIGGAN_NAMES:
        out["generator"] = str(s["biggan"])
    if raw.get("init_weights") is not None:
        out["init_weights"] = str(s["weights"])
    tf = str(raw.get("transfer_features", ""))
    if tf.startswith("vgg19:"):
        out["transfer_features"] = f"vgg19:{s['vgg']}"
    if raw.get("cgn") is not None:
        out["cgn"] = str(s["cgn"])
    assert raw.get("directions") is None, "directions: give it a stand-in in this test"
    return out


def test_the_recipes_are_there():
    names = {p.name for p in RECIPES}
    assert names >= {"digits_genint.yaml", "digits_genint_transfer.yaml",
                     "imagenet_resnet18_genint.yaml", "imagenet_resnet18_genint_transfer.yaml",
                     "resnet152_finetune.yaml", "digits_cgn_reference.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path, standins):
    text = path.read_text()
    raw = yaml.safe_load(text)
    assert isinstance(raw, dict) and raw
    assert not set(raw) - FIELDS, f"unknown keys {set(raw) - FIELDS}"
    over = _overrides(raw, standins)
    cfg = load_config(path, [f"{k}={v}" for k, v in over.items()])
    # every other key is taken as written
    for key, value in raw.items():
        if key not in over:
            assert getattr(cfg, key) == value, key
    # the comments say what the recipe reproduces and what the user must provide
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "You provide" in comments and len(comments.splitlines()) >= 5
    assert "not wired in" not in text
    for key in over:                       # each user-provided path is named in the comments
        assert key in comments, key
    # without the stand-ins a placeholder path is refused, naming the key, before any work
    if over and not any(Path(str(v).split(":")[-1]).exists()
                        for v in (raw[k] for k in over)):
        with pytest.raises(ValueError, match="invalid config: (data|generator|init_weights|"
                                             "transfer_features|cgn)"):
            load_config(path)


def test_a_recipe_typo_fails(tmp_path):
    base = yaml.safe_load((ROOT / "configs" / "digits_genint.yaml").read_text())
    for bad, words in (({"lamda1": 0.05}, "unknown key"), ({"intervention_mode": "sett"},
                                                           "intervention_mode"),
                       ({"normalize": "imagnet"}, "normalize"), ({"epochs": 0}, "epochs"),
                       ({"num_classes": 1}, "num_classes")):
        p = tmp_path / "bad.yaml"
        p.write_text(yaml.safe_dump({**base, **bad}))
        with pytest.raises(ValueError, match=words):
            load_config(p)


def test_generator_specs_checked_at_load(tmp_path):
    with pytest.raises(ValueError, match="generator .* does not exist"):
        load_config(None, [f"generator={tmp_path / 'nope'}"])
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="lacks pytorch_model.bin"):
        load_config(None, [f"generator={tmp_path / 'half'}"])
    with pytest.raises(ValueError, match="random:"):
        load_config(None, ["generator=random:small64"])
    # unused in modes without a generator
    assert load_config(None, ["mode=erm", f"generator={tmp_path / 'nope'}"]).mode == "erm"
    from genint_fast.generators import PRETRAINED_NAMES, TINY_CONFIGS
    assert set(BIGGAN_NAMES) == set(PRETRAINED_NAMES)
    assert set(RANDOM_GENERATORS) == set(PRETRAINED_NAMES) | set(TINY_CONFIGS) | {"small32"}


def test_digits_recipes_keep_the_half_normalisation():
    for name in ("digits_genint.yaml", "digits_genint_transfer.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        assert (cfg.model, cfg.normalize, cfg.num_classes) == ("smallcnn", "half", 10)
        assert cfg.data.startswith("digits:")


# SPEC section 6 (and 2-5): the paper recipes' settings.
_INTERVENTIONS = dict(num_directions=80, top_k=60, truncation=1.0, intervention_mode="set",
                      step_ranges="reference", intervention_style="one", per_latent=5,
                      directions=None)
_IMAGENET = dict(num_classes=1000, normalize="imagenet", image_size=224, augment=True,
                 augment_generated=True, forward="concat", momentum=0.9, weight_decay=1e-4)
_TRANSFER = dict(transfer_steps=[20, 70], transfer_optimizer="lbfgs", transfer_kernel="poly2")
PAPER = {
    "imagenet_resnet18_genint.yaml": dict(
        mode="genint", model="resnet18", batch_size=256, gen_batch_size=64, lambda1=0.05,
        lambda2=0.0, epochs=90.0, lr=0.1, lr_step_epochs=30.0, lr_gamma=0.1, init_weights=None,
        **_INTERVENTIONS, **_IMAGENET),
    "imagenet_resnet18_genint_transfer.yaml": dict(
        mode="genint-transfer", model="resnet18", batch_size=256, transfer_batch_size=256,
        gen_batch_size=64, lambda1=0.02, lambda2=1.0, epochs=90.0, lr=0.1, lr_step_epochs=30.0,
        lr_gamma=0.1, init_weights=None, **_INTERVENTIONS, **_IMAGENET, **_TRANSFER),
    "resnet152_finetune.yaml": dict(
        mode="genint-transfer", model="resnet152", lambda1=0.2, lambda2=0.2, batch_size=192,
        transfer_batch_size=64, gen_batch_size=64, lr=0.001, lr_gamma=1.0,
        **_INTERVENTIONS, **_IMAGENET, **_TRANSFER),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipes_hold_spec_numbers(name, standins):
    path = ROOT / "configs" / name
    raw = yaml.safe_load(path.read_text())
    over = _overrides(raw, standins)
    cfg = load_config(path, [f"{k}={v}" for k, v in over.items()])
    for key, want in PAPER[name].items():
        assert getattr(cfg, key) == want, key
    # the user's files: ImageNet folders, a BigGAN-deep-256 weights folder, VGG19 weights for
    # the transfer, a torchvision ResNet-152 for the fine-tune
    assert raw["data"].startswith("folder:") and "imagenet" in raw["data"]
    assert "biggan-deep-256" in str(raw["generator"]) and "generator" in over
    assert set(over) >= {"data", "generator"}
    if cfg.mode == "genint-transfer":
        assert raw["transfer_features"].startswith("vgg19")
    if name == "resnet152_finetune.yaml":
        assert "resnet152" in raw["init_weights"] and "init_weights" in over


# ---------------------------------------------------------------------------- train --help
def test_train_help_lists_every_key_with_its_default(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name}={_yaml_text(field_default(f))}\n" in out, f.name
        assert f.metadata["help"] in out, f.name
    for literal in ("  lambda1=0.05\n", "  num_classes=null\n", "  transfer_steps=[20, 70]\n",
                    "  generator=random:small32:0\n", "  normalize=auto\n", "  epochs=null\n"):
        assert literal in out
    assert "--config YAML" in out and "--resume" in out


def test_top_level_help_does_not_load_the_trainer():
    code = ("import sys; from genint_fast.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('genint_fast.train')))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
