"""Fused ops of genint_fast. Each op has a plain-PyTorch definition in
genint_fast.ops.reference, which is what the tests hold the fused kernels to."""
from . import reference
from .steer import sample_steps, steer
from .mmd import MMDTarget, mmd, style_loss

__all__ = ["steer", "sample_steps", "reference", "mmd", "style_loss", "MMDTarget"]
