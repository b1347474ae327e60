"""Fused latent steering (SPEC section 4) and the sampler of its random steps.

The op is declared in csrc/ops.cpp and implemented in csrc/cpu/steer.cpp and csrc/cuda/steer.cu;
this module adds the fake (meta) functions used by torch.compile, the autograd formulas (of steer
and of its backward, so that double backward is exact) and the Python API.
genint_fast.ops.reference.steer is its definition.
"""
from __future__ import annotations

import torch

from . import reference

__all__ = ["steer", "sample_steps"]

_MODES = ("add", "set")


def steer(z, directions, sigma, mu, idx, alpha, mode="add", clamp=None):
    """Steer latents along directions with one pass over z.

    Args:
        z: (B, D) latents, float32 / float64 / float16 / bfloat16.
        directions: (K, D) directions U (GANSpace rows; unit norm for "set" to set a coordinate —
            the op uses them as given).
        sigma: (K,) per-direction scales (used by "add"; None means ones).
        mu: (D,) mean latent (None means zeros).
        idx: (B, M) int64 indices into K: the directions applied to each row.
        alpha: (B, M) step sizes.
        mode: "add" (paper): z + sum_m sigma[idx] * alpha * U[idx] - mu.
              "set" (reference code): for m in order, z <- z - ((z - mu) . u) u + alpha u.
        clamp: optional bound c: the output is clamped to [-c, c].

    Returns the steered (B, D) latents in z's dtype. Differentiable with respect to z, alpha, mu,
    sigma ("add") and directions; in "set" mode the directions gradient goes through the eager
    reference (slower), every other gradient through the fused backward kernel. Twice
    differentiable: with create_graph=True the gradients carry their own graph (the kernel's
    backward has an autograd formula), so second derivatives are exact.
    """
    if mode not in _MODES:
        raise RuntimeError(f'steer: mode must be "add" or "set", got {mode!r}')
    if not isinstance(directions, torch.Tensor) or directions.dim() != 2:
        raise RuntimeError("steer: directions must be a 2-D (K, D) tensor")
    if sigma is None:
        sigma = directions.new_ones(directions.shape[0])
    if mu is None:
        mu = directions.new_zeros(directions.shape[1])
    return torch.ops.genint_fast.steer.default(
        z, directions, sigma, mu, idx, alpha, mode, None if clamp is None else float(clamp)
    )


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("genint_fast::steer")
def _steer_fake(z, directions, sigma, mu, idx, alpha, mode, clamp):
    torch._check(z.dim() == 2, lambda: f"steer: z must be 2-D (B, D), got {z.dim()}-D")
    torch._check(idx.dim() == 2, lambda: f"steer: idx must be 2-D (B, M), got {idx.dim()}-D")
    return z.new_empty(z.shape)


@torch.library.register_fake("genint_fast::steer_backward")
def _steer_backward_fake(grad, z, directions, sigma, mu, idx, alpha, mode, clamp):
    torch._check(z.dim() == 2, lambda: f"steer: z must be 2-D (B, D), got {z.dim()}-D")
    return z.new_empty(z.shape), z.new_empty(idx.shape, dtype=_acc_dtype(z.dtype))


def steer_backward_torch(grad, z, directions, sigma, mu, idx, alpha, mode, clamp):
    """What the op steer_backward computes, as differentiable ATen ops (the formula of
    csrc/steer_composite.cpp): (grad_z in z's dtype, dots in the accumulation dtype), with grad_z
    the gradient that reaches z and dots[b, m] = u_m . g_m, the gradient g_m reaching step m
    dotted with the direction of that step. The clamp passes gradient where
    -clamp <= pre-clamp output <= clamp. Used for the derivatives of steer_backward itself."""
    acc = _acc_dtype(z.dtype)
    g = grad.to(acc)
    if clamp is not None:
        with torch.no_grad():  # a mask: piecewise constant, no derivative
            pre = reference.steer(z.to(acc), directions.to(acc), sigma.to(acc), mu.to(acc), idx,
                                  alpha.to(acc), mode, None)
            keep = ((pre >= -clamp) & (pre <= clamp)).to(acc)
        g = g * keep
    u_all = directions.to(acc)
    B, M = idx.shape
    if mode == "add":
        dots = (u_all[idx] * g.unsqueeze(1)).sum(-1) if M else g.new_zeros(B, 0)
    else:
        cols = [None] * M
        for m in reversed(range(M)):
            u = u_all[idx[:, m]]
            s = (g * u).sum(-1)
            cols[m] = s
            g = g - s.unsqueeze(-1) * u
        dots = torch.stack(cols, 1) if M else g.new_zeros(B, 0)
    return g.to(z.dtype), dots


