"""Config fields that carry their own meaning: a default, one line of help and, where the value
is one of a few names, the choices. Every command's settings are dataclasses built from these
(train's TrainConfig, the GAN's and the CGN's configs, the demo's DemoConfig), and the CLI turns
the fields into flags and help text (`genint_fast.cli.recipes.add_field_flags`), so a default or a
meaning is written once. Torch-free: `genint-fast --help` reads it."""
from __future__ import annotations

import dataclasses

__all__ = ["key", "field_default", "field_help"]


def key(default, help: str, *, choices=None, **kw):
    """A config field: its default, its one line of meaning and, optionally, its choices."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta,
                                 **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def field_default(f: dataclasses.Field):
    """A field's default value (a fresh copy for list and dict defaults)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def field_help(cls, name: str) -> str:
    """The help line of field `name` of dataclass `cls`."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["help"]
