"""Moved to genint_fast.classifier.models (the leaf that train/ and eval/ share); the old import
path names the same module for one release."""
import sys

from ..classifier import models as _models

sys.modules[__name__] = _models