# ------------------------------------------------------------------------------- autograd
# steer's backward calls steer_backward (one fused pass) and assembles the other gradients from
# its two outputs with ATen ops. Second derivatives (create_graph=True): steer_backward has its
# own autograd formula (below, through steer_backward_torch), so every gradient of steer is
# itself differentiable and double backward is exact (tests/test_steer.py gradgradchecks it
# against genint_fast.ops.reference.steer).


def _setup_context(ctx, inputs, output):
    z, directions, sigma, mu, idx, alpha, mode, clamp = inputs
    ctx.save_for_backward(z, directions, sigma, mu, idx, alpha)
    ctx.mode = mode
    ctx.clamp = clamp


def _backward(ctx, grad):
    z, U, sigma, mu, idx, alpha = ctx.saved_tensors
    need_z, need_u, need_sigma, need_mu, _, need_alpha = ctx.needs_input_grad[:6]
    # create_graph=True: the engine runs this function with grad mode on, and every op below
    # records its own graph (steer_backward included: it has an autograd formula).
    create = torch.is_grad_enabled()
    gz, dots = torch.ops.genint_fast.steer_backward.default(
        grad.contiguous(), z, U, sigma, mu, idx, alpha, ctx.mode, ctx.clamp
    )
    acc = dots.dtype
    B, M = idx.shape
    K = U.shape[0]
    flat_idx = idx.reshape(-1)
    g_z = gz if need_z else None
    g_u = g_sigma = g_mu = g_alpha = None
    if ctx.mode == "add":
        # gz is the gradient that reaches the pre-clamp output, i.e. of every term of the sum.
        scale = sigma.to(acc).take(idx) if (need_alpha or need_u) else None  # (B, M)
        if need_alpha:
            g_alpha = (scale * dots).to(alpha.dtype)
        if need_sigma:
            g_sigma = torch.zeros(K, dtype=acc, device=z.device).index_add(
                0, flat_idx, (alpha.to(acc) * dots).reshape(-1))
            g_sigma = g_sigma.to(sigma.dtype)
        if need_u:
            coef = scale * alpha.to(acc)
            scatter = torch.zeros(B, K, dtype=acc, device=z.device).scatter_add(1, idx, coef)
            g_u = (scatter.T @ gz.to(acc)).to(U.dtype)
        if need_mu:
            g_mu = (-gz.to(acc).sum(0)).to(mu.dtype)
    else:
        # Step m adds (alpha_m - (z - mu) . u_m) u_m, so d/dalpha_m = u_m . g_m = dots[:, m] and
        # d/dmu = sum_m (u_m . g_m) u_m.
        if need_alpha:
            g_alpha = dots.to(alpha.dtype)
        if need_mu:
            per_dir = torch.zeros(K, dtype=acc, device=z.device).index_add(
                0, flat_idx, dots.reshape(-1)
            )
            g_mu = (per_dir @ U.to(acc)).to(mu.dtype)
        if need_u:
            # The directions gradient needs every intermediate latent: through the eager
            # reference (with its graph kept when the caller asked for one).
            with torch.enable_grad():
                if create:
                    u_leaf, args = U, (z, U, sigma, mu, idx, alpha)
                else:
                    u_leaf = U.detach().requires_grad_(True)
                    args = (z.detach(), u_leaf, sigma.detach(), mu.detach(), idx,
                            alpha.detach())
                out = reference.steer(*args, "set", ctx.clamp)
                (g_u,) = torch.autograd.grad(out, u_leaf, grad, create_graph=create)
    return g_z, g_u, g_sigma, g_mu, None, g_alpha, None, None


