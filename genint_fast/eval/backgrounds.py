"""Background gap on ImageNet-9 (Xiao et al. 2020, "Noise or Signal: The Role of Image Backgrounds
in Object Recognition"), the test CGN reports.

A 1000-way model's top-1 ImageNet class is mapped to one of the 9 IN-9 classes with the
backgrounds challenge's in_to_in9.json (shipped here as resources/in9_map.json); a top-1 class
outside the 9 counts as wrong. A model with exactly 9 outputs is scored directly. Accuracies are
in percent over the true number of images. BG-Gap = acc(mixed_same) - acc(mixed_rand), as
defined in the MadryLab/backgrounds_challenge README ("the difference between Mixed-Same and
Mixed-Rand") and computed so in CGN's imagenet/train_classifier.py (validate_in_9).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = [
    "IN9_CLASSES", "VARIANTS", "IN9_MEAN", "IN9_STD", "load_in9_map", "in9_class_from_folder",
    "in9_predictions", "count_correct", "accuracy", "background_gap",
]

# Folder order 00_dog .. 08_fish (ImageFolder's sorted order gives the same ids).
IN9_CLASSES = ("dog", "bird", "wheeled vehicle", "reptile", "carnivore", "insect",
               "musical instrument", "primate", "fish")
VARIANTS = ("original", "mixed_same", "mixed_rand")
# IN-9 pixel statistics (MadryLab/backgrounds_challenge tools/datasets.py, ImageNet9). The
# challenge normalises a 1000-way model with ImageNet's mean/std and an IN-9-trained one with
# these; CGN's loader (imagenet/dataloader.py, Imagenet9) used these for its ImageNet model too.
# IN-9 images are already 224x224, so no resize or crop is applied in either.
IN9_MEAN = (0.4717, 0.4499, 0.3837)
IN9_STD = (0.2600, 0.2516, 0.2575)

_NUM_IMAGENET = 1000


def load_in9_map(path=None) -> torch.Tensor:
    """LongTensor (1000,): ImageNet index -> IN-9 class 0..8, or -1. path None loads the shipped
    resources/in9_map.json; a file may also be the challenge's own in_to_in9.json
    ({"<index>": class, ...}) or a JSON list of 1000 ints."""
    from ..io import read_json

    data, where = read_json(path, "IN-9 map", shipped="in9_map.json")

    table = [-1] * _NUM_IMAGENET
    try:
        if isinstance(data, list):
            if len(data) != _NUM_IMAGENET:
                raise ValueError
            table = [int(v) for v in data]
        elif isinstance(data, Mapping) and "ranges" in data:
            classes = list(data.get("classes", IN9_CLASSES))
            for name, ranges in data["ranges"].items():
                k = classes.index(name)
                for a, b in ranges:
                    if not 0 <= int(a) <= int(b) < _NUM_IMAGENET:
                        raise ValueError
                    for i in range(int(a), int(b) + 1):
                        table[i] = k
        elif isinstance(data, Mapping):
            for i, v in data.items():
                if not 0 <= int(i) < _NUM_IMAGENET:
                    raise ValueError
                table[int(i)] = int(v)
        else:
            raise ValueError
    except (ValueError, TypeError, IndexError, KeyError):
        raise ValueError(f"{where} is not an IN-9 map; give {{\"<imagenet index>\": class}}, a list "
                         "of 1000 ints, or the shipped ranges format.") from None
    out = torch.tensor(table, dtype=torch.long)
    if int(out.min()) < -1 or int(out.max()) > len(IN9_CLASSES) - 1:
        raise ValueError(f"{where} maps to classes outside -1..8; IN-9 has 9 classes (0..8, -1 = none).")
    return out


def in9_class_from_folder(name) -> int:
    """IN-9 class id from a folder name such as '03_reptile'."""
    m = re.fullmatch(r"0*(\d+)_.+", str(name))
    if m is None or int(m.group(1)) >= len(IN9_CLASSES):
        raise ValueError(f"folder {name!r} is not an IN-9 class folder; expected 00_dog .. 08_fish.")
    return int(m.group(1))


@torch.no_grad()
def in9_predictions(logits, in9_map=None) -> torch.Tensor:
    """9-way predictions (N,) from logits (N, 1000) via the map (argmax, then map; -1 = not an
    IN-9 class, always wrong), or from (N, 9) logits directly (in9_map ignored)."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("logits must be a 2-D tensor (images x classes).")
    top = logits.argmax(1).cpu()
    if logits.shape[1] == len(IN9_CLASSES):
        return top
    if logits.shape[1] != _NUM_IMAGENET:
        raise ValueError(f"logits have {logits.shape[1]} classes; IN-9 scoring needs 1000 "
                         "(ImageNet, mapped) or 9 (trained on IN-9).")
    table = load_in9_map() if in9_map is None else torch.as_tensor(in9_map, dtype=torch.long).cpu()
    if table.shape != (_NUM_IMAGENET,):
        raise ValueError("in9_map must hold 1000 entries; load it with load_in9_map().")
    return table[top]


def count_correct(pred9, targets9) -> tuple[int, int]:
    """(correct, n) for one batch; sum these over batches and divide once."""
    p = torch.as_tensor(pred9).reshape(-1).cpu()
    t = torch.as_tensor(targets9).reshape(-1).cpu()
    if p.numel() != t.numel():
        raise ValueError(f"{p.numel()} predictions but {t.numel()} targets; give one per image.")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= len(IN9_CLASSES)):
        raise ValueError("IN-9 targets must lie in 0..8; read them from the 00_dog .. 08_fish folders.")
    return int((p == t).sum()), int(t.numel())


def accuracy(pred9, targets9) -> float:
    """Top-1 accuracy in percent over the number of images given. (CGN's eval_bg_gap divides by
    batch_size x number of batches, which undercounts when the last batch is partial.)"""
    correct, n = count_correct(pred9, targets9)
    if n == 0:
        raise ValueError("no images to score; check that the IN-9 folders were found.")
    return 100.0 * correct / n


def background_gap(acc) -> dict:
    """acc: {"original"?: %, "mixed_same": %, "mixed_rand": %} -> the same plus "bg_gap" =
    mixed_same - mixed_rand, in percentage points."""
    if not isinstance(acc, Mapping):
        raise ValueError("acc must be a mapping variant -> accuracy in percent.")
    for v in ("mixed_same", "mixed_rand"):
        if v not in acc:
            raise ValueError(f"the BG-gap needs the {v} accuracy; evaluate that IN-9 variant too.")
    out = {}
    for v, a in acc.items():
        if v not in VARIANTS:
            raise ValueError(f"unknown IN-9 variant {v!r}; use {', '.join(VARIANTS)}.")
        a = float(a)
        if not 0.0 <= a <= 100.0:
            raise ValueError(f"{v} accuracy {a} is outside 0..100; give accuracies in percent.")
        out[v] = a
    out = {v: out[v] for v in VARIANTS if v in out}
    out["bg_gap"] = out["mixed_same"] - out["mixed_rand"]
    return out
