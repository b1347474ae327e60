"""The GenInt paper's controlled experiment (its Table 4): the same classifier trained only on N
generated images, observational samples (a truncation sweep) against interventional ones (the
selected scale) and the two controls, tested on real images in and out of distribution.

Each (set, seed) draws its own N images (the sampler seeded by the seed), trains a fresh
classifier on them alone (mode erm over the fixed set, the digits' crop augmentation) and reads
the real test splits once at the end. Nothing is selected on a test split: the scale comes from
the caller (the demo's causal-bound score on the validation split).
"""
from __future__ import annotations

import math
import statistics
import tempfile

import torch

from ..eval.stats import ci95

__all__ = ["generated_only", "format_generated_only"]


def generated_only(samplers, tests, *, n=5000, seeds=5, steps=600, batch_size=64, lr=0.05,
                   num_classes=10, threads=None, log=print) -> dict:
    """samplers: {set name: function(seed) -> sampler}; tests: {split name: BiasedDigits-like
    with .images (uint8) and .labels}. Returns {"rows": {name: {"<split>_mean", "<split>_ci95",
    "runs": [{seed, <split>: top-1}]}}, "n", "steps", "seeds"}."""
    from ..intervene import draw_images
    from .config import TrainConfig
    from .trainer import Trainer, evaluate

    if n < batch_size:
        raise ValueError(f"n ({n}) must be at least the batch size ({batch_size})")
    rows = {}
    for name, make in samplers.items():
        runs = []
        for seed in range(int(seeds)):
            x, y = draw_images(make(1000 + seed), n)
            images = (x * 255).round_().to(torch.uint8)
            with tempfile.TemporaryDirectory() as out:
                tc = TrainConfig(mode="erm", model="smallcnn", num_classes=num_classes,
                                 data="digits:colored", steps=int(steps),
                                 batch_size=int(batch_size), lr=lr, lr_step_epochs=1e6,
                                 seed=seed, threads=threads, out=out, progress=False,
                                 checkpoint_every=10 ** 9, log_every=10 ** 9,
                                 device="cpu").validate()
                trainer = Trainer(tc, data=(images, y, torch.zeros(n, 2, dtype=torch.long)),
                                  log=lambda m: None)
                trainer.fit()
            run = {"seed": seed, **{split: evaluate(trainer.model, ds.images, ds.labels)[0]
                                    for split, ds in tests.items()}}
            runs.append(run)
            log(f"  generated only, {name:28s} seed {seed}: " + "  ".join(
                f"{split} {100 * run[split]:.1f}" for split in tests))
        row = {"runs": runs}
        for split in tests:
            vals = [r[split] for r in runs]
            row[f"{split}_mean"] = statistics.fmean(vals)
            row[f"{split}_ci95"] = ci95(vals)
        rows[name] = row
    return {"rows": rows, "n": int(n), "steps": int(steps), "seeds": int(seeds)}


def format_generated_only(result: dict) -> str:
    """Markdown table: a row per generated set, top-1 (%) mean +- 95% interval per test split."""
    rows = result["rows"]
    splits = [k[:-5] for k in next(iter(rows.values())) if k.endswith("_mean")]
    lines = ["| trained only on | " + " | ".join(f"{s} top-1 (%)" for s in splits) + " |",
             "|---|" + "---|" * len(splits)]
    for name, r in rows.items():
        cells = []
        for s in splits:
            ci = r[f"{s}_ci95"]
            cells.append(f"{100 * r[s + '_mean']:.1f}"
                         + (f" +- {100 * ci:.1f}" if math.isfinite(ci) else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
