"""Generated training images end to end: the reference code's offline pipeline against the
on-the-fly producer of genint_fast.train, on the same number of images.

Reference-style (the GenInt reference's workflow, built from this package's pieces):
  1. intervened images generated one at a time (batch size 1, fused steer) and written as PNG
     files with their nuisance records (genint_fast.intervene.dump_image_folder);
  2. style transfer one pair at a time (genint_fast.transfer.StyleTransfer): content = a real
     digit image, style = an intervened image read back from its PNG; the result written as PNG;
  3. the training job reads both folders back with the package's torch image-folder loader
     (genint_fast.data.make_loader(loader="torch"): validation pass, Pillow decoding in 2 worker
     processes, no augmentation), one epoch.
On the fly (what `genint-fast train` does in mode genint-transfer): every step one batched
generation of gen_batch intervened images and of tr_batch style images, and one batched transfer
of tr_batch pairs, as Trainer.make_generated does, made ahead in genint_fast.train.producer's
background thread (bounded queue) while the consumer takes the batches; nothing is written.

Both paths produce steps * (gen_batch + tr_batch) images at the generator's resolution, with the
same generator, directions (exact SVD, k = top_k = 20, m = 5, scale 1: the trainer's defaults),
feature network (the small VGG-like net, random weights: the time does not depend on them),
poly2 style loss and L-BFGS with a fixed number of steps (20; the trainer draws from [20, 70]).
CPU: the small 32x32 generator (random weights); with a GPU: biggan-deep-128 (random weights).
Bar (small generator): on the fly >= 10x the reference-style images per second. The note gives
images/s, bytes written, and where the reference-style time goes.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import Row, sync

GEN_BATCH, TR_BATCH = 16, 8          # the trainer's gen_batch_size and transfer_batch_size
K, TOP_K, M, SCALE = 20, 20, 5, 1.0  # the trainer's num_directions, top_k, m, scale


@dataclass
class PathResult:
    """What one path produced: images delivered to the trainer, wall seconds, bytes and PNG
    files written, and named stage times."""

    images: int
    seconds: float
    bytes_written: int = 0
    png_files: int = 0
    stages: dict = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Setup:
    generator: object
    directions: object
    features: object
    content: torch.Tensor          # real images in [0, 1] at the generator's resolution
    content_labels: torch.Tensor
    name: str


def make_setup(device="cpu", generator=None) -> Setup:
    """The generator (default: small32 on CPU, biggan-deep-128 on CUDA, random weights), its
    exact SVD directions, the small feature network and a pool of real content images."""
    from ..data import make_biased_digits
    from ..directions import discover_svd
    from ..features import small_vgg
    from ..generators import load_generator

    device = torch.device(device)
    spec = generator or ("random:biggan-deep-128:0" if device.type == "cuda"
                         else "random:small32:0")
    gen = load_generator(spec, device=device)
    d = discover_svd(gen, K)
    net = small_vgg(seed=0, device=device)
    real = make_biased_digits("wildlife", "train", 0.9, seed=0, n=512)
    size = gen.image_size
    content = real.images.float().div(255)
    if content.shape[-1] != size:
        content = F.interpolate(content, size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True).clamp_(0, 1)
    return Setup(gen, d, net, content.to(device), real.labels.to(device),
                 f"{spec.split(':')[1] if spec.startswith('random:') else spec} {size}px")


def _sampler(setup: Setup, batch_size, seed):
    from ..intervene import InterventionSampler

    return InterventionSampler(setup.generator, setup.directions, top_k=TOP_K, m=M, scale=SCALE,
                               batch_size=batch_size, seed=seed)


def _transfer(setup: Setup, transfer_steps, seed):
    from ..transfer import StyleTransfer

    return StyleTransfer(setup.features, kernel="poly2", optimizer="lbfgs",
                         steps=int(transfer_steps), seed=seed)


def _to01(images):
    """Generator output in [-1, 1] -> [0, 1] (the trainer's _to_real_range at the same size)."""
    return ((images.float() + 1) / 2).clamp_(0, 1)


def _tree_bytes(root: Path):
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), sum(1 for p in files if p.suffix == ".png")


