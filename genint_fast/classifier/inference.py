"""Accuracy and logits of a classifier on uint8 images, in batches."""
from __future__ import annotations

import torch

from .normalise import make_normaliser

__all__ = ["evaluate", "logits_of"]


@torch.no_grad()
def evaluate(model, images, labels, *, batch_size=256, device="cpu", normalize="half"):
    """(top-1, top-5) accuracy in [0, 1] of `model` on uint8 images, normalised by
    `normalize` (a name: half, the digits' default, or imagenet; or a function of x in [0, 1];
    a trainer's is `trainer.normalise`)."""
    c1 = c5 = 0
    k = 5
    for i, logits in logits_of(model, images, batch_size=batch_size, device=device,
                               normalize=normalize):
        y = labels[i:i + logits.shape[0]].to(device)
        top = logits.topk(min(k, logits.shape[1]), dim=1).indices
        c1 += (top[:, 0] == y).sum().item()
        c5 += (top == y[:, None]).any(dim=1).sum().item()
    n = images.shape[0]
    return c1 / n, c5 / n


@torch.no_grad()
def logits_of(model, images, *, batch_size=256, device="cpu", normalize="half"):
    """Yields (start index, float logits) of uint8 `images` in batches, in eval mode, inputs
    normalised as in `evaluate`."""
    norm = make_normaliser(normalize) if isinstance(normalize, str) else normalize
    model.eval()
    for i in range(0, images.shape[0], batch_size):
        x = norm(images[i:i + batch_size].to(device).float().div_(255))
        yield i, model(x).float()
