"""`genint-fast demo [--quick] [--out DIR] [--seeds N] ...`: the end-to-end demo (genint_fast.demo)."""
from __future__ import annotations

import sys
from types import SimpleNamespace

from ..demo.config import METHODS, DemoConfig  # torch-free: --help stays light
from .recipes import add_config_flag

# the DemoConfig defaults the help shows (read from the config itself, never copied)
_SHOWN = ("seeds", "steps", "gan_steps", "gan_batch_size", "cgn_steps", "cgn_set", "cgn_epochs",
          "variant", "rho", "scale_candidates", "intervention_style", "intervention_mode",
          "lambda1", "lambda2", "threads", "jobs")


def register(subparsers) -> None:
    cfg = DemoConfig()
    d = SimpleNamespace(**{k: getattr(cfg, k) for k in _SHOWN})
    p = subparsers.add_parser(
        "demo", help="the whole method end to end on the built-in biased digits, with a report",
        description="Builds the biased-digits benchmark, trains (or reuses) the small "
                    "conditional GAN and the small CGN, finds the GAN's directions, trains "
                    "classifiers with erm, gan-aug, genint, genint-transfer, cgn and real+cgn "
                    "over several seeds, and writes results.json, results.md, image grids and a "
                    "bar plot into --out. Several variants / rhos (comma-separated) run one "
                    "after the other into OUT/<variant>_rho<rho>/ with a joint OUT/summary.md. "
                    "No downloads; CPU only.")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings (about a minute on 2 cores): for tests and CI; the numbers "
                        "mean nothing")
    p.add_argument("--out", default="runs/demo_report",
                   help="report folder (the GAN checkpoint cached there is reused)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per method (default {d.seeds})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"classifier SGD steps per run (default {d.steps})")
    p.add_argument("--gan-steps", type=int, default=None,
                   help=f"GAN training steps (default {d.gan_steps})")
    p.add_argument("--gan-batch-size", type=int, default=None,
                   help=f"GAN batch size (default {d.gan_batch_size})")
    p.add_argument("--cgn-steps", type=int, default=None,
                   help=f"CGN training steps (default {d.cgn_steps})")
    p.add_argument("--cgn-set", type=int, default=None, metavar="N",
                   help=f"the CGN rows' classifier: counterfactuals in its fixed set (default "
                        f"{d.cgn_set}; the reference 100000)")
    p.add_argument("--cgn-epochs", type=float, default=None, metavar="E",
                   help=f"the CGN rows' classifier: epochs over that set (default "
                        f"{d.cgn_epochs:g}; the reference 10)")
    p.add_argument("--cgn-checkpoint", default=None, metavar="CKPT",
                   help="use this CGN for the cgn rows instead of training one (e.g. the "
                        "authors' checkpoint converted by `genint-fast cgn import`)")
    p.add_argument("--variant", default=None,
                   help=f"biased-digits variant, or a comma-separated list (default {d.variant})")
    p.add_argument("--rho", default=None,
                   help=f"training correlation rho, or a comma-separated list (default {d.rho})")
    p.add_argument("--scale", type=float, default=None,
                   help="intervention steps U[-s, s] in standard deviations (default: chosen "
                        "by the causal-bound score on the validation split among "
                        f"{','.join(f'{v:g}' for v in d.scale_candidates)})")
    p.add_argument("--style", dest="intervention_style", choices=("multi", "one"), default=None,
                   help=f"multi: m directions per latent; one: one direction per image "
                        f"(reference code) (default {d.intervention_style})")
    p.add_argument("--mode", dest="intervention_mode", choices=("add", "set"), default=None,
                   help=f"intervention edit mode (default {d.intervention_mode})")
    p.add_argument("--lambda1", type=float, default=None,
                   help=f"weight of the generated stream (default {d.lambda1})")
    p.add_argument("--lambda2", type=float, default=None,
                   help=f"weight of the transferred stream (default {d.lambda2})")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated subset of {','.join(METHODS)} (default erm, "
                        "gan-aug, genint, genint-transfer, cgn, real+cgn; --quick adds the "
                        "controls random-directions and matched-norm; genint+cgn combines the "
                        "real, intervened and counterfactual streams in one run)")
    p.add_argument("--generated-only", type=int, default=None, metavar="N",
                   help="also train classifiers only on N generated images per set "
                        "(observational, interventional, the two controls): the GenInt "
                        "paper's Table 4 (default 0: off)")
    p.add_argument("--select", choices=("last", "val", "oracle"), default=None,
                   help="model selection: last weights, the best on the val split drawn from "
                        "the training distribution (DomainBed's training-domain validation), or "
                        "oracle: the best on the test distribution's val-ood split (an upper "
                        "bound, marked as such) (default last)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch threads when --jobs is 1 (default {d.threads})")
    p.add_argument("--jobs", type=int, default=None,
                   help=f"processes at once, one torch thread each: the CGN trains beside the "
                        f"GAN stages, then the classifier runs share them; 1 runs everything "
                        f"in one process (default {d.jobs})")
    p.add_argument("--resume", action="store_true", default=None,
                   help="keep the classifier runs already finished in OUT/runs whose settings, "
                        "data and generators are unchanged (an interrupted table goes on)")
    add_config_flag(p)
    p.set_defaults(func=demo_main)


def demo_main(args) -> int:
    from pathlib import Path

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder for the report")

    from ..demo import DemoConfig, quick_config, run_demo, write_summary

    overrides = {k: getattr(args, k) for k in ("seeds", "steps", "gan_steps", "gan_batch_size",
                                               "cgn_steps", "scale", "intervention_mode",
                                               "cgn_checkpoint", "cgn_set", "cgn_epochs",
                                               "intervention_style", "lambda1", "lambda2",
                                               "threads", "jobs", "resume", "select",
                                               "generated_only")
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
