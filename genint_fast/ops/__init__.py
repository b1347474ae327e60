"""Fused ops of genint_fast. Each op has a plain-PyTorch definition in
genint_fast.ops.reference, which is what the tests hold the fused kernels to.

Importing this package loads the native extension genint_fast._C, which registers the ops as
torch.ops.genint_fast.*; every module that calls torch.ops.genint_fast.* lives in this package
(or imports it first), so the ops are registered before they are used.
"""
import torch  # noqa: F401  (loads libtorch, which genint_fast._C links against)

try:
    from .. import _C  # noqa: F401  (registers torch.ops.genint_fast.*)
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "genint_fast's native extension genint_fast._C is not built or does not load "
        f"({exc}); build it with `python setup.py build_ext --inplace` or "
        "`pip install -e . --no-build-isolation` in the repository root."
    ) from None

from . import reference  # noqa: E402
from .steer import sample_steps, steer  # noqa: E402
from .mmd import MMDTarget, mmd, style_loss  # noqa: E402

__all__ = ["steer", "sample_steps", "reference", "mmd", "style_loss", "MMDTarget"]
