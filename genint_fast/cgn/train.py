"""Training of the small CGN (`genint-fast cgn`).

Per step (one G step, then one D step, Adam 2e-4, betas (0.5, 0.999), as the reference):
- generator: least-squares GAN loss MSE(D(x_gen, y_gen), 1) + lambda_mask * mean binary entropy
  of the mask (bits) + a Gram style loss between the composite and the current real batch
  (unpaired by class), computed with the package's fused MMD op: kernel "poly2" is exactly Gram
  matching, MMD^2 = ||X^T X / N - Y^T Y / M||_F^2 per pair and layer; + lambda_border * the
  masks' mean on the outer 2-pixel ring (the border prior for object-centred images; not in
  the reference);
- discriminator: (MSE(D(real, y), 1) + MSE(D(x_gen, y_gen), 0)) / 2.

Feature network of the style loss: a user-provided torchvision VGG16 file (`vgg16:PATH`, the
reference's ImageNet VGG16 at relu1_2 / relu2_2 / relu3_3 / relu4_3), the package's own small
VGG-like network trained on the biased digits (`small`, the default: ImageNet weights cannot be
downloaded here), or `none`.

Determinism: every draw comes from one torch.Generator, and the discriminator's dropout from the
global RNG inside fork_rng seeded from the config; the checkpoint holds both states, so a run
killed at any point and resumed is bitwise equal to an uninterrupted one (fixed thread count).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io import copy_atomic, load_state, save_atomic
from ..cgn_config import (STYLE_WEIGHTS, TRY_SEED_STRIDE, CGNConfig,  # torch-free settings
                          CGNTrainConfig)
from .small import SmallCGN, build_discriminator

__all__ = ["CGNTrainConfig", "train_cgn", "train_cgn_checked", "load_cgn", "read_cgn_checkpoint",
           "mask_entropy",
           "border_mean",
           "style_feature_net", "STYLE_WEIGHTS", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "genint_fast.small_cgn.v1"

VGG16_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
SMALL_LAYERS = ("conv1_2", "conv2_2", "conv3_1")


def mask_entropy(m: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy of the mask in bits: mean(-m log2 m - (1 - m) log2 (1 - m))."""
    return (-m * torch.log2(m) - (1 - m) * torch.log2(1 - m)).mean()


def style_feature_net(spec: str, device="cpu", log=None):
    """(feature net or None, per-layer weights mapper) for a feature_net spec."""
    from .. import features

    if spec == "none":
        return None, None
    if spec.startswith("vgg16:"):
        net = features.vgg16_features(spec[len("vgg16:"):], layers=VGG16_LAYERS, device=device)
        return net, lambda w: list(w)
    net = features.project_small_vgg(layers=SMALL_LAYERS, device=device, log=log)
    return net, lambda w: [w[0], w[1], math.sqrt(w[2] ** 2 + w[3] ** 2)]


def _style_loss(net, layer_weights, fake01, real01):
    """sum_l w_l^2 * RMS difference of the reference's Grams F F^T / (C H W), per pair, batch
    mean. poly2 MMD^2 is ||X^T X / N - Y^T Y / N||_F^2 (N = H W positions), so the RMS over the
    C^2 entries of the reference Gram's difference is sqrt(MMD^2) / C^2; the reference took the
    mean absolute difference (L1), of the same magnitude (RMS >= mean absolute)."""
    from ..ops import mmd

    total = fake01.new_zeros(())
    fx, fy = net(fake01), net(real01)
    for w, a, b in zip(layer_weights, fx, fy):
        if w > 0:
            d2 = mmd(a, b.detach(), kernel="poly2", reduction="none")
            total = total + w ** 2 * ((d2 + 1e-12).sqrt() / a.shape[1] ** 2).mean()
    return total


def border_mean(m: torch.Tensor, width: int = 2) -> torch.Tensor:
    """(B,) mean mask on each image's outer ring of `width` pixels."""
    ring = torch.ones(m.shape[-2:], dtype=torch.bool, device=m.device)
    ring[width:-width, width:-width] = False
    return m[..., ring].flatten(1).mean(1)


