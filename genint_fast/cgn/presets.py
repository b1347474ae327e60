"""Named settings of the small CGN (`genint-fast cgn --preset NAME`).

- ``default``: what reaches a decomposition fastest on 2 CPU cores (width 32, no BatchNorm
  before the textures' tanh, spectral norm on the MLP discriminator, Adam 1e-3 for both nets,
  batch 32, the package's small feature net for the Gram loss, 3000 steps, sampling from a
  moving average of the weights; README, CGN section, for the measurements behind each choice).
- ``reference``: the authors' small CGN as published (../shared/CGN.md): width 64, BatchNorm
  before tanh, the MLP discriminator without spectral norm (a conv discriminator for wildlife),
  Adam 2e-4 with betas (0.5, 0.999), batch 16, 48,000 steps (the released colored checkpoint's
  BatchNorm counters say 48,027), the reference's Gram loss on an ImageNet VGG16 when the user
  gives its weights file (`feature_net=vgg16:PATH`; without it the small feature net stands in).

Both take the per-variant choices of the reference (initialisation, mask-entropy weight, Gram
layer weights) from CGNConfig.for_variant / CGNTrainConfig.for_variant. An image folder has no
variant: it gets FOLDER_VARIANT's choices.
"""
from __future__ import annotations

from .small import CGNConfig
from .train import CGNTrainConfig

__all__ = ["PRESETS", "FOLDER_VARIANT", "preset_configs", "DEFAULT_STEPS", "REFERENCE_STEPS"]

PRESETS = ("default", "reference")
DEFAULT_STEPS = 3000
# Sampling from a moving average of the weights (decay 0.999, warmed up): on colored digits the
# masks' shape consistency at 3000 steps rose from 82% to 89% (README, CGN section).
DEFAULT_EMA = 0.999
REFERENCE_STEPS = 48000
# An image folder's per-variant choices: the colored ones (orthogonal init 0.1, mask entropy
# 0.1), which decompose colour-shortcut folders (README: the normal init 0.03 and mask weight 0.3
# of the texture variant gave masks over the background on a colored MNIST folder).
FOLDER_VARIANT = "colored"


def preset_configs(preset: str = "default", variant: str | None = None, *, num_classes=10,
                   model_overrides=None, train_overrides=None):
    """(CGNConfig, CGNTrainConfig) of a preset for a variant (None: an image folder);
    overrides (dicts of fields) win."""
    if preset not in PRESETS:
        raise ValueError(f"unknown CGN preset {preset!r}; choose from {', '.join(PRESETS)}")
    from ..data.digits import canonical_variant

    v = canonical_variant(variant) if variant else FOLDER_VARIANT
    v = "colored" if v == "cmnist" else v      # cmnist's strokes are coloured on black too
    model = {"num_classes": num_classes}
    train = {"steps": DEFAULT_STEPS, "ema": DEFAULT_EMA}
    if preset == "reference":
        model.update(ch=64, out_batchnorm=True, d_spectral_norm=False,
                     disc="conv" if v == "wildlife" else "mlp")
        train.update(steps=REFERENCE_STEPS, batch_size=16, lr_g=2e-4, lr_d=2e-4, ema=0.0,
                     checkpoint_every=2000, log_every=500)
    model.update(model_overrides or {})
    train.update(train_overrides or {})
    return CGNConfig.for_variant(v, **model), CGNTrainConfig.for_variant(v, **train)
