"""`genint-fast cgn`: train the small counterfactual generative network (CGN, 32x32) on the
built-in biased digits or an image folder, then write its counterfactual sheet.

Settings come from a preset (--preset default|reference, genint_fast.cgn.presets) and the
data: for `digits:<variant>` the reference's per-variant choices (initialisation, mask-entropy
weight, style weights); for an image folder the colored ones. A flag given on the command line overrides them. When --out holds a checkpoint
the run resumes it, and settings not given on the command line are the checkpoint's own.
Heavy imports (torch, torchvision) happen inside the command, so the CLI starts fast.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .recipes import add_config_flag

# (flag attribute, CGNTrainConfig field) of the training settings the command line may override
_TRAIN_FLAGS = (("steps", "steps"), ("batch_size", "batch_size"), ("lr_g", "lr_g"),
                ("lr_d", "lr_d"), ("lambda_mask", "lambda_mask"), ("feature_net", "feature_net"),
                ("checkpoint_every", "checkpoint_every"), ("log_every", "log_every"),
                ("seed", "seed"))


def register(sub) -> None:
    p = sub.add_parser("cgn", help="train the small counterfactual generative network (CGN)",
                       description="Train (or resume) the small 32x32 CGN: shape, texture and "
                                   "background mechanisms; write a counterfactual sheet.")
    p.add_argument("--data", metavar="SOURCE",
                   help="digits:<colored|double-colored|wildlife|cmnist>[:RHO] (built-in biased "
                        "digits, train split) or an image folder (class sub-folders, resized "
                        "to 32x32)")
    p.add_argument("--out", metavar="CKPT",
                   help="checkpoint file (resumed if present, unless --no-resume); required")
    p.add_argument("--steps", type=int, default=None, help="total steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--lr-g", type=float, default=None, help="generator Adam lr (default 1e-3; the reference 2e-4)")
    p.add_argument("--lr-d", type=float, default=None,
                   help="discriminator Adam lr (default 1e-3; the reference 2e-4)")
    p.add_argument("--lambda-mask", type=float, default=None,
                   help="weight of the mask binary entropy (default 0.1 colored, 0.3 others)")
    p.add_argument("--feature-net", default=None, metavar="small|vgg16:PATH|none",
                   help="feature network of the Gram style loss: the package's small net "
                        "trained on the digits (default, cached), a torchvision ImageNet VGG16 "
                        "weights file, or none (no style loss)")
    p.add_argument("--preset", default="default", choices=("default", "reference"),
                   help="default: the settings that decompose fastest on a CPU (3000 steps of "
                        "32); reference: the authors' small CGN (width 64, Adam 2e-4, batch 16, "
                        "48000 steps; give --feature-net vgg16:PATH for its Gram loss). Flags "
                        "given override the preset")
    p.add_argument("--ch", type=int, default=None,
                   help="width of the mechanisms' first feature map (default 32; the reference 64)")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--checkpoint-every", type=int, default=None, help="default 500 (0: end only)")
    p.add_argument("--log-every", type=int, default=None, help="default 100 (0: silent)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out exists")
    p.add_argument("--samples", metavar="PNG",
                   help="also write the counterfactual sheet (masks, textures, backgrounds, "
                        "composites, then counterfactual rows; a column per class)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_config_flag(p)
    p.set_defaults(func=cgn_main)
    # `genint-fast cgn import ...`: an optional sub-command; without it `cgn` trains
    sub_cgn = p.add_subparsers(dest="cgn_command", metavar="[import]", required=False)
    i = sub_cgn.add_parser("import", help="convert the CGN authors' released MNIST checkpoint "
                           "(weights/ckp.pth) into a checkpoint of this package",
                           description="Convert a reference MNIST CGN checkpoint "
                                       "(mnists/experiments/cgn_<variant>_MNIST/weights/ckp.pth "
                                       "of the authors' repository) into a `genint-fast cgn` "
                                       "checkpoint (generator only: sample and train on it, "
                                       "not resume it). Every key and shape is checked.")
    i.add_argument("reference", metavar="REF.pth", help="the reference checkpoint")
    i.add_argument("--variant", required=True, choices=("colored", "double-colored", "wildlife"),
                   help="which of the reference's MNIST variants it was trained on")
    i.add_argument("--out", required=True, metavar="CKPT", help="the converted checkpoint")
    i.add_argument("--samples", metavar="PNG", help="also write its counterfactual sheet")
    i.set_defaults(func=import_main)


def _log(msg):
    print(msg, flush=True)


def _variant(source: str):
    """The digits variant of a --data source, or None for an image folder."""
    from ..data.sources import parse_source

    src = parse_source(source)
    return None if src.is_folder else src.variant


def _check_flags(args) -> None:
    """Refuse impossible flag values before any work (CGNConfig / CGNTrainConfig check the
    rest: steps, batch size, lambda, feature net, ch)."""
    if not args.data or not args.out:
        raise ValueError("training needs --data SOURCE and --out CKPT (or use `genint-fast cgn "
                         "import REF.pth --variant V --out CKPT` to convert a reference "
                         "checkpoint)")
    for flag, value in (("--lr-g", args.lr_g), ("--lr-d", args.lr_d)):
        if value is not None and not value > 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    for flag, value in (("--checkpoint-every", args.checkpoint_every),
                        ("--log-every", args.log_every)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.samples and Path(args.samples).is_dir():
        raise ValueError(f"--samples {args.samples} is a folder; give a .png file name")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a checkpoint file name")


def _load_data(source):
    from .gen import load_training_data

    # An image folder's unreadable files are skipped and counted in the log; a folder with no
    # readable image is refused with one sentence (genint_fast.data.folder.ImageFolder).
    return load_training_data(source)


def _foreground_share(variant):
    """The built-in digits' stroke share (None for a folder: unknown)."""
    if variant is None:
        return None
    from ..data.digits import foreground_share

    return foreground_share()


