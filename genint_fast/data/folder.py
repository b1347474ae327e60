"""The one image-folder reader: scan a tree, drop the files Pillow cannot decode (counted, the first
one named), and decode the rest.  Every command that reads an image folder goes through it: the
torch and DALI loaders, the trainer's folder data, `gan`, `cgn`, `transfer`, `eval` (ObjectNet)
and the benchmarks.

    folder = ImageFolder("data/train")                 # root/<class>/<image>.{jpg,jpeg,png}
    folder.files, folder.labels, folder.classes, folder.skipped
    x = folder.read(0)                                  # uint8 (3, H, W)
    batch = folder.resized(32)                          # float [0, 1] (N, 3, 32, 32)

The scan and the cached corrupt-file check are in validate.py; this module owns what a reader does
with them, so the rules (which files count, how a skip is reported, when a folder is refused) are
written once.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .validate import scan_image_folder, validate_files

log = logging.getLogger("genint_fast.data")


def pil_to_tensor(im) -> torch.Tensor:
    """uint8 RGB CHW tensor from a PIL image (16-bit greyscale is scaled to 8 bits, as DALI
    does, instead of Pillow's clipping)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        a = np.repeat(a[..., None], 3, axis=2)
    else:
        a = np.array(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


class ImageFolder:
    """The readable images of an image-folder tree.

    root/<class>/<...>/<image>.{jpg,jpeg,png}, sorted class-folder names giving the labels (as
    torchvision's ImageFolder); `classes` fixes the class list (another split of the same data),
    `ignore_extra` ignores class folders outside it (ObjectNet), `flat` also accepts a folder of
    images without class sub-folders (one class, named after the folder).  Files Pillow cannot
    decode are dropped before the first read (`validate=True`; the check is cached by path, size
    and mtime) and reported once through `warn`; a tree with no readable image is refused with one
    sentence.  Attributes: root, classes, files, labels (int64 tensor), skipped {file: reason}.
    """

    def __init__(self, root, classes=None, *, ignore_extra=False, flat=False, validate=True,
                 cache_path=None, threads=1, use_cache=True, warn=None, what="image folder"):
        self.root = os.path.abspath(str(root))
        classes, files, labels = scan_image_folder(self.root, classes, ignore_extra=ignore_extra,
                                                   flat=flat)
        self.classes = list(classes)
        self.skipped: dict[str, str] = {}
        if validate:
            res = validate_files(self.root, files, cache_path=cache_path,
                                 threads=max(1, int(threads)), use_cache=use_cache)
            self.skipped = res.bad
            if not res.good:
                first, why = next(iter(res.bad.items()))
                raise ValueError(
                    f"{what} {self.root!r}: none of its image files can be decoded "
                    f"({len(files)} files, e.g. {os.path.relpath(first, self.root)}: {why}); "
                    "check them with "
                    f"`genint-fast data validate {self.root}`")
            if res.bad:
                keep = set(res.good)
                labels = [y for f, y in zip(files, labels) if f in keep]
                files = res.good
        self.files: list[str] = list(files)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        if self.skipped:
            (warn or log.warning)(self.skip_message())

    def __len__(self) -> int:
        return len(self.files)

    def skip_message(self) -> str:
        """One line: how many files were skipped, of how many, and the first with its reason."""
        first, why = next(iter(self.skipped.items()))
        return (f"skipped {len(self.skipped)} unreadable image file(s) of "
                f"{len(self.skipped) + len(self.files)} in {self.root}, e.g. "
                f"{os.path.relpath(first, self.root)} ({why})")

    def open(self, i: int):
        """File i as an RGB PIL image (for transforms that work on PIL images)."""
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return im.convert("RGB")

    def read(self, i: int) -> torch.Tensor:
        """File i as a uint8 (3, H, W) tensor."""
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return pil_to_tensor(im)

    def read_many(self, idx, pool=None) -> list[torch.Tensor]:
        """Files idx as uint8 tensors, decoded on `pool` (a concurrent.futures executor) if
        given."""
        idx = [int(i) for i in idx]
        return list(pool.map(self.read, idx)) if pool is not None else [self.read(i) for i in idx]

    def resized(self, size: int, idx=None) -> torch.Tensor:
        """Files idx (default: all) as float images in [0, 1], (N, 3, size, size): the shorter
        side resized to size with Pillow, then the centre crop."""
        from torchvision.transforms import functional as TF

        idx = range(len(self.files)) if idx is None else idx
        out = [TF.to_tensor(TF.center_crop(TF.resize(self.open(i), size), size)) for i in idx]
        return torch.stack(out) if out else torch.empty(0, 3, size, size)