def reference_style(setup: Setup, root, steps, *, gen_batch=GEN_BATCH, tr_batch=TR_BATCH,
                    transfer_steps=20, seed=0, loader_threads=2) -> PathResult:
    """Batch-1 generation to PNG, batch-1 transfer to PNG, read back by the torch loader."""
    from torchvision.utils import save_image

    from ..data import make_loader
    from ..data.folder import ImageFolder
    from ..intervene import dump_image_folder

    root = Path(root)
    n_int, n_tr = steps * gen_batch, steps * tr_batch
    if n_tr > n_int:
        raise ValueError("the reference-style transfer takes its style images from the "
                         "intervened ones: need tr_batch <= gen_batch")
    device = setup.generator.device
    stages = {}
    sync(device)
    t0 = time.perf_counter()
    # 1. intervened images, one per generator call, each written as a PNG.
    dump_image_folder(_sampler(setup, 1, seed), root / "intervened", n_int)
    t1 = time.perf_counter()
    stages["generate+write"] = t1 - t0
    # 2. style transfer, one pair per call; the style image read back from its PNG.
    transfer = _transfer(setup, transfer_steps, seed)
    written = ImageFolder(root / "intervened", validate=False)
    for i in range(min(n_tr, len(written))):
        style = written.read(i).float().div_(255)[None].to(device)
        content = setup.content[i % setup.content.shape[0]][None]
        label = int(setup.content_labels[i % setup.content.shape[0]])
        out = transfer(content, style)
        folder = root / "transferred" / f"{label:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(out[0].float().cpu(), str(folder / f"{i:08d}.png"))
    t2 = time.perf_counter()
    stages["transfer+write"] = t2 - t1
    # 3. the training job reads every image back through the package's torch loader.
    size = setup.generator.image_size
    n = 0
    for sub in ("intervened", "transferred"):
        loader = make_loader(str(root / sub), loader="torch", batch_size=64, size=size,
                             augment="none", crop_fraction=1.0, device=device, seed=seed,
                             num_threads=loader_threads, shuffle=True)
        for x, _ in loader:
            n += x.shape[0]
        del loader
    sync(device)
    t3 = time.perf_counter()
    stages["read back"] = t3 - t2
    nbytes, pngs = _tree_bytes(root)
    return PathResult(n, t3 - t0, nbytes, pngs, stages)


def on_the_fly(setup: Setup, steps, *, gen_batch=GEN_BATCH, tr_batch=TR_BATCH,
               transfer_steps=20, seed=0, queue_size=4) -> PathResult:
    """Batched generation + fused steer and batched transfer per step (Trainer.make_generated,
    mode genint-transfer), made ahead by the trainer's Producer thread; nothing written."""
    from ..train.producer import Producer, step_seed

    device = setup.generator.device
    sampler = _sampler(setup, gen_batch, seed)
    transfer = _transfer(setup, transfer_steps, seed)
    pool = setup.content.shape[0]

    def make(step):
        sampler.rng.manual_seed(step_seed(seed, step, "gen0"))
        images, labels, _ = sampler.sample()
        out = {"intervened": (_to01(images), labels)}
        g = torch.Generator().manual_seed(step_seed(seed, step, "content0"))
        idx = torch.randint(pool, (tr_batch,), generator=g).to(device)
        content, c_labels = setup.content[idx], setup.content_labels[idx]
        style = _to01(sampler.sample(tr_batch)[0])
        transfer.rng.manual_seed(step_seed(seed, step, "transfer0"))
        out["transferred"] = (transfer(content, style).detach(), c_labels)
        return out

    sync(device)
    t0 = time.perf_counter()
    producer = Producer(make, 0, threaded=True, queue_size=queue_size, device=device)
    n = 0
    try:
        for _ in range(steps):
            batch, _wait = producer.get()
            n += sum(v[0].shape[0] for v in batch.values())
    finally:
        producer.close()
    sync(device)
    return PathResult(n, time.perf_counter() - t0)


def compare(device="cpu", quick=False, root=None, setup=None):
    """(reference-style PathResult, on-the-fly PathResult, setup, parameters) on the same number
    of images. root: where the reference-style files go (a temporary folder by default)."""
    device = torch.device(device)
    setup = setup or make_setup(device)
    params = dict(steps=1 if quick else 16, transfer_steps=2 if quick else 20)
    # Warm-up (one-time costs such as the first convolution's kernel choice are not timed).
    on_the_fly(setup, 1, gen_batch=2, tr_batch=1, transfer_steps=1)
    fly = on_the_fly(setup, **params)
    tmp = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="genint_fast_bench_pipeline_")
        root = tmp.name
    try:
        ref = reference_style(setup, os.path.join(root, "reference"), **params)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return ref, fly, setup, params


def run(device="cpu", quick=False):
    device = torch.device(device)
    ref, fly, setup, p = compare(device, quick)
    from ..generators import SmallGenerator

    small = isinstance(setup.generator, SmallGenerator)   # the bar is set on the small generator
    n_int, n_tr = p["steps"] * GEN_BATCH, p["steps"] * TR_BATCH
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in ref.stages.items())
    return [Row(
        f"{ref.images} training images ({n_int} intervened + {n_tr} transferred, "
        f"{p['transfer_steps']} L-BFGS steps), {setup.name}, on the fly (batched, producer "
        f"thread)",
        "reference-style: batch-1 generation and transfer, PNG files, torch loader read-back",
        fly.seconds, ref.seconds, bar=10.0 if small else None,
        note=f"{fly.images_per_s:.1f} vs {ref.images_per_s:.1f} images/s; bytes written "
             f"{fly.bytes_written} vs {ref.bytes_written / 2**20:.2f} MiB ({ref.png_files} PNG "
             f"files); reference-style stages: {stages}")]
