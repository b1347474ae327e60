"""MMD style losses against plain PyTorch, timed in the same run (issue 3 bars, CPU, float32):

- Gaussian forward+backward (gradient of x), B=1, N=M=4096, C=128: the tiled op >= 3x faster
  than the materialised reference (genint_fast.ops.reference.mmd_gaussian, which forms the
  N x N, M x M and N x M kernel matrices through |a|^2 + |b|^2 - 2 a.b and lets autograd
  differentiate them).
- poly2 forward+backward, B=8, N=4096, C=256: at least as fast as the plain-PyTorch Gram loss
  ||F F^T / N - G_y||_F^2 with autograd, and no more memory (peak resident memory of one
  forward+backward, each measured in a fresh process).
- Memory bar: Gaussian forward+backward with N=M=65536, C=64, B=1 adds <= 1 GB of peak resident
  memory (the materialised form would need > 50 GB and is not run).
- pykeops (optional bench extra) joins the Gaussian rows when it is installed.
- On CUDA: Gaussian forward TFLOP/s against an fp32 matmul of the same FLOP count (the device's
  attainable fp32 peak, measured in the same run).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import torch

from ..ops import MMDTarget, mmd, reference
from .common import Row, time_fn


def gaussian_inputs(B, N, M, C, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(B, N, C, generator=g).to(device, dtype)
    y = (0.8 * torch.randn(1, M, C, generator=g) + 0.2).to(device, dtype)
    return x, y


def gram_loss_plain(fx, gy):
    """The plain-PyTorch Gram style loss: ||F F^T / N - G_y||_F^2 per image, autograd backward."""
    gx = torch.bmm(fx, fx.transpose(1, 2)) / fx.shape[2]
    return (gx - gy).square().sum((1, 2))


_PEAK_SCRIPT = r"""
import resource, sys, time, torch, genint_fast
from genint_fast.benchmarks.mmd import peak_case


def status_kb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(key)


torch.set_num_threads(int(sys.argv[2]))
fn = peak_case(sys.argv[1], [int(v) for v in sys.argv[3:]])
try:  # reset the peak (VmHWM) to the current RSS: Linux >= 4.0
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
before = status_kb("VmRSS")
t0 = time.perf_counter()
fn()
dt = time.perf_counter() - t0
# Without the reset, ru_maxrss may include the import-time peak: an over-estimate, never under.
peak = status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - before) * 1024, dt)
"""


def peak_case(name, dims):
    """A zero-argument forward+backward whose peak memory the subprocess measures."""
    if name == "gaussian":
        n, m, c = dims
        x, y = gaussian_inputs(1, n, m, c, "cpu")
        x.requires_grad_()
        return lambda: mmd(x, y, "gaussian", gamma=1.0 / (4 * c)).backward()
    b, n, c = dims
    g = torch.Generator().manual_seed(0)
    fx = torch.randn(b, c, n, generator=g).requires_grad_()
    fy = torch.randn(1, c, n, generator=g)
    if name == "poly2":
        target = MMDTarget(fy.transpose(1, 2), "poly2")
        return lambda: mmd(fx.transpose(1, 2), target, "poly2").backward()
    gy = torch.bmm(fy, fy.transpose(1, 2)) / n
    return lambda: gram_loss_plain(fx, gy).mean().backward()


def measure_peak(name, dims, threads=None):
    """(peak extra resident bytes, seconds) of one forward+backward in a fresh process."""
    threads = threads or torch.get_num_threads()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, name, str(threads),
                           *map(str, dims)], capture_output=True, text=True, check=True, env=env)
    extra, secs = proc.stdout.strip().splitlines()[-1].split()
    return int(extra), float(secs)


def _keops_rows(x, y, gamma, t_ours, label):
    """pykeops (optional bench extra) on the same problem: the three kernel sums as LazyTensor
    reductions, backward through KeOps' own gradient formulas."""
    try:
        from pykeops.torch import LazyTensor
    except ImportError:
        return []

    def ksum(a, b):
        d = ((LazyTensor(a[:, None, :]) - LazyTensor(b[None, :, :])) ** 2).sum(-1)
        return (-gamma * d).exp().sum(1).sum()

    xl = x[0].detach().clone().requires_grad_()
    yl = y[0]
    n, m = xl.shape[0], yl.shape[0]

    def keops_loss():
        return ksum(xl, xl) / n**2 + ksum(yl, yl) / m**2 - 2 * ksum(xl, yl) / (n * m)

    torch.testing.assert_close(keops_loss().detach(), mmd(x, y, "gaussian", gamma=gamma),
                               rtol=1e-3, atol=1e-6)
    t_k = time_fn(lambda: keops_loss().backward(), device=x.device, warmup=1, repeat=2)
    return [Row(label, "pykeops LazyTensor", t_ours, t_k)]


