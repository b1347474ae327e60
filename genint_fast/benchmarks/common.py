"""Shared benchmark helpers: timing, the machine description, and the result table."""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, *, device="cpu", warmup=2, repeat=7, min_time=0.0, events=False) -> float:
    """Median time of fn() in seconds, after warm-up. Repeats at least `repeat` times and until
    `min_time` seconds have passed.

    Wall time, with the device synchronised around every call. With events=True on CUDA (for
    single ops on the current stream): the time between two CUDA events recorded around each
    call, so the host's launch and synchronisation latency is not counted, with the L2 cache
    flushed before each call by writing a buffer larger than it, so that inputs smaller than L2
    are read from device memory as in a real step (as triton.testing.do_bench does)."""
    if events and torch.device(device).type == "cuda":
        return _time_cuda(fn, device, warmup, repeat, min_time)
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_cuda(fn, device, warmup, repeat, min_time) -> float:
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 2**26
    scratch = torch.empty(2 * l2 // 4, dtype=torch.int32, device=device)
    for _ in range(warmup):
        fn()
    sync(device)
    pairs = []
    start = time.perf_counter()
    while len(pairs) < repeat or time.perf_counter() - start < min_time:
        scratch.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        pairs.append((a, b))
        if len(pairs) % 16 == 0:
            sync(device)  # bound the queue, and let the min_time clock see finished work
    sync(device)
    return statistics.median(a.elapsed_time(b) / 1e3 for a, b in pairs)


def machine(device="cpu") -> str:
    """One line naming the machine a number came from."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads (of {os.cpu_count()} cores), "
            f"torch {torch.__version__}")


@dataclass
class Row:
    """One comparison: ours against a named baseline, timed in the same run."""

    bench: str          # what is measured
    baseline: str       # the named baseline
    ours_s: float       # seconds per call, fused path
    base_s: float       # seconds per call, baseline
    bar: float | None = None  # speed-up the issue asks for (ratio >= bar), if any
    note: str = ""
    skipped: str = ""   # why the baseline was not run (e.g. an optional package is missing)

    @property
    def ratio(self) -> float:
        if self.skipped:
            return float("nan")
        return self.base_s / self.ours_s if self.ours_s > 0 else float("inf")

    @property
    def passed(self) -> bool | None:
        return None if self.bar is None or self.skipped else self.ratio >= self.bar

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(ratio=self.ratio, passed=self.passed)
        return d


def format_table(rows, title="", machine_line="") -> str:
    """A Markdown table of rows (what the README shows)."""
    out = []
    if title:
        out.append(f"### {title}")
    if machine_line:
        out.append(f"Machine: {machine_line}")
        out.append("")
    out.append("| benchmark | baseline | ours (ms) | baseline (ms) | speed-up | bar |")
    out.append("|---|---|---:|---:|---:|---|")
    for r in rows:
        bar = "" if r.bar is None else f">= {r.bar:g}x {'ok' if r.passed else 'MISSED'}"
        note = f" ({r.note})" if r.note else ""
        if r.skipped:
            out.append(f"| {r.bench}{note} | {r.baseline} | {r.ours_s * 1e3:.3f} | "
                       f"skipped: {r.skipped} | | |")
            continue
        out.append(f"| {r.bench}{note} | {r.baseline} | {r.ours_s * 1e3:.3f} | "
                   f"{r.base_s * 1e3:.3f} | {r.ratio:.2f}x | {bar} |")
    return "\n".join(out)
