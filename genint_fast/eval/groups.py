"""Group accuracies, the spurious-correlation literature's yardsticks (SpuCo, WILDS, JTT, DFR).

A group is a (class, spurious attribute) pair. On the built-in biased digits the attribute is a
recorded nuisance id (`BiasedDigits.nuisance`): by default the stroke (texture) colour id, slot
0, so there are num_classes x 10 groups; `slot=1` uses the background id instead (double-colored
and wildlife digits), and `slot=None` both ids at once (num_classes x 10 x 10 groups, sparse on a
1000-image split). Groups with no image are left out; groups with fewer than `min_count` images
are counted in the average but reported separately, because one image decides their accuracy.

- worst-group accuracy: the minimum over groups of the group's top-1 accuracy;
- average (group-balanced) accuracy: the mean over groups of the group's accuracy;
- bias-aligned / bias-conflicting accuracy: top-1 on the images whose nuisance ids all equal
  their class (aligned) or none does (conflicting); an id of -1 (a variant without that slot)
  is ignored.
"""
from __future__ import annotations

import torch

__all__ = ["group_ids", "group_accuracy", "bias_split", "format_group_table"]


def _as_long(x, name, *, flat=True):
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got dtype {t.dtype}")
    return t.long().reshape(-1) if flat else t.long()


def group_ids(labels, nuisance, *, slot: int | None = 0, num_ids: int = 10) -> torch.Tensor:
    """Group index of every image: label * num_ids + nuisance[:, slot] (or, for slot None,
    (label * num_ids + id0) * num_ids + id1). nuisance is (N,) or (N, S) of ids in
    [0, num_ids); -1 marks a slot the variant lacks and is refused as a group attribute."""
    labels = _as_long(labels, "labels")
    nz = _as_long(nuisance, "nuisance", flat=False)
    if nz.dim() == 1:
        nz = nz[:, None]
    if nz.shape[0] != labels.shape[0]:
        raise ValueError(f"labels ({labels.shape[0]}) and nuisance ({nz.shape[0]}) must have "
                         "one row per image")
    cols = list(range(nz.shape[1])) if slot is None else [slot]
    if max(cols) >= nz.shape[1] or min(cols) < -nz.shape[1]:
        raise ValueError(f"nuisance slot {slot} does not exist; the data have {nz.shape[1]} "
                         "slot(s)")
    g = labels.clone()
    for c in cols:
        ids = nz[:, c]
        if bool((ids < 0).any()) or bool((ids >= num_ids).any()):
            raise ValueError(f"nuisance slot {c} holds ids outside [0, {num_ids}) (-1: the "
                             "variant has no such nuisance); pick another slot")
        g = g * num_ids + ids
    return g


def group_accuracy(pred, labels, groups, *, min_count: int = 5) -> dict:
    """Worst-group, average and overall top-1 of predictions `pred` (N,) against `labels` (N,)
    over the groups `groups` (N,) (see group_ids); `per_group` maps group index -> (n, acc)."""
    pred, labels, groups = (_as_long(v, k) for v, k in
                            ((pred, "pred"), (labels, "labels"), (groups, "groups")))
    if not (pred.shape == labels.shape == groups.shape):
        raise ValueError(f"pred {tuple(pred.shape)}, labels {tuple(labels.shape)} and groups "
                         f"{tuple(groups.shape)} must have one entry per image")
    if pred.numel() == 0:
        raise ValueError("no images to score")
    hit = (pred == labels).double()
    uniq, inv = torch.unique(groups, return_inverse=True)
    n = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.ones_like(hit))
    acc = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, hit) / n
    per_group = {int(g): (int(c), float(a)) for g, c, a in zip(uniq, n, acc)}
    enough = n >= min_count
    pool = enough if bool(enough.any()) else torch.ones_like(enough)   # all groups are small
    worst = int(torch.argmin(torch.where(pool, acc, torch.inf)))
    return {"overall": float(hit.mean()), "average": float(acc.mean()),
            "worst": float(acc[worst]), "worst_group": int(uniq[worst]),
            "groups": len(uniq), "small_groups": int((~enough).sum()), "min_count": min_count,
            "per_group": per_group}


def bias_split(labels, nuisance) -> tuple[torch.Tensor, torch.Tensor]:
    """(aligned, conflicting) boolean masks: every recorded nuisance id equals the label /
    none does (ids of -1 are ignored)."""
    labels = _as_long(labels, "labels")
    nz = _as_long(nuisance, "nuisance", flat=False)
    if nz.dim() == 1:
        nz = nz[:, None]
    present = nz >= 0
    eq = (nz == labels[:, None]) & present
    aligned = (eq | ~present).all(1) & present.any(1)
    conflicting = (~eq).all(1) & present.any(1)
    return aligned, conflicting


def format_group_table(result: dict, *, num_ids: int = 10, slot_name: str = "nuisance") -> str:
    """A markdown table of the per-group accuracies (rows: class, columns: nuisance id) of a
    group_accuracy result made with slot != None."""
    per = result["per_group"]
    classes = sorted({g // num_ids for g in per})
    head = f"| class \\ {slot_name} | " + " | ".join(str(i) for i in range(num_ids)) + " |"
    lines = [head, "|" + "---|" * (num_ids + 1)]
    for c in classes:
        cells = []
        for i in range(num_ids):
            v = per.get(c * num_ids + i)
            cells.append("" if v is None else f"{100 * v[1]:.0f} ({v[0]})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
