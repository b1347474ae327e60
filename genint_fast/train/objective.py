"""The GenInt objective (SPEC section 6):
L = CE(phi(X), Y) + lambda1 * CE(phi(X_int), Y') + lambda2 * CE(phi(X_itr), Y'').

Streams go through one concatenated forward (shared batch-norm statistics, as the reference
code) or one forward each; there is one mean cross-entropy per stream, reported per stream.

Counterfactual streams (CGN) carry the three mechanism labels (shape, texture, background).
With a single-head model they are trained on the shape label (the image's label). With CGN's
invariant ensemble (models.EnsembleModel) a stream with mechanism labels trains each head on its
own mechanism's label (the sum of the three CEs), and every other stream trains the mean of the
heads' logits on its label."""
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
    # counterfactuals: (B, 3) labels [shape, texture, background]; labels = the shape column
    head_labels: torch.Tensor | None = None
    # a loss of (logits, stream) other than the mean CE (e.g. Group DRO's robust loss)
    loss_fn: object = None


def _ce(logits, s: Stream):
    loss = F.cross_entropy(logits.float(), s.labels)
    if s.labels2 is not None:
        loss = s.lam * loss + (1.0 - s.lam) * F.cross_entropy(logits.float(), s.labels2)
    return loss


def _ensemble_ce(head_logits, s: Stream):
    """head_logits (3, B, C): per-head CE on the mechanism labels, else CE of the mean."""
    if s.head_labels is None:
        return _ce(head_logits.mean(0), s)
    return sum(F.cross_entropy(head_logits[k].float(), s.head_labels[:, k])
               for k in range(head_logits.shape[0]))


def stream_losses(model, streams, *, concat=True, ensemble=False):
    """(total, {name: CE}) for the non-empty streams; total = sum weight * CE. ensemble=True:
    `model(x, heads=True)` returns (heads, B, C) logits (see the module docstring)."""
    streams = [s for s in streams if s.images.shape[0] > 0]
    if not streams:
        raise ValueError("no stream has any images")
    fwd = (lambda x: model(x, heads=True)) if ensemble else model
    dim = 1 if ensemble else 0
    if concat and len(streams) > 1:
        logits = fwd(torch.cat([s.images for s in streams]))
        parts = logits.split([s.images.shape[0] for s in streams], dim=dim)
    else:
        parts = [fwd(s.images) for s in streams]
    ce = _ensemble_ce if ensemble else _ce
    per = {s.name: (s.loss_fn or ce)(p, s) for s, p in zip(streams, parts)}
    total = sum(s.weight * per[s.name] for s in streams)
    return total, per
