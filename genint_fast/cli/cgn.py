"""`genint-fast cgn`: train the small counterfactual generative network (CGN, 32x32) on the
built-in biased digits or an image folder, then write its counterfactual sheet; with --large,
train the large-image CGN (genint_fast.cgn.large) on the user's BigGAN-deep and U^2-Net.

Settings come from a preset (--preset default|reference, genint_fast.cgn.presets) and the
data: for `digits:<variant>` the reference's per-variant choices (initialisation, mask-entropy
weight, style weights); for an image folder the colored ones. A flag given on the command line
overrides them. When --out holds a checkpoint the run resumes it, and settings not given on the
command line are the checkpoint's own (both modes).

--large needs no data (the mechanisms learn from the frozen BigGAN's own samples) and no
downloads: --biggan, --u2net and --feature-net vgg16[:PATH] name the user's weights, each
looked for before torch is imported (a missing one is one sentence, exit 2). Its defaults are
the reference's ImageNet run (LargeCGNTrainConfig; configs/cgn/imagenet.yaml spells them out).
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

# --large: (flag attribute, LargeCGNTrainConfig field) and (flag attribute, loss field)
_LARGE_TRAIN_FLAGS = (("steps", "updates"), ("accumulate", "accumulate"),
                      ("batch_size", "batch_size"), ("lr_shape", "lr_shape"),
                      ("lr_texture", "lr_texture"), ("lr_background", "lr_background"),
                      ("truncation", "truncation"), ("seed", "seed"),
                      ("checkpoint_every", "checkpoint_every"), ("log_every", "log_every"))
_LARGE_LOSS_FLAGS = (("lambda_l1", "l1"), ("lambda_perceptual", "perceptual"),
                     ("lambda_mask", "binary"), ("lambda_mask_size", "mask"),
                     ("lambda_texture", "texture"), ("lambda_background", "background"))
# flags of one mode only, refused in the other (attribute, flag)
_LARGE_ONLY = (("biggan", "--biggan"), ("u2net", "--u2net"), ("u2net_kind", "--u2net-kind"),
               ("cache_dir", "--cache-dir"), ("accumulate", "--accumulate"),
               ("lr_shape", "--lr-shape"), ("lr_texture", "--lr-texture"),
               ("lr_background", "--lr-background"), ("truncation", "--truncation"),
               ("power_iteration", "--power-iteration"), ("lambda_l1", "--lambda-l1"),
               ("lambda_perceptual", "--lambda-perceptual"),
               ("lambda_mask_size", "--lambda-mask-size"), ("lambda_texture", "--lambda-texture"),
               ("lambda_background", "--lambda-background"))
_SMALL_ONLY = (("data", "--data"), ("lr_g", "--lr-g"), ("lr_d", "--lr-d"), ("ch", "--ch"),
               ("preset", "--preset"))
# the four VGG16 layers of the large CGN's Gram losses (features.VGG16_PERCEPTUAL_LAYERS)
_VGG16_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
_BIGGAN_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
_GET_U2NET = ("linked from the README of github.com/xuebinqin/U-2-Net; genint-fast never "
              "downloads it")
_GET_VGG16 = ("torchvision's ImageNet VGG16 weights, vgg16-397923af.pth; genint-fast never "
              "downloads them")


def register(sub) -> None:
    p = sub.add_parser("cgn", help="train a counterfactual generative network (CGN): the small "
                                   "one, or the large-image one with --large",
                       description="Train (or resume) the small 32x32 CGN: shape, texture and "
                                   "background mechanisms; write a counterfactual sheet. With "
                                   "--large: the ImageNet-scale CGN over your BigGAN-deep and "
                                   "U^2-Net weights (a GPU; configs/cgn/imagenet.yaml).")
    p.add_argument("--data", metavar="SOURCE",
                   help="digits:<colored|double-colored|wildlife|cmnist>[:RHO] (built-in biased "
                        "digits, train split) or an image folder (class sub-folders, resized "
                        "to 32x32)")
    p.add_argument("--out", metavar="CKPT",
                   help="checkpoint file (resumed if present, unless --no-resume); required")
    p.add_argument("--steps", type=int, default=None,
                   help="total steps (default 3000); --large: optimiser updates (default 300)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (--large: 1)")
    p.add_argument("--lr-g", type=float, default=None,
                   help="generator Adam lr (default 1e-3; the reference 2e-4)")
    p.add_argument("--lr-d", type=float, default=None,
                   help="discriminator Adam lr (default 1e-3; the reference 2e-4)")
    p.add_argument("--lambda-mask", type=float, default=None,
                   help="weight of the mask binary entropy (default 0.1 colored, 0.3 others; "
                        "--large: 300)")
    p.add_argument("--feature-net", default=None, metavar="small|vgg16:PATH|none",
                   help="feature network of the Gram style loss: the package's small net "
                        "trained on the digits (default, cached), a torchvision ImageNet VGG16 "
                        "weights file, or none (no style loss); --large: vgg16:PATH, or vgg16 "
                        "(default) for torchvision's cache file vgg16-397923af.pth")
    p.add_argument("--preset", default=None, choices=("default", "reference"),
                   help="default: the settings that decompose fastest on a CPU (3000 steps of "
                        "32); reference: the authors' small CGN (width 64, Adam 2e-4, batch 16, "
                        "48000 steps; give --feature-net vgg16:PATH for its Gram loss). Flags "
                        "given override the preset (default: default)")
    p.add_argument("--ch", type=int, default=None,
                   help="width of the mechanisms' first feature map (default 32; the reference 64)")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="default 500 (0: end only); --large: in updates, default 1")
    p.add_argument("--log-every", type=int, default=None,
                   help="default 100 (0: silent); --large: in updates, default 1")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out exists")
    p.add_argument("--samples", metavar="PNG",
                   help="also write the counterfactual sheet (masks, textures, backgrounds, "
                        "composites, then counterfactual rows; a column per class); --large: "
                        "rewritten with every checkpoint, BigGAN's own image as a fifth row")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    _large_flags(p)
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


def _large_flags(p) -> None:
    g = p.add_argument_group(
        "large-image CGN (--large)",
        "Three trainable copies of a pretrained BigGAN-deep and the frozen original, masks from a "
        "frozen U^2-Net, the reference's losses (genint_fast.cgn.large); defaults are the "
        "reference's ImageNet run (300 updates of 4000 accumulated images: days on a GPU). "
        "Also read: --out, --steps, --batch-size, --lambda-mask, --feature-net, --seed, "
        "--checkpoint-every, --log-every, --no-resume, --samples, --device, --threads.")
    g.add_argument("--large", action="store_true",
                   help="train the large-image CGN instead of the small one (no --data)")
    g.add_argument("--biggan", metavar="NAME|DIR",
                   help="the BigGAN-deep to decompose: biggan-deep-256 (the reference; its "
                        "config.json and pytorch_model.bin in the pytorch-pretrained-biggan cache, "
                        "never downloaded) or a folder holding those two files")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="pytorch-pretrained-biggan cache (default: its environment variable "
                        "PYTORCH_PRETRAINED_BIGGAN_CACHE or ~/.pytorch_pretrained_biggan)")
    g.add_argument("--u2net", metavar="PATH",
                   help="the U^2-Net weights file u2net.pth (the U-2-Net repository's README "
                        "links it; never downloaded)")
    g.add_argument("--u2net-kind", default=None, choices=("u2net", "u2netp"),
                   help="architecture of the --u2net file (default u2net; u2netp: the 4.7 MB one)")
    g.add_argument("--accumulate", type=int, default=None, metavar="N",
                   help="batches accumulated per optimiser update (default 4000)")
    g.add_argument("--lr-shape", type=float, default=None, metavar="LR",
                   help="Adam lr of the shape mechanism (default 8e-6)")
    g.add_argument("--lr-texture", type=float, default=None, metavar="LR",
                   help="Adam lr of the texture mechanism (default 3e-5; the paper says 1e-5)")
    g.add_argument("--lr-background", type=float, default=None, metavar="LR",
                   help="Adam lr of the background mechanism (default 1e-5)")
    g.add_argument("--truncation", type=float, default=None, metavar="T",
                   help="truncation of the training noise (default 1.0; the sheet uses 0.5)")
    g.add_argument("--power-iteration", action="store_true",
                   help="run spectral norm's power iteration in the trained copies, as the "
                        "reference did (default off: the copies start exactly as BigGAN)")
    g.add_argument("--lambda-l1", type=float, default=None, metavar="W",
                   help="weight of the L1 reconstruction of BigGAN's image (default 100)")
    g.add_argument("--lambda-perceptual", metavar="W,W,W,W", default=None,
                   help="Gram perceptual weights at relu1_2, relu2_2, relu3_3, relu4_3 "
                        "(default 4,4,4,4)")
    g.add_argument("--lambda-mask-size", type=float, default=None, metavar="W",
                   help="weight of the mask-size bounds 0.1 < mean mask < 0.9 (default 500)")
    g.add_argument("--lambda-texture", metavar="W,W,W,W", default=None,
                   help="texture-loss Gram weights per VGG16 layer (default 0,5,5,0)")
    g.add_argument("--lambda-background", type=float, default=None, metavar="W",
                   help="weight of the background's U^2-Net saliency (default 2000)")


def _log(msg):
    print(msg, flush=True)


def _variant(source: str):
    """The digits variant of a --data source, or None for an image folder."""
    from ..data.sources import parse_source

    src = parse_source(source)
    return None if src.is_folder else src.variant


def _given(args, attr) -> bool:
    return getattr(args, attr) not in (None, False)


def _check_flags(args) -> None:
    """Refuse impossible flag values before any work (CGNConfig / CGNTrainConfig check the
    rest: steps, batch size, lambda, feature net, ch)."""
    given = [flag for attr, flag in _LARGE_ONLY if _given(args, attr)]
    if given:
        raise ValueError(f"{given[0]} is a setting of the large-image CGN; add --large (or "
                         f"leave {given[0]} out to train the small CGN)")
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

    return preset_configs(args.preset or "default", variant, num_classes=num_classes,
                          model_overrides=model_over, train_overrides=train_over)


def cgn_main(args) -> int:
    if args.large:
        return large_main(args)
    _check_flags(args)
    import torch

    from ..cgn import (counterfactual_sheet, decomposition_warnings, load_cgn, mask_statistics,
                      read_cgn_checkpoint, train_cgn)

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


# ------------------------------------------------------------------------ --large

def _weights(flag, text):
    """A comma list of one weight per VGG16 layer of the Gram losses."""
    try:
        ws = tuple(float(w) for w in str(text).split(","))
    except ValueError:
        ws = ()
    if len(ws) != len(_VGG16_LAYERS):
        raise ValueError(f"{flag} takes {len(_VGG16_LAYERS)} comma-separated numbers, one per "
                         f"VGG16 layer ({', '.join(_VGG16_LAYERS)}), got {text!r}")
    return ws


def _large_vgg16(spec):
    """'cache' (torchvision's cache file) or the path of --feature-net in large mode."""
    if spec in (None, "vgg16"):
        return "cache"
    if str(spec).startswith("vgg16:") and len(str(spec)) > len("vgg16:"):
        return str(spec)[len("vgg16:"):]
    raise ValueError(f"--feature-net {spec} cannot serve the large-image CGN, whose perceptual "
                     f"and texture losses need ImageNet VGG16 features; give --feature-net "
                     f"vgg16:PATH ({_GET_VGG16}) or vgg16 for torchvision's cache")


def _check_large_flags(args) -> None:
    """Flag mixes and values of --large, before any import of torch."""
    given = [flag for attr, flag in _SMALL_ONLY if _given(args, attr)]
    if given:
        what = ("needs no data: it learns from the frozen BigGAN's own samples"
                if given[0] == "--data" else f"does not use {given[0]} (a small-CGN setting)")
        raise ValueError(f"the large-image CGN (--large) {what}; leave {given[0]} out")
    if not args.out:
        raise ValueError("the large-image CGN (--large) needs --out CKPT, its checkpoint file")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a checkpoint file name")
    if args.samples and Path(args.samples).is_dir():
        raise ValueError(f"--samples {args.samples} is a folder; give a .png file name")
    for flag, value in (("--steps", args.steps), ("--accumulate", args.accumulate),
                        ("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    for flag, value in (("--lr-shape", args.lr_shape), ("--lr-texture", args.lr_texture),
                        ("--lr-background", args.lr_background)):
        if value is not None and not value > 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    for flag, value in (("--checkpoint-every", args.checkpoint_every),
                        ("--log-every", args.log_every)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if args.truncation is not None and not 0 < args.truncation <= 1:
        raise ValueError(f"--truncation must be in (0, 1], got {args.truncation}")
    for attr, flag in (("lambda_perceptual", "--lambda-perceptual"),
                       ("lambda_texture", "--lambda-texture")):
        if getattr(args, attr) is not None:
            _weights(flag, getattr(args, attr))


def _check_large_files(args) -> None:
    """Each weights file the user must provide, looked for before torch is imported: a missing
    one is one sentence that names its flag and the file to give."""
    kind = args.u2net_kind or "u2net"
    if not args.biggan:
        raise ValueError("the large-image CGN (--large) needs --biggan: biggan-deep-256 (its "
                         "config.json and pytorch_model.bin in the pytorch-pretrained-biggan "
                         "cache; genint-fast never downloads them) or a folder holding those two "
                         "files")
    if not args.u2net:
        raise ValueError(f"the large-image CGN (--large) needs --u2net PATH, the U^2-Net weights "
                         f"file {kind}.pth ({_GET_U2NET})")
    if not Path(args.u2net).is_file():
        raise FileNotFoundError(f"--u2net {args.u2net} does not exist; give the U^2-Net weights "
                                f"file {kind}.pth there ({_GET_U2NET})")
    vgg = _large_vgg16(args.feature_net)
    if vgg != "cache" and not Path(vgg).is_file():
        raise FileNotFoundError(f"--feature-net vgg16:{vgg} does not exist; give {_GET_VGG16}")
    spec = str(args.biggan)
    if not (spec in _BIGGAN_NAMES or spec.startswith("random:") or Path(spec).is_dir()):
        raise FileNotFoundError(f"--biggan {spec} is neither a BigGAN-deep name "
                                f"({', '.join(_BIGGAN_NAMES)}) nor a folder; give biggan-deep-256 "
                                f"or a folder holding its config.json and pytorch_model.bin")


def _check_large_cached_files(args) -> None:
    """The files that only torch-side code can locate: BigGAN's in its cache or folder, VGG16's
    in torchvision's cache."""
    from ..features import vgg16_weights_file
    from ..generators import resolve_biggan_files

    spec = str(args.biggan)
    if not spec.startswith("random:"):
        try:
            resolve_biggan_files(spec, args.cache_dir)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"--biggan {spec}: {exc}") from None
    if _large_vgg16(args.feature_net) == "cache":
        path = vgg16_weights_file()
        if not path.is_file():
            raise FileNotFoundError(f"--feature-net vgg16 reads {path.name} from {path.parent}, "
                                    f"where it is not; put it there (or set TORCH_HOME) or give "
                                    f"--feature-net vgg16:PATH ({_GET_VGG16})")


def _large_config(args, state):
    """The LargeCGNTrainConfig of a --large run: the checkpoint's own when resuming, else the
    reference's defaults; flags given on the command line override either."""
    from dataclasses import asdict

    from ..cgn.large_train import LargeCGNTrainConfig

    base = dict(state["extra"]["train_config"]) if state is not None else {}
    base.update({field: getattr(args, attr) for attr, field in _LARGE_TRAIN_FLAGS
                 if getattr(args, attr) is not None})
    loss = asdict(LargeCGNTrainConfig().loss) if "loss" not in base else dict(base["loss"])
    for attr, field in _LARGE_LOSS_FLAGS:
        value = getattr(args, attr)
        if value is not None:
            loss[field] = _weights(f"--{attr.replace('_', '-')}", value) \
                if field in ("perceptual", "texture") else value
    base["loss"] = loss
    return LargeCGNTrainConfig.from_dict(base)


def large_main(args) -> int:
    """`genint-fast cgn --large`: train (or resume) the large-image CGN."""
    _check_large_flags(args)
    _check_large_files(args)
    import torch

    from ..cgn.large_train import load_large_cgn, read_large_cgn_checkpoint, train_large_cgn

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} was asked for but no CUDA GPU is visible")
    _check_large_cached_files(args)
    out = Path(args.out)
    state = read_large_cgn_checkpoint(out) if (not args.no_resume and out.is_file()) else None
    if state is not None and not isinstance((state.get("extra") or {}).get("train_config"), dict):
        raise ValueError(f"{out} holds a large CGN without its training settings (not written by "
                         f"`genint-fast cgn --large`) and cannot be resumed; pass another --out "
                         f"(or --no-resume to overwrite)")
    tc = _large_config(args, state)
    power = bool(args.power_iteration or (state is not None and state["power_iteration"]))
    cgn, features = load_large_cgn(args.biggan, args.u2net, _large_vgg16(args.feature_net),
                                   device=device, u2net_kind=args.u2net_kind or "u2net",
                                   cache_dir=args.cache_dir, power_iteration=power)
    _log(f"large CGN on {cgn.generator_id} ({cgn.image_size}x{cgn.image_size}, "
         f"{cgn.num_classes} classes, {device}): {tc.updates} updates of {tc.accumulate} x "
         f"{tc.batch_size} images"
         f"{', resuming ' + str(out) + ' with its settings' if state is not None else ''}")
    if device.type == "cpu" and not cgn.generator_id.startswith("random:"):
        _log("note: on a CPU this takes ~1.25 TFLOP per training image; use --device cuda")
    summary = train_large_cgn(cgn, features, out, tc, resume_from=state,
                              samples=args.samples or None, log=_log)
    del state
    summary["power_iteration"] = power
    if args.samples:
        summary["samples"] = str(args.samples)
        _log(f"sample sheet: {args.samples}")
    _log(json.dumps(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["cgn", *sys.argv[1:]]))
