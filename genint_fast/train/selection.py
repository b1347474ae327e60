"""Model selection by training-domain validation (DomainBed's rule, Gulrajani & Lopez-Paz 2021).

With `select=val` the trainer scores the classifier on a validation split drawn from the training
distribution (the built-in digits' `val` split, or `val_data=folder:DIR`) every `val_every` steps
(0: at every epoch end) and at the end, keeps the best-scoring weights in OUT/best.pt, and ends
the run with those weights loaded. No test split is read to choose. `select=last` (the default)
keeps the last weights, as before. Ties keep the earlier step.
"""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["ValidationSelector", "BEST_NAME"]

BEST_NAME = "best.pt"


class ValidationSelector:
    """Scores a model on fixed validation images and keeps the best weights on disk."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, every: int, out,
                 normalise, device, log=print):
        if images.shape[0] == 0:
            raise ValueError("the validation split is empty; give val_size > 0 or a val_data "
                             "folder with images")
        self.images, self.labels = images, labels
        self.every, self.path = int(every), Path(out) / BEST_NAME
        self.normalise, self.device, self.log = normalise, device, log
        self.best, self.best_step = float("-inf"), -1

    def due(self, step: int, steps: int, per_epoch: int) -> bool:
        period = self.every if self.every > 0 else per_epoch
        return step == steps or step % max(1, period) == 0

    def score(self, model) -> float:
        from .trainer import evaluate

        was_training = model.training
        top1, _ = evaluate(model, self.images, self.labels, device=self.device,
                           normalize=self.normalise)
        model.train(was_training)
        return top1

    def update(self, model, step: int, state) -> float:
        """Score `model` at `step`; if it beats the best so far, write `state()` to best.pt."""
        from .checkpoint import save_atomic

        acc = self.score(model)
        if acc > self.best:
            self.best, self.best_step = acc, step
            save_atomic(state(), self.path)
        return acc

    def restore(self, model) -> None:
        """Load the best weights into `model` (the run ends with the selected model)."""
        from .checkpoint import load_checkpoint

        model.load_state_dict(load_checkpoint(self.path)["model"])

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, st: dict) -> None:
        self.best, self.best_step = float(st["best"]), int(st["best_step"])
