"""Data: the built-in biased-digits benchmark and real-image loaders (NVIDIA DALI or torch).

- make_biased_digits / export_biased_digits: SPEC section 10, as tensors or an image-folder tree
  (`benchmark` holds its names and sizes, `shapes` the digit shapes, `digits` the painting,
  `export` the image folders);
- make_loader(root, loader="torch"|"dali", ...): image-folder loaders with one interface (DALI:
  the optional [dali] extra), over the one image-folder reader (`folder`);
- parse_source (`sources`): the one grammar of a data-source string;
- scan_image_folder / validate_files: the tree scan and the cached corrupt-file check.

Names are loaded on first use, so that the torch-free modules (`benchmark`, `sources`) can be
imported without torch.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "SPLITS": "benchmark", "VARIANTS": "benchmark",
    "BiasedDigits": "digits", "make_biased_digits": "digits",
    "export_biased_digits": "export", "save_image_folder": "export",
    "AUGMENTATIONS": "loader", "LOADERS": "loader", "DaliImageLoader": "loader",
    "TorchImageLoader": "loader", "dali_available": "loader", "make_loader": "loader",
    "scan_image_folder": "validate", "validate_files": "validate",
}

__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
