"""Fused latent steering against its strongest baselines, timed in the same run.

Baselines: the plain-PyTorch reference (genint_fast.ops.reference.steer, which gathers a
(B, M, D) tensor of directions) run eagerly, and the same reference compiled with torch.compile
(inductor; compiled once before timing, its compile time in the note). Issue bars (CPU,
B=65536, D=128, M=5, K=60, float32, add mode): forward >= 5x eager and >= 1.0x the compiled
reference; forward+backward (z and alpha) >= 3x eager.

Bandwidth: steer reads z, idx, alpha (and U, sigma, mu: K x D, negligible) and writes the output;
its GB/s is set against a copy of z (read + write of the same size) timed on the same machine in
the same run.
"""
from __future__ import annotations

import time

import torch

from ..ops import reference, sample_steps, steer
from .common import Row, sync, time_fn


def make_inputs(B, D, K, M, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn(B, D, generator=g, device=device).to(dtype)
    U = torch.nn.functional.normalize(torch.randn(K, D, generator=g, device=device), dim=1)
    sigma = torch.rand(K, generator=g, device=device) + 0.5
    mu = 0.1 * torch.randn(D, generator=g, device=device)
    idx, alpha = sample_steps(B, K, M, scale=3.0, generator=g)
    return z, U.to(dtype), sigma.to(dtype), mu.to(dtype), idx, alpha.to(dtype)


def steer_bytes(z, U, sigma, mu, idx, alpha) -> int:
    """Bytes one steer forward must move: z, idx, alpha, U, sigma, mu read once, the output
    written once (the minimum traffic of any implementation)."""
    reads = sum(t.numel() * t.element_size() for t in (z, U, sigma, mu, idx, alpha))
    return reads + z.numel() * z.element_size()


def compile_timed(fn, call, device):
    """torch.compile(fn) with inductor, compiled by running call(compiled) once (outside any
    timed region). Returns (compiled function, compile seconds)."""
    compiled = torch.compile(fn, backend="inductor", fullgraph=True)
    sync(device)
    t0 = time.perf_counter()
    call(compiled)
    sync(device)
    return compiled, time.perf_counter() - t0


def run(device="cpu", quick=False):
    device = torch.device(device)
    B = 4096 if quick else 65536
    D, K, M = 128, 60, 5
    repeat = 3 if quick else 10
    z, U, sigma, mu, idx, alpha = make_inputs(B, D, K, M, device)
    gbs = lambda nbytes, secs: nbytes / secs / 1e9  # noqa: E731
    moved = steer_bytes(z, U, sigma, mu, idx, alpha)
    size = f"B={B} D={D} M={M} K={K} fp32"
    rows = []
    for mode in ("add", "set"):
        def fused():
            return steer(z, U, sigma, mu, idx, alpha, mode)

        def ref(z, U, sigma, mu, idx, alpha):
            return reference.steer(z, U, sigma, mu, idx, alpha, mode)

        def eager():
            return ref(z, U, sigma, mu, idx, alpha)

        with torch.no_grad():
            comp, t_compile = compile_timed(ref, lambda f: f(z, U, sigma, mu, idx, alpha),
                                            device)
            torch.testing.assert_close(fused(), eager(), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(comp(z, U, sigma, mu, idx, alpha), eager(), rtol=1e-4,
                                       atol=1e-4)
            t_f = time_fn(fused, device=device, events=True, repeat=repeat)
            t_e = time_fn(eager, device=device, events=True, repeat=repeat)
            t_c = time_fn(lambda: comp(z, U, sigma, mu, idx, alpha), device=device, events=True,
                          repeat=repeat)
        add = mode == "add"
        rows.append(Row(f"steer {mode} forward, {size}", "eager reference", t_f, t_e,
                        bar=5.0 if add else None,
                        note=f"{gbs(moved, t_f):.1f} vs {gbs(moved, t_e):.1f} GB/s"))
        rows.append(Row(f"steer {mode} forward, {size}", "inductor-compiled reference", t_f, t_c,
                        bar=1.0 if add else None,
                        note=f"{gbs(moved, t_f):.1f} vs {gbs(moved, t_c):.1f} GB/s; compile "
                             f"{t_compile:.1f} s, not timed"))

        grad = torch.randn_like(z)
        zl, al = z.clone().requires_grad_(), alpha.clone().requires_grad_()

        def fused_fb():
            steer(zl, U, sigma, mu, idx, al, mode).backward(grad)

        def eager_fb():
            ref(zl, U, sigma, mu, idx, al).backward(grad)

        comp_fb, t_compile = compile_timed(
            ref, lambda f: f(zl, U, sigma, mu, idx, al).backward(grad), device)
        zl.grad = al.grad = None

        def compiled_fb():
            comp_fb(zl, U, sigma, mu, idx, al).backward(grad)

        t_f = time_fn(fused_fb, device=device, events=True, repeat=repeat)
        t_e = time_fn(eager_fb, device=device, events=True, repeat=repeat)
        t_c = time_fn(compiled_fb, device=device, events=True, repeat=repeat)
        rows.append(Row(f"steer {mode} forward+backward (z, alpha)", "eager reference", t_f, t_e,
                        bar=3.0 if add else None))
        rows.append(Row(f"steer {mode} forward+backward (z, alpha)",
                        "inductor-compiled reference", t_f, t_c,
                        note=f"compile {t_compile:.1f} s, not timed"))

    # Bandwidth: steer add forward against a copy of z (same machine, same run).
    with torch.no_grad():
        out = torch.empty_like(z)
        t_copy = time_fn(lambda: out.copy_(z), device=device, events=True, repeat=repeat * 5)
        t_f = time_fn(lambda: steer(z, U, sigma, mu, idx, alpha, "add"), device=device, events=True,
                      repeat=repeat * 5)
    copied = 2 * z.numel() * z.element_size()
    rows.append(Row(f"steer add forward bandwidth, {size}", "copy of z (read + write, same size)",
                    t_f, t_copy,
                    note=f"steer {gbs(moved, t_f):.1f} GB/s ({moved / 2**20:.0f} MiB moved) vs "
                         f"copy {gbs(copied, t_copy):.1f} GB/s ({copied / 2**20:.0f} MiB): "
                         f"{gbs(moved, t_f) / gbs(copied, t_copy):.0%} of copy bandwidth"))
    return rows
