"""Training of the small class-conditional GAN (`genint-fast gan`).

Hinge loss (or least squares), Adam, an exponential moving average of the generator's weights
(torch.optim.swa_utils.AveragedModel, buffers included), atomic checkpoints (write to a
temporary file, then os.replace) and exact resume (models, optimisers, EMA, step, RNG state).
The trainer takes any (images in [-1, 1], int64 labels) tensors, so it does not depend on where
the data comes from.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from ..gan_config import GANTrainConfig, SmallGANConfig
from ..io import load_state, save_atomic
from .small import ProjectionDiscriminator, SmallGenerator

__all__ = ["GANTrainConfig", "train_gan", "load_small_generator", "save_checkpoint",
           "read_gan_checkpoint"]

CHECKPOINT_FORMAT = "genint_fast.small_gan.v1"


def _ema_with_warmup(decay):
    """AveragedModel's multi_avg_fn for an EMA whose decay ramps up as min(decay,
    (1 + n) / (10 + n)) over the n updates so far, so that early EMA weights are not dominated by
    the random initialisation (a fixed 0.999 still holds 90% of it after 100 steps)."""
    @torch.no_grad()
    def avg(ema_params, params, num_averaged):
        if not (torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0])):
            for e, p in zip(ema_params, params):  # integer buffers (batch counts): follow G
                e.copy_(p)
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
    return avg


def _d_loss(kind, real, fake):
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake ** 2).mean()


def _g_loss(kind, fake):
    if kind == "hinge":
        return -fake.mean()
    return 0.5 * ((fake - 1.0) ** 2).mean()


def _check_data(images, labels, num_classes):
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1:] != (3, 32, 32):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, 3, 32, 32) tensor, got {shape}")
    if not torch.is_floating_point(images):
        raise ValueError(f"images must be floating point in [-1, 1], got {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"images must lie in [-1, 1], found values in [{lo:.3g}, {hi:.3g}]")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integer class ids of shape ({images.shape[0]},)")
    if images.shape[0] == 0:
        raise ValueError("no training images")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return images, labels.long()


def save_checkpoint(path, state) -> None:
    """torch.save to a temporary file next to `path`, then an atomic rename."""
    save_atomic(state, path)


def read_gan_checkpoint(path) -> dict:
    """The state of a `genint-fast gan` checkpoint (weights, model_config, steps trained), one
    sentence for a file that is not one."""
    return load_state(path, CHECKPOINT_FORMAT, "GAN checkpoint",
                      missing="train one with `genint-fast gan`")


def load_small_generator(path, *, device="cpu", ema=True) -> SmallGenerator:
    """The generator of a `genint-fast gan` checkpoint (its EMA weights unless ema=False), in
    eval()."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GAN checkpoint at {path}; train one with `genint-fast gan`")
    state = read_gan_checkpoint(path)
    gen = SmallGenerator(SmallGANConfig(**state["model_config"]),
                         generator_id="small32")
    gen.load_state_dict(state["G_ema"] if ema else state["G"])
    return gen.to(device).eval()


@dataclass
class _GANParts:
    G: SmallGenerator
    D: ProjectionDiscriminator
    ema: AveragedModel
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator


