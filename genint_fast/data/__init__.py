"""Data: the built-in biased-digits benchmark and real-image loaders (NVIDIA DALI or torch).

- make_biased_digits / export_biased_digits: SPEC section 10, as tensors or an image-folder tree.
- make_loader(root, loader="torch"|"dali", ...): image-folder loaders with one interface (DALI:
  the optional [dali] extra).
- scan_image_folder / validate_files: the tree scan and the cached corrupt-file check.
"""
from .digits import (  # noqa: F401
    SPLITS,
    VARIANTS,
    BiasedDigits,
    export_biased_digits,
    make_biased_digits,
    save_image_folder,
)
from .loader import (  # noqa: F401
    AUGMENTATIONS,
    LOADERS,
    DaliImageLoader,
    TorchImageLoader,
    dali_available,
    make_loader,
)
from .validate import scan_image_folder, validate_files  # noqa: F401

__all__ = [
    "SPLITS", "VARIANTS", "BiasedDigits", "export_biased_digits", "make_biased_digits",
    "save_image_folder", "AUGMENTATIONS", "LOADERS", "DaliImageLoader", "TorchImageLoader",
    "dali_available", "make_loader", "scan_image_folder", "validate_files",
]
