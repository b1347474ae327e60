"""`genint-fast <command>`: the command-line interface.

One module per command group in this package (bench, gen, cgn, data, train, eval, transfer,
analyze, demo); each registers its commands through `register(subparsers)`, adding sub-parsers
whose `func(args) -> int` runs the command. The library modules they drive never import from here.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute commands, in the order their commands are listed in --help.
COMMAND_MODULES = [
    "genint_fast.cli.bench",
    "genint_fast.cli.gen",
    "genint_fast.cli.cgn",
    "genint_fast.cli.data",
    "genint_fast.cli.train",
    "genint_fast.cli.eval",
    "genint_fast.cli.transfer",
    "genint_fast.cli.analyze",
    "genint_fast.cli.demo",
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

