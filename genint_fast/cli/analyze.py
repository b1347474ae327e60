"""`genint-fast analyze correlation|bound|interventions`: what interventions do to the data.

correlation: the nuisance-label correlation of real, observational and intervened images
    (genint_fast.diagnostics.correlation; SPEC 8), as times better than chance.
bound: the causal-bound score log P(x | z) of held-out real images for a sweep of strategies
    (truncation x top-k x scale); the best strategy is the one to train with (SPEC 4, 8).
interventions: on the built-in biased digits, the nuisance-label agreement and class consistency
    of observational, intervened and control samples (genint_fast.diagnostics.nuisance).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data.sources import source_help

__all__ = ["register"]


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _floats(text):
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def _common(p):
    p.add_argument("--generator", required=True,
                   help="a `genint-fast gan` checkpoint, a BigGAN name or folder, or random:...")
    p.add_argument("--directions", default=None, metavar="FILE",
                   help="directions file (default: exact SVD directions, --num-directions)")
    p.add_argument("--num-directions", type=int, default=20)
    p.add_argument("--data", default="digits:colored:1.0",
                   help="real images: " + source_help("its validation split"))
    p.add_argument("--n", type=int, default=1000, help="images per set (default 1000)")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--scale", type=float, default=4.0,
                   help="steps U[-s, s] in standard deviations (default 4)")
    p.add_argument("--reference-ranges", action="store_true",
                   help="the reference code's per-direction table instead of --scale; its "
                        "ranges are latent coordinates, so it needs --mode set")
    p.add_argument("--mode", choices=["add", "set"], default="add")
    p.add_argument("--style", choices=["multi", "one"], default="multi")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="JSON", help="also write the results here")
    p.add_argument("--device", default="cpu")


def register(sub):
    p = sub.add_parser("analyze", help="measure what interventions do to the data",
                       description=__doc__.split("\n\n")[0])
    s = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    s.required = True
    c = s.add_parser("correlation", help="nuisance-label correlation (times better than chance)")
    _common(c)
    c.add_argument("--steps", type=int, default=400, help="nuisance predictor training steps")
    c.set_defaults(func=correlation_main)
    b = s.add_parser("bound", help="causal-bound score log P(x|z) over a sweep of strategies")
    _common(b)
    b.add_argument("--sweep-truncation", default=None, help="e.g. 0.5,1.0 (default: --truncation)")
    b.add_argument("--sweep-top-k", default=None, help="e.g. 10,20 (default: --top-k)")
    b.add_argument("--sweep-scale", default="0,1,2,4,8",
                   help="e.g. 0,1,2,4,8 (0 = observational samples)")
    b.set_defaults(func=bound_main)
    i = s.add_parser("interventions", help="biased digits: nuisance-label agreement and class "
                                           "consistency of observational, intervened and "
                                           "control samples")
    _common(i)
    i.add_argument("--readers", default=None, metavar="FILE",
                   help="cache file of the measuring readers (trained when absent)")
    i.set_defaults(func=interventions_main)
    g = s.add_parser("generated-only", help="the paper's Table 4: a classifier trained only on "
                                             "--n generated images (observational over a "
                                             "truncation sweep, interventional, the two "
                                             "controls), tested on the real test-id and "
                                             "test-ood splits")
    _common(g)
    g.add_argument("--sweep-truncation", default="0.5,1.0",
                   help="observational rows' truncations (default 0.5,1.0)")
    g.add_argument("--seeds", type=int, default=5, help="classifiers per set (default 5)")
    g.add_argument("--train-steps", type=int, default=600,
                   help="classifier SGD steps on each generated set (default 600)")
    g.add_argument("--threads", type=int, default=None, help="torch threads")
    g.set_defaults(func=generated_only_main)


def _setup(args):
    import torch

    from ..directions import discover, load_directions
    from ..generators import load_generator

    if args.n < 20:
        raise ValueError(f"--n must be >= 20, got {args.n}")
    if args.reference_ranges and args.mode == "add":
        from .gen import reference_ranges_need_set
        raise ValueError(reference_ranges_need_set("--scale"))
    if args.out and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a .json file name")
    torch.manual_seed(args.seed)
    gen = load_generator(args.generator, device=args.device)
    if args.directions:
        d = load_directions(args.directions, gen)
    else:
        d = discover(gen, min(args.num_directions, gen.latent_dim), method="svd",
                     truncation=args.truncation)
    sweep = getattr(args, "sweep_top_k", None)
    tops = _floats(sweep) if sweep else [args.top_k]
    if max(tops) > d.k:
        where = (f"in {args.directions}" if args.directions else
                 f"discovered: min(--num-directions, latent size {gen.latent_dim})")
        flag = "--sweep-top-k" if sweep else "--top-k"
        raise ValueError(f"{flag} {max(tops):g} is more than the {d.k} directions ({where}); "
                         f"pass {flag} {d.k} or less")
    return gen, d


def _sampler(gen, d, args, *, truncation=None, top_k=None, scale=None, seed=None):
    from ..intervene import InterventionSampler, ObservationalSampler, reference_ranges

    t = args.truncation if truncation is None else truncation
    k = args.top_k if top_k is None else int(top_k)
    s = args.scale if scale is None else scale
    seed = args.seed if seed is None else seed
    if not args.reference_ranges and s == 0:
        return ObservationalSampler(gen, truncation=t, batch_size=64, seed=seed)
    ranges = reference_ranges(k) if args.reference_ranges else None
    return InterventionSampler(gen, d, truncation=t, top_k=k, m=min(args.m, k), scale=s,
                               ranges=ranges, mode=args.mode, style=args.style,
                               per_latent=min(5, k), batch_size=64, seed=seed)


def _real(args, split="val"):
    """(images in [0, 1], labels) of the real data: the digits' validation split, or a folder."""
    import torch

    from ..data.sources import parse_source

    src = parse_source(args.data)
    if not src.is_folder:
        from ..data.digits import make_biased_digits

        ds = make_biased_digits(src.variant, split, src.rho, n=args.n)
        return ds.float_images(), ds.labels
    from ..data.loader import make_loader

    loader = make_loader(src.root, loader="torch", batch_size=256, size=32, augment="none",
                         shuffle=True, seed=args.seed, crop_fraction=1.0, mean=(0.0, 0.0, 0.0),
                         std=(1.0, 1.0, 1.0), num_threads=0)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x.float().cpu())
        ys.append(y.cpu())
        if sum(v.shape[0] for v in xs) >= args.n:
            break
    return torch.cat(xs)[:args.n], torch.cat(ys)[:args.n]


