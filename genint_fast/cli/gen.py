"""`genint-fast gan | directions | generate`: train the small GAN, discover GANSpace directions,
and generate intervened images (a Figure-2 grid and an image-folder dump with nuisance records).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def register(sub) -> None:
    from ..generators import GENERATOR_SPECS

    # ---- gan
    p = sub.add_parser("gan", help="train the small class-conditional 32x32 GAN")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="digits:<colored|double-colored|textured>[:RHO] (built-in biased digits, "
                        "train split) or an image folder (class sub-folders, resized to 32x32)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file (resumed if present)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr-g", type=float, default=2e-4)
    p.add_argument("--lr-d", type=float, default=2e-4)
    p.add_argument("--loss", choices=["hinge", "lsgan"], default="hinge")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--ch", type=int, default=24, help="base width of G and D (default 24)")
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out exists")
    p.add_argument("--samples", metavar="PNG", help="also write a grid of EMA samples")
    _common(p)
    p.set_defaults(func=gan_main)

    # ---- directions
    p = sub.add_parser("directions", help="GANSpace direction discovery (exact SVD or sampled PCA)")
    p.add_argument("--generator", required=True, metavar="SPEC", help=GENERATOR_SPECS)
    p.add_argument("--out", required=True, metavar="FILE", help="directions file (.safetensors)")
    p.add_argument("--k", type=int, default=80, help="number of directions (default 80)")
    p.add_argument("--method", choices=["auto", "svd", "sampled"], default="auto",
                   help="svd: exact where the layer is linear in z; sampled: PCA of N samples")
    p.add_argument("--samples", type=int, default=100_000, help="N for --method sampled")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--class-id", type=int, default=0, help="class of all samples (default 0)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="cap BLAS threads of the PCA (1 is fastest on a busy shared machine)")
    p.add_argument("--seed", type=int, default=0)
    _common(p, cache=True)
    p.set_defaults(func=directions_main)

    # ---- generate
    p = sub.add_parser("generate", help="intervened images: a Figure-2 grid and/or an image folder")
    p.add_argument("--generator", required=True, metavar="SPEC", help=GENERATOR_SPECS)
    p.add_argument("--directions", required=True, metavar="FILE")
    p.add_argument("--grid", metavar="PNG", help="grid: rows = directions, columns = steps")
    p.add_argument("--rows", default=None,
                   help="grid directions, e.g. 0-7 or 0,3,5 (default: the first 8)")
    p.add_argument("--cols", type=int, default=7, help="grid steps (default 7)")
    p.add_argument("--grid-scale", type=float, default=3.0,
                   help="grid steps span [-s, s] standard deviations")
    p.add_argument("--dump", metavar="DIR", help="write an image-folder tree + records.jsonl")
    p.add_argument("--count", type=int, default=1000, help="images to dump (default 1000)")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None,
                   help="choose among the top k directions (default: min(60, k of the file))")
    p.add_argument("--m", type=int, default=None,
                   help="style multi: directions per image (default: min(5, top-k))")
    p.add_argument("--style", choices=["multi", "one"], default="multi",
                   help="multi: m directions added to each image's latent; one (reference "
                        "code): one direction per image, --per-latent images per latent")
    p.add_argument("--per-latent", type=int, default=5,
                   help="style one: images (distinct directions) per base latent (default 5)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="steps U[-s, s] in standard deviations (default 1)")
    p.add_argument("--reference-ranges", action="store_true",
                   help="the reference code's per-direction step table (60 directions, "
                        "genint_fast/resources/reference_ranges.csv) instead of --scale")
    p.add_argument("--mode", choices=["add", "set"], default="add",
                   help="add: a step moves the layer's component by that many of its standard "
                        "deviations; set: sets the latent coordinate, in latent standard "
                        "deviations (reference code)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=list(_DTYPES), default="float32")
    _common(p, cache=True)
    p.set_defaults(func=generate_main)


def _common(p, cache=False):
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    if cache:
        p.add_argument("--cache-dir", default=None,
                       help="pytorch-pretrained-biggan cache (default: its environment variable "
                            "PYTORCH_PRETRAINED_BIGGAN_CACHE or ~/.pytorch_pretrained_biggan)")


def _setup(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} was asked for but no CUDA GPU is visible")
    return device


def _log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------------------------ gan
def load_training_data(source):
    """(images in [-1, 1] (N, 3, 32, 32), int64 labels, class names) from a --data SOURCE."""
    if source.startswith("digits:"):
        parts = source.split(":")
        variant = parts[1]
        try:
            rho = float(parts[2]) if len(parts) > 2 else 0.9
        except ValueError:
            raise ValueError(f"bad correlation in --data {source!r}") from None
        try:
            from ..data import make_biased_digits
        except ImportError as exc:
            raise RuntimeError(f"the built-in digits need genint_fast.data ({exc})") from None
        ds = make_biased_digits(variant, "train", rho=rho)
        return ds.images.float() / 127.5 - 1.0, ds.labels, list(ds.classes)
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {source!r} is neither digits:<variant> nor a folder")
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32),
                             transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    try:
        ds = datasets.ImageFolder(str(root), transform=lambda im: tf(im.convert("RGB")))
    except (FileNotFoundError, OSError) as exc:
        raise FileNotFoundError(f"cannot read image folder {root}: {exc}") from None
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    return images, torch.tensor(ds.targets, dtype=torch.long), list(ds.classes)


def gan_main(args) -> int:
    from ..generators import GANTrainConfig, SmallGANConfig, load_small_generator, train_gan
    from ..intervene import save_grid

    device = _setup(args)
    images, labels, classes = load_training_data(args.data)
    _log(f"training data: {images.shape[0]} images, {len(classes)} classes")
    mc = SmallGANConfig(num_classes=len(classes), latent_dim=args.latent_dim, ch=args.ch)
    tc = GANTrainConfig(steps=args.steps, batch_size=args.batch_size, lr_g=args.lr_g,
                        lr_d=args.lr_d, loss=args.loss, ema_decay=args.ema_decay,
                        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                        seed=args.seed)
    summary = train_gan(images, labels, args.out, model_config=mc, train_config=tc,
                        resume=not args.no_resume, device=device, log=_log)
    _log(json.dumps(summary))
    if args.samples:
        gen = load_small_generator(args.out, device=device)
        rng = torch.Generator(device=device).manual_seed(args.seed)
        labels = torch.arange(gen.num_classes, device=device).repeat(8)  # a column per class
        with torch.no_grad():
            x = gen(gen.sample_latents(labels.numel(), generator=rng), labels)
        save_grid(x, args.samples, ncols=gen.num_classes)
        _log(f"samples: {args.samples}")
    return 0


# ----------------------------------------------------------------------------- directions
def directions_main(args) -> int:
    import time

    from ..directions import discover, save_directions
    from ..generators import load_generator

    device = _setup(args)
    gen = load_generator(args.generator, device=device, cache_dir=args.cache_dir)
    _log(gen.describe())
    t0 = time.perf_counter()

    def progress(done, total):
        if done == total or done % (20 * args.batch_size) == 0:
            _log(f"  {done}/{total} samples")

    kw = dict(truncation=args.truncation, class_id=args.class_id)
    if args.method == "sampled":
        kw.update(n_samples=args.samples, batch_size=args.batch_size, seed=args.seed,
                  blas_threads=args.blas_threads, progress=progress)
    d = discover(gen, args.k, method=args.method, **kw)
    save_directions(d, args.out)
    s = ", ".join(f"{v:.3g}" for v in d.sigma[:5].tolist())
    _log(f"{d.k} directions ({d.meta['method']}) in {time.perf_counter() - t0:.2f} s -> "
         f"{args.out}; sigma[:5] = {s}")
    return 0


# ------------------------------------------------------------------------------- generate
def _parse_rows(text, k):
    rows = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                rows.extend(range(int(lo), int(hi) + 1))
            else:
                rows.append(int(part))
        except ValueError:
            raise ValueError(f"--rows must look like 0-7 or 0,3,5, got {text!r}") from None
    return rows


def generate_main(args) -> int:
    from ..directions import load_directions
    from ..generators import load_generator
    from ..intervene import (InterventionSampler, dump_image_folder, intervention_grid,
                            reference_ranges, save_grid)

    device = _setup(args)
    if not args.grid and not args.dump:
        raise ValueError("nothing to do: give --grid PNG and/or --dump DIR")
    gen = load_generator(args.generator, device=device, cache_dir=args.cache_dir)
    d = load_directions(args.directions, gen)
    gen = gen.to(_DTYPES[args.dtype])
    if args.grid:
        rows = None if args.rows is None else _parse_rows(args.rows, d.k)
        images = intervention_grid(gen, d, rows=rows, steps=args.cols, scale=args.grid_scale,
                                   truncation=args.truncation, mode=args.mode, seed=args.seed)
        save_grid(images, args.grid, ncols=args.cols)
        _log(f"grid of {images.shape[0] // args.cols} directions x {args.cols} steps -> {args.grid}")
    if args.dump:
        top_k = min(60, d.k) if args.top_k is None else args.top_k
        m = min(5, top_k) if args.m is None else args.m
        ranges = reference_ranges(max(top_k, 1)) if args.reference_ranges else None
        sampler = InterventionSampler(gen, d, truncation=args.truncation, top_k=top_k,
                                      m=m, scale=args.scale, ranges=ranges,
                                      mode=args.mode, style=args.style,
                                      per_latent=args.per_latent, batch_size=args.batch_size,
                                      seed=args.seed, check=False)
        dump_image_folder(sampler, args.dump, args.count,
                          progress=lambda done, total: _log(f"  {done}/{total} images")
                          if done == total or done % (10 * args.batch_size) == 0 else None)
        _log(f"{args.count} images + records.jsonl -> {args.dump}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["generate", *sys.argv[1:]]))
