"""Classifier weights on disk: the training checkpoint's format tag and reader, and the
init_weights files a run starts from (a plain state dict or a genint-fast checkpoint)."""
from __future__ import annotations

import torch

from ..io import load_state
from .models import SmallCNN, load_state_into

__all__ = ["FORMAT", "load_checkpoint", "read_init_weights", "load_weights"]

FORMAT = "genint-fast-train/1"


def load_checkpoint(path) -> dict:
    """A genint-fast training checkpoint (one sentence for a file that is not one)."""
    return load_state(path, FORMAT, "checkpoint")


def read_init_weights(path):
    """(state, normalisation) of an init_weights file: a plain state dict (e.g. torchvision's
    resnet152 weights; normalisation None) or a genint-fast training checkpoint (its model and
    the normalisation it was trained with; "half" for checkpoints older than the key)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"cannot read init_weights {path} ({first}); pass a PyTorch state-dict "
                         f"file or a genint-fast checkpoint") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return state["model"], (state.get("config") or {}).get("normalize", "half")
    return state, None


def load_weights(model, path, *, name=None):
    """Initialise `model` from a state-dict file (e.g. torchvision's resnet152 weights) or a
    genint-fast training checkpoint; every key must match (no silent partial loads). `name`:
    the model's name in build_model (for the messages)."""
    if name is None:
        name = "smallcnn" if isinstance(model, SmallCNN) else type(model).__name__.lower()
    state, _ = read_init_weights(path)
    load_state_into(model, state, name=name, where=f"init_weights {path}")
