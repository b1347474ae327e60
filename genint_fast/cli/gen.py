"""`genint-fast gan | directions | generate`: train the small GAN, discover GANSpace directions,
and generate intervened images (a Figure-2 grid and an image-folder dump with nuisance records).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data.sources import source_help
from ..config_fields import field_help
from ..gan_config import GANTrainConfig, SmallGANConfig
from ..generator_spec import GENERATOR_SPECS
from .recipes import add_config_flag, add_field_flags, field_values

# Only light imports here: `genint-fast --help` must not import torch. The heavy ones happen
# inside the command functions.

DTYPES = ("float32", "bfloat16", "float16")

# the GAN settings `genint-fast gan` takes as flags (fields of its configs)
_GAN_TRAIN = ("steps", "batch_size", "lr_g", "lr_d", "loss", "ema_decay", "checkpoint_every",
              "log_every", "seed")
_GAN_MODEL = ("ch", "latent_dim")


def _dtype(name):
    import torch

    return getattr(torch, name)


def register(sub) -> None:
    _register_gan(sub)
    _register_directions(sub)
    _register_generate(sub)


def _register_gan(sub) -> None:
    p = sub.add_parser("gan", help="train the small class-conditional 32x32 GAN")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help=source_help("train split", "class sub-folders, resized to 32x32"))
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file (resumed if present)")
    add_field_flags(p, GANTrainConfig, _GAN_TRAIN)
    add_field_flags(p, SmallGANConfig, _GAN_MODEL)
    p.add_argument("--no-class-bn", dest="class_bn", action="store_false",
                   help="turn off SmallGANConfig.class_bn: "
                        + field_help(SmallGANConfig, "class_bn").replace("%", "%%"))
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out exists")
    p.add_argument("--samples", metavar="PNG", help="also write a grid of EMA samples")
    add_config_flag(p)
    _common(p)
    p.set_defaults(func=gan_main)


def _register_directions(sub) -> None:
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


def _register_generate(sub) -> None:
    p = sub.add_parser(
        "generate", help="intervened images: a Figure-2 grid and/or an image folder",
        description="Intervened images from a generator and its directions: --grid PNG writes "
                    "a Figure-2 grid (rows = directions, columns = evenly spaced steps in "
                    "[-GRID_SCALE, GRID_SCALE]); --dump DIR writes an image-folder tree of "
                    "random interventions (steps drawn from U[-DUMP_SCALE, DUMP_SCALE]) with "
                    "their nuisance records (records.jsonl). Steps are in standard deviations "
                    "(see --mode).")
    p.add_argument("--generator", required=True, metavar="SPEC", help=GENERATOR_SPECS)
    p.add_argument("--directions", required=True, metavar="FILE")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--mode", choices=["add", "set"], default="add",
                   help="add (default): a step moves the layer's component by that many of its "
                        "standard deviations; set: sets the latent coordinate, in latent "
                        "standard deviations (reference code)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    _common(p, cache=True)
    g = p.add_argument_group("grid (--grid PNG)")
    g.add_argument("--grid", metavar="PNG", help="grid: rows = directions, columns = steps")
    g.add_argument("--rows", default=None,
                   help="grid directions, e.g. 0-7 or 0,3,5 (default: the first 8)")
    g.add_argument("--cols", type=int, default=7, help="grid steps per row (default 7)")
    g.add_argument("--grid-scale", type=float, default=3.0, metavar="S",
                   help="the grid's columns are evenly spaced steps from -S to S standard "
                        "deviations (default 3); not used by --dump")
    d = p.add_argument_group("dump (--dump DIR)")
    d.add_argument("--dump", metavar="DIR",
                   help="write an image-folder tree + records.jsonl into DIR (a new or empty "
                        "folder, or see --overwrite)")
    d.add_argument("--overwrite", action="store_true",
                   help="--dump into a folder that holds an earlier dump: delete that dump's "
                        "images and records first")
    d.add_argument("--count", type=int, default=1000, help="images to dump (default 1000)")
    d.add_argument("--top-k", type=int, default=None,
                   help="choose among the top k directions (default: min(60, k of the file))")
    d.add_argument("--m", type=int, default=None,
                   help="style multi: directions per image (default: min(5, top-k))")
    d.add_argument("--style", choices=["multi", "one"], default="multi",
                   help="multi: m directions added to each image's latent; one (reference "
                        "code): one direction per image, --per-latent images per latent")
    d.add_argument("--per-latent", type=int, default=5,
                   help="style one: images (distinct directions) per base latent (default 5)")
    d.add_argument("--dump-scale", "--scale", dest="scale", type=float, default=1.0,
                   metavar="S",
                   help="the dump's random steps are drawn from U[-S, S] standard deviations "
                        "(default 1); not used by --grid (--scale is the old name)")
    d.add_argument("--reference-ranges", action="store_true",
                   help="the reference code's per-direction step table (60 directions, "
                        "genint_fast/resources/reference_ranges.csv) instead of --dump-scale; "
                        "its ranges are latent coordinates, so it needs --mode set")
    d.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=generate_main)


def _common(p, cache=False):
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    if cache:
        p.add_argument("--cache-dir", default=None,
                       help="pytorch-pretrained-biggan cache (default: its environment variable "
                            "PYTORCH_PRETRAINED_BIGGAN_CACHE or ~/.pytorch_pretrained_biggan)")


def _setup(args):
    import torch

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
    """(images in [-1, 1] (N, 3, 32, 32), int64 labels, class names) from a --data SOURCE
    (genint_fast.data.sources: digits:<variant>[:RHO], folder:DIR or a bare DIR)."""
    from ..data.sources import parse_source

    src = parse_source(source)
    if not src.is_folder:
        from ..data import make_biased_digits

        ds = make_biased_digits(src.variant, "train", rho=src.rho)
        return ds.images.float() / 127.5 - 1.0, ds.labels, list(ds.classes)
    from ..data.folder import ImageFolder

    folder = ImageFolder(src.root, warn=_log)
    return folder.resized(32) * 2.0 - 1.0, folder.labels, folder.classes


def _not_a_folder(flag, path, what):
    if path and Path(path).is_dir():
        raise ValueError(f"{flag} {path} is a folder; give {what}")


def gan_main(args) -> int:
    _not_a_folder("--out", args.out, "a checkpoint file name")
    _not_a_folder("--samples", args.samples, "a .png file name")
    import torch

    from ..generators import load_small_generator, train_gan
    from ..intervene import save_grid

    device = _setup(args)
    images, labels, classes = load_training_data(args.data)
    _log(f"training data: {images.shape[0]} images, {len(classes)} classes")
    mc = SmallGANConfig(num_classes=len(classes), class_bn=args.class_bn,
                        **field_values(args, _GAN_MODEL))
    tc = GANTrainConfig(**field_values(args, _GAN_TRAIN))
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
    _not_a_folder("--out", args.out, "a .safetensors file name")
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


def reference_ranges_need_set(scale_flag="--dump-scale") -> str:
    """Why --reference-ranges is refused in add mode (generate, analyze)."""
    return ("--reference-ranges are the reference code's set-mode ranges (latent coordinates, in "
            "latent standard deviations); in add mode they would be scaled by each direction's "
            f"standard deviation again: add --mode set, or use {scale_flag} S in add mode")


def check_dump_folder(path, overwrite) -> None:
    """Refuse a --dump folder that would mix two dumps (images of the first one overwritten
    while its records stay): it must be new or empty, unless --overwrite."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--dump {out} exists and is not a folder; give a new folder name")
    if overwrite or not out.is_dir() or not any(out.iterdir()):
        return
    what = ("holds an earlier dump (records.jsonl)" if (out / "records.jsonl").exists()
            else "is not empty")
    raise ValueError(f"--dump {out} {what}; give a new folder, or add --overwrite to replace "
                     "the earlier dump")


