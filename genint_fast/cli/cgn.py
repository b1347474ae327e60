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

from ..cgn_config import PRESETS  # torch-free: --help stays light
from .recipes import add_config_flag, check_bounds

# flags of one mode only, refused in the other (attribute, flag)
_LARGE_ONLY = (("biggan", "--biggan"), ("u2net", "--u2net"), ("u2net_kind", "--u2net-kind"),
               ("cache_dir", "--cache-dir"), ("accumulate", "--accumulate"),
               ("lr_shape", "--lr-shape"), ("lr_texture", "--lr-texture"),
               ("lr_background", "--lr-background"), ("truncation", "--truncation"),
               ("power_iteration", "--power-iteration"), ("lambda_l1", "--lambda-l1"),
               ("lambda_perceptual", "--lambda-perceptual"),
               ("lambda_mask_size", "--lambda-mask-size"), ("lambda_texture", "--lambda-texture"),
               ("lambda_background", "--lambda-background"))
# --flag -> (CGNTrainConfig or CGNConfig field, the --large field as (config, name) or None)
_SMALL_FIELDS = (("steps", "steps", ("train", "updates")),
                 ("batch_size", "batch_size", ("train", "batch_size")),
                 ("lr_g", "lr_g", None), ("lr_d", "lr_d", None),
                 ("lambda_mask", "lambda_mask", ("loss", "binary")),
                 ("lambda_border", "lambda_border", None),
                 ("ch", "ch", None), ("disc", "disc", None), ("bg_crop", "bg_crop", None),
                 ("seed", "seed", ("train", "seed")),
                 ("tries", "tries", None), ("check_at", "check_at", None),
                 ("min_shape_consistency", "min_shape_consistency", None),
                 ("checkpoint_every", "checkpoint_every", ("train", "checkpoint_every")),
                 ("log_every", "log_every", ("train", "log_every")))
# --large only: --flag -> (config, field), metavar
_LARGE_FIELDS = (("accumulate", ("train", "accumulate"), "N"),
                 ("lr_shape", ("train", "lr_shape"), "LR"),
                 ("lr_texture", ("train", "lr_texture"), "LR"),
                 ("lr_background", ("train", "lr_background"), "LR"),
                 ("truncation", ("train", "truncation"), "T"),
                 ("lambda_l1", ("loss", "l1"), "W"),
                 ("lambda_perceptual", ("loss", "perceptual"), "W,W,W,W"),
                 ("lambda_mask_size", ("loss", "mask"), "W"),
                 ("lambda_texture", ("loss", "texture"), "W,W,W,W"),
                 ("lambda_background", ("loss", "background"), "W"))
# (flag attribute, CGNTrainConfig field) of the training settings the command line may override
_MODEL_FLAGS = ("ch", "disc", "bg_crop")   # CGNConfig fields; the others are CGNTrainConfig's
_TRAIN_FLAGS = tuple((dest, name) for dest, name, _ in _SMALL_FIELDS
                     if name not in _MODEL_FLAGS) + (
    ("feature_net", "feature_net"),)


def _presets():
    """{(preset, variant): (CGNConfig, CGNTrainConfig)} for both presets on every built-in
    variant and a folder (variant None), and the large CGN's {"train": LargeCGNTrainConfig,
    "loss": LargeCGNLossConfig}: where --help reads its defaults."""
    from ..cgn_config import LargeCGNTrainConfig, preset_configs
    from ..data.benchmark import VARIANTS

    large = LargeCGNTrainConfig()
    return ({(name, v): preset_configs(name, v) for name in ("default", "reference")
             for v in (None, *VARIANTS)}, {"train": large, "loss": large.loss})


def _small_defaults(presets, name) -> str:
    """Where a small-CGN setting comes from when its flag is left out: one value, or the
    presets' values, or the variants'."""
    from .recipes import shown

    def value(preset, variant):
        return next(getattr(c, name) for c in presets[preset, variant] if hasattr(c, name))

    per_variant = {}
    for preset, variant in presets:
        if preset == "default":
            per_variant.setdefault(shown(value(preset, variant)), []).append(variant or "folders")
    refs = {shown(value(preset, variant)) for preset, variant in presets
            if preset == "reference"}
    if len(per_variant) > 1:
        text = "default " + "; ".join(f"{v} on {', '.join(names)}"
                                      for v, names in per_variant.items())
        if len(refs) == 1 and refs.isdisjoint(per_variant):
            text += f"; --preset reference: {refs.pop()}"
        return text
    d, r = value("default", None), value("reference", None)
    if d == r:
        return f"default {shown(d)}"
    return f"default {shown(d)}; --preset reference: {shown(r)}"


