"""Atomic checkpoints: torch.save to a temporary file in the same folder, fsync, os.replace.

A kill at any moment leaves either the previous complete file or the new complete file under
the final name, never a partial one (a stale `*.tmp<pid>` file may remain; it is ignored)."""
from __future__ import annotations

import random

import numpy as np
import torch

from ..classifier.weights import FORMAT, load_checkpoint
from ..io import save_atomic

__all__ = ["save_atomic", "load_checkpoint", "rng_states", "set_rng_states", "FORMAT"]


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
