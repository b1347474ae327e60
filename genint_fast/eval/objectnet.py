"""ObjectNet scoring as GenInt evaluated it: a 1000-way ImageNet model on the ObjectNet classes
that overlap ImageNet, an image being right at top-k when any ImageNet class mapped to its
ObjectNet class is among the k best.

Mapping file (JSON): {"<objectnet folder name>": [imagenet index, ...], ...}, indices 0..999 in
the torchvision / PyTorch class order. This is the form of GenInt's own table
(cvlab-columbia/GenInt, training/preprocessing/obj2imgnet_id.txt: 113 folders, 125 indices).
The ObjectNet release's mappings/ folder can be converted with `mapping_from_objectnet_release`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import partial

import torch

__all__ = [
    "DEFAULT_BORDER", "load_mapping", "validate_mapping", "mapping_from_objectnet_release",
    "crop_border", "objectnet_transform", "targets_to_ids", "objectnet_topk",
]

# ObjectNet images carry a thin red frame. Both the ObjectNet authors' loader
# (abarbu/objectnet-template-pytorch, objectnet_pytorch_dataloader.py: crop box (2, 2, w-2, h-2))
# and GenInt (training/data/ObjectnetUtils.py removeBorder: ImageOps.crop with (2, 2, 2, 2), saved
# as the "..._noborder" test folder) remove 2 pixels from every side.
DEFAULT_BORDER = 2


def validate_mapping(mapping, num_classes=1000) -> dict[str, list[int]]:
    """Check a mapping class name -> non-empty list of distinct ints in [0, num_classes)."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError("the ObjectNet mapping must be a non-empty JSON object "
                         '{"folder_name": [imagenet indices], ...}.')
    out = {}
    for name, idx in mapping.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"mapping key {name!r} is not a folder name; keys must be non-empty strings.")
        if isinstance(idx, (str, bytes)) or not isinstance(idx, Sequence) or len(idx) == 0:
            raise ValueError(f"class {name!r} maps to {idx!r}; give a non-empty list of ImageNet indices.")
        vals = []
        for i in idx:
            if isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(f"class {name!r} has index {i!r}; ImageNet indices must be integers.")
            if not 0 <= i < num_classes:
                raise ValueError(f"class {name!r} has index {i}, outside 0..{num_classes - 1}; "
                                 "use 0-based torchvision class indices.")
            if i not in vals:
                vals.append(i)
        out[name] = vals
    return out


def load_mapping(path, num_classes=1000) -> dict[str, list[int]]:
    """Read and validate a JSON mapping {folder_name: [imagenet indices]}; returns it with
    duplicate indices dropped. len() of the result is the number of overlapping classes."""
    from ..io import read_json

    data, _ = read_json(path, "ObjectNet mapping")
    return validate_mapping(data, num_classes)


def mapping_from_objectnet_release(mappings_dir, num_classes=1000) -> dict[str, list[int]]:
    """Build {folder: [pytorch indices]} from the ObjectNet release's mappings/ folder:
    folder_to_objectnet_label.json (folder -> label), objectnet_to_imagenet_1k.json (label ->
    "imagenet name; imagenet name"), imagenet_to_label_2012_v2 (line i = name of ILSVRC-2012 id
    i) and pytorch_to_imagenet_2012_id.json (pytorch index -> ILSVRC-2012 id). Folders whose
    label has no ImageNet counterpart are left out."""
    def read_json(name):
        p = os.path.join(mappings_dir, name)
        try:
            with open(p, encoding="utf-8") as f:
                return json.load(f)
        except OSError:
            raise ValueError(f"{p} is missing; point at the ObjectNet release's mappings folder.") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{p} is not valid JSON ({e.msg}); re-extract the ObjectNet release.") from None

    folder_to_label = read_json("folder_to_objectnet_label.json")
    label_to_names = read_json("objectnet_to_imagenet_1k.json")
    pytorch_to_2012 = read_json("pytorch_to_imagenet_2012_id.json")
    p = os.path.join(mappings_dir, "imagenet_to_label_2012_v2")
    try:
        with open(p, encoding="utf-8") as f:
            names_2012 = [line.strip() for line in f if line.strip()]
    except OSError:
        raise ValueError(f"{p} is missing; point at the ObjectNet release's mappings folder.") from None
    id2012_to_pytorch = {int(v): int(k) for k, v in pytorch_to_2012.items()}
    name_to_pytorch = {}
    for i, name in enumerate(names_2012):
        if i not in id2012_to_pytorch:
            raise ValueError(f"pytorch_to_imagenet_2012_id.json has no entry for ILSVRC id {i}; "
                             "re-extract the ObjectNet release.")
        name_to_pytorch[name] = id2012_to_pytorch[i]
    out = {}
    for folder, label in folder_to_label.items():
        if label not in label_to_names:
            continue
        idx = []
        for name in (n.strip() for n in label_to_names[label].split(";")):
            if name not in name_to_pytorch:
                raise ValueError(f"ImageNet class {name!r} (for {label!r}) is not in "
                                 "imagenet_to_label_2012_v2; re-extract the ObjectNet release.")
            idx.append(name_to_pytorch[name])
        out[folder] = idx
    return validate_mapping(out, num_classes)