def generate_main(args) -> int:
    if not args.grid and not args.dump:
        raise ValueError("nothing to do: give --grid PNG and/or --dump DIR")
    if args.rows is not None and not args.grid:
        raise ValueError("--rows chooses the grid's directions; give --grid PNG too (the dump "
                         "draws its directions among --top-k)")
    if args.dump and args.reference_ranges and args.mode == "add":
        raise ValueError(reference_ranges_need_set())
    _not_a_folder("--grid", args.grid, "a .png file name")
    if args.dump:
        check_dump_folder(args.dump, args.overwrite)

    from ..directions import load_directions
    from ..generators import load_generator
    from ..intervene import (InterventionSampler, dump_image_folder, intervention_grid,
                             reference_ranges, save_grid)

    device = _setup(args)
    gen = load_generator(args.generator, device=device, cache_dir=args.cache_dir)
    d = load_directions(args.directions, gen)
    gen = gen.to(_dtype(args.dtype))
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
        dump_image_folder(sampler, args.dump, args.count, overwrite=args.overwrite,
                          progress=lambda done, total: _log(f"  {done}/{total} images")
                          if done == total or done % (10 * args.batch_size) == 0 else None)
        _log(f"{args.count} images + records.jsonl -> {args.dump}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["generate", *sys.argv[1:]]))
