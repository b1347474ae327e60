"""The large-image CGN over BigGAN-deep (SPEC section 9, CGN.md "Large-image CGN").

Four copies of one pretrained BigGAN-deep: `biggan_gt` (frozen, the reconstruction target for
the same noise and class) and three trainable mechanisms `f_shape`, `f_text`, `f_bg`. A frozen
salient-object model (U^2-Net, `genint_fast.cgn.u2net`, from a file the user provides) turns the
shape mechanism's RGB output into the mask m (clamped to [1e-4, 0.9999]) and scores how salient
the background is. The image is x = m * f + (1 - m) * b.

Saliency interface: any nn.Module mapping RGB images in [-1, 1] (the generators' range) to a map
(B, 1, H, W) in (0, 1); U2NET / U2NETP do their own input normalisation.

Modes. pytorch-pretrained-biggan's batch norms always use the stored, truncation-indexed
statistics (train() does not change them); train() only switches spectral norm's power iteration
on. We keep the three mechanisms in eval() by default (power_iteration=False): spectral norm then
divides by sigma = u^T W v with the pretrained u, v (gradients flow through sigma), the copies
reproduce biggan_gt exactly at step 0 and a forward pass is deterministic. The reference put the
mechanisms in train() (one power iteration per forward); LargeCGN(power_iteration=True) does
that. biggan_gt and the saliency net stay in eval() whatever train() is called with.

Losses (LargeCGNLossConfig holds every weight; defaults are the reference's imagenet/config.py):
    100 * L1(x_gen, x_gt)
  + sum_l 4 * Gram(VGG16_l(x_gen), VGG16_l(x_gt)),  l = relu1_2, relu2_2, relu3_3, relu4_3
  + 300 * mean(-m log2 m - (1 - m) log2 (1 - m))
  + 500 * mean_b(relu(0.1 - mean m_b) + relu(mean m_b - 0.9))
  + sum_l [0, 5, 5, 0]_l * Gram(VGG16_l(f), VGG16_l(texture image of x_gt))
  + 2000 * mean saliency(b)
The Gram terms use genint_fast.ops.mmd with kernel "poly2": its biased MMD^2 is the squared
Frobenius distance ||F_x F_x^T / N - F_y F_y^T / N||^2 of the (C x C) Gram matrices normalised
by the number of positions N. The reference used the L1 distance of Grams normalised by C*H*W
and scaled by w^2 * 5e3, and fed [-1, 1] images to VGG without ImageNet normalisation; here VGG
gets (x + 1) / 2 with its usual normalisation (LayerFeatures). These are documented differences:
the numeric scale of the Gram terms differs from the reference's, so their weights may need
retuning against the other terms.

Texture image (reference losses.get_sampled_patches): the images and a probability map are
resized to 128x128 (bicubic), the mean probability of every 15x15 patch (stride 1) is computed,
36 patch locations are drawn uniformly (with replacement) from the 100 best, tiled 6x6 and the
90x90 tile is resized back to the image size. The probability map is the (detached) CGN mask, as
in the reference (`texture_source="mask"`), or the saliency of x_gt (`"saliency"`).

Training: Adam per mechanism, lr 8e-6 (shape), 3e-5 (texture; the paper says 1e-5), 1e-5
(background), batch 1 with gradient accumulation (reference: 4000 steps per update, 300
updates), truncation 1.0. Each backward is divided by `accumulate` (the reference summed; Adam
is scale-invariant up to eps). A GPU is required for real use (~1.25 TFLOP per training image at
256x256); the CPU path serves tests with tiny BigGANs. A whole run (LargeCGNTrainConfig,
train_large_cgn: checkpoints on update boundaries, exact resume, a sample sheet) is
`genint-fast cgn --large` (configs/cgn/imagenet.yaml holds the reference's settings).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..generators.base import check_truncation, truncated_latents
from ..generators.biggan import BigGANGenerator, KeyReport
from ..io import load_state, save_atomic
from ..ops.mmd import style_loss
from .u2net import load_u2net

__all__ = ["LargeCGN", "LargeCGNLossConfig", "LargeCGNTrainer", "LargeCGNTrainConfig",
           "large_cgn_losses", "texture_image", "train_large_cgn", "large_cgn_sheet",
           "load_large_cgn", "save_large_cgn_checkpoint", "read_large_cgn_checkpoint",
           "load_large_cgn_checkpoint", "apply_large_cgn_checkpoint", "CHECKPOINT_FORMAT",
           "MECHANISMS", "SHEET_CLASSES"]

CHECKPOINT_FORMAT = "genint_fast.large_cgn.v1"
MECHANISMS = ("f_shape", "f_text", "f_bg")
MASK_CLAMP = (1e-4, 0.9999)


@dataclass
class LargeCGNLossConfig:
    """Weights of the large-image CGN losses (reference values, imagenet/config.py)."""

    l1: float = 100.0
    perceptual: tuple = (4.0, 4.0, 4.0, 4.0)    # one per feature layer (paper: 5)
    binary: float = 300.0
    mask: float = 500.0
    mask_interval: tuple = (0.1, 0.9)
    texture: tuple = (0.0, 5.0, 5.0, 0.0)       # one per feature layer
    background: float = 2000.0
    texture_patch: int = 15
    texture_grid: int = 6
    texture_candidates: int = 100
    texture_work_size: int = 128                # None: work at the image size
    texture_source: str = "mask"                # "mask" (reference) or "saliency" (of x_gt)
    gram_kernel: str = "poly2"

    def __post_init__(self):
        self.perceptual = tuple(float(w) for w in self.perceptual)
        self.texture = tuple(float(w) for w in self.texture)
        self.mask_interval = tuple(float(v) for v in self.mask_interval)
        if self.texture_source not in ("mask", "saliency"):
            raise ValueError(f"texture_source must be 'mask' or 'saliency', got "
                             f"{self.texture_source!r}")
        if len(self.mask_interval) != 2 or not self.mask_interval[0] <= self.mask_interval[1]:
            raise ValueError(f"mask_interval must be (low, high), got {self.mask_interval}")
        if self.texture_patch < 1 or self.texture_grid < 1 or self.texture_candidates < 1:
            raise ValueError("texture_patch, texture_grid and texture_candidates must be >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> "LargeCGNLossConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------------- model

def _clone_generator(gen: BigGANGenerator) -> BigGANGenerator:
    """An independent copy. Spectral norm keeps the last computed `weight` as a plain attribute;
    after a forward with autograd on it is a non-leaf tensor that deepcopy refuses, so it is
    detached first (it is recomputed before every forward anyway)."""
    import copy

    for m in gen.modules():
        for hook in m._forward_pre_hooks.values():
            name = getattr(hook, "name", None)
            if name is not None and isinstance(getattr(m, name, None), torch.Tensor) \
                    and name not in m._parameters:
                setattr(m, name, getattr(m, name).detach())
    return copy.deepcopy(gen)


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def _labels(y, batch, num_classes, device) -> torch.Tensor:
    if isinstance(y, int):
        y = torch.full((batch,), y, dtype=torch.int64)
    y = torch.as_tensor(y, device=device)
    if y.dim() == 0:
        y = y.expand(batch)
    if y.dtype not in (torch.int64, torch.int32) or y.shape != (batch,):
        raise ValueError(f"class ids must be an int or int64 tensor of shape ({batch},), got "
                         f"{tuple(y.shape)} {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"class ids must be in [0, {num_classes}), got "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y.long()


class LargeCGN(nn.Module):
    """Three trainable BigGAN-deep copies (shape, texture, background), the frozen original
    (`biggan_gt`) and a frozen saliency net.

    generator: a BigGANGenerator (pretrained for real use); it becomes `biggan_gt` (frozen) and
    is copied three times. saliency: an nn.Module (images in [-1, 1] -> (B, 1, H, W) in (0, 1))
    or the path of a U^2-Net file (loaded with load_u2net, kind "u2net"). power_iteration: run
    spectral norm's power iteration in the mechanisms in train() (the reference's behaviour).
    """

    def __init__(self, generator: BigGANGenerator, saliency, *, power_iteration=False):
        super().__init__()
        if not isinstance(generator, BigGANGenerator):
            raise TypeError(f"LargeCGN needs a BigGANGenerator, got {type(generator).__name__}")
        if isinstance(saliency, (str, Path)):
            saliency = load_u2net(saliency, device=generator.device)
        if not isinstance(saliency, nn.Module):
            raise TypeError(f"saliency must be an nn.Module or a U^2-Net file, got "
                            f"{type(saliency).__name__}")
        self.f_shape = _clone_generator(generator)
        self.f_text = _clone_generator(generator)
        self.f_bg = _clone_generator(generator)
        for name in MECHANISMS:
            getattr(self, name).requires_grad_(True)
        self.biggan_gt = _freeze(generator)
        self.saliency = _freeze(saliency)
        self.power_iteration = bool(power_iteration)
        self.latent_dim = generator.latent_dim
        self.num_classes = generator.num_classes
        self.image_size = generator.image_size
        self.generator_id = generator.generator_id
        self.train(True)

    # -------------------------------------------------------------------------- helpers
    def train(self, mode=True):
        self.training = bool(mode)
        for name in MECHANISMS:
            getattr(self, name).train(bool(mode) and self.power_iteration)
        self.biggan_gt.eval()
        self.saliency.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.f_shape.parameters()).device

    @property
    def mechanisms(self) -> dict:
        return {name: getattr(self, name) for name in MECHANISMS}

    def mechanism_parameters(self):
        for name in MECHANISMS:
            yield from getattr(self, name).parameters()

    @contextlib.contextmanager
    def _frozen_modes(self):
        modes = [getattr(self, n).training for n in MECHANISMS]
        try:
            for n in MECHANISMS:
                getattr(self, n).eval()
            yield
        finally:
            for n, m in zip(MECHANISMS, modes):
                getattr(self, n).train(m)

    def sample_inputs(self, batch, truncation=1.0, generator=None):
        """(u, y): truncated noise and uniform class ids, drawn on `generator`'s device (or
        the model's) and moved to the model's device."""
        dev = generator.device if generator is not None else self.device
        u = truncated_latents(batch, self.latent_dim, truncation, generator=generator, device=dev)
        y = torch.randint(self.num_classes, (int(batch),), generator=generator, device=dev)
        return u.to(self.device), y.to(self.device)

    def mask_from(self, premask):
        return self.saliency(premask).clamp(*MASK_CLAMP)

    # -------------------------------------------------------------------------- passes
    def forward(self, u, y, truncation=1.0) -> dict:
        """Factual pass, all mechanisms conditioned on the same (u, y): dict with premask (the
        shape mechanism's RGB), mask, foreground, background, x_gen (composite) and x_gt (the
        frozen BigGAN's image, no gradient)."""
        t = check_truncation(truncation)
        with torch.no_grad():
            x_gt = self.biggan_gt(u, y, t)
        premask = self.f_shape(u, y, t)
        mask = self.mask_from(premask)
        foreground = self.f_text(u, y, t)
        background = self.f_bg(u, y, t)
        x_gen = mask * foreground + (1.0 - mask) * background
        return dict(premask=premask, mask=mask, foreground=foreground, background=background,
                    x_gen=x_gen, x_gt=x_gt)

    @torch.no_grad()
    def counterfactual(self, u, y_shape, y_texture, y_bg, truncation=0.5) -> dict:
        """Counterfactual images: shape from class y_shape, texture from y_texture, background
        from y_bg (ints or (B,) tensors). u: one noise batch (B, latent) shared by the three
        mechanisms, or a tuple of three. Runs the mechanisms in eval() (no power iteration).
        Returns mask, foreground, background, x_gen and labels (B, 3) = (shape, texture, bg)."""
        t = check_truncation(truncation)
        us = tuple(u) if isinstance(u, (tuple, list)) else (u, u, u)
        if len(us) != 3:
            raise ValueError(f"u must be one noise tensor or three, got {len(us)}")
        batch = us[0].shape[0]
        ys = [_labels(v, batch, self.num_classes, self.device)
              for v in (y_shape, y_texture, y_bg)]
        with self._frozen_modes():
            mask = self.mask_from(self.f_shape(us[0], ys[0], t))
            foreground = self.f_text(us[1], ys[1], t)
            background = self.f_bg(us[2], ys[2], t)
        x_gen = mask * foreground + (1.0 - mask) * background
        return dict(mask=mask, foreground=foreground, background=background, x_gen=x_gen,
                    labels=torch.stack(ys, 1))


# ---------------------------------------------------------------------------------- losses

def texture_image(images, prob, *, patch=15, grid=6, candidates=100, work_size=128,
                  generator=None) -> torch.Tensor:
    """A (B, 3, H, W) texture image per image: grid x grid patches of patch x patch pixels drawn
    uniformly (with replacement) from the `candidates` locations whose mean `prob` is highest,
    after resizing images and prob (B, 1, H, W) to work_size (bicubic), tiled and resized back
    to H x W; values clamped to the images' range [-1, 1]. No gradient."""
    with torch.no_grad():
        B, C, H, W = images.shape
        ws = int(work_size) if work_size else H
        if ws < patch:
            raise ValueError(f"texture patch {patch} is larger than the working size {ws}")
        img = F.interpolate(images.float(), size=(ws, ws), mode="bicubic", align_corners=False)
        pr = F.interpolate(prob.float(), size=(ws, ws), mode="bicubic", align_corners=False)
        score = F.avg_pool2d(pr.mean(1, keepdim=True), patch, stride=1)   # (B, 1, P, P)
        side = score.shape[-1]
        k = min(int(candidates), side * side)
        top = score.flatten(1).topk(k, dim=1).indices                      # (B, k)
        dev = generator.device if generator is not None else images.device
        pick = torch.randint(k, (B, grid * grid), generator=generator, device=dev)
        idx = top.gather(1, pick.to(top.device))                           # (B, n)
        r0, c0 = idx // side, idx % side
        ar = torch.arange(patch, device=idx.device)
        rows = (r0[..., None] + ar)[..., :, None]                          # (B, n, p, 1)
        cols = (c0[..., None] + ar)[..., None, :]                          # (B, n, 1, p)
        b = torch.arange(B, device=idx.device).view(B, 1, 1, 1)
        patches = img.permute(0, 2, 3, 1)[b, rows, cols]                   # (B, n, p, p, C)
        tile = patches.view(B, grid, grid, patch, patch, C).permute(0, 5, 1, 3, 2, 4)
        tile = tile.reshape(B, C, grid * patch, grid * patch)
        out = F.interpolate(tile, size=(H, W), mode="bicubic", align_corners=False)
        return out.clamp(-1.0, 1.0).to(images.dtype)


def _gram_terms(feats_x, feats_y, weights, kernel):
    used = [i for i, w in enumerate(weights) if w != 0.0]
    if not used:
        return feats_x[0].new_zeros(())
    return style_loss([feats_x[i] for i in used], [feats_y[i] for i in used],
                      weights=[weights[i] for i in used], kernel=kernel)


def large_cgn_losses(cgn: LargeCGN, out: dict, features: nn.Module,
                     config: LargeCGNLossConfig | None = None, generator=None) -> dict:
    """The weighted loss terms (scalar tensors) for a forward() output: l1, perceptual, binary,
    mask, texture, background. `features` maps images in [0, 1] to a list of feature maps, one
    per entry of config.perceptual / config.texture (e.g. vgg16_features())."""
    cfg = config or LargeCGNLossConfig()
    x_gen, x_gt, mask = out["x_gen"], out["x_gt"].detach(), out["mask"]
    fg, bg = out["foreground"], out["background"]
    B = x_gen.shape[0]
    losses = {"l1": cfg.l1 * (x_gen - x_gt).abs().mean()}

    m = mask.float()
    entropy = -(m * torch.log2(m) + (1.0 - m) * torch.log2(1.0 - m))
    losses["binary"] = cfg.binary * entropy.mean()
    mean_m = m.flatten(1).mean(1)
    lo, hi = cfg.mask_interval
    losses["mask"] = cfg.mask * (F.relu(lo - mean_m) + F.relu(mean_m - hi)).mean()

    if cfg.texture_source == "mask":
        prob = mask.detach()
    else:
        with torch.no_grad():
            prob = cgn.saliency(x_gt)
    target_tex = texture_image(x_gt, prob, patch=cfg.texture_patch, grid=cfg.texture_grid,
                               candidates=cfg.texture_candidates,
                               work_size=cfg.texture_work_size, generator=generator)

    # One feature pass for (x_gen, fg) with gradients and one for (x_gt, texture) without.
    need_tex = any(w != 0.0 for w in cfg.texture)
    srcs = [x_gen, fg] if need_tex else [x_gen]
    feats = features((torch.cat(srcs) + 1.0) * 0.5)
    with torch.no_grad():
        tgts = [x_gt, target_tex] if need_tex else [x_gt]
        feats_t = features((torch.cat(tgts) + 1.0) * 0.5)
    for name, weights in (("perceptual", cfg.perceptual), ("texture", cfg.texture)):
        if len(weights) != len(feats):
            raise ValueError(f"LargeCGNLossConfig.{name} has {len(weights)} weights but the "
                             f"feature network returns {len(feats)} layers")
    split = lambda fs, i: [f[i * B:(i + 1) * B] for f in fs]  # noqa: E731
    losses["perceptual"] = _gram_terms(split(feats, 0), split(feats_t, 0), cfg.perceptual,
                                       cfg.gram_kernel)
    if need_tex:
        losses["texture"] = _gram_terms(split(feats, 1), split(feats_t, 1), cfg.texture,
                                        cfg.gram_kernel)
    else:
        losses["texture"] = x_gen.new_zeros(())

    bg_sal = cgn.saliency(bg)
    losses["background"] = cfg.background * bg_sal.float().flatten(1).mean(1).mean()
    return losses


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


@dataclass
class LargeCGNTrainConfig:
    """Settings of a training run (train_large_cgn, `genint-fast cgn --large`). The defaults are
    the reference's ImageNet run (imagenet/train_cgn.py, imagenet/config.py): 300 optimiser
    updates of 4000 accumulated batches of one image, Adam (betas 0.9 / 0.999) per mechanism,
    truncation 1.0, the loss weights of LargeCGNLossConfig. checkpoint_every and log_every count
    optimiser updates (0: at the end only / silent)."""

    updates: int = 300
    accumulate: int = 4000
    batch_size: int = 1
    lr_shape: float = 8e-6
    lr_texture: float = 3e-5
    lr_background: float = 1e-5
    betas: tuple = (0.9, 0.999)
    truncation: float = 1.0
    seed: int = 0
    checkpoint_every: int = 1
    log_every: int = 1
    loss: LargeCGNLossConfig = field(default_factory=LargeCGNLossConfig)

    def __post_init__(self):
        if isinstance(self.loss, dict):
            self.loss = LargeCGNLossConfig.from_dict(self.loss)
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("updates", "accumulate", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"large CGN training: {name} must be >= 1, got "
                                 f"{getattr(self, name)}")
        for name in ("lr_shape", "lr_texture", "lr_background"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"large CGN training: {name} must be > 0, got "
                                 f"{getattr(self, name)}")
        for name in ("checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"large CGN training: {name} must be >= 0, got "
                                 f"{getattr(self, name)}")
        self.truncation = check_truncation(self.truncation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LargeCGNTrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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
