"""genint_fast: generative interventions (GenInt) and counterfactual generative networks (CGN),
batched, fused and overlapped.

Importing the package loads the native extension genint_fast._C, which registers the fused ops
as torch.ops.genint_fast.*; their Python API is genint_fast.ops.
"""
__version__ = "0.1.0"

import torch  # noqa: F401  (loads libtorch, which genint_fast._C links against)

try:
    from . import _C  # noqa: F401  (registers torch.ops.genint_fast.*)
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "genint_fast's native extension genint_fast._C is not built or does not load "
        f"({exc}); build it with `python setup.py build_ext --inplace` or "
        "`pip install -e . --no-build-isolation` in the repository root."
    ) from None

from . import ops  # noqa: E402,F401

__all__ = ["ops", "__version__"]
