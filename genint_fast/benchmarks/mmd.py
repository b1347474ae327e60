"""MMD style losses against their strongest baselines, timed in the same run (CPU, float32):

- Every kernel (gaussian, poly2, linear, bn), forward+backward (gradient of x), B=1, N=M=4096,
  C=128: ours against the materialised plain-PyTorch definition
  (genint_fast.ops.reference.mmd, which forms the N x N, M x M and N x M kernel matrices and lets
  autograd differentiate them), run eagerly and compiled with torch.compile (inductor; compiled
  once before timing, compile time in the note). GFLOP/s from the analytic FLOP counts of
  `flops` (the same count for ours and the baselines, so the GFLOP/s ratio is the speed ratio).
- Bars: Gaussian forward+backward >= 3x the eager materialised reference (issue 3) and >= 2x the
  best of the eager and inductor-compiled references (issue 15).
- poly2 forward+backward, B=8, N=4096, C=256: at least as fast as the plain-PyTorch Gram loss
  ||F F^T / N - G_y||_F^2 with autograd, and no more memory (peak resident memory of one
  forward+backward, each measured in a fresh process); the same loss compiled with inductor is a
  second baseline.
- Memory bar: Gaussian forward+backward with N=M=65536, C=64, B=1 adds <= 1 GB of peak resident
  memory (the materialised form would need > 50 GB and is not run).
- pykeops (optional bench extra) joins the Gaussian rows when it is importable; otherwise its
  row says it was skipped and why.
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


# Analytic FLOP counts per batch element, for x (N, C) requiring grad and a constant y (M, C).
# A multiply-add counts 2; exp, clamps and other elementwise work are not counted.
#   gaussian  forward  2C (N^2 + NM + M^2): the squared distances of all ordered pairs
#                      (|a|^2 + |b|^2 - 2 a.b; the dot products dominate)
#             backward 2C (N^2 + NM): the kernel-weighted sums sum_j k_ij x_j (x-x and x-y)
#   poly2     forward  2 N C^2 (Gram of x) + 2 M C^2 (Gram of y, unless cached) + 2 C^2 (<Gx, Gy>)
#             backward 2 N C^2 (one (C x C) @ (C x N) product)
#   linear    forward  C (N + M) (the two sums) + 2 C; backward N C
#   bn        forward  4 C (N + M) (means, centred squares, sums); backward 4 N C
def flops(kernel, n, m, c, backward=True, y_cached=False) -> float:
    if kernel == "gaussian":
        f, b = 2 * c * (n * n + n * m + m * m), 2 * c * (n * n + n * m)
    elif kernel == "poly2":
        f, b = 2 * n * c * c + (0 if y_cached else 2 * m * c * c) + 2 * c * c, 2 * n * c * c
    elif kernel == "linear":
        f, b = c * (n + m) + 2 * c, n * c
    elif kernel == "bn":
        f, b = 4 * c * (n + m), 4 * n * c
    else:
        raise ValueError(kernel)
    return float(f + (b if backward else 0))


def _gflops(count, secs):
    return count / secs / 1e9


def _compile_timed(fn, call, device):
    """torch.compile(fn) with inductor, compiled by running call(compiled) once outside any timed
    region. Returns (compiled, seconds of that first call)."""
    from .steer import compile_timed

    return compile_timed(fn, call, device)


def _keops_rows(x, y, gamma, t_ours, label):
    """pykeops (optional bench extra) on the same problem: the three kernel sums as LazyTensor
    reductions, backward through KeOps' own gradient formulas. Without pykeops: one row that says
    it was skipped and why."""
    try:
        from pykeops.torch import LazyTensor
    except ImportError as exc:
        return [Row(label, "pykeops LazyTensor", t_ours, math.nan,
                    skipped=f"pykeops is not importable ({exc.__class__.__name__}); it is the "
                            "optional bench extra")]

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
    t_k = time_fn(lambda: keops_loss().backward(), device=x.device, events=True, warmup=1, repeat=2)
    return [Row(label, "pykeops LazyTensor", t_ours, t_k)]


def _kernel_rows(kernel, x, y, gamma, device, repeat):
    """Rows of one kernel, forward+backward (gradient of x): ours against the eager and the
    inductor-compiled materialised reference. Returns (rows, t_ours, t_eager, t_compiled)."""
    n, m, c = x.shape[1], y.shape[1], x.shape[2]
    kw = dict(gamma=gamma) if kernel == "gaussian" else {}
    xl = x.clone().requires_grad_()

    def ref(x, y):
        return reference.mmd(x, y, kernel, **kw)

    def ours_fb():
        mmd(xl, y, kernel, **kw).backward()

    def eager_fb():
        ref(xl, y).backward()

    comp, t_compile = _compile_timed(ref, lambda f: f(xl, y).backward(), device)
    xl.grad = None
    with torch.no_grad():
        want = reference.mmd(x.double(), y.double(), kernel, **kw)
        for got in (mmd(x, y, kernel, **kw), comp(x, y)):
            torch.testing.assert_close(got.double(), want, rtol=1e-3,
                                       atol=1e-6 * max(1.0, want.abs().item()))
    t_o = time_fn(ours_fb, device=device, events=True, repeat=repeat)
    t_e = time_fn(eager_fb, device=device, events=True, repeat=repeat)
    t_c = time_fn(lambda: comp(xl, y).backward(), device=device, events=True, repeat=repeat)
    fl = flops(kernel, n, m, c)
    label = f"{kernel} forward+backward, B=1 N={n} M={m} C={c} fp32"
    rate = lambda t: f"{_gflops(fl, t):.3g}"  # noqa: E731
    rows = [
        Row(label, "materialised reference, eager", t_o, t_e,
            bar=3.0 if kernel == "gaussian" and device.type == "cpu" else None,
            note=f"{rate(t_o)} vs {rate(t_e)} GFLOP/s of {fl / 1e9:.3g} GFLOP"),
        Row(label, "materialised reference, inductor-compiled", t_o, t_c,
            note=f"{rate(t_o)} vs {rate(t_c)} GFLOP/s; compile {t_compile:.1f} s, not timed"),
    ]
    return rows, t_o, t_e, t_c


def _gaussian_forward_rows(x, y, gamma, device, repeat):
    """Gaussian forward only (no grad): ours against the eager and the inductor-compiled
    materialised reference. Returns (rows, t_ours, t_best_reference)."""
    n, c = x.shape[1], x.shape[2]
    with torch.no_grad():
        t_of = time_fn(lambda: mmd(x, y, "gaussian", gamma=gamma), device=device,
                       events=True, repeat=repeat)
        t_rf = time_fn(lambda: reference.mmd(x, y, "gaussian", gamma=gamma), device=device,
                       events=True, repeat=repeat)
        def ref_fwd(x, y):
            return reference.mmd(x, y, "gaussian", gamma=gamma)

        comp_f, t_compile_f = _compile_timed(ref_fwd, lambda f: f(x, y), device)
        t_cf = time_fn(lambda: comp_f(x, y), device=device, events=True, repeat=repeat)
    fl = flops("gaussian", n, n, c, backward=False)
    size = f"B=1 N=M={n} C={c} fp32"
    best_f = min(t_rf, t_cf)
    rows = [
        Row(f"gaussian forward, {size}", "materialised reference", t_of, t_rf,
            note=f"{_gflops(fl, t_of):.1f} vs {_gflops(fl, t_rf):.1f} GFLOP/s"),
        Row(f"gaussian forward, {size}", "best materialised reference (eager or "
            "inductor-compiled)", t_of, best_f,
            bar=2.0 if device.type == "cuda" else None,
            note=f"inductor {t_cf * 1e3:.3f} ms, compile {t_compile_f:.1f} s, "
                 "not timed"),
    ]
    return rows, t_of, best_f


def _tiled_forward_row(x, y, gamma, t_of, best_f, device, repeat):
    """The register-tiled sum kernel (opt-in until timed on a GPU): same problem, same run."""
    n, c = x.shape[1], x.shape[2]
    with torch.no_grad():
        want = mmd(x, y, "gaussian", gamma=gamma)
    os.environ["GENINT_FAST_GAUSSIAN_KERNEL"] = "tiled"
    try:
        with torch.no_grad():
            torch.testing.assert_close(mmd(x, y, "gaussian", gamma=gamma), want,
                                       rtol=1e-4, atol=1e-7)
            t_tf = time_fn(lambda: mmd(x, y, "gaussian", gamma=gamma), device=device,
                           events=True, repeat=repeat)
    finally:
        del os.environ["GENINT_FAST_GAUSSIAN_KERNEL"]
    fl = flops("gaussian", n, n, c, backward=False)
    size = f"B=1 N=M={n} C={c} fp32"
    return Row(f"gaussian forward, {size}, tiled kernel "
               "(GENINT_FAST_GAUSSIAN_KERNEL=tiled)",
               "best materialised reference (eager or inductor-compiled)", t_tf,
               best_f, bar=2.0, note=f"{_gflops(fl, t_tf):.1f} GFLOP/s; default "
                                     f"kernel {t_of * 1e3:.3f} ms")


def _gaussian_rows(x, y, gamma, label, times, device, repeat):
    """The Gaussian kernel's rows after its forward+backward pair: the best of the two
    references, forward only (and the tiled kernel on CUDA), pykeops. times: (t_ours, t_eager,
    t_compiled) of forward+backward."""
    t_o, t_e, t_c = times
    best, which = (t_e, "eager") if t_e <= t_c else (t_c, "inductor-compiled")
    rows = [Row(label, f"best materialised reference ({which})", t_o, best,
                bar=2.0 if device.type == "cpu" else None)]
    fwd_rows, t_of, best_f = _gaussian_forward_rows(x, y, gamma, device, repeat)
    rows += fwd_rows
    if device.type == "cuda":
        rows.append(_tiled_forward_row(x, y, gamma, t_of, best_f, device, repeat))
    rows += _keops_rows(x, y, gamma, t_o, label)
    return rows


def _poly2_rows(device, quick, repeat):
    """poly2 (Gram) forward+backward against the plain-PyTorch Gram loss, eager and compiled;
    on CPU the note compares the peak resident memory of the two."""
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

    def plain_loss(fx, gy):
        return gram_loss_plain(fx, gy).mean()

    comp, t_compile = _compile_timed(plain_loss, lambda f: f(fx, gy).backward(), device)
    t_o = time_fn(ours_poly, device=device, events=True, repeat=repeat * 2)
    t_p = time_fn(plain_poly, device=device, events=True, repeat=repeat * 2)
    t_c = time_fn(lambda: comp(fx, gy).backward(), device=device, events=True, repeat=repeat * 2)
    fl = b * flops("poly2", n2, n2, c2, y_cached=True)
    note = f"{_gflops(fl, t_o):.0f} vs {_gflops(fl, t_p):.0f} GFLOP/s"
    if device.type == "cpu":
        m_o, _ = measure_peak("poly2", (b, n2, c2))
        m_p, _ = measure_peak("plain_gram", (b, n2, c2))
        ok = "ok" if m_o <= m_p else "MORE"
        note += f"; peak extra RSS {m_o / 2**20:.0f} MiB vs plain {m_p / 2**20:.0f} MiB: {ok}"
    label = f"poly2 forward+backward, B={b} N={n2} C={c2} fp32"
    return [
        Row(label, "plain-PyTorch Gram (autograd)", t_o, t_p, bar=1.0, note=note),
        Row(label, "plain-PyTorch Gram, inductor-compiled", t_o, t_c,
            note=f"{_gflops(fl, t_o):.0f} vs {_gflops(fl, t_c):.0f} GFLOP/s; compile "
                 f"{t_compile:.1f} s, not timed"),
    ]


def _memory_row(quick):
    """CPU: peak extra resident memory of a large Gaussian forward+backward (bar <= 1 GB)."""
    big = 16384 if quick else 65536
    extra, secs = measure_peak("gaussian", (big, big, 64))
    verdict = "ok" if extra <= 10**9 else "MISSED"
    return Row(f"gaussian forward+backward memory, B=1 N=M={big} C=64",
               "materialised reference", secs, math.nan,
               note=f"peak extra RSS {extra / 2**20:.0f} MiB, bar <= 1 GB: {verdict}",
               skipped="needs > 50 GB, not run")


def _matmul_peak_row(device, repeat):
    """CUDA: Gaussian forward against the attainable fp32 peak, a matmul with the same FLOP
    count, timed in the same run."""
    with torch.no_grad():
        big = 16384
        xb, yb = gaussian_inputs(1, big, big, 128, device)
        t_g = time_fn(lambda: mmd(xb, yb, "gaussian", gamma=1e-3), device=device, events=True,
                      repeat=repeat)
        a = torch.randn(3 * big, 128, device=device)
        bm = torch.randn(128, big, device=device)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        t_mm = time_fn(lambda: a @ bm, device=device, events=True, repeat=repeat)
        torch.backends.cuda.matmul.allow_tf32 = prev
    fl = flops("gaussian", big, big, 128, backward=False)
    return Row(f"gaussian forward, N=M={big} C=128 fp32", "fp32 matmul, same FLOPs",
               t_g, t_mm, note=f"{fl / t_g / 1e12:.1f} TFLOP/s vs matmul "
                               f"{fl / t_mm / 1e12:.1f} TFLOP/s")


def run(device="cpu", quick=False):
    device = torch.device(device)
    repeat = 2 if quick else 5
    rows = []

    # Every kernel, forward+backward, against the eager and the compiled reference.
    n = 1024 if quick else 4096
    c = 128
    x, y = gaussian_inputs(1, n, n, c, device)
    gamma = reference.gaussian_default_gamma(y).item()  # y has batch 1: one bandwidth
    for kernel in ("gaussian", "poly2", "linear", "bn"):
        krows, t_o, t_e, t_c = _kernel_rows(kernel, x, y, gamma, device, repeat)
        rows += krows
        if kernel == "gaussian":
            rows += _gaussian_rows(x, y, gamma, krows[0].bench, (t_o, t_e, t_c), device, repeat)

    rows += _poly2_rows(device, quick, repeat)
    if device.type == "cpu":
        rows.append(_memory_row(quick))
    else:
        rows.append(_matmul_peak_row(device, repeat))
    return rows