def run(device="cpu", quick=False):
    device = torch.device(device)
    repeat = 2 if quick else 5
    rows = []

    # Gaussian forward+backward against the materialised reference.
    n = 1024 if quick else 4096
    c = 128
    x, y = gaussian_inputs(1, n, n, c, device)
    gamma = reference.gaussian_default_gamma(y)
    xl = x.clone().requires_grad_()

    def ours_fb():
        mmd(xl, y, "gaussian", gamma=gamma).backward()

    def ref_fb():
        reference.mmd(xl, y, "gaussian", gamma=gamma).backward()

    torch.testing.assert_close(mmd(x, y, "gaussian", gamma=gamma),
                               reference.mmd(x.double(), y.double(), "gaussian",
                                             gamma=gamma).float(), rtol=1e-3, atol=1e-7)
    t_o = time_fn(ours_fb, device=device, repeat=repeat)
    t_r = time_fn(ref_fb, device=device, repeat=repeat)
    rows.append(Row(f"gaussian forward+backward, B=1 N=M={n} C={c} fp32",
                    "materialised reference", t_o, t_r, bar=3.0 if device.type == "cpu" else None))
    with torch.no_grad():
        t_of = time_fn(lambda: mmd(x, y, "gaussian", gamma=gamma), device=device, repeat=repeat)
        t_rf = time_fn(lambda: reference.mmd(x, y, "gaussian", gamma=gamma), device=device,
                       repeat=repeat)
    flops = 2 * c * 3 * n * n  # dot products of the x-x, y-y and x-y pairs
    rows.append(Row(f"gaussian forward, B=1 N=M={n} C={c} fp32", "materialised reference",
                    t_of, t_rf, note=f"{flops / t_of / 1e9:.0f} GFLOP/s in dot products"))
    rows += _keops_rows(x, y, gamma, t_o, f"gaussian forward+backward, B=1 N=M={n} C={c} fp32")

    # poly2 (Gram) forward+backward against the plain-PyTorch Gram loss.
    b, n2, c2 = (2, 1024, 256) if quick else (8, 4096, 256)
    g = torch.Generator().manual_seed(1)
    fx = torch.randn(b, c2, n2, generator=g).to(device).requires_grad_()
    fy = torch.randn(1, c2, n2, generator=g).to(device)
    target = MMDTarget(fy.transpose(1, 2), "poly2")
    gy = torch.bmm(fy, fy.transpose(1, 2)) / n2
    torch.testing.assert_close(mmd(fx.transpose(1, 2), target, "poly2"),
                               gram_loss_plain(fx, gy).mean(), rtol=1e-4, atol=1e-6)

    def ours_poly():
        mmd(fx.transpose(1, 2), target, "poly2").backward()

    def plain_poly():
        gram_loss_plain(fx, gy).mean().backward()

    t_o = time_fn(ours_poly, device=device, repeat=repeat * 2)
    t_p = time_fn(plain_poly, device=device, repeat=repeat * 2)
    note = ""
    if device.type == "cpu":
        m_o, _ = measure_peak("poly2", (b, n2, c2))
        m_p, _ = measure_peak("plain_gram", (b, n2, c2))
        ok = "ok" if m_o <= m_p else "MORE"
        note = f"peak extra RSS {m_o / 2**20:.0f} MiB vs plain {m_p / 2**20:.0f} MiB: {ok}"
    rows.append(Row(f"poly2 forward+backward, B={b} N={n2} C={c2} fp32",
                    "plain-PyTorch Gram (autograd)", t_o, t_p, bar=1.0, note=note))

    if device.type == "cpu":
        big = 16384 if quick else 65536
        extra, secs = measure_peak("gaussian", (big, big, 64))
        verdict = "ok" if extra <= 10**9 else "MISSED"
        rows.append(Row(f"gaussian forward+backward memory, B=1 N=M={big} C=64",
                        "materialised (> 50 GB, not run)", secs, math.nan,
                        note=f"peak extra RSS {extra / 2**20:.0f} MiB, bar <= 1 GB: {verdict}"))
    else:
        # Attainable fp32 peak: a matmul with the same FLOP count, timed in the same run.
        with torch.no_grad():
            big = 16384
            xb, yb = gaussian_inputs(1, big, big, 128, device)
            t_g = time_fn(lambda: mmd(xb, yb, "gaussian", gamma=1e-3), device=device,
                          repeat=repeat)
            a = torch.randn(3 * big, 128, device=device)
            bm = torch.randn(128, big, device=device)
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            t_mm = time_fn(lambda: a @ bm, device=device, repeat=repeat)
            torch.backends.cuda.matmul.allow_tf32 = prev
        fl = 2 * 128 * 3 * big * big
        rows.append(Row(f"gaussian forward, N=M={big} C=128 fp32", "fp32 matmul, same FLOPs",
                        t_g, t_mm, note=f"{fl / t_g / 1e12:.1f} TFLOP/s vs matmul "
                                        f"{fl / t_mm / 1e12:.1f} TFLOP/s"))
    return rows
