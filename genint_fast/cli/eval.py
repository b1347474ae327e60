"""`genint-fast eval <protocol>`: evaluate one or more training checkpoints side by side.

    genint-fast eval accuracy    --checkpoint runs/erm/checkpoint.pt runs/genint/checkpoint.pt
    genint-fast eval corruptions --checkpoint genint=runs/genint/checkpoint.pt --baseline runs/erm/checkpoint.pt
    genint-fast eval objectnet   --checkpoint CKPT --folder objectnet/images --mapping map.json
    genint-fast eval backgrounds --checkpoint CKPT --folder bg_challenge
    genint-fast eval shape-bias  --checkpoint CKPT --folder cue-conflict --head shape
    genint-fast eval gradcam     --checkpoint CKPT [CKPT ...] --split test-ood --n 8

Each run writes OUT/<protocol>.json and OUT/<protocol>.md (one row per checkpoint) and prints
the JSON record on one line. Only the checkpoints and the images are read: a checkpoint stays
evaluable after its training data, generator or init weights are gone.
"""
from __future__ import annotations

import json
import os
import sys

from ..data.sources import source_help

PROTOCOLS = ("accuracy", "corruptions", "objectnet", "backgrounds", "shape-bias", "gradcam")
HEAD_CHOICES = ("mean", "shape", "texture", "background")


def _common(p, *, images=True):
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="[NAME=]CKPT",
                   help="training checkpoint(s); NAME= sets the row name (default: the run "
                        "folder's name)")
    p.add_argument("--out", default="eval_results", metavar="DIR",
                   help="where <protocol>.json and <protocol>.md go (default eval_results)")
    p.add_argument("--head", choices=HEAD_CHOICES, default="mean",
                   help="ensemble checkpoints: evaluate one head instead of their mean")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    if images:
        p.add_argument("--split", default="test-ood",
                       help="built-in split: train, val, test-id or test-ood (default test-ood: "
                            "rho = 0)")
        p.add_argument("--data", default=None, metavar="SOURCE",
                       help=source_help("test splits") + "; default: the first "
                       "checkpoint's training data")
        p.add_argument("--n", type=int, default=None,
                       help="images of the built-in split (default: all)")
        p.add_argument("--folder", default=None, metavar="DIR",
                       help="evaluate on an image-folder tree DIR/<class>/<image> instead "
                            "(the same as --data folder:DIR)")
    p.add_argument("--size", type=int, default=None,
                   help="image size (default: the size the checkpoints were trained at)")
    p.add_argument("--crop-fraction", type=float, default=None,
                   help="folders: resize the shorter side to size / fraction, then centre-crop "
                        "(default 0.875 for checkpoints trained on folders, 1.0 for digits)")


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate checkpoints: accuracy, corruption robustness "
                                     "(mCE), ObjectNet, background gap, shape bias, Grad-CAM")
    ps = ev.add_subparsers(dest="protocol", metavar="PROTOCOL")
    ps.required = True

    p = ps.add_parser("accuracy", help="top-1 / top-5 on a built-in split or an image folder")
    _common(p)
    p.set_defaults(func=main)

    p = ps.add_parser("corruptions", help="15 corruptions x 5 severities generated on the fly: "
                                          "errors, mCE vs AlexNet, relative mCE vs a baseline")
    _common(p)
    p.add_argument("--baseline", default=None, metavar="[NAME=]CKPT",
                   help="checkpoint the relative mCE is measured against (e.g. the ERM run)")
    p.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                   help="a subset (default: all 15)")
    p.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions' randomness")
    p.add_argument("--workers", type=int, default=None,
                   help="processes generating corruptions (default: min(2, CPUs); 0 = inline)")
    p.set_defaults(func=main)

    p = ps.add_parser("objectnet", help="ObjectNet top-1 / top-5 on the classes overlapping "
                                        "ImageNet, through your folder -> ImageNet mapping")
    _common(p, images=False)
    p.add_argument("--folder", required=True, metavar="DIR",
                   help="ObjectNet images: DIR/<objectnet class folder>/<image>")
    p.add_argument("--mapping", required=True, metavar="JSON",
                   help="{\"<class folder>\": [ImageNet indices], ...}")
    p.set_defaults(func=main)

    p = ps.add_parser("backgrounds", help="CGN's background gap on ImageNet-9 (original, "
                                          "mixed_same, mixed_rand)")
    _common(p, images=False)
    p.add_argument("--folder", required=True, metavar="DIR",
                   help="the backgrounds challenge: DIR/{original,mixed_same,mixed_rand}"
                        "[/val]/<00_dog ... 08_fish>/<image>")
    p.add_argument("--in9-map", default=None, metavar="JSON",
                   help="ImageNet index -> IN-9 class (default: the backgrounds challenge's map)")
    p.set_defaults(func=main)

    p = ps.add_parser("shape-bias", help="shape / (shape + texture) decisions on cue-conflict "
                                         "images")
    _common(p, images=False)
    p.add_argument("--folder", required=True, metavar="DIR",
                   help="cue-conflict stimuli: DIR/<shape class>/<shape>N-<texture>M.png")
    p.set_defaults(func=main)

    p = ps.add_parser("gradcam", help="a sheet of Grad-CAM maps (torchcam) for the checkpoints "
                                      "side by side")
    _common(p)
    p.add_argument("--images", type=int, default=8, help="images on the sheet (default 8)")
    p.set_defaults(func=main)


