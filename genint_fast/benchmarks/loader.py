"""Real-image loading: the DALI pipeline against a plain PyTorch DataLoader (Pillow decoding +
torchvision.transforms.v2 in worker processes), timed in the same run.

Data: 10k 64x64 JPEGs (quality 95) in an image-folder tree, made from the wildlife biased-digits
benchmark (quick mode: 2k).  Both loaders: 2 threads (DALI num_threads=2; DataLoader
num_workers=2), batch 256, standard augmentation (random resized crop to 64x64 + flip),
normalised float32 NCHW output.  One call = one full epoch; the first epoch (pipeline build,
worker start-up) is a warm-up and validation is done (and cached) before timing.  On a CUDA
device a second row compares DALI's 'mixed' (nvJPEG) decoding, outputs on the GPU, with the
DataLoader copying its batches to the GPU.
"""
from __future__ import annotations

import os
import tempfile

import torch

from .common import Row, time_fn


def make_jpeg_tree(root: str, n: int, size: int = 64) -> str:
    """n JPEGs of size x size in root/<class>/ (reused when already there)."""
    from ..data.digits import make_biased_digits
    from ..data.export import save_image_folder

    marker = os.path.join(root, f".complete-{n}-{size}")
    if not os.path.exists(marker):
        ds = make_biased_digits("wildlife", "train", 0.9, seed=0, n=n)
        save_image_folder(ds, root, fmt="jpg", size=size, quality=95)
        open(marker, "w").close()
    return root


def _epoch(loader, device):
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n


def run(device="cpu", quick=False, root=None, threads=2, batch_size=256):
    from ..data.loader import dali_available, make_loader

    if not dali_available():
        raise RuntimeError("the loader benchmark compares against NVIDIA DALI, which is not "
                           "installed: pip install genint-fast[dali]")
    device = torch.device(device)
    n = 2000 if quick else 10000
    repeat = 2 if quick else 3
    tmp = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="genint_fast_bench_loader_")
        root = tmp.name
    make_jpeg_tree(root, n)
    cache = os.path.join(root, ".validate.json")
    common = dict(batch_size=batch_size, size=64, augment="standard", seed=0,
                  num_threads=threads, cache_path=cache)
    configs = [("cpu", "DALI, CPU decoding (device_id=None)")]
    if device.type == "cuda":
        configs.append((str(device), "DALI, 'mixed' GPU decoding"))
    rows = []
    try:
        for dev, what in configs:
            d = torch.device(dev)
            dali = make_loader(root, loader="dali", device=dev, **common)
            base = make_loader(root, loader="torch", device=dev, **common)
            assert dali.num_files == base.num_files == n
            t_dali = time_fn(lambda: _epoch(dali, d), device=d, warmup=1, repeat=repeat)
            t_base = time_fn(lambda: _epoch(base, d), device=d, warmup=1, repeat=repeat)
            rows.append(Row(
                f"{what}: epoch of {n} 64x64 JPEGs, standard aug, {threads} threads, "
                f"batch {batch_size}, out on {d.type}",
                f"torch DataLoader ({threads} workers, Pillow + torchvision v2)",
                t_dali, t_base,
                note=f"{n / t_dali:.0f} vs {n / t_base:.0f} images/s"))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return rows
