"""One grammar for where images come from, read by every command (train, gan, cgn, transfer,
analyze, eval): the one parser of a data-source string.

- ``digits:<variant>[:RHO]``: the built-in biased digits (`genint_fast.data.digits`), RHO the
  training correlation (default 1.0; cmnist has environments instead);
- ``folder:DIR``, or a bare ``DIR``: an image folder (DIR/<class>/<image>).

`parse_source` returns a `Source` whose str() is the canonical spelling (``folder:DIR`` for a
bare DIR), so a config that stores the string stores one form.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .benchmark import DEFAULT_RHO, VARIANTS, canonical_variant

__all__ = ["Source", "parse_source", "source_help"]


def source_help(split: str, folder: str = "class sub-folders") -> str:
    """The --help text of a data-source flag: the accepted forms, which built-in split the
    command reads and what it expects of a folder."""
    return (f"digits:<{'|'.join(VARIANTS)}>[:RHO] (built-in biased digits, {split}), "
            f"folder:DIR or a bare DIR ({folder})")


@dataclass(frozen=True)
class Source:
    kind: str                      # "digits" or "folder"
    variant: str | None = None     # digits: the canonical variant name
    rho: float | None = None       # digits: the training correlation
    root: str | None = None        # folder: the directory

    @property
    def is_folder(self) -> bool:
        return self.kind == "folder"

    def __str__(self) -> str:
        return f"folder:{self.root}" if self.is_folder else f"digits:{self.variant}:{self.rho:g}"


def parse_source(spec, *, flag: str = "--data", must_exist: bool = True) -> Source:
    """Parse a data-source string (see the module docstring); every error is one sentence
    naming `flag` and the accepted forms. must_exist: refuse a folder that does not exist."""
    forms = f"digits:<{'|'.join(VARIANTS)}>[:RHO], folder:DIR or a folder DIR"
    text = str(spec).strip()
    if not text:
        raise ValueError(f"{flag} is empty; give {forms}")
    if text.startswith("digits:") or text == "digits":
        parts = text.split(":")
        variant = canonical_variant(parts[1]) if len(parts) > 1 else ""
        if len(parts) not in (2, 3) or variant not in VARIANTS:
            raise ValueError(f"{flag} {text!r} names no built-in variant; give {forms}")
        try:
            rho = float(parts[2]) if len(parts) == 3 else DEFAULT_RHO
        except ValueError:
            raise ValueError(f"{flag} {text!r} has a bad RHO; give digits:{variant}:RHO with RHO "
                             "a number in [0, 1]") from None
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"{flag} {text!r}: RHO must be in [0, 1], got {rho:g}")
        return Source("digits", variant=variant, rho=rho)
    root = text[len("folder:"):] if text.startswith("folder:") else text
    if must_exist and not Path(root).is_dir():
        raise ValueError(f"{flag} {text!r} is not an existing folder; give {forms} (an image "
                         "folder holds DIR/<class>/<image> files)")
    return Source("folder", root=root)
