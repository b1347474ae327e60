"""Training the large-image CGN (`genint_fast.cgn.large` holds the model and its losses):
the trainer (Adam per mechanism, gradient accumulation), LargeCGNTrainConfig and
train_large_cgn (checkpoints on update boundaries, exact resume, a sample sheet), checkpoint
files and load_large_cgn, which builds the model from the user's BigGAN, U^2-Net and VGG16
files. `genint-fast cgn --large` runs it."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..cgn_config import LargeCGNLossConfig, LargeCGNTrainConfig  # torch-free settings
from ..generators.base import check_truncation
from ..generators.biggan import BigGANGenerator, KeyReport
from ..io import load_state, save_atomic
from .large import (CHECKPOINT_FORMAT, MECHANISMS, LargeCGN, _freeze, _labels,
                    large_cgn_losses)
from .u2net import load_u2net

__all__ = ["LargeCGNTrainer", "LargeCGNTrainConfig", "train_large_cgn", "large_cgn_sheet",
           "load_large_cgn", "save_large_cgn_checkpoint", "read_large_cgn_checkpoint",
           "load_large_cgn_checkpoint", "apply_large_cgn_checkpoint", "SHEET_CLASSES"]


# --------------------------------------------------------------------------------- training

class LargeCGNTrainer:
    """One optimisation step at a time: sample (u, y) (the same for the three mechanisms and
    the target), compute the losses, backpropagate (divided by `accumulate`) and, every
    `accumulate` calls, step one Adam per mechanism. Only the mechanisms are optimised."""

    def __init__(self, cgn: LargeCGN, features: nn.Module,
                 loss_config: LargeCGNLossConfig | None = None, *, lr_shape=8e-6,
                 lr_texture=3e-5, lr_background=1e-5, betas=(0.9, 0.999), accumulate=1,
                 truncation=1.0):
        if int(accumulate) < 1:
            raise ValueError(f"accumulate must be >= 1, got {accumulate}")
        self.cgn = cgn
        self.features = _freeze(features)
        self.loss_config = loss_config or LargeCGNLossConfig()
        self.accumulate = int(accumulate)
        self.truncation = check_truncation(truncation)
        self.lrs = {"f_shape": float(lr_shape), "f_text": float(lr_texture),
                    "f_bg": float(lr_background)}
        self.optimizers = {name: torch.optim.Adam(getattr(cgn, name).parameters(), lr=lr,
                                                  betas=tuple(betas))
                           for name, lr in self.lrs.items()}
        self.steps = 0        # backward passes
        self.updates = 0      # optimiser steps
        self.pending = 0      # backward passes since the last optimiser step
        self.last_step_updated = False

    def step(self, batch_size=1, generator=None) -> dict:
        """One forward/backward on a fresh batch; an optimiser update after every `accumulate`
        calls. Returns the weighted loss terms and their total as floats."""
        cgn = self.cgn
        cgn.train(True)
        u, y = cgn.sample_inputs(batch_size, self.truncation, generator)
        out = cgn(u, y, self.truncation)
        losses = large_cgn_losses(cgn, out, self.features, self.loss_config, generator)
        total = sum(losses.values())
        (total / self.accumulate).backward()
        self.steps += 1
        self.pending += 1
        self.last_step_updated = self.pending >= self.accumulate
        if self.last_step_updated:
            self.pending = 0
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            self.updates += 1
        result = {k: float(v.detach()) for k, v in losses.items()}
        result["total"] = float(total.detach())
        return result

    def state_dict(self) -> dict:
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "steps": self.steps, "updates": self.updates, "pending": self.pending,
                "accumulate": self.accumulate,
                "lrs": dict(self.lrs), "truncation": self.truncation,
                "loss_config": asdict(self.loss_config)}

    def load_state_dict(self, state: dict):
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.steps = int(state["steps"])
        self.updates = int(state["updates"])
        self.pending = int(state.get("pending", 0))


def train_large_cgn(cgn: LargeCGN, features: nn.Module, out, config=None, *, resume_from=None,
                    samples=None, log=print) -> dict:
    """Train the mechanisms for config.updates optimiser updates (LargeCGNTrainer), writing the
    checkpoint `out` (save_atomic) every checkpoint_every updates and at the end, and the sheet
    `samples` (large_cgn_sheet) with every checkpoint when given.

    One torch.Generator on the model's device, seeded with config.seed, draws every (u, y) and
    texture patch; the checkpoint holds its state, the optimisers and the counters, so a run
    resumed from it (resume_from: the dict of read_large_cgn_checkpoint(out)) repeats the
    uninterrupted one (same device and thread count). Checkpoints fall on update boundaries, so
    no accumulated gradient is lost. Returns a summary dict."""
    tc = config or LargeCGNTrainConfig()
    trainer = LargeCGNTrainer(cgn, features, tc.loss, lr_shape=tc.lr_shape,
                              lr_texture=tc.lr_texture, lr_background=tc.lr_background,
                              betas=tc.betas, accumulate=tc.accumulate, truncation=tc.truncation)
    gen = torch.Generator(device=cgn.device).manual_seed(int(tc.seed))
    if resume_from is not None:
        apply_large_cgn_checkpoint(resume_from, cgn, trainer, where=out)
        for name, opt in trainer.optimizers.items():   # the config's lr and betas, not the file's
            for group in opt.param_groups:
                group["lr"], group["betas"] = trainer.lrs[name], tc.betas
        rng = (resume_from.get("extra") or {}).get("rng")
        if rng is not None:
            gen.set_state(rng)
    start, t0 = trainer.updates, time.time()

    def checkpoint():
        save_large_cgn_checkpoint(out, cgn, trainer,
                                  extra={"train_config": tc.to_dict(), "rng": gen.get_state()})
        if samples:
            large_cgn_sheet(cgn, samples, seed=tc.seed)

    window, n, last = {}, 0, {}
    while trainer.updates < tc.updates:
        losses = trainer.step(tc.batch_size, gen)
        for k, v in losses.items():
            window[k] = window.get(k, 0.0) + v
        n += 1
        if not trainer.last_step_updated:
            continue
        u = trainer.updates
        final = u >= tc.updates
        last = {k: v / n for k, v in window.items()}
        if tc.log_every and (u % tc.log_every == 0 or final):
            terms = ", ".join(f"{k} {v:.4g}" for k, v in last.items())
            log(f"large cgn update {u}/{tc.updates} ({trainer.steps} batches): {terms} "
                f"[{time.time() - t0:.1f}s]")
        window, n = {}, 0
        if final or (tc.checkpoint_every and u % tc.checkpoint_every == 0):
            checkpoint()
    if trainer.updates == start:
        log(f"{out} has already trained {start} of {tc.updates} updates; nothing to do")
        if samples:
            large_cgn_sheet(cgn, samples, seed=tc.seed)
    return {"updates": trainer.updates, "batches": trainer.steps,
            "updates_now": trainer.updates - start, "losses": last,
            "seconds": round(time.time() - t0, 3), "checkpoint": str(out),
            "generator": cgn.generator_id, "train_config": tc.to_dict()}


# The classes of the reference's sample sheet (imagenet/train_cgn.py), for a 1000-class BigGAN.
SHEET_CLASSES = (15, 251, 330, 382, 385, 483, 559, 751, 938, 947, 999)


@torch.no_grad()
def large_cgn_sheet(cgn: LargeCGN, path, *, classes=None, truncation=0.5, seed=0) -> Path:
    """One PNG, a column per class: the mask, texture, background and composite of one sample
    (the three mechanisms on the same noise and class) and the frozen BigGAN's image for it
    (rows 1-5), then a counterfactual row: column j's shape with the texture of the next
    column's class and the background of the one after (cyclically). classes: the reference's
    sheet classes (SHEET_CLASSES) for a 1000-class BigGAN, else the first min(8, classes).
    The mechanisms run in eval() (no power iteration)."""
    from ..intervene import save_grid

    if classes is None:
        classes = SHEET_CLASSES if cgn.num_classes == 1000 else range(min(8, cgn.num_classes))
    y = _labels(torch.tensor([int(c) for c in classes]), len(classes), cgn.num_classes,
                cgn.device)
    g = torch.Generator(device=cgn.device).manual_seed(int(seed))
    u, _ = cgn.sample_inputs(len(y), truncation, g)
    with cgn._frozen_modes():
        out = cgn(u, y, truncation)
    cf = cgn.counterfactual(u, y, y.roll(-1), y.roll(-2), truncation=truncation)
    rows = [out["mask"].expand(-1, 3, -1, -1) * 2 - 1, out["foreground"], out["background"],
            out["x_gen"], out["x_gt"], cf["x_gen"]]
    return save_grid(torch.cat(rows).clamp(-1, 1), path, ncols=len(y))


# ------------------------------------------------------------------------- files / loading

def save_large_cgn_checkpoint(path, cgn: LargeCGN, trainer: LargeCGNTrainer | None = None,
                              extra: dict | None = None) -> Path:
    """The three mechanisms (and the trainer's optimisers and counters) to one file, written
    atomically. The frozen BigGAN and the saliency net are not stored (they are the user's
    files); the generator id is, and loading checks it."""
    blob = {"format": CHECKPOINT_FORMAT, "generator_id": cgn.generator_id,
            "image_size": cgn.image_size, "power_iteration": cgn.power_iteration,
            "mechanisms": {n: getattr(cgn, n).state_dict() for n in MECHANISMS},
            "trainer": trainer.state_dict() if trainer is not None else None,
            "extra": extra or {}}
    return save_atomic(blob, path)


def read_large_cgn_checkpoint(path) -> dict:
    """The dict of a save_large_cgn_checkpoint file (on the CPU), checked to be one: a missing
    file is a FileNotFoundError, another kind of file a ValueError, each one sentence."""
    return load_state(path, CHECKPOINT_FORMAT, "large CGN checkpoint", weights_only=True)


def load_large_cgn_checkpoint(path, cgn: LargeCGN, trainer: LargeCGNTrainer | None = None,
                              *, check_generator=True) -> dict:
    """Load a checkpoint of save_large_cgn_checkpoint into `cgn` (and `trainer`), with strict
    key checks. Returns the file's dict (its 'extra' entry holds what the caller saved)."""
    blob = read_large_cgn_checkpoint(path)
    apply_large_cgn_checkpoint(blob, cgn, trainer, check_generator=check_generator, where=path)
    return blob


def apply_large_cgn_checkpoint(blob: dict, cgn: LargeCGN,
                               trainer: LargeCGNTrainer | None = None, *, check_generator=True,
                               where="the checkpoint") -> None:
    """Load a dict of read_large_cgn_checkpoint into `cgn` (and `trainer`); `where` names the
    file in the error messages."""
    if check_generator and blob["generator_id"] != cgn.generator_id:
        raise ValueError(f"{where} was trained from generator {blob['generator_id']!r}, this "
                         f"model is built on {cgn.generator_id!r}")
    for name in MECHANISMS:
        module = getattr(cgn, name)
        state = blob["mechanisms"][name]
        want = module.state_dict()
        report = KeyReport(sorted(k for k in want if k not in state),
                           sorted(k for k in state if k not in want))
        if not report.ok:
            raise ValueError(f"{where}: mechanism {name} does not match the model: {report}")
        module.load_state_dict(state, strict=True)
    if trainer is not None:
        if blob.get("trainer") is None:
            raise ValueError(f"{where} holds no optimiser state")
        trainer.load_state_dict(blob["trainer"])


def load_large_cgn(biggan_spec, u2net_path, vgg16_weights="cache", device="cpu", *,
                   u2net_kind="u2net", cache_dir=None, with_features=True,
                   power_iteration=False):
    """(LargeCGN, VGG16 features or None) from the user's files: BigGAN through
    genint_fast.generators.load_generator (strict keys), U^2-Net through load_u2net, VGG16 through
    genint_fast.features.vgg16_features (with_features=False skips it, e.g. for sampling).

    Every file is looked for before anything large is built: a missing one is a
    FileNotFoundError at once, before BigGAN is loaded and copied.
    """
    from ..features import vgg16_features, vgg16_weights_file
    from ..generators import PRETRAINED_NAMES, load_generator, resolve_biggan_files

    upath = Path(u2net_path)
    if not upath.is_file():
        load_u2net(upath, kind=u2net_kind)   # raises the FileNotFoundError with instructions
    if with_features:
        vfile = vgg16_weights_file() if vgg16_weights == "cache" else \
            (Path(vgg16_weights) if vgg16_weights is not None else None)
        if vfile is not None and not vfile.is_file():
            vgg16_features(vgg16_weights, layers=("conv1_1",))   # raises, naming the file
    spec = str(biggan_spec)
    if spec in PRETRAINED_NAMES or Path(spec).is_dir():
        resolve_biggan_files(spec, cache_dir)                  # raises when files are absent
    saliency = load_u2net(upath, kind=u2net_kind, device=device)
    features = vgg16_features(vgg16_weights, device=device) if with_features else None
    gen = load_generator(spec, device=device, cache_dir=cache_dir, strict=True)
    if not isinstance(gen, BigGANGenerator):
        raise ValueError(f"the large-image CGN needs a BigGAN-deep generator; {spec!r} is a "
                         f"{type(gen).__name__}")
    return LargeCGN(gen, saliency, power_iteration=power_iteration), features
