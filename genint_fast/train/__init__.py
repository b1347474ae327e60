"""The GenInt trainer (issue 7): config, objective, producers, checkpoints, training loop."""
from .checkpoint import load_checkpoint, save_atomic
from .config import IMPLEMENTED_MODES, MODELS, MODES, TrainConfig, load_config
from .models import SmallCNN, build_model
from .objective import Stream, stream_losses
from .producer import Producer, step_seed
from .trainer import (RealData, Trainer, evaluate, init_distributed, load_digits_split,
                      run_training)

__all__ = ["TrainConfig", "load_config", "MODES", "MODELS", "IMPLEMENTED_MODES", "Stream",
           "stream_losses", "Producer", "step_seed", "SmallCNN", "build_model", "Trainer",
           "RealData", "evaluate", "load_digits_split", "run_training", "init_distributed", "save_atomic", "load_checkpoint"]
