"""Classifiers loaded for evaluation from a training checkpoint alone.

A checkpoint carries the model's architecture (model, num_classes, heads), its weights, the step
and the training recipe. Evaluation reads only these: it never re-validates the recipe, so a
checkpoint stays usable after its training folder, generator or init weights moved or were
deleted. The evaluation image size defaults to the training size (32 for the built-in digits,
`image_size` for folder training) and inputs are normalised the way the trainer normalised them:
the checkpoint config's `normalize` (half or imagenet mean/std; checkpoints written before the
key existed were trained with half, (x - 0.5) / 0.5).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

__all__ = ["Classifier", "load_classifier", "parse_checkpoint_args"]

DIGITS_SIZE = 32


@dataclasses.dataclass
class Classifier:
    """A trained model ready for inference: `logits(x01)` takes images in [0, 1] (N, 3, H, W)."""

    name: str
    path: str
    model: torch.nn.Module
    step: int
    num_classes: int
    heads: str
    size: int              # the training image size
    data: str              # the training data spec (for the record; never opened)
    normalize: str = "half"   # the trainer's input normalisation (classifier.normalise.NORMALIZATIONS)

    def __post_init__(self):
        from ..classifier.normalise import make_normaliser

        self.normalise = make_normaliser(self.normalize)   # the trainer's own function

    @property
    def mean(self) -> tuple:
        from ..classifier.normalise import NORMALIZATIONS
        return tuple(NORMALIZATIONS[self.normalize][0])

    @property
    def std(self) -> tuple:
        from ..classifier.normalise import NORMALIZATIONS
        return tuple(NORMALIZATIONS[self.normalize][1])

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def logits(self, x, *, head: str = "mean", batch_size: int = 256) -> torch.Tensor:
        """Logits (N, C) of images x: uint8 (0..255) or float in [0, 1], in batches; `head`
        picks one head of an ensemble (shape / texture / background) instead of their mean."""
        from ..classifier.models import MECHANISMS

        if head != "mean" and (self.heads != "ensemble" or head not in MECHANISMS):
            raise ValueError(f"head {head!r} needs an ensemble checkpoint and one of "
                             f"{MECHANISMS}; {self.name} has heads={self.heads}")
        self.model.eval()
        out = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(self.device)
            xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
            xb = self.normalise(xb)
            if head == "mean":
                out.append(self.model(xb).float())
            else:
                out.append(self.model(xb, heads=True)[MECHANISMS.index(head)].float())
        return torch.cat(out) if out else torch.empty(0, self.num_classes)


def load_classifier(path, *, name: str | None = None, device="cpu") -> Classifier:
    """The classifier of a genint-fast training checkpoint, built from the checkpoint alone."""
    from ..classifier.models import build_model
    from ..classifier.normalise import NORMALIZATIONS, resolve_normalize
    from ..classifier.weights import load_checkpoint

    st = load_checkpoint(path)
    cfg = st.get("config") or {}
    missing = [k for k in ("model", "num_classes") if k not in cfg] + \
        ([] if "model" in st else ["model weights"])
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; pass a checkpoint written by "
                         "genint-fast train")
    heads = cfg.get("heads", "single")
    model = build_model(cfg["model"], int(cfg["num_classes"]), heads)
    try:
        model.load_state_dict(st["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path}: its weights do not fit its own model config ({first})") \
            from None
    data = str(cfg.get("data", ""))
    size = int(cfg.get("image_size", 224)) if data.startswith("folder:") else DIGITS_SIZE
    norm = cfg.get("normalize", "half")      # older checkpoints: the trainer's half then
    if norm == "auto":                       # not written by the trainer (it resolves auto)
        norm = resolve_normalize("auto", data, str(cfg["model"]))
    if norm not in NORMALIZATIONS:
        raise ValueError(f"{path} has normalize={norm!r}; expected one of "
                         f"{', '.join(NORMALIZATIONS)} (pass a checkpoint written by "
                         "genint-fast train)")
    model.to(torch.device(device)).eval()
    return Classifier(name=name or _default_name(path), path=str(path), model=model,
                      step=int(st.get("step", 0)), num_classes=int(cfg["num_classes"]),
                      heads=heads, size=size, data=data, normalize=norm)


def _default_name(path) -> str:
    p = Path(path)
    return p.parent.name if p.name == "checkpoint.pt" and p.parent.name else p.stem


def parse_checkpoint_args(items, *, device="cpu") -> list[Classifier]:
    """`--checkpoint` values: PATH or NAME=PATH (the row name in the report); names unique."""
    out, seen = [], set()
    for item in items:
        name, sep, path = str(item).partition("=")
        if not sep or not name or "/" in name:
            name, path = None, str(item)
        clf = load_classifier(path, name=name, device=device)
        if clf.name in seen:
            raise ValueError(f"two checkpoints are named {clf.name!r}; name them with "
                             "NAME=PATH")
        seen.add(clf.name)
        out.append(clf)
    return out
