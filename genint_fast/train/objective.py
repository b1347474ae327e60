"""The GenInt objective (SPEC section 6):
L = CE(phi(X), Y) + lambda1 * CE(phi(X_int), Y') + lambda2 * CE(phi(X_itr), Y'').

Streams go through one concatenated forward (shared batch-norm statistics, as the reference
code) or one forward each; there is one mean cross-entropy per stream, reported per stream."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Stream", "stream_losses"]


@dataclass
class Stream:
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    weight: float = 1.0
    # mixup: second labels and the mixing coefficient (loss lam*CE(y) + (1-lam)*CE(y2))
    labels2: torch.Tensor | None = None
    lam: float = 1.0


def _ce(logits, s: Stream):
    loss = F.cross_entropy(logits.float(), s.labels)
    if s.labels2 is not None:
        loss = s.lam * loss + (1.0 - s.lam) * F.cross_entropy(logits.float(), s.labels2)
    return loss


def stream_losses(model, streams, *, concat=True):
    """(total, {name: CE}) for the non-empty streams; total = sum weight * CE."""
    streams = [s for s in streams if s.images.shape[0] > 0]
    if not streams:
        raise ValueError("no stream has any images")
    if concat and len(streams) > 1:
        logits = model(torch.cat([s.images for s in streams]))
        parts = logits.split([s.images.shape[0] for s in streams])
    else:
        parts = [model(s.images) for s in streams]
    per = {s.name: _ce(p, s) for s, p in zip(streams, parts)}
    total = sum(s.weight * per[s.name] for s in streams)
    return total, per
