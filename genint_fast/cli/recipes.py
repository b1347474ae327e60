"""How a command's settings reach it: flags made from config fields, YAML recipes and
KEY=VALUE overrides (gan, cgn, demo; `train` reads its TrainConfig keys the same two ways).

`add_field_flags` turns fields of a config dataclass (`genint_fast.config_fields.key`: default,
help, choices) into flags, so a default and its meaning are written once, in the config;
`field_values` reads them back for the config's constructor.

    genint-fast cgn --config configs/cgn_default.yaml data=digits:wildlife out=cgn.pt
    genint-fast demo --config configs/demo_cmnist.yaml seeds=3 --out out/cmnist

A recipe is a YAML mapping from the command's flag names (`lr-g` or `lr_g`, without the dashes)
to values; KEY=VALUE after the command sets one the same way. Both are turned into the flags they
name before argparse reads the line, so the flag definitions stay the one place that says what a
setting means, its type, choices and default: precedence is recipe < KEY=VALUE < flags, and a bad
value gets the flag's own message. A true boolean switch (`no-resume: true`) gives the flag, a
false one leaves it out. `train` has its own dataclass config with the same two forms.
"""
from __future__ import annotations

import argparse
import dataclasses
import re

RECIPE_COMMANDS = ("gan", "cgn", "demo")
_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.*)$", re.S)


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", default=None,
                   help="a recipe: YAML mapping of this command's flag names to values (e.g. "
                        "configs/); KEY=VALUE after the command sets one too; flags given win")


def add_field_flags(p, cls, names) -> None:
    """A --flag for each named field of config dataclass `cls`: its type, default, choices and
    help (with the default appended) come from the field."""
    from ..config_fields import field_default

    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f = fields[name]
        default = field_default(f)
        kw = {"dest": name, "default": default,
              "help": f"{f.metadata['help']} (default {default})".replace("%", "%%")}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if isinstance(default, bool):
            raise TypeError(f"{cls.__name__}.{name}: a switch needs its own flag")
        if default is not None:
            kw["type"] = type(default)
        p.add_argument("--" + name.replace("_", "-"), **kw)


def shown(value) -> str:
    """A config value as --help shows it (tuples and lists comma-separated, floats short)."""
    if isinstance(value, (list, tuple)):
        return ",".join(shown(v) for v in value)
    if isinstance(value, float):   # 8e-06 -> 8e-6
        return re.sub(r"e([+-])0+(?=\d)", r"e\1", f"{value:g}")
    return str(value)


_TYPES = {"int": int, "float": float, "str": str}


def add_unset_field_flag(p, dest, cls, name=None, *, defaults=None, more="", flag=None,
                         **kw) -> None:
    """A --flag for field `name` (default: `dest`) of config dataclass `cls` whose default stays
    None, for commands that must know whether the flag was given (presets, resumed checkpoints
    supply the value otherwise). Its help is the field's own, then `defaults` (where the value
    comes from when the flag is left out; default: the field's default), then `more`; its type
    (of the default, or of the annotation `T | None` when the default is None) and choices are
    the field's, unless `kw` says otherwise (metavar, type). `flag` names the flag when it is
    not --<dest>."""
    from ..config_fields import field_default

    f = next(f for f in dataclasses.fields(cls) if f.name == (name or dest))
    default = field_default(f)
    if "type" not in kw and isinstance(default, (int, float)) and not isinstance(default, bool):
        kw["type"] = type(default)
    elif "type" not in kw and default is None:   # `float | None`: the flag reads a float
        kinds = [t.strip() for t in str(f.type).split("|") if t.strip() != "None"]
        if len(kinds) == 1 and kinds[0] in _TYPES:
            kw["type"] = _TYPES[kinds[0]]
    if "choices" in f.metadata:
        kw.setdefault("choices", f.metadata["choices"])
    if defaults is None:
        defaults = f"default {shown(default)}"
    p.add_argument(flag or "--" + dest.replace("_", "-"), dest=dest, default=None,
                   help=f"{f.metadata['help']} ({defaults}){more}".replace("%", "%%"), **kw)


_BOUNDS = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1}


def check_bounds(args, rules) -> None:
    """Refuse a given flag outside its bound: rules maps "> 0", ">= 0" or ">= 1" to the flags'
    attribute names (a NaN fails every bound)."""
    for bound, attrs in rules.items():
        for attr in attrs:
            value = getattr(args, attr)
            if value is not None and not _BOUNDS[bound](value):
                raise ValueError(f"--{attr.replace('_', '-')} must be {bound}, got {value}")


def field_values(args: argparse.Namespace, names) -> dict:
    """{name: value} of the parsed flags that `add_field_flags` made."""
    return {n: getattr(args, n) for n in names}


def _options(parser: argparse.ArgumentParser) -> dict:
    """{dest: action} of the parser's --long options (not help, not --config)."""
    out = {}
    for a in parser._actions:   # argparse keeps no public list of a parser's actions
        longs = [o for o in a.option_strings if o.startswith("--")]
        if longs and a.dest not in ("help", "config"):
            out[longs[0][2:].replace("-", "_")] = a
    return out


def _flag_tokens(key: str, value, options: dict, where: str) -> list:
    name = key.replace("-", "_")
    action = options.get(name)
    if action is None:
        known = ", ".join(sorted(k.replace("_", "-") for k in options))
        raise ValueError(f"unknown key {key!r} in {where}; the keys are this command's flags: "
                         f"{known}")
    flag = next(o for o in action.option_strings if o.startswith("--"))
    if action.nargs == 0:   # a switch (store_true and the like)
        if isinstance(value, str):
            low = value.strip().lower()
            if low not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(f"{key} in {where} is a switch; give true or false, not "
                                 f"{value!r}")
            value = low in ("true", "yes", "1")
        return [flag] if value else []
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return [f"{flag}={value}"]


def expand(parser: argparse.ArgumentParser, argv: list) -> list:
    """argv with a recipe command's `--config YAML` and KEY=VALUE tokens turned into the flags
    they name (recipe first, then KEY=VALUE, then the flags as given)."""
    if not argv or argv[0] not in RECIPE_COMMANDS:
        return argv
    cmd, rest = argv[0], list(argv[1:])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[cmd]
    if cmd == "cgn" and rest[:1] == ["import"]:
        return argv
    options = _options(p)
    takes_value = {o for a in p._actions for o in a.option_strings if a.nargs != 0}
    config, overrides, flags = None, [], []
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok == "--config" and i + 1 < len(rest):
            config, i = rest[i + 1], i + 2
            continue
        if tok.startswith("--config="):
            config, i = tok.split("=", 1)[1], i + 1
            continue
        m = _KEY.match(tok)
        after_flag = i > 0 and rest[i - 1] in takes_value
        if m and not after_flag:
            overrides.append((m.group(1), m.group(2)))
        else:
            flags.append(tok)
        i += 1
    if config is None and not overrides:
        return argv
    merged = {}   # flag name -> (key as written, value, where): KEY=VALUE replaces the recipe's
    if config is not None:
        from ..io import read_yaml_mapping

        recipe = read_yaml_mapping(config, "recipe", "give a YAML file (see configs/)")
        for key, value in recipe.items():
            merged[str(key).replace("-", "_")] = (str(key), value, f"recipe {config}")
    for key, value in overrides:
        merged[key.replace("-", "_")] = (key, value, "the command line")
    tokens = []
    for key, value, where in merged.values():
        tokens += _flag_tokens(key, value, options, where)
    return [cmd, *tokens, *flags]
