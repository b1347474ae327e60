"""`genint-fast cgn --large`: the large-image CGN's flag checks, its weights files (looked for
before torch is imported), its training settings from the flags and its run. `genint_fast.cli.cgn`
registers the flags (made from LargeCGNTrainConfig / LargeCGNLossConfig) and hands over here."""
from __future__ import annotations

import json
from pathlib import Path

from .cgn import _LARGE_FIELDS, _SMALL_FIELDS, _given, _log
from .recipes import check_bounds

# (flag attribute, (config, field)) of the --large settings: "train" is LargeCGNTrainConfig,
# "loss" its LargeCGNLossConfig
_LARGE_MAP = tuple((dest, big) for dest, _, big in _SMALL_FIELDS if big is not None) + tuple(
    (dest, field) for dest, field, _ in _LARGE_FIELDS)
_SMALL_ONLY = (("data", "--data"), ("lr_g", "--lr-g"), ("lr_d", "--lr-d"), ("ch", "--ch"),
               ("disc", "--disc"), ("bg_crop", "--bg-crop"),
               ("preset", "--preset"))
# the four VGG16 layers of the large CGN's Gram losses (features.VGG16_PERCEPTUAL_LAYERS)
_VGG16_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
_BIGGAN_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
_GET_U2NET = ("linked from the README of github.com/xuebinqin/U-2-Net; genint-fast never "
              "downloads it")
_GET_VGG16 = ("torchvision's ImageNet VGG16 weights, vgg16-397923af.pth; genint-fast never "
              "downloads them")


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
    check_bounds(args, {">= 1": ("steps", "accumulate", "batch_size", "threads"),
                         "> 0": ("lr_shape", "lr_texture", "lr_background"),
                         ">= 0": ("checkpoint_every", "log_every")})
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
    loss = asdict(LargeCGNTrainConfig().loss) if "loss" not in base else dict(base["loss"])
    for attr, (kind, field) in _LARGE_MAP:
        value = getattr(args, attr)
        if value is None:
            continue
        if field in ("perceptual", "texture"):
            value = _weights(f"--{attr.replace('_', '-')}", value)
        (base if kind == "train" else loss)[field] = value
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
