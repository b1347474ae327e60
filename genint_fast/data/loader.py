"""Real-image loading: a plain PyTorch DataLoader (the default) and an NVIDIA DALI pipeline
(optional: `pip install genint-fast[dali]`) with one interface.

    loader = make_loader("data/train", loader="torch", batch_size=256, size=224,
                         augment="standard", seed=0, shard_id=rank, num_shards=world_size)
    for epoch in range(epochs):
        for images, labels in loader:      # images: float32 NCHW, normalised; labels: int64
            ...

Input: an image-folder tree, root/<class>/<image>.{jpg,jpeg,png}; sorted class-folder names give
the labels.  Before the first epoch every file is validated (decoded once with Pillow; the result
is cached by path, size and mtime, see validate.py); corrupt or unreadable files are skipped and
counted in the log, so one bad file never kills a run.

Epoch semantics (both loaders):
- Iterating over the loader runs one epoch.  In an epoch the valid files are split into
  `num_shards` disjoint shards of floor/ceil(n / num_shards) files; shard `shard_id` yields each of
  its files exactly once, in an order drawn from `seed` (the same seed gives the same order, epoch
  by epoch).  The shards together cover every valid file once per epoch.  With the DALI loader a
  shard moves to the next slice of the shuffled list every epoch (DALI's stick_to_shard=False);
  with the torch loader every epoch draws a fresh permutation of all files and slices it.
- The last partial batch is yielded as a smaller batch (`drop_last=False`) or dropped
  (`drop_last=True`: then up to batch_size - 1 files of the shard are not seen in that epoch).
- Augmentation "standard": random resized crop (area 8-100%, aspect 3/4-4/3) + horizontal flip;
  "additional": standard + rotation (+-15 degrees) + colour jitter (brightness, contrast,
  saturation 0.4, hue 0.1) (SPEC section 6); "none": resize the shorter side to
  size / crop_fraction (default 0.875) and take the centre crop (evaluation).  Then
  normalisation by mean/std (ImageNet's by default).

Decoding: DALI decodes on the CPU (device_id=None) when `device` is the CPU, and with nvJPEG /
the hardware decoder ('mixed') when `device` is a CUDA device; outputs then live on that GPU.
The torch loader decodes with Pillow in `num_threads` worker processes (0: in the main process),
transforms with torchvision.transforms.v2 and moves batches to `device`.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch

from .folder import ImageFolder

log = logging.getLogger("genint_fast.data")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "standard", "additional")
LOADERS = ("dali", "torch")
DEFAULT_LOADER = "torch"   # DALI is an optional extra (pip install genint-fast[dali])
DALI_MISSING = ("the DALI loader needs NVIDIA DALI, which is not installed: pip install "
                "genint-fast[dali] (or use the default torch loader, loader='torch')")

# Augmentation parameters (SPEC section 6; torchvision's defaults for the crop).
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
ROTATE_DEGREES = 15.0
JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
EVAL_CROP_FRACTION = 0.875


def dali_available() -> bool:
    """Whether NVIDIA DALI (the optional extra genint-fast[dali]) can be imported."""
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means it cannot be used
        return False
    return True


def _shard_args(shard_id, num_shards):
    if num_shards is None and shard_id is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1
    shard_id = 0 if shard_id is None else shard_id
    num_shards = 1 if num_shards is None else num_shards
    if not (isinstance(num_shards, int) and num_shards >= 1):
        raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
    if not (isinstance(shard_id, int) and 0 <= shard_id < num_shards):
        raise ValueError(f"shard_id must be an integer in [0, {num_shards}), got {shard_id!r}")
    return shard_id, num_shards


class _FolderLoader:
    """Shared part: scanning, validation, labels, argument checks."""

    name = ""

    def __init__(self, root, *, batch_size, size=224, augment="standard", device="cpu", seed=0,
                 shard_id=None, num_shards=None, num_threads=2, shuffle=True, drop_last=False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, classes=None, validate=True,
                 cache_path=None, return_index=False, crop_fraction=EVAL_CROP_FRACTION):
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(size, int):
            size = (size, size)
        if not (len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size)):
            raise ValueError(f"size must be a positive integer or (height, width), got {size!r}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        if not (isinstance(num_threads, int) and num_threads >= 0):
            raise ValueError(f"num_threads must be a non-negative integer, got {num_threads!r}")
        if not (isinstance(crop_fraction, (int, float)) and 0 < crop_fraction <= 1):
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError("mean and std must have 3 entries each, std > 0")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for but no CUDA GPU is visible")
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda[:N], got {device!r}")
        self.root = os.path.abspath(root)
        self.batch_size = batch_size
        self.size = tuple(size)
        self.augment = augment
        self.seed = int(seed)
        self.shard_id, self.num_shards = _shard_args(shard_id, num_shards)
        self.num_threads = num_threads
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.return_index = return_index
        self.crop_fraction = float(crop_fraction)
        self.epoch = 0

        folder = ImageFolder(root, classes, validate=validate, cache_path=cache_path,
                             threads=num_threads, warn=log.warning)
        self.folder = folder
        self.classes, files, self.skipped = folder.classes, folder.files, folder.skipped
        self.files = files
        self.labels = folder.labels
        counts = torch.bincount(self.labels, minlength=len(self.classes))
        empty = [c for c, k in zip(self.classes, counts.tolist()) if k == 0]
        if empty:
            log.warning("%d class folder(s) in %s have no valid images: %s", len(empty),
                        self.root, empty[:5])
        log.info("%s loader over %s: %d images, %d classes, shard %d/%d", self.name, self.root,
                 len(files), len(self.classes), self.shard_id, self.num_shards)

    @property
    def num_files(self) -> int:
        """Valid files in the whole tree (all shards)."""
        return len(self.files)

    def shard_size(self) -> int:
        """Largest number of files this shard sees in one epoch (shards differ by at most 1)."""
        return math.ceil(len(self.files) / self.num_shards)

    def __len__(self) -> int:
        n = self.shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _out(self, images, index):
        index = index.reshape(-1).to(torch.int64)
        labels = self._labels_on(index.device)[index]
        return (images, labels, index) if self.return_index else (images, labels)

    def _labels_on(self, device):
        # self.labels stays on the CPU; a copy lives next to the batches (e.g. on the GPU).
        cached = getattr(self, "_labels_dev", None)
        if cached is None or cached.device != device:
            cached = self._labels_dev = self.labels.to(device)
        return cached


class DaliImageLoader(_FolderLoader):
    """DALI pipeline over an image folder (see the module docstring)."""

    name = "dali"

    def __init__(self, root, **kw):
        if not dali_available():
            raise RuntimeError(DALI_MISSING)
        if kw.get("num_threads", 2) == 0:
            raise ValueError("the DALI loader needs num_threads >= 1")
        super().__init__(root, **kw)
        self._iter = None

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        gpu = self.device.type == "cuda"
        device_id = (self.device.index if self.device.index is not None
                     else torch.cuda.current_device()) if gpu else None
        decoder_device = "mixed" if gpu else "cpu"
        train = self.augment != "none"
        h, w = self.size
        files = list(self.files)

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads,
                      device_id=device_id, seed=self.seed, prefetch_queue_depth=2)
        def pipe():
            # The reader's "label" is the file index; the class label is looked up from it.
            data, index = fn.readers.file(
                files=files, labels=list(range(len(files))), random_shuffle=self.shuffle,
                shard_id=self.shard_id, num_shards=self.num_shards, stick_to_shard=False,
                pad_last_batch=True, name="Reader")
            if train:
                images = fn.decoders.image_random_crop(
                    data, device=decoder_device, output_type=types.RGB,
                    random_area=list(CROP_SCALE), random_aspect_ratio=list(CROP_RATIO),
                    num_attempts=10)
                images = fn.resize(images, resize_x=w, resize_y=h, antialias=True)
                if self.augment == "additional":
                    images = fn.rotate(images, angle=fn.random.uniform(
                        range=(-ROTATE_DEGREES, ROTATE_DEGREES)), keep_size=True, fill_value=0)
                    b, c, s, hue = (JITTER[k] for k in ("brightness", "contrast", "saturation",
                                                        "hue"))
                    images = fn.color_twist(
                        images, brightness=fn.random.uniform(range=(1 - b, 1 + b)),
                        contrast=fn.random.uniform(range=(1 - c, 1 + c)),
                        saturation=fn.random.uniform(range=(1 - s, 1 + s)),
                        hue=fn.random.uniform(range=(-hue * 360.0, hue * 360.0)))
                mirror = fn.random.coin_flip(probability=0.5)
                crop = None
            else:
                images = fn.decoders.image(data, device=decoder_device, output_type=types.RGB)
                images = fn.resize(images, resize_shorter=round(min(h, w) / self.crop_fraction),
                                   antialias=True)
                mirror = 0
                crop = (h, w)
            images = fn.crop_mirror_normalize(
                images, dtype=types.FLOAT, output_layout="CHW", crop=crop,
                mean=[m * 255.0 for m in self.mean], std=[s * 255.0 for s in self.std],
                mirror=mirror)
            if gpu:
                index = index.gpu()
            return images, index

        policy = LastBatchPolicy.DROP if self.drop_last else LastBatchPolicy.PARTIAL
        self._iter = DALIGenericIterator([pipe()], ["images", "index"], reader_name="Reader",
                                         last_batch_policy=policy, auto_reset=True)

    def __len__(self) -> int:
        if self._iter is None:
            self._build()
        return len(self._iter)

    def __iter__(self):
        if self._iter is None:
            self._build()
        for batch in self._iter:
            d = batch[0]
            yield self._out(d["images"], d["index"])
        self.epoch += 1


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, folder, transform):
        self.folder = folder
        self.transform = transform

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, i):
        try:
            img = self.folder.read(i)
        except Exception as exc:  # noqa: BLE001 - a file that broke after validation
            logging.getLogger("genint_fast.data").warning("skipped unreadable image %s (%s)",
                                                          self.folder.files[i], exc)
            return None
        return self.transform(img), i


def _collate(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    images = torch.stack([b[0] for b in batch])
    index = torch.tensor([b[1] for b in batch], dtype=torch.int64)
    return images, index


class _EpochShardSampler(torch.utils.data.Sampler):
    """Indices of one shard for one epoch: a seeded permutation of all files, sliced."""

    def __init__(self, n, seed, shard_id, num_shards, shuffle):
        self.n, self.seed, self.shard_id, self.num_shards = n, seed, shard_id, num_shards
        self.shuffle = shuffle
        self.epoch = 0

    def indices(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        lo = self.n * self.shard_id // self.num_shards
        hi = self.n * (self.shard_id + 1) // self.num_shards
        return order[lo:hi].tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self):
        n = self.n
        return n * (self.shard_id + 1) // self.num_shards - n * self.shard_id // self.num_shards


class TorchImageLoader(_FolderLoader):
    """The same interface on torch.utils.data.DataLoader + torchvision transforms (v2)."""

    name = "torch"

    def __init__(self, root, **kw):
        super().__init__(root, **kw)
        from torchvision.transforms import v2

        h, w = self.size
        if self.augment == "none":
            ops = [v2.Resize(round(min(h, w) / self.crop_fraction), antialias=True),
                   v2.CenterCrop((h, w))]
        else:
            ops = [v2.RandomResizedCrop((h, w), scale=CROP_SCALE, ratio=CROP_RATIO,
                                        antialias=True)]
            if self.augment == "additional":
                ops += [v2.RandomRotation(ROTATE_DEGREES), v2.ColorJitter(**JITTER)]
            ops += [v2.RandomHorizontalFlip()]
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        self.transform = v2.Compose(ops)
        self.sampler = _EpochShardSampler(len(self.files), self.seed, self.shard_id,
                                          self.num_shards, self.shuffle)
        self._dataset = _FileDataset(self.folder, self.transform)
        self._dl = None

    def _dataloader(self):
        # Built once; worker processes persist across epochs (no start-up cost per epoch).
        # Worker seeds come from `seed`, so augmentations repeat run to run.
        if self._dl is None:
            gen = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, 1]).generate_state(1)[0]))
            workers = self.num_threads > 0
            self._dl = torch.utils.data.DataLoader(
                self._dataset, batch_size=self.batch_size, sampler=self.sampler,
                num_workers=self.num_threads, collate_fn=_collate, drop_last=self.drop_last,
                pin_memory=self.device.type == "cuda", generator=gen,
                persistent_workers=workers, prefetch_factor=4 if workers else None)
        return self._dl

    def __iter__(self):
        self.sampler.epoch = self.epoch  # the sampler runs in this process
        # With num_threads=0 the augmentations run here and draw from torch's global RNG.
        dl = self._dataloader()
        non_blocking = self.device.type == "cuda"
        for batch in dl:
            if batch is None:
                continue
            images, index = batch
            yield self._out(images.to(self.device, non_blocking=non_blocking),
                            index.to(self.device, non_blocking=non_blocking))
        self.epoch += 1

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def make_loader(root: str, *, loader: str = DEFAULT_LOADER, **kwargs) -> _FolderLoader:
    """An image-folder loader; `loader` is "torch" (default) or "dali" (needs the optional extra
    genint-fast[dali]); same interface and arguments: batch_size, size, augment, device, seed,
    shard_id, num_shards, num_threads, shuffle, drop_last, mean, std, classes, validate,
    cache_path, return_index, crop_fraction."""
    if loader == "dali":
        return DaliImageLoader(root, **kwargs)
    if loader == "torch":
        return TorchImageLoader(root, **kwargs)
    raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
