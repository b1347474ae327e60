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


# --------------------------------------------------------------------------------------- MMD
# Style losses (SPEC section 5): MMD^2 between two sets of feature vectors, one vector per
# spatial position. These definitions materialise the full kernel matrices.


def mmd_sets(t):
    """(B, C, H, W) feature maps -> (B, H*W, C) sets of vectors; (B, N, C) is returned as is."""
    if t.dim() == 4:
        return t.flatten(2).transpose(1, 2)
    if t.dim() == 3:
        return t
    raise ValueError(f"features must be (B, C, H, W) or (B, N, C), got a {t.dim()}-D tensor")


def gaussian_default_gamma(y):
    """The default bandwidth of the Gaussian kernel, one per target batch element b:
    gamma_b = 1 / (2 * mean_ij ||y_bi - y_bj||^2), where the mean over all pairs of target vectors
    equals 2 * sum_c Var(y_bc) (population variance): gamma_b = 1 / (4 * sum_c Var_b(y_c)). It is
    exact, costs O(M C), needs no N x M matrix, is fixed for a fixed target, and depends on its
    own target only (so batching never changes a pair's loss). Falls back to 1 / C where a target
    has no spread. Returns a float64 tensor (B_y,) on y's device, computed there (no host
    synchronisation)."""
    y = mmd_sets(y).detach().double()
    spread = y.var(dim=1, unbiased=False).sum(-1)
    ok = torch.isfinite(spread) & (spread > 0)
    return torch.where(ok, 1.0 / (4.0 * spread.clamp_min(1e-300)),
                       torch.full_like(spread, 1.0 / y.shape[-1]))


def _gamma_like(gamma, t):
    """gamma (a number, or a (1,) / (B,) / 0-d tensor) shaped (G, 1, 1) in t's dtype."""
    if torch.is_tensor(gamma):
        return gamma.detach().to(device=t.device, dtype=t.dtype).reshape(-1, 1, 1)
    return gamma


def _mmd_from_kernel_matrices(kxx, kyy, kxy, unbiased):
    n, m = kxx.shape[-1], kyy.shape[-1]
    if unbiased:
        sxx = kxx.sum((1, 2)) - kxx.diagonal(dim1=1, dim2=2).sum(-1)
        syy = kyy.sum((1, 2)) - kyy.diagonal(dim1=1, dim2=2).sum(-1)
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * kxy.sum((1, 2)) / (n * m)
    return kxx.mean((1, 2)) + kyy.mean((1, 2)) - 2 * kxy.mean((1, 2))


def mmd_linear(x, y, unbiased=False):
    """k(a, b) = a.b; biased MMD^2 = ||mean(X) - mean(Y)||^2. Returns (B,)."""
    x, y = mmd_sets(x), mmd_sets(y)
    return _mmd_from_kernel_matrices(x @ x.transpose(1, 2), y @ y.transpose(1, 2),
                                     x @ y.transpose(1, 2), unbiased)


def mmd_poly2(x, y, unbiased=False):
    """k(a, b) = (a.b)^2; biased MMD^2 = ||X^T X / N - Y^T Y / M||_F^2. Returns (B,)."""
    x, y = mmd_sets(x), mmd_sets(y)
    return _mmd_from_kernel_matrices((x @ x.transpose(1, 2)).square(),
                                     (y @ y.transpose(1, 2)).square(),
                                     (x @ y.transpose(1, 2)).square(), unbiased)


def gaussian_kernel_matrix(a, b, gamma):
    """exp(-gamma ||a_i - b_j||^2), the (B, N, M) matrix, through |a|^2 + |b|^2 - 2 a.b; gamma a
    number or one value per batch element ((B,) tensor)."""
    d2 = (a.square().sum(-1, keepdim=True) + b.square().sum(-1).unsqueeze(1)
          - 2 * a @ b.transpose(1, 2))
    return torch.exp(-_gamma_like(gamma, d2) * d2.clamp_min(0))


def mmd_gaussian(x, y, gamma=None, unbiased=False):
    """k(a, b) = exp(-gamma ||a - b||^2); gamma: a number, a (B,) tensor (one per pair), or None
    for gaussian_default_gamma(y) (one per target). Returns (B,)."""
    x, y = mmd_sets(x), mmd_sets(y)
    if gamma is None:
        gamma = gaussian_default_gamma(y)
    return _mmd_from_kernel_matrices(gaussian_kernel_matrix(x, x, gamma),
                                     gaussian_kernel_matrix(y, y, gamma),
                                     gaussian_kernel_matrix(x, y, gamma), unbiased)


BN_EPS = 1e-5


def mmd_bn(x, y, unbiased=False):
    """sum_c (mu_x,c - mu_y,c)^2 + (sigma_x,c - sigma_y,c)^2 with sigma = sqrt(Var + 1e-5)
    (population variance; Bessel-corrected when unbiased). Returns (B,)."""
    x, y = mmd_sets(x), mmd_sets(y)
    sx = torch.sqrt(x.var(dim=1, unbiased=unbiased) + BN_EPS)
    sy = torch.sqrt(y.var(dim=1, unbiased=unbiased) + BN_EPS)
    return (x.mean(1) - y.mean(1)).square().sum(-1) + (sx - sy).square().sum(-1)


def mmd(x, y, kernel="poly2", gamma=None, unbiased=False, reduction="mean"):
    """Materialised definition of genint_fast.ops.mmd; y of batch 1 is broadcast."""
    fns = {"linear": mmd_linear, "poly2": mmd_poly2, "bn": mmd_bn}
    x3, y3 = mmd_sets(x), mmd_sets(y)
    if y3.shape[0] == 1 and x3.shape[0] > 1:
        y3 = y3.expand(x3.shape[0], -1, -1)
    if kernel == "gaussian":
        out = mmd_gaussian(x3, y3, gamma, unbiased)
    else:
        out = fns[kernel](x3, y3, unbiased)
    if reduction == "mean":
        return out.mean()
    if reduction == "sum":
        return out.sum()
    return out