@torch.no_grad()
def _ema_update(ema, model, decay):
    """ema <- decay * ema + (1 - decay) * model for the weights; BatchNorm statistics and
    counters are copied (they are running averages already)."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    torch._foreach_copy_(list(ema.buffers()), list(model.buffers()))


def read_cgn_checkpoint(path):
    return load_state(path, CHECKPOINT_FORMAT, "CGN checkpoint",
                      missing="train one with `genint-fast cgn`")


def load_cgn(path, *, device="cpu") -> SmallCGN:
    """The mechanisms of a `genint-fast cgn` checkpoint, in eval(): the moving average of the
    weights when the run kept one (ema > 0), else the trained weights."""
    state = read_cgn_checkpoint(path)
    cgn = SmallCGN(CGNConfig(**state["model_config"]))
    cgn.load_state_dict(state.get("G_ema") or state["G"])
    cgn.steps_trained = int(state["step"])
    return cgn.to(device).eval()


def _check_data(images, labels, num_classes):
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1:] != (3, 32, 32):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"CGN training images must be a (N, 3, 32, 32) tensor, got {shape}")
    if not torch.is_floating_point(images) or images.shape[0] < 2:
        raise ValueError("CGN training images must be floating point in [-1, 1], at least 2")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"CGN training images must lie in [-1, 1], found [{lo:.3g}, {hi:.3g}]")
    labels = torch.as_tensor(labels)
    if labels.shape != (images.shape[0],) or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integer class ids of shape ({images.shape[0]},)")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return images, labels.long()


def _resumable_model_config(state, model_config, tc, out) -> CGNConfig:
    """The model config of a checkpoint to resume; ValueError when the checkpoint cannot be
    resumed with these settings."""
    if "D" not in state:
        raise ValueError(f"{out} holds a generator only (an imported reference checkpoint) and "
                         f"cannot be resumed; pass another --out to train afresh")
    mc = CGNConfig(**state["model_config"])
    if model_config is not None and model_config.to_dict() != mc.to_dict():
        theirs, mine = mc.to_dict(), model_config.to_dict()
        diff = ", ".join(f"{k} ({theirs.get(k)!r} there, {mine[k]!r} now)"
                         for k in sorted(mine) if mine[k] != theirs.get(k))
        raise ValueError(f"cannot resume {out}: its model config differs in {diff}; pass "
                         f"another --out to start afresh")
    theirs = dict(state["train_config"])
    mine = tc.to_dict()
    defaults = CGNTrainConfig().to_dict()   # a field newer than the checkpoint: its default
    diff = sorted(k for k in mine if k not in ("steps", "checkpoint_every", "log_every",
                                               "tries", "check_at", "min_shape_consistency")
                  and mine[k] != theirs.get(k, defaults[k]))
    if diff:
        raise ValueError(f"cannot resume {out}: its training settings differ in "
                         f"{', '.join(diff)}; pass another --out to start afresh")
    return mc


@dataclass
class _CGNParts:
    G: SmallCGN
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator
    G_ema: SmallCGN | None


def _build_parts(mc, tc, device) -> _CGNParts:
    """Models, optimisers and the generator of draws, in this order from the global RNG (the
    caller seeds it)."""
    G = SmallCGN(mc).to(device)
    D = build_discriminator(mc).to(device)
    # fused: one pass over each parameter (CPU and CUDA) instead of Adam's op-by-op loop
    opt_g = torch.optim.Adam(G.parameters(), lr=tc.lr_g, betas=tuple(tc.betas), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=tc.lr_d, betas=tuple(tc.betas), fused=True)
    rng = torch.Generator(device=device).manual_seed(tc.seed)
    G_ema = None
    if tc.ema > 0:
        G_ema = SmallCGN(mc).to(device)
        G_ema.load_state_dict(G.state_dict())
        G_ema.eval().requires_grad_(False)
    return _CGNParts(G, D, opt_g, opt_d, rng, G_ema)


def _restore_parts(p: _CGNParts, state, device) -> int:
    """Load a checkpoint's weights, optimisers and RNG states into p; returns its step."""
    p.G.load_state_dict(state["G"])
    if p.G_ema is not None:
        p.G_ema.load_state_dict(state["G_ema"])
    p.D.load_state_dict(state["D"])
    p.opt_g.load_state_dict(state["opt_g"])
    p.opt_d.load_state_dict(state["opt_d"])
    p.rng.set_state(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)  # dropout draws on the GPU
    return int(state["step"])


def _checkpoint_state(p: _CGNParts, mc, tc, step, fnet, device) -> dict:
    return {
        "format": CHECKPOINT_FORMAT, "model_config": mc.to_dict(),
        "train_config": tc.to_dict(), "step": step, "G": p.G.state_dict(),
        "D": p.D.state_dict(), "opt_g": p.opt_g.state_dict(), "opt_d": p.opt_d.state_dict(),
        "rng": p.rng.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": (torch.cuda.get_rng_state(device) if device.type == "cuda"
                     else None),
        "feature_net": getattr(fnet, "name", "none"),
        "G_ema": p.G_ema.state_dict() if p.G_ema is not None else None,
    }


