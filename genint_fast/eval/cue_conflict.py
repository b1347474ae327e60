"""Shape bias on the cue-conflict stimuli of Geirhos et al. (2019), as CGN reports it.

Stimuli (rgeirhos/texture-vs-shape, stimuli/style-transfer-preprocessed-512) sit in one folder
per shape class and are named <shape><n>-<texture><m>.png, e.g. airplane1-bicycle2.png. A
1000-way model decides among the 16 categories by averaging its softmax probabilities over each
category's ImageNet indices and taking the argmax (texture-vs-shape
code/probabilities_to_decision.py, ImageNetProbabilitiesTo16ClassesMapping, np.mean). Images
whose shape and texture class agree are left out; shape bias = shape hits / (shape hits +
texture hits) -- the rule of CGN's utils/eval_shape_bias/eval.py with the CueConflict loader in
imagenet/dataloader.py (which also resizes to 256 and centre-crops 224, ImageNet normalisation).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

__all__ = [
    "CATEGORIES", "load_cue_conflict_map", "parse_cue_conflict_name", "decisions_16", "shape_bias",
]

# Alphabetical, as get_human_object_recognition_categories() returns them; decision ids index this.
CATEGORIES = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair",
              "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck")
_POS = {c: i for i, c in enumerate(CATEGORIES)}
_NAME = re.compile(r"([a-z]+)\d+-([a-z]+)\d+\.[A-Za-z]+")


def load_cue_conflict_map(path=None) -> dict[str, list[int]]:
    """Category -> ImageNet indices, in CATEGORIES order. path None loads the shipped
    resources/cue_conflict_16.json; a user file is JSON {"categories": {name: [indices]}} or the
    bare {name: [indices]} object, covering all 16 categories."""
    from ..io import read_json

    data, where = read_json(path, "16-class map", shipped="cue_conflict_16.json")
    cats = data.get("categories", data) if isinstance(data, Mapping) else None
    if not isinstance(cats, Mapping) or set(cats) != set(CATEGORIES):
        raise ValueError(f"{where} must map exactly the 16 categories ({', '.join(CATEGORIES)}) "
                         "to lists of ImageNet indices.")
    out = {}
    for c in CATEGORIES:
        idx = cats[c]
        if (not isinstance(idx, list) or not idx
                or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 1000 for i in idx)):
            raise ValueError(f"{where}: {c!r} must list ImageNet indices in 0..999.")
        out[c] = list(idx)
    return out


def parse_cue_conflict_name(filename) -> tuple[str, str]:
    """(shape, texture) from a stimulus file name or path, e.g. 'bear/bear10-oven1.png' ->
    ('bear', 'oven')."""
    base = os.path.basename(str(filename))
    m = _NAME.fullmatch(base)
    if m is None:
        raise ValueError(f"{base!r} is not a cue-conflict file name; expected <shape><n>-<texture><m>.png.")
    shape, texture = m.groups()
    for c in (shape, texture):
        if c not in _POS:
            raise ValueError(f"{base!r} names {c!r}, not one of the 16 categories ({', '.join(CATEGORIES)}).")
    return shape, texture


@torch.no_grad()
def decisions_16(logits, mapping=None) -> torch.Tensor:
    """Category ids (N,) into CATEGORIES. logits (N, 1000): softmax, mean probability per
    category, argmax (ties -> the first category). logits (N, 16): argmax directly, columns in
    CATEGORIES order."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("logits must be a 2-D tensor (images x classes).")
    if logits.shape[1] == len(CATEGORIES):
        return logits.argmax(1).cpu()
    if logits.shape[1] != 1000:
        raise ValueError(f"logits have {logits.shape[1]} classes; the 16-class decision needs 1000 "
                         "(ImageNet) or 16 outputs.")
    mapping = load_cue_conflict_map() if mapping is None else mapping
    if not isinstance(mapping, Mapping) or set(mapping) != set(CATEGORIES):
        raise ValueError("mapping must cover exactly the 16 categories; "
                         "load it with load_cue_conflict_map().")
    prob = torch.softmax(logits.detach().double().cpu(), dim=1)
    agg = torch.stack([prob[:, list(mapping[c])].mean(1) for c in CATEGORIES], dim=1)
    return agg.argmax(1)


def _ids(values, what):
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in _POS:
                raise ValueError(f"{what} {v!r} is not one of the 16 categories ({', '.join(CATEGORIES)}).")
            out.append(_POS[v])
        else:
            i = int(v)
            if not 0 <= i < len(CATEGORIES):
                raise ValueError(f"{what} id {i} is outside 0..15; use CATEGORIES positions or names.")
            out.append(i)
    return out


def shape_bias(decisions, shapes, textures) -> dict:
    """Shape bias (in %) over cue-conflict images. decisions, shapes, textures: per image, category
    names or CATEGORIES ids. Images with shape == texture are excluded; decisions matching
    neither cue count in neither total. shape_bias is NaN when no decision matched a cue."""
    if isinstance(decisions, torch.Tensor):
        decisions = decisions.reshape(-1).tolist()
    d, s, t = _ids(decisions, "decision"), _ids(shapes, "shape"), _ids(textures, "texture")
    if not len(d) == len(s) == len(t):
        raise ValueError(f"{len(d)} decisions, {len(s)} shapes and {len(t)} textures; "
                         "give one of each per image.")
    if not d:
        raise ValueError("no images to score; check that the cue-conflict folder was found.")
    keep = [(di, si, ti) for di, si, ti in zip(d, s, t) if si != ti]
    n_shape = sum(di == si for di, si, _ in keep)
    n_texture = sum(di == ti for di, _, ti in keep)
    hits = n_shape + n_texture
    return {
        "shape_bias": 100.0 * n_shape / hits if hits else float("nan"),
        "shape_decisions": n_shape,
        "texture_decisions": n_texture,
        "n_conflict": len(keep),
        "n_excluded": len(d) - len(keep),
    }
