"""Fused latent steering against the eager plain-PyTorch reference (genint_fast.ops.reference),
which gathers a (B, M, D) tensor of directions. Issue bars (CPU, B=65536, D=128, M=5, K=60,
float32): forward >= 5x, forward+backward (z and alpha) >= 3x. On CUDA we also report the
kernel's effective bandwidth against a device-to-device copy of z timed in the same run."""
from __future__ import annotations

import torch

from ..ops import reference, sample_steps, steer
from .common import Row, time_fn


def make_inputs(B, D, K, M, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn(B, D, generator=g, device=device).to(dtype)
    U = torch.nn.functional.normalize(torch.randn(K, D, generator=g, device=device), dim=1)
    sigma = torch.rand(K, generator=g, device=device) + 0.5
    mu = 0.1 * torch.randn(D, generator=g, device=device)
    idx, alpha = sample_steps(B, K, M, scale=3.0, generator=g)
    return z, U.to(dtype), sigma.to(dtype), mu.to(dtype), idx, alpha.to(dtype)


def run(device="cpu", quick=False):
    device = torch.device(device)
    B = 4096 if quick else 65536
    D, K, M = 128, 60, 5
    repeat = 3 if quick else 10
    z, U, sigma, mu, idx, alpha = make_inputs(B, D, K, M, device)
    rows = []
    for mode in ("add", "set"):
        def fused():
            return steer(z, U, sigma, mu, idx, alpha, mode)

        def eager():
            return reference.steer(z, U, sigma, mu, idx, alpha, mode)

        torch.testing.assert_close(fused(), eager(), rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            t_f = time_fn(fused, device=device, repeat=repeat)
            t_e = time_fn(eager, device=device, repeat=repeat)
        rows.append(Row(f"steer {mode} forward, B={B} D={D} M={M} K={K} fp32",
                        "eager reference", t_f, t_e, bar=5.0 if mode == "add" else None))

        grad = torch.randn_like(z)
        zl, al = z.clone().requires_grad_(), alpha.clone().requires_grad_()

        def fused_fb():
            steer(zl, U, sigma, mu, idx, al, mode).backward(grad)

        def eager_fb():
            reference.steer(zl, U, sigma, mu, idx, al, mode).backward(grad)

        t_f = time_fn(fused_fb, device=device, repeat=repeat)
        t_e = time_fn(eager_fb, device=device, repeat=repeat)
        rows.append(Row(f"steer {mode} forward+backward (z, alpha)", "eager reference", t_f, t_e,
                        bar=3.0 if mode == "add" else None))

    if device.type == "cuda":
        with torch.no_grad():
            out = torch.empty_like(z)
            t_copy = time_fn(lambda: out.copy_(z), device=device, repeat=repeat * 5)
            t_f = time_fn(lambda: steer(z, U, sigma, mu, idx, alpha, "add"), device=device,
                          repeat=repeat * 5)
        moved = 2 * z.numel() * z.element_size() + idx.numel() * 8 + alpha.numel() * 4
        rows.append(Row("steer add forward bandwidth", "copy of z (same bytes)", t_f, t_copy,
                        note=f"{moved / t_f / 1e9:.0f} GB/s vs copy "
                             f"{2 * z.numel() * z.element_size() / t_copy / 1e9:.0f} GB/s"))
    return rows
