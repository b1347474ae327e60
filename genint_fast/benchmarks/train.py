"""Trainer throughput: generation overlapped with classifier steps (producer=thread: intervened
batches made ahead by a background thread into a bounded queue) against the sequential loop
(producer=inline: generate, then train), in the same run, on the built-in biased digits with the
small 32x32 generator. Reports seconds per step and the classifier's wait fraction."""
from __future__ import annotations

import tempfile
import time

import torch

from ..train.config import load_config
from ..train.trainer import Trainer
from .common import Row


def _seconds_per_step(producer, steps, warmup, device, threads):
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(None, [
            "mode=genint", "model=smallcnn", "num_classes=10", "data=digits:colored:1.0",
            "data_size=4096", "batch_size=64", "gen_batch_size=32", "lambda1=0.05",
            "generator=random:small32:0", "num_directions=20", "top_k=20", "m=5",
            f"producer={producer}", "queue_size=4", f"steps={steps}", "progress=false",
            f"checkpoint_every={10 * steps}", f"log_every={steps}", f"device={device.type}",
            f"threads={threads}", f"out={out}",
        ])
        trainer = Trainer(cfg, log=lambda *a, **k: None)
        marks, waits = [], []

        def on_step(_trainer, row):
            marks.append(time.perf_counter())
            waits.append(row["wait_s"])

        trainer.fit(on_step)
    span = marks[-1] - marks[warmup - 1]
    return span / (len(marks) - warmup), sum(waits[warmup:]) / span


def run(device="cpu", quick=False):
    device = torch.device(device)
    steps, warmup = (25, 5) if quick else (80, 10)
    # On CPU the classifier gets one intra-op thread so that the producer thread has a core.
    threads = 1 if device.type == "cpu" else torch.get_num_threads()
    t_thr, w_thr = _seconds_per_step("thread", steps, warmup, device, threads)
    t_inl, w_inl = _seconds_per_step("inline", steps, warmup, device, threads)
    return [Row("train genint step, smallcnn 64 real + 32 intervened (small32 GAN)",
                "sequential: generate, then train", t_thr, t_inl,
                note=f"classifier wait {w_thr:.0%} overlapped vs {w_inl:.0%} sequential")]
