"""Images to evaluate on, streamed in batches of uint8 (N, 3, H, W): a built-in split of the biased
digits or an image-folder tree (sorted class folders = labels), read at the evaluation size.

Every protocol reads its images through `EvalImages.batches`, so corruptions, accuracy and
Grad-CAM see exactly the same pixels, and an ImageNet-sized folder never has to fit in memory.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

__all__ = ["EvalImages", "digits_images", "folder_images", "DIGIT_SPLITS"]

DIGIT_SPLITS = ("train", "val", "test-id", "test-ood", "val-ood")
log = logging.getLogger("genint_fast.eval")


@dataclasses.dataclass
class EvalImages:
    description: dict            # what was read (for the report)
    n: int
    batch_size: int = 256
    classes: list | None = None  # folder class names (label order), None for the digits
    _images: torch.Tensor | None = None
    _labels: torch.Tensor | None = None
    _loader: object = None
    nuisance: torch.Tensor | None = None   # (N, S) nuisance ids of built-in digits (groups)

    def batches(self):
        """Yields (images uint8 (B, 3, H, W), labels int64 (B,), indices int64 (B,)), in order."""
        if self._images is not None:
            for i in range(0, self.n, self.batch_size):
                j = min(i + self.batch_size, self.n)
                yield self._images[i:j], self._labels[i:j], torch.arange(i, j)
            return
        for x, y, idx in self._loader:
            yield x.mul(255).round_().clamp_(0, 255).to(torch.uint8), y, idx

    def files(self, indices) -> list[str]:
        """File paths of folder images (empty names for built-in images)."""
        if self._loader is None:
            return [""] * len(indices)
        return [self._loader.files[int(i)] for i in indices]

    def take(self, n: int):
        """The first n images as one (images, labels) pair (for sheets)."""
        xs, ys = [], []
        for x, y, _ in self.batches():
            xs.append(x)
            ys.append(y)
            if sum(len(v) for v in ys) >= n:
                break
        return torch.cat(xs)[:n], torch.cat(ys)[:n]


def digits_images(data: str, split: str, *, n=None, data_seed=0, batch_size=256) -> EvalImages:
    """A built-in split (`data` = digits:<variant>[:rho]) as uint8 32 x 32 images."""
    from ..data.digits import make_biased_digits
    from ..data.sources import parse_source

    src = parse_source(data, flag="--data")
    if src.is_folder:
        raise ValueError("the built-in splits need --data digits:<variant>[:rho]; for an image "
                         "folder pass --folder DIR")
    if split not in DIGIT_SPLITS:
        raise ValueError(f"--split must be one of {DIGIT_SPLITS}, got {split!r}")
    if n is not None and n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    ds = make_biased_digits(src.variant, split, src.rho, seed=data_seed, n=n)
    return EvalImages(description={"data": data, "split": split, "data_seed": data_seed},
                      n=int(ds.labels.shape[0]), batch_size=batch_size, _images=ds.images,
                      _labels=ds.labels, nuisance=ds.nuisance)


def folder_images(root, *, size: int, crop_fraction: float = 1.0, num_classes=None,
                  num_threads=0, batch_size=256) -> EvalImages:
    """An image-folder tree read with the package's torch loader: the shorter side resized to
    size / crop_fraction, then the centre size x size crop; unreadable files are skipped and
    counted (a warning names the first)."""
    from ..data.loader import make_loader

    if not (isinstance(size, int) and size >= 8):
        raise ValueError(f"--size must be an integer >= 8, got {size!r}")
    loader = make_loader(str(root), loader="torch", batch_size=batch_size, size=size,
                         augment="none",
                         shuffle=False, crop_fraction=crop_fraction, mean=(0.0, 0.0, 0.0),
                         std=(1.0, 1.0, 1.0), num_threads=num_threads, return_index=True)
    if num_classes is not None and len(loader.classes) != num_classes:
        raise ValueError(f"{root} has {len(loader.classes)} class folders but the model has "
                         f"{num_classes} classes; pass the folder the model was trained for")
    return EvalImages(description={"folder": str(root), "size": size,
                                   "crop_fraction": crop_fraction,
                                   "skipped_files": len(loader.skipped)},
                      n=loader.num_files, batch_size=batch_size, classes=list(loader.classes),
                      _loader=loader)
