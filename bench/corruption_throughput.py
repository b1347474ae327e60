"""Throughput of the corruption-robustness evaluation on this machine (the README's numbers).

    python bench/corruption_throughput.py [--n224 32] [--n32 1000] [--workers 2]

1. images per second of each corruption at 224 x 224 (every severity, one process, real photos
   from scikit-image), slowest first;
2. wall time of the full evaluation, 15 corruptions x 5 severities, of n32 built-in 32 x 32
   test images with a small CNN checkpoint, as `genint-fast eval corruptions` runs it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def photos(n, size):
    from skimage import data
    from skimage.transform import resize

    srcs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = srcs[i % len(srcs)]
        r, c = rng.integers(0, 150, 2)
        crop = img[r:r + 300, c:c + 300]
        out.append((resize(crop, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def per_corruption(n, size):
    from genint_fast.eval.corruptions import CORRUPTIONS, corrupt

    x = photos(n, size)
    corrupt(x[:1], "frost", 1)           # one-time decoding of the frost images
    rows = []
    for c in CORRUPTIONS:
        t0 = time.perf_counter()
        for s in range(1, 6):
            corrupt(x, c, s, seed=s)
        rows.append((c, 5 * n / (time.perf_counter() - t0)))
    return rows


def full_eval(n, workers):
    from genint_fast.cli import main as cli_main

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "erm"
        assert cli_main(["train", "steps=150", "data_size=2000", "mode=erm", "progress=false",
                         "eval_size=100", f"out={run}"]) == 0
        t0 = time.perf_counter()
        assert cli_main(["eval", "corruptions", "--checkpoint", str(run / "checkpoint.pt"),
                         "--split", "test-id", "--n", str(n), "--workers", str(workers),
                         "--out", str(Path(tmp) / "ev")]) == 0
        return time.perf_counter() - t0


def main():
    from genint_fast.benchmarks.common import machine

    p = argparse.ArgumentParser()
    p.add_argument("--n224", type=int, default=32)
    p.add_argument("--n32", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"Machine: {machine()}")
    print(f"\n| corruption (224 px, severities 1-5, 1 process) | images / s |\n|---|---|")
    for c, ips in sorted(per_corruption(args.n224, 224), key=lambda r: r[1]):
        print(f"| {c} | {ips:.1f} |")
    wall = full_eval(args.n32, args.workers)
    print(f"\nFull evaluation, 15 corruptions x 5 severities of {args.n32} 32 px images "
          f"(plus clean), small CNN, {args.workers} worker processes: {wall:.0f} s")


if __name__ == "__main__":
    main()
