"""File writing shared by every module that saves state (checkpoints, networks, weights)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save_atomic"]


def save_atomic(obj, path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then os.replace.

    A kill at any moment leaves either the previous complete file or the new complete file under
    the final name, never a partial one (a stale `*.tmp<pid>` file may remain; it is ignored)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
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
