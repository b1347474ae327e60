"""File reading and writing shared by every module that saves state (checkpoints, networks,
weights) or reads a recipe. Torch is imported where a function needs it, so the torch-free
configs (train, demo, the CLI's recipes) can read YAML through here."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["save_atomic", "write_text_atomic", "copy_atomic", "load_state", "read_json",
           "read_yaml_mapping"]


def save_atomic(obj, path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then os.replace.

    A kill at any moment leaves either the previous complete file or the new complete file under
    the final name, never a partial one (a stale `*.tmp<pid>` file may remain; it is ignored)."""
    import torch

    return _write_atomic(path, lambda fh: torch.save(obj, fh))


def write_text_atomic(text: str, path) -> Path:
    """Write a UTF-8 text file (a report, a JSON record) the same all-or-nothing way."""
    return _write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def copy_atomic(src, path) -> Path:
    """Copy the file src to path the same all-or-nothing way."""
    import shutil

    with open(src, "rb") as fin:
        return _write_atomic(path, lambda fh: shutil.copyfileobj(fin, fh))


def _write_atomic(path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems cannot fsync a directory; the rename is still atomic
        pass
    return path


def load_state(path, fmt: str, what: str, *, missing: str | None = None, weights_only=False) -> dict:
    """torch.load a dict saved with a "format" entry and check it, with one clear sentence per
    failure: FileNotFoundError (no file; `missing` says how to make one), RuntimeError (not
    readable), ValueError (another kind of file)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}" + (f"; {missing}" if missing else ""))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        raise RuntimeError(f"cannot read {what} {path} ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(f"{path} is not a {what} (expected format {fmt!r})")
    return state


def read_json(path, what: str, shipped: str | None = None):
    """Parse a JSON file: `path`, or the package's resources/<shipped> when path is None.
    A file that cannot be read or parsed is one ValueError sentence naming `what`; returns
    (data, where) with `where` the name to use in later messages."""
    import json

    if path is None:
        from importlib.resources import files
        text = files("genint_fast").joinpath(f"resources/{shipped}").read_text(encoding="utf-8")
        where = f"the shipped {shipped}"
    else:
        where = str(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"cannot read the {what} {path}: {e.strerror}; check the path.") \
                from None
    try:
        return json.loads(text), where
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not valid JSON ({e.msg}, line {e.lineno}); fix or "
                         "replace it.") from None


def read_yaml_mapping(path, what: str, hint: str = "") -> dict:
    """The mapping in a YAML file (an empty file is {}). A missing file, invalid YAML or anything
    but a mapping is one sentence naming `what` (e.g. "recipe"); `hint` follows a missing file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no {what} at {p}{'; ' + hint if hint else ''}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{what} {p} is not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{what} {p} must hold a mapping of keys to values")
    return data
