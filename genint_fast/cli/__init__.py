"""`genint-fast <command>`: the command-line interface.

One module per command group in this package (bench, gen, cgn, data, train, eval, transfer,
analyze, demo); each registers its commands through `register(subparsers)`, adding sub-parsers
whose `func(args) -> int` runs the command. The library modules they drive never import from here.

Start-up stays fast: this package and every command module import only the standard library at
module level and in register(); torch and the library are imported inside the command functions,
so `genint-fast --help` and `genint-fast <command> --help` never import torch
(tests/test_startup.py checks it).

Errors a user can cause (a missing or corrupt file, a checkpoint of another kind, a wrong flag mix)
end with one line `genint-fast <command>: error: ...` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from .recipes import expand as expand_recipe

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

# The longest error line printed (a message quoting a whole file or state dict is cut).
MAX_MESSAGE = 600


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


# torch.load's long notices, and what they mean for a file given on the command line.
_TORCH_NOTICES = (
    # suggests weights_only=False, which is not what to do with a corrupt or foreign file
    ("Weights only load failed", "not a PyTorch checkpoint this command can read (corrupt, "
                                 "truncated or another kind of file)"),
    ("PytorchStreamReader failed", "the file is truncated or corrupt (not a complete PyTorch "
                                   "checkpoint); write it again"),
)


def one_line(message: str) -> str:
    """An error message as one line: whitespace runs (newlines too) become one space, torch's
    long notices become what they mean here, and very long messages are cut."""
    text = str(message)
    bad_device = re.search(r"device type at start of device string: (\S+)", text)
    if bad_device:
        return f"unknown device {bad_device.group(1)!r}; use --device cpu or cuda[:N]"
    for marker, meaning in _TORCH_NOTICES:
        cut = text.find(marker)
        if cut >= 0:
            # what precedes the notice, less a dangling "(" or "(SomeError: " before it
            head = re.sub(r"[\s(:]*(\b\w+(Error|Exception))?[\s(:]*$", "", text[:cut])
            text = f"{head}: {meaning}" if head else meaning
            break
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE - 3].rstrip() + "..."
    return text


def error_message(exc: BaseException) -> str:
    """The sentence printed for an error a user can cause."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and str(exc).startswith("No module"):
        return (f"the Python module {exc.name!r} is not installed; pip install the package that "
                "provides it")
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc.args[0], str):
        # an OSError from the system ([Errno N] ...): name the path and what went wrong
        where = f"{exc.filename}" if exc.filename is not None else ""
        if exc.filename2 is not None:
            where += f" -> {exc.filename2}"
        text = f"{where}: {exc.strerror}" if where else exc.strerror
        return one_line(f"{text}; check the path (and that it is the kind of file or folder "
                        "this option wants)")
    return one_line(str(exc) or type(exc).__name__)


def _user_import_error(exc: ImportError) -> bool:
    """An ImportError a user can fix: a package not installed, or the extension not built."""
    if "genint_fast._C" in str(exc):
        return True
    return (isinstance(exc, ModuleNotFoundError) and bool(exc.name)
            and not exc.name.startswith("genint_fast"))


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "eval" and argv[1].startswith("--") \
            and argv[1] not in ("-h", "--help"):
        argv.insert(1, "accuracy")   # `eval --checkpoint C ...` is the accuracy protocol
    try:   # gan / cgn / demo: `--config YAML` and KEY=VALUE become the flags they name
        argv = expand_recipe(parser, argv)
    except (ValueError, OSError, ImportError) as exc:
        print(f"genint-fast {argv[0]}: error: {error_message(exc)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"genint-fast {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, EOFError, ImportError) as exc:
        # Errors a user can cause end with one sentence, not a traceback. (OSError includes
        # FileNotFoundError, PermissionError, IsADirectoryError and PIL's UnidentifiedImageError;
        # ImportError: a package that is not installed, or the native extension not built.)
        if isinstance(exc, ImportError) and not _user_import_error(exc):
            raise   # a name missing inside our own modules is a bug: keep its traceback
        print(f"genint-fast {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 2