def _configs(args, variant, num_classes, state):
    """(CGNConfig, CGNTrainConfig): the checkpoint's own settings when resuming, else the
    variant's defaults; flags given on the command line override either."""
    from ..cgn import CGNConfig, CGNTrainConfig

    train_over = {field: getattr(args, attr) for attr, field in _TRAIN_FLAGS
                  if getattr(args, attr) is not None}
    model_over = {"ch": args.ch} if args.ch is not None else {}
    if state is not None:
        mc = dict(state["model_config"], num_classes=num_classes, **model_over)
        tc = dict(state["train_config"], **train_over)
        return CGNConfig(**mc), CGNTrainConfig(**tc)
    from ..cgn.presets import preset_configs

    return preset_configs(args.preset, variant, num_classes=num_classes,
                          model_overrides=model_over, train_overrides=train_over)


def cgn_main(args) -> int:
    import torch

    from ..cgn import (counterfactual_sheet, decomposition_warnings, load_cgn, mask_statistics,
                      read_cgn_checkpoint, train_cgn)

    _check_flags(args)
    variant = _variant(args.data)
    # validate the flags against the configs before loading any data
    _configs(args, variant, 10, None)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} was asked for but no CUDA GPU is visible")
    out = Path(args.out)
    resume = not args.no_resume
    state = read_cgn_checkpoint(out) if (resume and out.is_file()) else None
    if state is not None and "D" not in state:
        raise ValueError(f"{out} holds a generator only (an imported reference checkpoint) and "
                         f"cannot be resumed; pass another --out (or --no-resume to overwrite)")

    images, labels, classes = _load_data(args.data)
    _log(f"training data: {images.shape[0]} images, {len(classes)} classes "
         f"({'digits:' + variant if variant else 'folder'} defaults"
         f"{', resuming ' + str(out) + ' with its settings' if state is not None else ''})")
    mc, tc = _configs(args, variant, len(classes), state)
    del state
    summary = train_cgn(images, labels, out, model_config=mc, train_config=tc, resume=resume,
                        device=device, log=_log)
    cgn = load_cgn(out, device=device)
    stats = mask_statistics(cgn, seed=tc.seed)
    _log(f"masks: mean {stats['mean']:.3f}, near-binary share {stats['binary_share']:.3f}, "
         f"entropy {stats['entropy_bits']:.3f} bits, on the border {stats['border_mean']:.3f} "
         f"(n={stats['n']})")
    share = _foreground_share(variant)
    warnings = decomposition_warnings(stats, share)
    for w in warnings:
        _log(f"WARNING: the decomposition failed: {w}; look at the counterfactual sheet "
             f"(--samples) and train longer or choose another --preset")
    summary.update(classes=list(classes), model_config=mc.to_dict(),
                   train_config=tc.to_dict(), mask=stats, warnings=warnings)
    if args.samples:
        counterfactual_sheet(cgn, args.samples, seed=tc.seed)
        summary["samples"] = str(args.samples)
        _log(f"counterfactual sheet: {args.samples}")
    _log(json.dumps(summary))
    return 0


def import_main(args) -> int:
    from ..cgn import load_cgn, mask_statistics
    from ..cgn.reference import import_reference_checkpoint

    if args.samples and Path(args.samples).is_dir():
        raise ValueError(f"--samples {args.samples} is a folder; give a .png file name")
    summary = import_reference_checkpoint(args.reference, args.variant, args.out)
    cgn = load_cgn(args.out)
    summary["mask"] = mask_statistics(cgn)
    if args.samples:
        from ..cgn import counterfactual_sheet

        counterfactual_sheet(cgn, args.samples)
        summary["samples"] = str(args.samples)
    _log(f"imported the reference {args.variant} CGN ({summary['steps']} training steps, "
         f"{summary['parameters']} parameters) -> {args.out}")
    _log(json.dumps(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["cgn", *sys.argv[1:]]))
