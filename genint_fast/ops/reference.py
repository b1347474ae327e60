"""Plain-PyTorch definitions of every fused op: the definition of correct.

These are written for clarity, not speed: they materialise whatever intermediate the formula
names. The tests compare the fused ops with them for values and gradients.
"""
from __future__ import annotations

import torch


def steer(z, directions, sigma, mu, idx, alpha, mode="add", clamp=None):
    """Latent steering, SPEC section 4.

    add: z* = z + sum_m sigma[idx[b,m]] * alpha[b,m] * U[idx[b,m]] - mu
    set: for m in order, z <- z - ((z - mu) . u) u + alpha[b,m] u with u = U[idx[b,m]]
    clamp: output clamped to [-clamp, clamp].
    """
    if mu is None:
        mu = torch.zeros_like(directions[0])
    if mode == "add":
        u = directions[idx]                                   # (B, M, D)
        coef = sigma[idx] * alpha                             # (B, M)
        out = z + (coef.unsqueeze(-1) * u).sum(1) - mu
    elif mode == "set":
        out = z
        for m in range(idx.shape[1]):
            u = directions[idx[:, m]]                         # (B, D)
            p = ((out - mu) * u).sum(-1, keepdim=True)
            out = out - p * u + alpha[:, m : m + 1] * u
    else:
        raise ValueError(f'mode must be "add" or "set", got {mode!r}')
    if clamp is not None:
        out = out.clamp(-clamp, clamp)
    return out