def _write(args, result):
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        _log(f"-> {path}")


def correlation_main(args) -> int:
    from ..diagnostics.correlation import correlation_score, train_nuisance_predictor
    from ..intervene import draw_images

    gen, d = _setup(args)
    inter = _sampler(gen, d, args)
    if not hasattr(inter, "directions"):
        raise ValueError("correlation needs interventions: give --scale > 0 or "
                         "--reference-ranges")
    _log(f"training the nuisance predictor on intervened images ({args.steps} steps)")
    pred = train_nuisance_predictor(inter, steps=args.steps, seed=args.seed, log=_log)
    sets = {"real (validation split)": _real(args),
            "observational": draw_images(_sampler(gen, d, args, scale=0, seed=args.seed + 1),
                                         args.n),
            "intervened": draw_images(_sampler(gen, d, args, seed=args.seed + 2), args.n)}
    rows = {name: correlation_score(pred, x, y, seed=args.seed) for name, (x, y) in sets.items()}
    print("| images | nuisance -> label accuracy | chance | times chance |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['accuracy']:.1f} | {100 * r['chance']:.1f} | "
              f"{r['times_chance']:.2f} |")
    _write(args, {"analysis": "correlation", "rows": rows, "args": vars(args) | {"func": None}})
    return 0


def bound_main(args) -> int:
    import itertools

    from ..diagnostics.correlation import bound_features, causal_bound_score, median_bandwidth
    from ..intervene import draw_images

    gen, d = _setup(args)
    real, _ = _real(args)
    fr = bound_features(real)
    obs, _ = draw_images(_sampler(gen, d, args, scale=0), args.n)
    h = median_bandwidth(fr, bound_features(obs))
    ts = _floats(args.sweep_truncation) if args.sweep_truncation else [args.truncation]
    ks = [int(v) for v in _floats(args.sweep_top_k)] if args.sweep_top_k else [args.top_k]
    ss = [None] if args.reference_ranges else _floats(args.sweep_scale)
    rows = []
    for t, k, s in itertools.product(ts, ks, ss):
        x, _ = draw_images(_sampler(gen, d, args, truncation=t, top_k=k, scale=s), args.n)
        score = causal_bound_score(fr, bound_features(x), h)
        rows.append({"truncation": t, "top_k": k, "scale": "reference" if s is None else s,
                     "log_p": score})
        _log(f"  t={t} top_k={k} scale={rows[-1]['scale']}: log P(x|z) = {score:.4f}")
    best = max(rows, key=lambda r: r["log_p"])
    print("| truncation | top-k | scale | log P(x\\|z) |\n|---|---|---|---|")
    for r in rows:
        mark = " (best)" if r is best else ""
        print(f"| {r['truncation']} | {r['top_k']} | {r['scale']} | {r['log_p']:.4f}{mark} |")
    _write(args, {"analysis": "bound", "bandwidth": h, "rows": rows, "best": best,
                  "args": vars(args) | {"func": None}})
    return 0