def _field_flags(p, g, presets, large) -> None:
    """The flags that set config fields (the --large-only ones in group `g`): help and defaults
    read from the fields, the presets and the large configs (`_presets`)."""
    from ..cgn_config import CGNConfig, CGNTrainConfig, LargeCGNLossConfig, LargeCGNTrainConfig
    from ..config_fields import field_help
    from .recipes import add_unset_field_flag, shown

    classes = {"train": LargeCGNTrainConfig, "loss": LargeCGNLossConfig}
    for dest, name, big in _SMALL_FIELDS:
        cls = CGNConfig if name in _MODEL_FLAGS else CGNTrainConfig
        more = ""
        if big is not None:
            meaning = field_help(classes[big[0]], big[1])
            value = shown(getattr(large[big[0]], big[1]))
            more = (f"; --large: default {value}"   # the same meaning is said once
                    if meaning == field_help(cls, name) else
                    f"; --large: {meaning} (default {value})")
        add_unset_field_flag(p, dest, cls, name, defaults=_small_defaults(presets, name),
                             more=more)
    add_unset_field_flag(p, "feature_net", CGNTrainConfig, metavar="small|vgg16:PATH|none",
                         defaults=_small_defaults(presets, "feature_net"),
                         more="; --large: vgg16:PATH, or vgg16 (default) for torchvision's "
                              "cache file vgg16-397923af.pth")
    for dest, (kind, name), metavar in _LARGE_FIELDS:
        value = getattr(large[kind], name)
        more = (f"; the bounds (low, high): {shown(large['loss'].mask_interval)}"
                if name == "mask" else "")
        add_unset_field_flag(g, dest, classes[kind], name, defaults=f"default {shown(value)}",
                             more=more, metavar=metavar,
                             type=str if isinstance(value, tuple) else type(value))


def register(sub) -> None:
    from ..data.sources import source_help

    presets, large = _presets()
    d, r = presets["default", None][1], presets["reference", None]
    p = sub.add_parser("cgn", help="train a counterfactual generative network (CGN): the small "
                                   "one, or the large-image one with --large",
                       description="Train (or resume) the small 32x32 CGN: shape, texture and "
                                   "background mechanisms; write a counterfactual sheet. With "
                                   "--large: the ImageNet-scale CGN over your BigGAN-deep and "
                                   "U^2-Net weights (a GPU; configs/cgn/imagenet.yaml).")
    p.add_argument("--data", metavar="SOURCE",
                   help=source_help("train split", "class sub-folders, resized to 32x32"))
    p.add_argument("--out", metavar="CKPT",
                   help="checkpoint file (resumed if present, unless --no-resume); required")
    p.add_argument("--preset", default=None, choices=PRESETS,
                   help=f"default: the settings that decompose fastest on a CPU (batches "
                        f"of {d.batch_size}, the steps per variant under --steps); reference: "
                        f"the authors' small CGN (width "
                        f"{r[0].ch}, Adam {r[1].lr_g:g}, batch {r[1].batch_size}, {r[1].steps} "
                        f"steps; give --feature-net vgg16:PATH for its Gram loss). Flags given "
                        f"override the preset (default: default)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out exists")
    p.add_argument("--samples", metavar="PNG",
                   help="also write the counterfactual sheet (masks, textures, backgrounds, "
                        "composites, then counterfactual rows; a column per class); --large: "
                        "rewritten with every checkpoint, BigGAN's own image as a fifth row")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = _large_flags(p, large["train"])
    _field_flags(p, g, presets, large)
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


