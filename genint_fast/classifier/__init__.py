"""Classifiers, the leaf that train/ and eval/ share: the models (small CNN, ResNets, CGN's
ensemble), input normalisation, weight files and batched inference.

    models.py     SmallCNN, EnsembleModel, build_model, load_state_into
    normalise.py  NORMALIZATIONS, normalise, make_normaliser, resolve_normalize (torch-free import)
    weights.py    FORMAT, load_checkpoint, read_init_weights, load_weights
    inference.py  evaluate, logits_of

Nothing here imports train/ or eval/. The names below load on first use, so the torch-free
train config can import `normalise` without torch.
"""
import importlib

_WHERE = {
    "SmallCNN": "models", "EnsembleModel": "models", "build_model": "models",
    "MECHANISMS": "models", "HEADS": "models", "MODEL_NAMES": "models",
    "load_state_into": "models",
    "NORMALIZATIONS": "normalise", "normalise": "normalise", "make_normaliser": "normalise",
    "resolve_normalize": "normalise",
    "FORMAT": "weights", "load_checkpoint": "weights", "read_init_weights": "weights",
    "load_weights": "weights",
    "evaluate": "inference", "logits_of": "inference",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