def interventions_main(args) -> int:
    from ..diagnostics.nuisance import (cached_readers, format_measures_table, measure_images,
                                train_readers)
    from ..intervene import ObservationalSampler, draw_images, matched_norm_scale

    from ..data.benchmark import CONTINUOUS_VARIANTS
    from ..data.sources import parse_source

    src = parse_source(args.data, must_exist=False)
    if src.is_folder:
        raise ValueError("analyze interventions reads nuisances back from pixels and works on "
                         "the built-in digits only (--data digits:<variant>[:RHO]); use "
                         "`analyze correlation` for other data")
    variant = src.variant
    gen, d = _setup(args)
    readers = (cached_readers(variant, args.readers, log=_log) if args.readers
               else train_readers(variant))
    inter = _sampler(gen, d, args)
    sets = {"observational": _sampler(gen, d, args, scale=0, seed=args.seed + 1),
            "intervened": inter}
    if hasattr(inter, "directions"):
        from ..intervene import InterventionSampler

        sets["random directions (control)"] = InterventionSampler(
            gen, d.random_like(args.seed), truncation=args.truncation, top_k=inter.top_k,
            m=inter.m, scale=inter.scale, ranges=inter.ranges, mode=args.mode, style=args.style,
            per_latent=inter.per_latent, batch_size=64, seed=args.seed + 2)
        factor = matched_norm_scale(inter)
        sets[f"matched norm x{factor:.2f} (control)"] = ObservationalSampler(
            gen, truncation=args.truncation, batch_size=64, seed=args.seed + 3,
            latent_scale=factor)
    real = _real(args)
    ref = None
    if variant in CONTINUOUS_VARIANTS:     # the nuisance's value against the training split's
        from ..data.digits import make_biased_digits
        from ..diagnostics.nuisance import value_reference

        train = make_biased_digits(variant, "train", src.rho)
        ref = value_reference(readers, train.float_images(), train.labels)
    rows = {"real (validation split)": measure_images(readers, *real, reference=ref)}
    for name, s in sets.items():
        rows[name] = measure_images(readers, *draw_images(s, args.n), reference=ref)
    print(format_measures_table({"rows": rows}))
    _write(args, {"analysis": "interventions", "readers_accuracy": readers.accuracy,
                  "rows": rows, "args": vars(args) | {"func": None}})
    return 0


def generated_only_main(args) -> int:
    from ..data.digits import make_biased_digits
    from ..data.sources import parse_source
    from ..intervene import make_sampler
    from ..train.generated_only import format_generated_only, generated_only

    src = parse_source(args.data, must_exist=False)
    if src.is_folder:
        raise ValueError("analyze generated-only tests on the built-in digits' test-id and "
                         "test-ood splits: give --data digits:<variant>[:RHO]")
    if args.seeds < 1 or args.train_steps < 1:
        raise ValueError(f"--seeds and --train-steps must be >= 1, got {args.seeds}, "
                         f"{args.train_steps}")
    if args.reference_ranges:
        raise ValueError("analyze generated-only steers with --scale; drop --reference-ranges")
    gen, d = _setup(args)
    tests = {split: make_biased_digits(src.variant, split, src.rho)
             for split in ("test-id", "test-ood")}
    common = dict(top_k=args.top_k, m=min(args.m, args.top_k), mode=args.mode,
                  style=args.style)
    samplers = {f"observational (t = {t:g})":
                (lambda seed, t=t: make_sampler(gen, d, truncation=t, scale=0.0, seed=seed,
                                                **common))
                for t in _floats(args.sweep_truncation)}
    for name, control in ((f"interventional (s = {args.scale:g})", "none"),
                          ("random directions (control)", "random-directions"),
                          ("matched norm (control)", "matched-norm")):
        samplers[name] = (lambda seed, c=control: make_sampler(
            gen, d, truncation=args.truncation, scale=args.scale, seed=seed, control=c,
            **common))
    result = generated_only(samplers, tests, n=args.n, seeds=args.seeds,
                            steps=args.train_steps, num_classes=gen.num_classes,
                            threads=args.threads, log=_log)
    print(format_generated_only(result))
    _write(args, {"analysis": "generated-only", **result, "args": vars(args) | {"func": None}})
    return 0
