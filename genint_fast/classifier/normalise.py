"""Input normalisation of the classifiers (x in [0, 1] -> the model's input), by name.

Torch-free at import (the train config, which `genint-fast train --help` reads, names these).
"""
from __future__ import annotations

__all__ = ["NORMALIZATIONS", "normalise", "make_normaliser", "resolve_normalize"]

# Input normalisation (x in [0, 1] -> (x - mean) / std), by name.
NORMALIZATIONS = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),                       # (x - 0.5) / 0.5
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),       # torchvision's
}


def normalise(x):
    """The half normalisation, (x - 0.5) / 0.5: the built-in digits with the small CNN."""
    return (x - 0.5) / 0.5


def make_normaliser(name: str):
    """x in [0, 1] -> the model's input: "half" ((x - 0.5) / 0.5, the function `normalise`) or
    "imagenet" ((x - mean) / std with torchvision's ImageNet statistics)."""
    if name == "half":
        return normalise
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {name!r}; use one of {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[name]
    cache = {}
    import torch

    def norm(x):
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = (torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1),
                          torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1))
        m, s = cache[key]
        return (x - m) / s
    norm.__name__ = f"normalise_{name}"
    return norm


def resolve_normalize(normalize: str, data: str, model: str,
                      init_normalize: str | None = None) -> str:
    """The normalisation a run uses: `normalize` unless it is auto; auto = the init checkpoint's
    own (init_normalize, for a genint-fast checkpoint given as init_weights), else imagenet for
    folder data and the ResNets (torchvision's architectures and weights), else half (the
    built-in digits with the small CNN)."""
    if normalize != "auto":
        return normalize
    if init_normalize is not None:
        return init_normalize
    if str(data).startswith("folder:") or str(model).startswith("resnet"):
        return "imagenet"
    return "half"
