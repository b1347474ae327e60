"""Moved to genint_fast.diagnostics.shape (the diagnostics of generators and generated data,
apart from the classifier protocols); the old import path names the same module for one
release."""
import sys

from ..diagnostics import shape as _moved

sys.modules[__name__] = _moved
