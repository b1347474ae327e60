"""The GenInt trainer: config, objective, producers, checkpoints, training loop.

The names below load on first use, so `genint_fast.train.config` (the recipe definition that
`genint-fast train --help` prints) can be read without importing torch.
"""
import importlib

_WHERE = {
    "load_checkpoint": "checkpoint", "save_atomic": "checkpoint",
    "IMPLEMENTED_MODES": "config", "MODELS": "config", "MODES": "config",
    "TrainConfig": "config", "load_config": "config",
    "SmallCNN": "models", "build_model": "models",
    "Stream": "objective", "stream_losses": "objective",
    "Producer": "producer", "step_seed": "producer",
    "RealData": "trainer", "Trainer": "trainer", "evaluate": "trainer",
    "init_distributed": "trainer", "load_digits_split": "trainer", "run_training": "trainer",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