def _large_flags(p, large):
    """The large-image CGN's own flags that are not config fields; returns their group.
    `large`: the default LargeCGNTrainConfig, which the group's description sums up."""
    g = p.add_argument_group(
        "large-image CGN (--large)",
        "Three trainable copies of a pretrained BigGAN-deep and the frozen original, masks from a "
        "frozen U^2-Net, the reference's losses (genint_fast.cgn.large); defaults are the "
        f"reference's ImageNet run ({large.updates} updates of {large.accumulate} accumulated "
        f"batches of {large.batch_size}: days on a GPU). "
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
    g.add_argument("--power-iteration", action="store_true",
                   help="run spectral norm's power iteration in the trained copies, as the "
                        "reference did (default off: the copies start exactly as BigGAN)")
    return g


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
    check_bounds(args, {"> 0": ("lr_g", "lr_d"), ">= 0": ("checkpoint_every", "log_every"),
                         ">= 1": ("threads",)})
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


def _configs(args, variant, num_classes, state):
    """(CGNConfig, CGNTrainConfig): the checkpoint's own settings when resuming, else the
    variant's defaults; flags given on the command line override either."""
    from ..cgn import CGNConfig, CGNTrainConfig

    train_over = {field: getattr(args, attr) for attr, field in _TRAIN_FLAGS
                  if getattr(args, attr) is not None}
    model_over = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    if state is not None:
        mc = dict(state["model_config"], num_classes=num_classes, **model_over)
        tc = dict(state["train_config"], **train_over)
        return CGNConfig(**mc), CGNTrainConfig(**tc)
    from ..cgn.presets import preset_configs

    return preset_configs(args.preset or "default", variant, num_classes=num_classes,
                          model_overrides=model_over, train_overrides=train_over)


def _shape_check(variant):
    """The masks' shape consistency check on a built-in digits variant (None for a folder): a
    shape reader trained once on the benchmark's colour-free train-pool digits, cached in the
    feature cache (genint_fast.features.feature_cache_dir)."""
    if variant is None:
        return None
    from ..cgn_config import SHAPE_READER_STEPS
    from ..diagnostics.shape import cached_shape_reader, shape_check
    from ..features import feature_cache_dir

    path = feature_cache_dir() / f"shape_reader_mnist_seed0_{SHAPE_READER_STEPS}.pt"
    reader, _ = cached_shape_reader(path, SHAPE_READER_STEPS, seed=0, log=_log)
    return shape_check(reader, variant)


def cgn_main(args) -> int:
    if args.large:
        from .cgn_large import large_main

        return large_main(args)
    _check_flags(args)
    import torch

    from ..cgn import counterfactual_sheet, load_cgn, read_cgn_checkpoint, train_cgn_checked

    variant = _variant(args.data)
    # validate the flags against the configs before loading any data
    _configs(args, variant, 10, None)
    if variant is None and args.min_shape_consistency:
        raise ValueError("--min-shape-consistency needs the shape reader of the built-in "
                         "digits (their colour-free strokes); an image folder has none: leave "
                         "it out")
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
    from ..data.shapes import variant_foreground_shares

    share, share_by_class = variant_foreground_shares(variant)
    summary = train_cgn_checked(images, labels, out, model_config=mc, train_config=tc,
                                foreground_share=share, share_by_class=share_by_class,
                                shape_check=_shape_check(variant), resume=resume, device=device,
                                log=_log)
    stats = summary["mask"]
    _log(f"masks: mean {stats['mean']:.3f}, near-binary share {stats['binary_share']:.3f}, "
         f"entropy {stats['entropy_bits']:.3f} bits, on the border {stats['border_mean']:.3f} "
         f"(n={stats['n']})" + (f", shape consistency {stats['shape_consistency']:.1%}"
                                if "shape_consistency" in stats else ""))
    for w in summary["warnings"]:
        _log(f"WARNING: the decomposition failed: {w}; look at the counterfactual sheet "
             f"(--samples) and train longer, give --tries N or choose another --preset")
    summary.update(classes=list(classes), model_config=mc.to_dict(),
                   train_config=dict(tc.to_dict(), seed=summary["seed"]))
    if args.samples:
        cgn = load_cgn(out, device=device)
        counterfactual_sheet(cgn, args.samples, seed=summary["seed"])
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
