"""Moved to genint_fast.diagnostics.nuisance (the diagnostics of generators and generated data,
apart from the classifier protocols); the old import path names the same module for one
release."""
import sys

from ..diagnostics import nuisance as _moved

sys.modules[__name__] = _moved
