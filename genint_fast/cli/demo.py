"""`genint-fast demo [--quick] [--out DIR] [--seeds N] ...`: the end-to-end demo
(genint_fast.demo); its flags are made from DemoConfig's fields."""
from __future__ import annotations

import sys

from ..demo.config import METHODS, DemoConfig  # torch-free: --help stays light
from .recipes import add_config_flag

# flags that set one DemoConfig field each: (field, flag name when not --<field>, metavar)
_FIELD_FLAGS = (("seeds", None, None), ("steps", None, None), ("gan_steps", None, None),
                ("gan_batch_size", None, None), ("cgn_steps", None, None),
                ("cgn_set", None, "N"), ("cgn_epochs", None, "E"),
                ("cgn_checkpoint", None, "CKPT"), ("scale", None, None),
                ("intervention_style", "--style", None), ("intervention_mode", "--mode", None),
                ("lambda1", None, None), ("lambda2", None, None), ("generated_only", None, "N"),
                ("select", None, None), ("threads", None, None), ("jobs", None, None))


def register(subparsers) -> None:
    from .recipes import add_unset_field_flag, shown

    cfg = DemoConfig()
    p = subparsers.add_parser(
        "demo", help="the whole method end to end on the built-in biased digits, with a report",
        description="Builds the biased-digits benchmark, trains (or reuses) the small "
                    "conditional GAN and the small CGN, finds the GAN's directions, trains "
                    "classifiers with erm, gan-aug, genint, genint-transfer, cgn and real+cgn "
                    "over several seeds, and writes results.json, results.md, image grids and a "
                    "bar plot into --out. Several variants / rhos (comma-separated) run one "
                    "after the other into OUT/<variant>_rho<rho>/ with a joint OUT/summary.md. "
                    "Every setting is a DemoConfig field (genint_fast.demo.config); a recipe "
                    "(--config) or KEY=VALUE sets the flags below. No downloads; CPU only.")
    p.add_argument("--quick", action="store_true", help=_field_help("quick"))
    p.add_argument("--out", default="runs/demo_report",
                   help="report folder (the GAN checkpoint cached there is reused)")
    add_unset_field_flag(p, "variant", DemoConfig, type=str,
                         more="; a comma-separated list runs each")
    add_unset_field_flag(p, "rho", DemoConfig, type=str,
                         more="; a comma-separated list runs each")
    add_unset_field_flag(p, "methods", DemoConfig, type=str,
                         defaults=f"default {shown(cfg.methods)}",
                         more=f": a comma-separated subset of {','.join(METHODS)}; --quick adds "
                              "the controls random-directions and matched-norm; genint+cgn "
                              "combines the real, intervened and counterfactual streams in one "
                              "run")
    for name, flag, metavar in _FIELD_FLAGS:
        kw = {"metavar": metavar} if metavar else {}
        more = "; also sets lambda1_transfer" if name == "lambda1" else ""
        defaults = {"scale": f"default: chosen among {shown(cfg.scale_candidates)}",
                    "cgn_checkpoint": "default: none, the demo trains one"}.get(name)
        if name == "cgn_steps":
            kw["type"] = _steps_or_preset
        add_unset_field_flag(p, name, DemoConfig, flag=flag, defaults=defaults, more=more, **kw)
    p.add_argument("--resume", action="store_true", default=None, help=_field_help("resume"))
    add_config_flag(p)
    p.set_defaults(func=demo_main)


def _steps_or_preset(text: str):
    """--cgn-steps: a number of steps, or preset (the default preset's length)."""
    if text.strip().lower() == "preset":
        return "preset"
    try:
        return int(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"give a number of steps or preset, not {text!r}") \
            from None


def _field_help(name) -> str:
    from ..config_fields import field_help

    return field_help(DemoConfig, name)


def demo_main(args) -> int:
    from pathlib import Path

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder for the report")

    from ..demo import DemoConfig, quick_config, run_demo, write_summary

    overrides = {k: getattr(args, k) for k in [name for name, _, _ in _FIELD_FLAGS] + ["resume"]
                 if getattr(args, k) is not None}
    if args.lambda1 is not None:
        overrides["lambda1_transfer"] = args.lambda1
    if args.methods is not None:
        overrides["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    variants = [v.strip() for v in (args.variant or "").split(",") if v.strip()] or [None]
    try:
        rhos = [float(r) for r in (args.rho or "").split(",") if r.strip()] or [None]
    except ValueError:
        raise ValueError(f"--rho must be a number or a comma-separated list, got {args.rho!r}") \
            from None
    settings = []
    for variant in variants:
        for rho in rhos:
            o = dict(overrides)
            if variant is not None:
                o["variant"] = variant
            if rho is not None:
                o["rho"] = rho
            cfg = quick_config(**o) if args.quick else DemoConfig(**o)
            settings.append(cfg.validate())   # every setting checked before any work
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if len(settings) == 1:
        run_demo(settings[0], args.out, log=log)
        return 0
    results = []
    for cfg in settings:
        sub = Path(args.out) / f"{cfg.variant}_rho{cfg.rho:g}"
        log(f"=== {cfg.variant}, rho {cfg.rho:g} -> {sub}")
        results.append(run_demo(cfg, sub, log=log))
    path = write_summary(results, Path(args.out) / "summary.md")
    log(f"summary of {len(results)} settings: {path}")
    return 0


if __name__ == "__main__":
    from . import main

    sys.exit(main(["demo"] + sys.argv[1:]))
