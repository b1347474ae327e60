"""`genint-fast <command>`: the command-line interface.

Each command lives in the module that owns its work and registers itself through a function
`register(subparsers)` that adds a sub-parser whose `func(args) -> int` runs the command.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute commands, in the order their commands are listed in --help.
COMMAND_MODULES = [
    "genint_fast.bench_cli",
    "genint_fast.gen_cli",
    "genint_fast.cgn_cli",
    "genint_fast.data.cli",
    "genint_fast.train_cli",
    "genint_fast.eval_cli",
    "genint_fast.transfer_cli",
    "genint_fast.analyze_cli",
    "genint_fast.demo_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genint-fast",
        description="Generative interventions for causal learning, fused and overlapped.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Errors a user can cause end with one sentence, not a traceback.
        print(f"genint-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
