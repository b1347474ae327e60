"""genint_fast: generative interventions (GenInt) and counterfactual generative networks (CGN),
batched, fused and overlapped.

Importing the package is cheap: it imports neither torch nor the native extension, so that
`genint-fast --help` starts at once. The fused ops (torch.ops.genint_fast.*, registered by the
native extension genint_fast._C) are loaded by genint_fast.ops, their Python API, which is
imported on first use: `import genint_fast; genint_fast.ops.steer(...)` works.
"""
__version__ = "0.1.0"

__all__ = ["ops", "__version__"]


def __getattr__(name):
    # Lazy submodule: genint_fast.ops loads torch and the native extension on first access.
    if name == "ops":
        import importlib

        return importlib.import_module(".ops", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"ops"})
