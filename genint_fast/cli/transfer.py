"""`genint-fast transfer`: style-transfer interventions written as a grid for inspection.

One row per pair: content | style | result (PNG, torchvision.utils.save_image).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..data.sources import source_help

FEATURES_HELP = ("small (the project's small VGG-like net, trained on the biased digits and "
                 "cached the first time), small:random[:SEED] (its architecture, random "
                 "weights), vgg19 (torchvision's cache, never downloaded), vgg19:PATH (a VGG19 "
                 "state dict), or a file saved by genint_fast.features.save_small_vgg")


def register(sub) -> None:
    p = sub.add_parser("transfer", help="style-transfer interventions: a content|style|result "
                                        "grid")
    images = source_help("test-id split", "class sub-folders or flat")
    p.add_argument("--content", required=True, metavar="SOURCE", help=images)
    p.add_argument("--style", metavar="SOURCE",
                   help=images + "; or use --generator/--directions for interventions")
    p.add_argument("--generator", metavar="SPEC",
                   help="style images from this generator's interventions (needs --directions)")
    p.add_argument("--directions", metavar="FILE", help="directions file for --generator")
    p.add_argument("--cache-dir", default=None, help="generator weight cache (BigGAN)")
    p.add_argument("--features", default="small", metavar="NET", help=FEATURES_HELP)
    p.add_argument("--kernel", choices=["poly2", "linear", "gaussian", "bn"], default="poly2")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--lr", type=float, default=None, help="default 1 (lbfgs) / 0.02 (adam)")
    p.add_argument("--restart", action="store_true",
                   help="L-BFGS: restart a pair whose loss rose (not in the reference)")
    p.add_argument("--steps", default="20-70", help="N or LO-HI drawn per batch (default 20-70)")
    p.add_argument("--style-weight", type=float, default=1e6)
    p.add_argument("--content-weight", type=float, default=0.1)
    p.add_argument("--count", type=int, default=8, help="pairs (rows) in the grid (default 8)")
    p.add_argument("--size", type=int, default=None,
                   help="image size (default: 32 for digits, 256 for folders)")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=main)


def _parse_steps(text):
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return int(lo), int(hi)
        return int(text)
    except ValueError:
        raise ValueError(f"--steps must be N or LO-HI, got {text!r}") from None


def load_images(source, count, size, seed, what):
    """(images in [0, 1] (count, 3, size, size), labels) from a SOURCE string."""
    import torch.nn.functional as F

    from ..data.sources import parse_source

    src = parse_source(source, flag=f"--{what}")
    if not src.is_folder:
        from ..data import make_biased_digits

        ds = make_biased_digits(src.variant, "test-id", rho=src.rho, seed=seed,
                                n=max(count, 10))
        x = ds.float_images()[:count]
        if size and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x.clamp(0, 1), ds.labels[:count]
    from ..data.folder import ImageFolder

    folder = ImageFolder(src.root, flat=True, what=f"--{what}",
                         warn=lambda msg: print(msg, file=sys.stderr, flush=True))
    if len(folder) < count:
        raise ValueError(f"--{what} {source!r} has {len(folder)} readable images, {count} "
                         "needed; add images or lower --count")
    return folder.resized(size or 256, range(count)), folder.labels[:count]


def build_features(spec, device, log=print):
    from ..features import transfer_feature_net

    return transfer_feature_net(spec, device, log=log)


def main(args) -> int:
    import torch
    from torchvision.utils import save_image

    from ..transfer import StyleTransfer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} was asked for but no CUDA GPU is visible")
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    from PIL import Image

    out = Path(args.out)
    if out.is_dir() or out.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"--out {args.out} must be an image file name, e.g. grid.png")
    if (args.style is None) == (args.generator is None):
        raise ValueError("give exactly one style source: --style SOURCE or --generator SPEC "
                         "with --directions FILE")
    steps = _parse_steps(args.steps)
    if args.generator is not None and not args.directions:
        raise ValueError("--generator needs --directions FILE")
    # the inputs first (cheap, and where a wrong file shows), then the feature network (the
    # small one is trained the first time)
    content, _ = load_images(args.content, args.count, args.size, args.seed, "content")
    if args.style is not None:
        style, _ = load_images(args.style, args.count, content.shape[-1], args.seed + 1, "style")
    else:
        from ..directions import load_directions
        from ..generators import load_generator
        from ..intervene import InterventionSampler

        gen = load_generator(args.generator, device=device, cache_dir=args.cache_dir)
        d = load_directions(args.directions, gen)
        top_k = min(60, d.k)
        sampler = InterventionSampler(gen, d, top_k=top_k, m=min(5, top_k),
                                      batch_size=args.count, seed=args.seed)
        style = ((sampler.sample()[0].float() + 1) / 2).clamp(0, 1)
    net = build_features(args.features, device)
    tr = StyleTransfer(net, kernel=args.kernel, optimizer=args.optimizer, lr=args.lr,
                       steps=steps, style_weight=args.style_weight,
                       content_weight=args.content_weight, seed=args.seed,
                       restart=args.restart)
    content, style = tr.prepare(content, style)  # resized style, on the device
    res = tr.run(content, style, final_eval=True)
    s0, s1 = res.style[0].mean().item(), res.style[-1].mean().item()
    print(f"transfer: {args.count} pairs, {res.steps} {args.optimizer} steps, style loss "
          f"{s0:.4g} -> {s1:.4g}, content loss {res.content[-1].mean().item():.4g}", flush=True)
    grid = torch.stack([content, style, res.images], dim=1).flatten(0, 1).float().cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(out), nrow=3, padding=2)
    print(f"wrote {out} (rows: content | style | result)", flush=True)
    return 0