def _size(args, classifiers) -> int:
    if args.size is not None:
        if args.size < 8:
            raise ValueError(f"--size must be >= 8, got {args.size}")
        return args.size
    sizes = sorted({c.size for c in classifiers})
    if len(sizes) > 1:
        raise ValueError(f"the checkpoints were trained at different sizes {sizes}; pass --size")
    return sizes[0]


def _crop_fraction(args, classifiers) -> float:
    if args.crop_fraction is not None:
        if not 0 < args.crop_fraction <= 1:
            raise ValueError(f"--crop-fraction must be in (0, 1], got {args.crop_fraction}")
        return args.crop_fraction
    return 0.875 if any(c.data.startswith("folder:") for c in classifiers) else 1.0


def _folder_of(args):
    """The image folder to evaluate on: --folder, or --data folder:DIR / a bare DIR (the
    package's one source grammar, genint_fast.data.sources); None for built-in data."""
    from ..data.sources import parse_source

    folder = None
    if args.folder is not None:
        src = parse_source(args.folder, flag="--folder")
        if not src.is_folder:
            raise ValueError(f"--folder takes an image folder; for built-in data give --data "
                             f"{args.folder}")
        folder = src.root
    if getattr(args, "data", None) is not None:
        src = parse_source(args.data)
        if src.is_folder:
            if folder is not None and folder != src.root:
                raise ValueError("give the images once: --data folder:DIR or --folder DIR")
            folder = src.root
    return folder


def _images(args, classifiers):
    from ..eval.sources import digits_images, folder_images

    args.folder = _folder_of(args)
    if args.folder is not None:
        if args.n is not None:
            raise ValueError("--n applies to built-in splits; for a folder, evaluate a folder "
                             "that holds the images you want")
        nc = {c.num_classes for c in classifiers}
        return folder_images(args.folder, size=_size(args, classifiers),
                             crop_fraction=_crop_fraction(args, classifiers),
                             num_classes=nc.pop() if len(nc) == 1 else None,
                             batch_size=args.batch_size)
    data = args.data or classifiers[0].data
    if not data.startswith("digits:"):
        raise ValueError(f"{classifiers[0].name} trained on {data}; pass --folder DIR with the "
                         "images to evaluate (or --data digits:<variant>)")
    if args.size is not None and args.size != 32:
        raise ValueError("the built-in digits are 32 x 32; --size applies to --folder")
    from ..train.checkpoint import load_checkpoint
    seed = int(load_checkpoint(classifiers[0].path)["config"].get("data_seed", 0))
    return digits_images(data, args.split, n=args.n, data_seed=seed, batch_size=args.batch_size)


def main(args) -> int:
    import torch

    from ..eval.checkpoints import parse_checkpoint_args
    from ..eval.report import write_report

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file; give a folder for the reports")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is visible; use "
                           "--device cpu")
    classifiers = parse_checkpoint_args(args.checkpoint, device=args.device)
    if args.head != "mean":
        bad = [c.name for c in classifiers if c.heads != "ensemble"]
        if bad:
            raise ValueError(f"--head {args.head} needs ensemble checkpoints; {bad[0]} has one "
                             "head")
    log = lambda msg: print(msg, file=sys.stderr)   # noqa: E731
    p = args.protocol
    if p == "accuracy":
        from ..eval.protocols import accuracy
        res = accuracy(classifiers, _images(args, classifiers), head=args.head)
    elif p == "corruptions":
        from ..eval.checkpoints import load_classifier
        from ..eval.protocols import corruption_robustness
        baseline = None
        if args.baseline is not None:
            name, sep, path = args.baseline.partition("=")
            if not sep or "/" in name:
                name, path = None, args.baseline
            baseline = next((c for c in classifiers if c.path == path), None) or \
                load_classifier(path, name=name, device=args.device)
        res = corruption_robustness(classifiers, _images(args, classifiers + (
            [baseline] if baseline else [])), baseline=baseline,
            corruptions=args.corruptions, severities=args.severities, seed=args.seed,
            workers=args.workers, head=args.head, log=log)
    elif p == "objectnet":
        from ..eval.protocols import objectnet
        res = objectnet(classifiers, args.folder, args.mapping, size=args.size,
                        batch_size=args.batch_size, head=args.head)
    elif p == "backgrounds":
        from ..eval.protocols import backgrounds
        res = backgrounds(classifiers, args.folder, in9_map=args.in9_map,
                          size=_size(args, classifiers),
                          crop_fraction=_crop_fraction(args, classifiers),
                          batch_size=args.batch_size, head=args.head)
    elif p == "shape-bias":
        from ..eval.protocols import shape_bias
        res = shape_bias(classifiers, args.folder, size=_size(args, classifiers),
                         crop_fraction=_crop_fraction(args, classifiers),
                         batch_size=args.batch_size, head=args.head)
    else:
        from ..eval.protocols import gradcam_sheet_for
        if args.images < 1:
            raise ValueError(f"--images must be >= 1, got {args.images}")
        res = gradcam_sheet_for(classifiers, _images(args, classifiers), args.out,
                                n=args.images, head=args.head)
    json_path, md_path = write_report(res, args.out)
    log(f"wrote {json_path} and {md_path}")
    print(json.dumps(res))
    return 0