def _train_step(p: _CGNParts, tc, num_classes, images, labels, fnet, layer_w, step) -> dict:
    """One generator step, then one discriminator step, on a batch drawn from p.rng; returns
    the losses and the mask mean."""
    G, D, rng = p.G, p.D, p.rng
    if hasattr(D, "warm_up"):      # a discriminator whose parts join over the first steps
        D.warm_up(step)
    n, bs, device = images.shape[0], tc.batch_size, images.device
    idx = torch.randint(n, (bs,), generator=rng, device=device)
    real, y = images[idx], labels[idx]
    u = G.sample_noise(bs, rng)
    y_gen = torch.randint(num_classes, (bs,), generator=rng, device=device)
    def noisy(x):
        if tc.d_noise == 0:
            return x
        return x + tc.d_noise * torch.randn(x.shape, generator=rng, device=device)

    # generator step (D's weights are only read: no gradient is made for them)
    o = G(u, y_gen, rng)
    D.requires_grad_(False)
    g_adv = F.mse_loss(D(noisy(o.image), y_gen), torch.ones(bs, device=device))
    D.requires_grad_(True)
    g_mask = mask_entropy(o.mask)
    g_style = (_style_loss(fnet, layer_w, (o.image + 1) / 2, (real + 1) / 2)
               if fnet is not None else o.image.new_zeros(()))
    g_border = border_mean(o.mask).mean()
    g_loss = g_adv + tc.lambda_mask * g_mask + tc.style_scale * g_style
    if tc.lambda_border:
        g_loss = g_loss + tc.lambda_border * g_border
    p.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    p.opt_g.step()
    if p.G_ema is not None:   # the decay warms up, so the first weights fade fast
        _ema_update(p.G_ema, G, min(tc.ema, (1.0 + step) / (10.0 + step)))
    # discriminator step
    fake = o.image.detach()
    d_loss = 0.5 * (F.mse_loss(D(noisy(real), y), torch.ones(bs, device=device))
                    + F.mse_loss(D(noisy(fake), y_gen), torch.zeros(bs, device=device)))
    p.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    p.opt_d.step()
    return {"d": d_loss.item(), "g_adv": g_adv.item(), "mask_entropy": g_mask.item(),
            "style": float(g_style.detach()), "mask_mean": o.mask.mean().item(),
            "mask_border": g_border.item()}


def _log_step(log, step, steps, losses, per):
    log(f"cgn step {step}/{steps}  d {losses['d']:.3f}  g {losses['g_adv']:.3f}  "
        f"mask H {losses['mask_entropy']:.3f} mean {losses['mask_mean']:.2f}  "
        f"style {losses['style']:.2e}  {per:.3f} s/step")


def train_cgn(images, labels, out, *, model_config: CGNConfig | None = None,
              train_config: CGNTrainConfig | None = None, resume=True, device="cpu",
              log=print) -> dict:
    """Train (or resume) the small CGN on (images in [-1, 1], labels); checkpoints to `out`.
    Returns a summary: steps, last losses, mask statistics, seconds, checkpoint path."""
    tc = train_config or CGNTrainConfig()
    device = torch.device(device)
    out = Path(out)
    state = read_cgn_checkpoint(out) if (resume and out.is_file()) else None
    if state is not None:
        mc = _resumable_model_config(state, model_config, tc, out)
    else:
        mc = model_config or CGNConfig(num_classes=int(torch.as_tensor(labels).max()) + 1)
    images, labels = _check_data(images, labels, mc.num_classes)
    images, labels = images.to(device, torch.float32), labels.to(device)
    fnet, mapper = style_feature_net(tc.feature_net, device=device, log=log)
    layer_w = mapper(tc.style_weights) if fnet is not None else []

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(tc.seed)  # the seed fixes the initial weights and the dropout draws
        parts = _build_parts(mc, tc, device)
        step = 0
        if state is not None:
            step = _restore_parts(parts, state, device)
            log(f"resumed {out} at step {step}")
        start = step
        t0 = time.perf_counter()
        losses = {}
        parts.G.train()
        parts.D.train()
        while step < tc.steps:
            losses = _train_step(parts, tc, mc.num_classes, images, labels, fnet, layer_w, step)
            step += 1
            if not all(math.isfinite(v) for v in losses.values()):
                raise RuntimeError(f"CGN training diverged at step {step} (losses {losses}); "
                                   f"lower the learning rates")
            if tc.log_every and (step % tc.log_every == 0 or step == tc.steps):
                _log_step(log, step, tc.steps, losses,
                          (time.perf_counter() - t0) / max(step - start, 1))
            if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                save_atomic(_checkpoint_state(parts, mc, tc, step, fnet, device), out)
        save_atomic(_checkpoint_state(parts, mc, tc, step, fnet, device), out)
    return {"steps": step, **losses, "seconds": time.perf_counter() - t0,
            "feature_net": getattr(fnet, "name", "none"), "checkpoint": str(out)}