def crop_border(img, px=DEFAULT_BORDER):
    """PIL image with `px` pixels removed from each side."""
    px = int(px)
    w, h = img.size
    if px < 0 or 2 * px >= min(w, h):
        raise ValueError(f"cannot crop {px} px from each side of a {w}x{h} image; use a border "
                         "of at least 0 px that leaves some image.")
    return img if px == 0 else img.crop((px, px, w - px, h - px))


def _rgb_crop(img, px):
    return crop_border(img.convert("RGB"), px)


def objectnet_transform(size=224, resize=None, border=DEFAULT_BORDER):
    """PIL image -> float tensor (3, size, size) in [0, 1]: crop `border` px per side, resize the
    short side to `resize` (bilinear), centre-crop `size`. Normalisation is left to the caller.

    resize None follows GenInt's ObjectNet test (training/test.py: Resize(int(256 * 1.4)) = 358,
    then CenterCrop(224)), scaled with size: int(1.6 * size). The ObjectNet authors' template
    (abarbu/objectnet-template-pytorch, model/data_transform_description.py) resizes to 224 instead,
    i.e. resize=size.
    """
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    size = int(size)
    resize = int(1.6 * size) if resize is None else int(resize)
    if size <= 0 or resize < size:
        raise ValueError(f"resize ({resize}) must be at least size ({size}) and size positive.")
    return transforms.Compose([
        partial(_rgb_crop, px=int(border)),   # a partial, not a lambda: DataLoader workers pickle it
        transforms.Resize(resize, interpolation=InterpolationMode.BILINEAR),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
    ])


def targets_to_ids(targets, class_to_indices) -> torch.Tensor:
    """Per-image class ids (positions in sorted(class_to_indices)) from folder names or ids."""
    names = sorted(class_to_indices)
    pos = {n: i for i, n in enumerate(names)}
    if isinstance(targets, torch.Tensor):
        ids = targets.long().reshape(-1)
    else:
        out = []
        for t in targets:
            if isinstance(t, str):
                if t not in pos:
                    raise ValueError(f"image class {t!r} is not in the mapping; evaluate only the "
                                     "ObjectNet folders listed in the mapping file.")
                out.append(pos[t])
            else:
                out.append(int(t))
        ids = torch.tensor(out, dtype=torch.long)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(names)):
        raise ValueError(f"target ids must lie in 0..{len(names) - 1} (sorted mapping keys); "
                         "pass folder names when the image folder holds other classes too.")
    return ids


@torch.no_grad()
def objectnet_topk(logits, targets, class_to_indices, restricted=False, ks=(1, 5)) -> dict:
    """Top-k accuracy (in %) over N images. logits (N, K); targets: N folder names, or ids into
    sorted(class_to_indices). An image counts at top-k if any of its mapped indices is in the k
    best. restricted=True scores only the union of all mapped indices (others set to -inf) -- the
    "ObjectNet-restricted" protocol; GenInt reported the unrestricted one.
    Returns {"top1": .., "top5": .., "n": N} (keys follow ks)."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("logits must be a 2-D tensor (images x classes).")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={ks!r}; give positive k values such as (1, 5).")
    n, k_all = logits.shape
    mapping = validate_mapping(class_to_indices, k_all)
    ids = targets_to_ids(targets, mapping)
    if ids.numel() != n:
        raise ValueError(f"{n} rows of logits but {ids.numel()} targets; give one target per image.")
    if n == 0:
        raise ValueError("no images to score; check that the ObjectNet folders were found.")
    names = sorted(mapping)
    member = torch.zeros(len(names), k_all, dtype=torch.bool)
    for i, name in enumerate(names):
        member[i, mapping[name]] = True
    scores = logits.detach().float().cpu()
    if restricted:
        scores = scores.masked_fill(~member.any(0), float("-inf"))
    kmax = min(max(ks), k_all)
    top = scores.topk(kmax, dim=1).indices                       # (N, kmax), best first
    hit = member[ids][torch.arange(n)[:, None], top]             # (N, kmax)
    out = {f"top{k}": 100.0 * hit[:, :min(k, kmax)].any(1).sum().item() / n for k in ks}
    out["n"] = n
    return out
