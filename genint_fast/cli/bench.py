"""`genint-fast bench`: run the throughput benchmarks and print their tables.

Each benchmark module in genint_fast/benchmarks/ has `run(device, quick) -> list[Row]`, timing
our path and its baseline in the same run.
"""
from __future__ import annotations

import importlib
import json
import os
import sys

# name -> module; each module's run() returns genint_fast.benchmarks.common.Row objects.
BENCHMARKS = {
    "steer": "genint_fast.benchmarks.steer",
    "mmd": "genint_fast.benchmarks.mmd",
    "loader": "genint_fast.benchmarks.loader",
    "generate": "genint_fast.benchmarks.generate",
    "transfer": "genint_fast.benchmarks.transfer",
    "train": "genint_fast.benchmarks.train",
    "pipeline": "genint_fast.benchmarks.pipeline",
    "corruptions": "genint_fast.benchmarks.corruptions",
}


def register(sub) -> None:
    p = sub.add_parser("bench", help="run throughput benchmarks against their baselines")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.set_defaults(func=main)


def main(args) -> int:
    import torch

    from ..benchmarks.common import format_table, machine

    if args.json and os.path.isdir(args.json):
        raise ValueError(f"--json {args.json} is a folder; give a .json file name")
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    if not args.names:
        from ..data.loader import dali_available

        if not dali_available():   # the loader benchmark compares against the optional DALI
            names.remove("loader")
            print("skipping the loader benchmark: NVIDIA DALI is not installed (pip install "
                  "genint-fast[dali])", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is visible")
    all_rows = {}
    missed = 0
    for name in names:
        rows = importlib.import_module(BENCHMARKS[name]).run(device=device, quick=args.quick)
        all_rows[name] = rows
        print(format_table(rows, title=name, machine_line=machine(device)))
        print(flush=True)
        missed += sum(1 for r in rows if r.passed is False)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(device),
                       "rows": {k: [r.as_dict() for r in v] for k, v in all_rows.items()}},
                      fh, indent=2)
    if missed:
        print(f"{missed} benchmark bar(s) missed", file=sys.stderr)
    return 0
