"""A training run's log on rank 0: the metrics rows (OUT/metrics.jsonl), TensorBoard and the
progress bar, and the throughput meter whose window each logged row summarises."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["Meter", "RunLog"]


class Meter:
    """Throughput and time spent waiting for producers over one logging window."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.wait = self.time = 0.0
        self.images = self.steps = 0

    def add(self, wait, seconds, images):
        self.wait += wait
        self.time += seconds
        self.images += images
        self.steps += 1

    def summary(self) -> dict:
        t = max(self.time, 1e-9)
        return {"images_per_s": self.images / t, "wait_fraction": self.wait / t,
                "mean_wait_s": self.wait / max(self.steps, 1)}


class RunLog:
    """Where a run's metrics go on rank 0: OUT/metrics.jsonl, TensorBoard (tensorboard=true) and
    a tqdm bar (progress=true)."""

    def __init__(self, out: Path, *, rank, tensorboard, progress, steps, start):
        self.file = open(out / "metrics.jsonl", "a") if rank == 0 else None
        self.tb = self.bar = None
        if tensorboard and rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))
        if progress and rank == 0:
            from tqdm import tqdm
            self.bar = tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True)

    def progress(self, per, meter):
        if self.bar is not None:
            self.bar.update(1)
            t = max(meter.time, 1e-9)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in per.items()} |
                                 {"img/s": f"{meter.images / t:.0f}",
                                  "wait": f"{meter.wait / t:.0%}"})

    def write(self, row, *, scalars=True):
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.tb is not None and scalars:
            for key, value in row.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, row["step"])
            self.tb.flush()

    def close(self):
        for h in (self.bar, self.file, self.tb):
            if h is not None:
                h.close()