def train_cgn_checked(images, labels, out, *, model_config: CGNConfig | None = None,
                      train_config: CGNTrainConfig | None = None, foreground_share=None,
                      share_by_class=None, shape_check=None, resume=True, device="cpu",
                      log=print) -> dict:
    """train_cgn, then the masks checked: the summary gains "mask" (sampler.mask_statistics)
    and "warnings" (sampler.decomposition_warnings, given the data's foreground share and its
    per-class values where known). With train_config.tries > 1, try i trains seed + i *
    TRY_SEED_STRIDE into OUT.seed<S>.pt; a try whose masks raise a warning at check_at steps
    (if 0 < check_at < steps) or at the end gives way to the next, the first try without one
    (else the last) is copied to OUT, and "tries" lists every try (seed, checkpoint, steps
    trained, warnings). Every try resumes from its own file, so a killed run picks up where it
    stopped and a finished one makes the same choice again; an OUT that already exists is
    resumed alone (the choice was made).
    shape_check (a callable CGN -> shape consistency, diagnostics.shape.shape_check) adds the
    masks' shape consistency to "mask"; with train_config.min_shape_consistency > 0 a value
    below it is a warning like the others (the check is then required)."""
    from .sampler import decomposition_warnings, mask_statistics

    tc = train_config or CGNTrainConfig()
    out = Path(out)
    if tc.min_shape_consistency > 0 and shape_check is None:
        raise ValueError("min_shape_consistency needs a shape reader, which only the built-in "
                         "digits variants have (their colour-free digits); leave it at 0 for "
                         "an image folder")

    def check(path, seed):
        cgn = load_cgn(path, device=device)
        stats = mask_statistics(cgn, seed=seed)
        if shape_check is not None:
            stats["shape_consistency"] = float(shape_check(cgn))
        return stats, decomposition_warnings(stats, foreground_share,
                                             share_by_class=share_by_class,
                                             min_shape_consistency=tc.min_shape_consistency)

    def train(path, cfg, resume_):
        return train_cgn(images, labels, path, model_config=model_config, train_config=cfg,
                         resume=resume_, device=device, log=log)

    if tc.tries == 1 or (resume and out.is_file()):
        if tc.tries > 1:
            log(f"{out} exists: resuming it alone (its tries were chosen from already)")
            kept = read_cgn_checkpoint(out).get("train_config", {})
            tc = replace(tc, seed=int(kept.get("seed", tc.seed)))
        summary = train(out, tc, resume)
        stats, warnings = check(out, tc.seed)
        return {**summary, "seed": tc.seed, "mask": stats, "warnings": warnings}
    tries, kept = [], None
    t0 = time.perf_counter()
    for i in range(tc.tries):
        seed = tc.seed + i * TRY_SEED_STRIDE
        path = out.with_name(f"{out.stem}.seed{seed}{out.suffix}")
        cfg = replace(tc, seed=seed)
        last = i == tc.tries - 1
        record = {"seed": seed, "checkpoint": str(path)}
        tries.append(record)
        fresh = resume
        if 0 < tc.check_at < tc.steps and not last:
            log(f"try {i + 1}/{tc.tries} (seed {seed}): training to step {tc.check_at}, then "
                f"its masks are checked")
            train(path, replace(cfg, steps=tc.check_at), resume)
            fresh = True                       # the rest of this try continues that file
            _, warnings = check(path, seed)
            if warnings:
                record.update(steps=tc.check_at, warnings=warnings)
                log(f"try {i + 1}/{tc.tries} (seed {seed}) gives way at step {tc.check_at}: "
                    f"{'; '.join(warnings)}")
                continue
        else:
            log(f"try {i + 1}/{tc.tries} (seed {seed})")
        summary = train(path, cfg, fresh)
        stats, warnings = check(path, seed)
        record.update(steps=summary["steps"], warnings=warnings)
        kept = (summary, stats, warnings, record)
        if not warnings:
            break
        if not last:
            log(f"try {i + 1}/{tc.tries} (seed {seed}) gives way at the end: "
                f"{'; '.join(warnings)}")
    summary, stats, warnings, record = kept
    copy_atomic(record["checkpoint"], out)
    log(f"kept try {tries.index(record) + 1}/{tc.tries} (seed {record['seed']}) as {out}"
        + ("" if not warnings else " (every try raised a warning: the last one is kept)"))
    return {**summary, "seconds": time.perf_counter() - t0, "checkpoint": str(out),
            "seed": record["seed"], "mask": stats, "warnings": warnings, "tries": tries}