def _build_parts(mc, tc, device) -> _GANParts:
    with torch.random.fork_rng(devices=[]):  # the seed fixes the initial weights too
        torch.manual_seed(tc.seed)
        G = SmallGenerator(mc).to(device)
        D = ProjectionDiscriminator(mc).to(device)
    ema = AveragedModel(G, multi_avg_fn=_ema_with_warmup(tc.ema_decay), use_buffers=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=tc.lr_g, betas=tuple(tc.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=tc.lr_d, betas=tuple(tc.betas))
    rng = torch.Generator(device=device).manual_seed(tc.seed)
    return _GANParts(G, D, ema, opt_g, opt_d, rng)


def _restore_parts(p: _GANParts, state) -> int:
    """Load a checkpoint's models, EMA, optimisers and RNG state into p; returns its step."""
    p.G.load_state_dict(state["G"])
    p.D.load_state_dict(state["D"])
    p.ema.load_state_dict(state["ema"])
    p.opt_g.load_state_dict(state["opt_g"])
    p.opt_d.load_state_dict(state["opt_d"])
    p.rng.set_state(state["rng"])
    return int(state["step"])


def _checkpoint_state(p: _GANParts, mc, tc, step) -> dict:
    return {
        "format": CHECKPOINT_FORMAT, "model_config": mc.to_dict(),
        "train_config": dict(tc.__dict__, betas=list(tc.betas)), "step": step,
        "G": p.G.state_dict(), "D": p.D.state_dict(), "ema": p.ema.state_dict(),
        "G_ema": p.ema.module.state_dict(), "opt_g": p.opt_g.state_dict(),
        "opt_d": p.opt_d.state_dict(), "rng": p.rng.get_state(),
    }


def _train_step(p: _GANParts, tc, num_classes, images, labels) -> dict:
    """One discriminator step, then one generator step and the EMA update, on a batch drawn
    from p.rng; returns the two losses."""
    G, D, rng, device = p.G, p.D, p.rng, images.device
    idx = torch.randint(images.shape[0], (tc.batch_size,), generator=rng, device=device)
    real, y = images[idx], labels[idx]
    z = G.sample_latents(tc.batch_size, 1.0, generator=rng)
    y_fake = torch.randint(num_classes, (tc.batch_size,), generator=rng, device=device)
    # discriminator
    with torch.no_grad():
        fake = G(z, y_fake)
    d_loss = _d_loss(tc.loss, D(real, y), D(fake, y_fake))
    p.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    p.opt_d.step()
    # generator
    g_loss = _g_loss(tc.loss, D(G(z, y_fake), y_fake))
    p.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    p.opt_g.step()
    p.ema.update_parameters(G)
    return {"d": d_loss.item(), "g": g_loss.item()}


def train_gan(images, labels, out, *, model_config: SmallGANConfig | None = None,
              train_config: GANTrainConfig | None = None, resume=True, device="cpu",
              log=print) -> dict:
    """Train (or resume) the small GAN on (images, labels); checkpoints go to `out`.

    Returns a summary dict: steps done, last losses, seconds, and the checkpoint path.
    """
    tc = train_config or GANTrainConfig()
    device = torch.device(device)
    out = Path(out)
    state = read_gan_checkpoint(out) if (resume and out.is_file()) else None
    if state is not None:
        mc = SmallGANConfig(**state["model_config"])
        if model_config is not None and model_config.to_dict() != mc.to_dict():
            raise ValueError(f"checkpoint {out} was trained with {mc.to_dict()}, not "
                             f"{model_config.to_dict()}; pass another --out to start afresh")
    else:
        mc = model_config or SmallGANConfig(num_classes=int(torch.as_tensor(labels).max()) + 1)
    images, labels = _check_data(images, labels, mc.num_classes)
    images, labels = images.to(device, torch.float32), labels.to(device)

    parts = _build_parts(mc, tc, device)
    step = 0
    if state is not None:
        step = _restore_parts(parts, state)
        log(f"resumed {out} at step {step}")
    start = step
    t0 = time.perf_counter()
    losses = {"d": float("nan"), "g": float("nan")}
    parts.G.train()
    parts.D.train()
    while step < tc.steps:
        losses = _train_step(parts, tc, mc.num_classes, images, labels)
        step += 1
        if not all(math.isfinite(v) for v in losses.values()):
            raise RuntimeError(f"GAN training diverged at step {step} (losses {losses}); "
                               f"lower the learning rates")
        if tc.log_every and step % tc.log_every == 0:
            log(f"step {step}/{tc.steps}  loss_d {losses['d']:.4f}  loss_g {losses['g']:.4f}  "
                f"{(time.perf_counter() - t0) / max(step - start, 1):.2f} s/step")
        if tc.checkpoint_every and step % tc.checkpoint_every == 0:
            save_checkpoint(out, _checkpoint_state(parts, mc, tc, step))
    save_checkpoint(out, _checkpoint_state(parts, mc, tc, step))
    return {"steps": step, "loss_d": losses["d"], "loss_g": losses["g"],
            "seconds": time.perf_counter() - t0, "checkpoint": str(out)}