torch.library.register_autograd("genint_fast::steer", _backward, setup_context=_setup_context)


def _backward_setup_context(ctx, inputs, output):
    grad, z, directions, sigma, mu, idx, alpha, mode, clamp = inputs
    ctx.save_for_backward(grad, z, directions, sigma, mu, idx, alpha)
    ctx.mode = mode
    ctx.clamp = clamp


def _backward_backward(ctx, g_gz, g_dots):
    """Vector-Jacobian product of steer_backward, by autograd through steer_backward_torch (the
    second derivatives of steer; only run for create_graph=True or a direct call)."""
    saved = ctx.saved_tensors
    need = ctx.needs_input_grad[:7]
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        if create:
            args = list(saved)
        else:
            args = [t.detach().requires_grad_(n) if n else t.detach()
                    for t, n in zip(saved, need)]
        gz, dots = steer_backward_torch(*args, ctx.mode, ctx.clamp)
        outs, cots = [], []
        for o, c in ((gz, g_gz), (dots, g_dots)):
            if c is not None and o.requires_grad:
                outs.append(o)
                cots.append(c)
        wrt = [a for a, n in zip(args, need) if n]
        got = (torch.autograd.grad(outs, wrt, cots, allow_unused=True, create_graph=create)
               if outs and wrt else [None] * len(wrt))
    it = iter(got)
    res = [next(it) if n else None for n in need]
    res = [None if r is None else r.to(t.dtype) for r, t in zip(res, saved)]
    return (*res, None, None)


torch.library.register_autograd("genint_fast::steer_backward", _backward_backward,
                                setup_context=_backward_setup_context)


def sample_steps(batch, top_k, m, scale=None, ranges=None, *, generator=None, device=None,
                 dtype=torch.float32):
    """Draw the random, class-independent steps of an intervention.

    Returns (idx, alpha): idx (batch, m) int64, m distinct directions per row drawn uniformly
    among the first top_k; alpha (batch, m) steps, U[-scale, scale] or, with ranges (a (K', 2)
    tensor of [lo_j, hi_j] with K' >= top_k), U[lo_j, hi_j] for the chosen direction j.
    Everything is drawn with `generator` on its device (or `device`), so a seed reproduces it.
    """
    if (scale is None) == (ranges is None):
        raise ValueError("sample_steps: give exactly one of scale or ranges")
    if not 1 <= m <= top_k:
        raise ValueError(f"sample_steps: need 1 <= m <= top_k, got m={m}, top_k={top_k}")
    if batch < 0:
        raise ValueError(f"sample_steps: batch must be >= 0, got {batch}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    keys = torch.rand(batch, top_k, generator=generator, device=device)
    idx = keys.argsort(dim=1)[:, :m].contiguous()
    u = torch.rand(batch, m, generator=generator, device=device, dtype=torch.float32)
    if ranges is not None:
        ranges = torch.as_tensor(ranges, dtype=torch.float32, device=device)
        if ranges.dim() != 2 or ranges.shape[1] != 2 or ranges.shape[0] < top_k:
            raise ValueError(
                f"sample_steps: ranges must have shape (K, 2) with K >= top_k={top_k}, "
                f"got {tuple(ranges.shape)}"
            )
        if bool((ranges[:, 0] > ranges[:, 1]).any()):
            raise ValueError("sample_steps: every range needs lo <= hi")
        lo, hi = ranges[idx, 0], ranges[idx, 1]
        alpha = lo + (hi - lo) * u
    else:
        if scale < 0:
            raise ValueError(f"sample_steps: scale must be >= 0, got {scale}")
        alpha = (2.0 * u - 1.0) * float(scale)
    return idx, alpha.to(dtype)
