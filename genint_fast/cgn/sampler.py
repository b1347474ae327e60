"""The counterfactual sampler: batches of CGN counterfactuals with the intervention sampler's
iterator interface (next(sampler) / sample(b) -> (images in [-1, 1], labels, record)).

Each batch: b / per_mask shape classes, one mask per (noise, shape class); for each mask
`per_mask` redraws of texture and background with fresh noise and their own classes. Classes are
drawn uniformly and independently for the three mechanisms ("uniform"), or, as the reference
code, texture and background classes are random permutations of the batch's shape classes
("permute"). The image's label is the shape class; the record keeps all three. Everything is
drawn from one torch.Generator on the CGN's device, so a seed reproduces the stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .small import SmallCGN, composite

__all__ = ["CounterfactualRecord", "CounterfactualSampler", "counterfactual_sheet",
           "mask_statistics", "decomposition_warnings"]


@dataclass
class CounterfactualRecord:
    """The classes behind each counterfactual: shape (= the label), texture, background."""

    shape: torch.Tensor
    texture: torch.Tensor
    background: torch.Tensor

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def labels(self) -> torch.Tensor:
        """(B, 3) int64: [shape, texture, background]."""
        return torch.stack([self.shape, self.texture, self.background], dim=1)

    def rows(self) -> list:
        s, t, b = self.shape.tolist(), self.texture.tolist(), self.background.tolist()
        return [{"label": s[i], "shape": s[i], "texture": t[i], "background": b[i]}
                for i in range(len(s))]


class CounterfactualSampler:
    """Endless iterator of counterfactual batches (images, shape labels, CounterfactualRecord).

    Args: cgn (SmallCGN, put in eval()), batch_size, per_mask (counterfactuals per mask, >= 1),
    labels "uniform" (independent classes) or "permute" (reference code), classes (restrict the
    classes to these ids; default all), seed.
    """

    def __init__(self, cgn: SmallCGN, *, batch_size=64, per_mask=1, labels="uniform", seed=0,
                 classes=None):
        if not isinstance(cgn, SmallCGN):
            raise TypeError("cgn must be a genint_fast.cgn.SmallCGN (see genint_fast.cgn.load_cgn)")
        if int(batch_size) < 1 or int(per_mask) < 1:
            raise ValueError(f"batch_size and per_mask must be >= 1, got {batch_size}, {per_mask}")
        if labels not in ("uniform", "permute"):
            raise ValueError(f'labels must be "uniform" or "permute", got {labels!r}')
        self.cgn = cgn.eval()
        self.batch_size, self.per_mask, self.label_mode = int(batch_size), int(per_mask), labels
        self.seed = int(seed)
        self.device = cgn.device
        self.rng = torch.Generator(device=self.device).manual_seed(self.seed)
        self.classes = None
        if classes is not None:
            self.classes = torch.as_tensor(classes, dtype=torch.long, device=self.device)
            if self.classes.dim() != 1 or self.classes.numel() == 0 or \
                    int(self.classes.min()) < 0 or int(self.classes.max()) >= cgn.num_classes:
                raise ValueError(f"classes must be a non-empty list of ids in "
                                 f"[0, {cgn.num_classes})")

    def _classes(self, n):
        if self.classes is None:
            return torch.randint(self.cgn.num_classes, (n,), generator=self.rng,
                                 device=self.device)
        return self.classes[torch.randint(self.classes.numel(), (n,), generator=self.rng,
                                          device=self.device)]

    def _permuted(self, y):
        return y[torch.randperm(y.shape[0], generator=self.rng, device=self.device)]

    @torch.no_grad()
    def sample(self, batch_size=None):
        b = self.batch_size if batch_size is None else int(batch_size)
        cgn, k = self.cgn, self.per_mask
        n_masks = -(-b // k)
        y_shape = self._classes(n_masks)
        mask = cgn.mask(cgn.sample_noise(n_masks, self.rng), y_shape)
        y_shape = y_shape.repeat_interleave(k)[:b]
        mask = mask.repeat_interleave(k, dim=0)[:b]
        if self.label_mode == "uniform":
            y_tex, y_bg = self._classes(b), self._classes(b)
        else:
            y_tex, y_bg = self._permuted(y_shape), self._permuted(y_shape)
        f = cgn.textures(cgn.sample_noise(b, self.rng), y_tex, self.rng, which="texture")
        bg = cgn.textures(cgn.sample_noise(b, self.rng), y_bg, self.rng, which="background")
        images = composite(mask, f, bg)
        return images, y_shape, CounterfactualRecord(y_shape, y_tex, y_bg)

    def __iter__(self):
        return self

    def __next__(self):
        return self.sample()

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "seed": self.seed}

    def load_state_dict(self, state) -> None:
        self.rng.set_state(state["rng"])


@torch.no_grad()
def mask_statistics(cgn: SmallCGN, n=500, seed=0) -> dict:
    """Mean mask value (overall and per class), share of near-binary pixels (< 0.1 or > 0.9),
    mean binary entropy (bits) and mean mask on the outer 2-pixel ring (overall and per class)
    over n masks of uniformly drawn classes (None for a class not drawn): what the report shows
    when CGN falls short."""
    from .train import border_mean, mask_entropy

    g = torch.Generator(device=cgn.device).manual_seed(seed)
    y = torch.randint(cgn.num_classes, (n,), generator=g, device=cgn.device)
    m = cgn.eval().mask(cgn.sample_noise(n, g), y)
    ring = border_mean(m, 2)                     # the outer 2-pixel ring of each mask
    area = m.mean((1, 2, 3))
    by_class = [ring[y == c].mean().item() if (y == c).any() else None
                for c in range(cgn.num_classes)]
    mean_by_class = [area[y == c].mean().item() if (y == c).any() else None
                     for c in range(cgn.num_classes)]
    return {"mean": m.mean().item(), "binary_share": ((m < 0.1) | (m > 0.9)).float().mean().item(),
            "entropy_bits": mask_entropy(m).item(), "mean_by_class": mean_by_class,
            "border_mean": ring.mean().item(), "border_by_class": by_class, "n": n}


# A class's masks "draw background in part" above this mean on the outer 2-pixel ring (object-
# centred digits leave it empty; decomposing CGNs stay at or below 0.02 per class, the wildlife
# default's class 8 masks, which copy the checkerboard background, reach 0.16-0.19) or above this
# many times its digits' stroke share (decomposing CGNs: at most 1.06; that class 8: 1.65-1.86).
PARTIAL_BORDER = 0.1
PARTIAL_AREA_RATIO = 1.5


def decomposition_warnings(stats: dict, foreground_share: float | None = None, *,
                           share_by_class: list | None = None,
                           min_shape_consistency: float = 0.0) -> list:
    """Sentences saying why a CGN's masks look like a failed decomposition (empty list: none):
    masks that cover the image border (the background of object-centred images), masks far
    larger or smaller than the data's foreground share (when it is known: the built-in digits'
    strokes), almost empty masks, or masks that are not near-binary; and classes whose masks
    draw part of the background (a border ring above PARTIAL_BORDER, or, with share_by_class,
    more than PARTIAL_AREA_RATIO times their digits' stroke share): a partial failure that the
    averages hide and that the classifier learns as a background shortcut; and, when stats
    holds "shape_consistency" and min_shape_consistency > 0, masks that draw other digits than
    the asked ones too often (the areas and borders can look right while the shapes do not)."""
    out = []
    mean, border = stats["mean"], stats.get("border_mean", 0.0)
    rings = stats.get("border_by_class") or []
    framed = [c for c, b in enumerate(rings) if b is not None and b > 0.5]
    if border > 0.5:
        out.append(f"the masks cover the image border (mean mask {border:.2f} on the outer "
                   f"2 pixels): the shape mechanism draws the background, not the object")
    elif framed:
        out.append(f"the masks of {len(framed)} classes ({', '.join(map(str, framed))}) "
                   f"cover the image border (mean mask > 0.5 on the outer 2 pixels): for "
                   f"them the shape mechanism draws the background, not the object")
    if border <= 0.5:
        means = stats.get("mean_by_class") or []
        partial = []
        for c, b in enumerate(rings):
            if b is None or c in framed:
                continue
            big = (share_by_class is not None and c < len(means) and means[c] is not None
                   and len(share_by_class) == len(rings)
                   and means[c] > PARTIAL_AREA_RATIO * share_by_class[c])
            if b > PARTIAL_BORDER or big:
                partial.append(f"{c} ({b:.2f} on the border" +
                               (f", {means[c] / share_by_class[c]:.1f}x its strokes' area)"
                                if big else ")"))
        if partial:
            out.append(f"the masks of class{'es' if len(partial) > 1 else ''} "
                       f"{', '.join(partial)} draw part of the background as well as the "
                       f"object: a classifier trained on the counterfactuals can learn that "
                       f"background as the class")
    if foreground_share is not None and not 0.5 * foreground_share <= mean <= 2 * foreground_share:
        out.append(f"the mean mask ({mean:.2f}) is far from the data's foreground share "
                   f"({foreground_share:.2f})")
    elif mean > 0.6:
        out.append(f"the masks cover most of the image (mean {mean:.2f})")
    if mean < 0.02:
        out.append(f"the masks are almost empty (mean {mean:.3f}): the background mechanism "
                   f"draws the whole image")
    if stats["binary_share"] < 0.6:
        out.append(f"only {stats['binary_share']:.0%} of mask values are near 0 or 1: the "
                   f"mechanisms blend instead of composing")
    sc = stats.get("shape_consistency")
    if min_shape_consistency > 0 and sc is not None and sc < min_shape_consistency:
        out.append(f"a shape reader reads only {sc:.1%} of the masks as the asked digit (bar "
                   f"{min_shape_consistency:.0%}): the shape mechanism draws other classes' "
                   f"shapes, which a classifier trained on the counterfactuals learns as theirs")
    return out


@torch.no_grad()
def counterfactual_sheet(cgn: SmallCGN, path, *, classes=None, cf_rows=None, seed=0) -> Path:
    """One PNG: for each class (columns) the mask, texture, background and composite of one
    factual sample (rows 1-4), then counterfactual rows: for each shape class in cf_rows, that
    class's shape with the texture and background of every class (column j = texture and
    background class j). cf_rows defaults to the first three of `classes`, repeated (with fresh
    shape noise) when there are fewer than three, so the sheet always has 4 + 3 rows."""
    from ..intervene import save_grid

    cgn = cgn.eval()
    dev = cgn.device
    classes = list(range(cgn.num_classes)) if classes is None else [int(c) for c in classes]
    g = torch.Generator(device=dev).manual_seed(int(seed))
    y = torch.tensor(classes, device=dev)
    n = len(classes)
    if cf_rows is None:
        cf_rows = [classes[i % n] for i in range(3)]
    out = cgn(cgn.sample_noise(n, g), y, g)
    rows = [out.mask.expand(-1, 3, -1, -1) * 2 - 1, out.foreground, out.background, out.image]
    for c in cf_rows:
        u1 = cgn.sample_noise(1, g).expand(n, -1)
        cf = cgn.counterfactual(torch.full((n,), int(c), device=dev), y, y, generator=g,
                                u_shape=u1)
        rows.append(cf.image)
    return save_grid(torch.cat(rows).clamp(-1, 1), path, ncols=n)
