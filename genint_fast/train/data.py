"""The trainer's real data: the built-in digits in memory (RealData) and an image folder decoded per
batch (FolderData), with one interface: batch(step), augment_like_real, random_images, epoch_of.
Each batch is a pure function of (seed, step) through `step_seed`, which exact resume relies on.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from .config import TrainConfig, parse_data_spec
from .producer import step_seed

__all__ = ["RealData", "FolderData", "load_digits_split", "random_crop_flip"]

# torchvision's random transforms draw from the global torch RNG: every per-step re-seeding of
# it (fork_rng + manual_seed) holds this lock, so producer threads cannot interleave.
_GLOBAL_RNG_LOCK = threading.Lock()

def _gen(seed: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def load_digits_split(cfg: TrainConfig, split: str, n: int | None = None, *, nuisance=False):
    """(images, labels) of a built-in split, plus its nuisance ids (N, 2) if asked."""
    from ..data.digits import make_biased_digits

    variant, rho = parse_data_spec(cfg.data)
    if variant == "folder":
        raise ValueError("the run trained on an image folder; evaluate with --folder DIR")
    ds = make_biased_digits(variant, split, rho, seed=cfg.data_seed, n=n)
    return (ds.images, ds.labels, ds.nuisance) if nuisance else (ds.images, ds.labels)


class RealData:
    """Real images (uint8 N,3,H,W) kept on the device; batch(step) is a pure function of
    (seed, step). With rank/world > 1 each rank takes every world-th index of the epoch's
    permutation (disjoint shards)."""

    prefetch = False

    def __init__(self, images, labels, *, batch_size, seed, device, augment=True, rank=0,
                 world=1, autoaugment=None, flip=False):
        self.flip = bool(flip)
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.n = self.images.shape[0]
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.augment, self.rank, self.world = augment, rank, world
        self.size = tuple(self.images.shape[-2:])
        self.autoaugment = None
        if autoaugment is not None:   # torchvision's policy, drawn per image
            from torchvision.transforms import v2
            self.autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy(autoaugment))
        self.per_epoch = (self.n // world) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size {batch_size} x {world} rank(s) is larger than the "
                             f"{self.n} training images")
        self._perm_epoch, self._perm = None, None

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def indices(self, step: int) -> torch.Tensor:
        """The training-set indices of the batch of `step`."""
        epoch, i = divmod(step, self.per_epoch)
        if self._perm_epoch != epoch:
            perm = torch.randperm(self.n, generator=_gen(step_seed(self.seed, epoch, "perm"),
                                                           "cpu"))
            self._perm = perm[self.rank::self.world].to(self.device)
            self._perm_epoch = epoch
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]

    def batch(self, step: int):
        idx = self.indices(step)
        raw = self.images[idx]
        if self.autoaugment is not None:
            # AutoAugment draws from the global torch RNG: fork it and seed it per step.
            with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
                torch.manual_seed(step_seed(self.seed, step, "autoaugment"))
                raw = torch.stack([self.autoaugment(img) for img in raw])
        x = raw.float().div_(255)
        if self.augment:
            x = random_crop_flip(x, _gen(step_seed(self.seed, step, "aug"), "cpu"), flip=self.flip)
        return x, self.labels[idx]

    def augment_like_real(self, x, step: int, stream: str):
        """The real stream's augmentation (random crop of the 4-padded image, + flip if on)
        applied to images x in [0, 1] of another stream, seeded by (seed, step, stream)."""
        if not self.augment:
            return x
        return random_crop_flip(x, _gen(step_seed(self.seed, step, f"aug-{stream}"), "cpu"),
                                flip=self.flip)

    def random_images(self, step: int, n: int, stream: str):
        """n real images in [0, 1] drawn uniformly (with replacement, no augmentation) by a
        pure function of (seed, step, stream): content and style images of the transfer."""
        g = _gen(step_seed(self.seed, step, f"{stream}{self.rank}"), "cpu")
        idx = torch.randint(self.n, (n,), generator=g).to(self.device)
        return self.images[idx].float().div_(255), self.labels[idx]


class FolderData:
    """Real images from an image-folder tree (validated once with genint_fast.data), with the
    RealData interface: batch(step) decodes its files in a thread pool and augments them
    (random resized crop + flip, or resize + centre crop) under a per-step seed, so it is a
    pure function of (seed, step) like the in-memory data. The trainer prefetches it with a
    Producer."""

    prefetch = True

    def __init__(self, root, *, batch_size, seed, device, size, augment=True, rank=0, world=1,
                 autoaugment=None, threads=4, log=None):
        from concurrent.futures import ThreadPoolExecutor

        from torchvision.transforms import v2

        from ..data.folder import ImageFolder
        from ..data.loader import CROP_RATIO, CROP_SCALE

        self.folder = ImageFolder(root, threads=threads, warn=log or (lambda msg: None))
        self.classes, self.files = self.folder.classes, self.folder.files
        self.labels, self.skipped = self.folder.labels, self.folder.skipped
        self.n = len(self.files)
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.rank, self.world, self.size = rank, world, (size, size)
        self.per_epoch = (self.n // world) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size {batch_size} x {world} rank(s) is larger than the "
                             f"{self.n} readable images under {root}")
        self.train_tf = (v2.Compose([v2.RandomResizedCrop(self.size, scale=CROP_SCALE,
                                                          ratio=CROP_RATIO, antialias=True),
                                     v2.RandomHorizontalFlip()]) if augment else None)
        self.eval_tf = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(self.size)])
        self.autoaugment = (v2.AutoAugment(v2.AutoAugmentPolicy(autoaugment))
                            if autoaugment is not None else None)
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self._perm_epoch, self._perm = None, None

    def epoch_of(self, step):
        return step // self.per_epoch

    def _decode(self, idx):
        return self.folder.read_many(idx, self.pool)

    def _stack(self, imgs, step, train, stream):
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):   # see _GLOBAL_RNG_LOCK
            torch.manual_seed(step_seed(self.seed, step, stream))
            out = []
            for img in imgs:
                if train and self.autoaugment is not None:
                    img = self.autoaugment(img)
                img = (self.train_tf if train and self.train_tf is not None
                       else self.eval_tf)(img)
                out.append(img)
        return torch.stack(out).to(self.device).float().div_(255)

    def batch(self, step: int):
        epoch, i = divmod(step, self.per_epoch)
        if self._perm_epoch != epoch:
            perm = torch.randperm(self.n, generator=_gen(step_seed(self.seed, epoch, "perm"),
                                                           "cpu"))
            self._perm, self._perm_epoch = perm[self.rank::self.world], epoch
        idx = self._perm[i * self.batch_size:(i + 1) * self.batch_size].tolist()
        x = self._stack(self._decode(idx), step, True, "aug")
        return x, self.labels[idx].to(self.device)

    def augment_like_real(self, x, step: int, stream: str):
        """The real stream's random resized crop + flip, per image, on images x in [0, 1] of
        another stream (already at the training size), seeded by (seed, step, stream)."""
        if self.train_tf is None:
            return x
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, step, f"aug-{stream}"))
            return torch.stack([self.train_tf(img) for img in x])

    def random_images(self, step: int, n: int, stream: str):
        g = _gen(step_seed(self.seed, step, f"{stream}{self.rank}"), "cpu")
        idx = torch.randint(self.n, (n,), generator=g).tolist()
        return (self._stack(self._decode(idx), step, False, stream),
                self.labels[idx].to(self.device))


def random_crop_flip(x, g: torch.Generator, pad=4, flip=True):
    """Per-image random crop of the zero-padded image (pad 4) and, if flip, horizontal flip
    (p = 0.5)."""
    b, _, h, w = x.shape
    offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=g).tolist()
    flips = (torch.rand(b, generator=g) < 0.5).tolist() if flip else [False] * b
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.stack([xp[j, :, oy:oy + h, ox:ox + w] for j, (oy, ox) in enumerate(offs)])
    flip_idx = [j for j, f in enumerate(flips) if f]
    if flip_idx:
        out[flip_idx] = out[flip_idx].flip(-1)
    return out
