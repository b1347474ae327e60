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
train_large_cgn: checkpoints on update boundaries, exact resume, a sample sheet; in
`genint_fast.cgn.large_train`) is `genint-fast cgn --large` (configs/cgn/imagenet.yaml holds
the reference's settings).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..cgn_config import LargeCGNLossConfig  # torch-free settings
from ..generators.base import check_truncation, truncated_latents
from ..generators.biggan import BigGANGenerator
from ..ops.mmd import style_loss
from .u2net import load_u2net

__all__ = ["LargeCGN", "LargeCGNLossConfig", "large_cgn_losses", "texture_image",
           "CHECKPOINT_FORMAT", "MECHANISMS"]

CHECKPOINT_FORMAT = "genint_fast.large_cgn.v1"
MECHANISMS = ("f_shape", "f_text", "f_bg")
MASK_CLAMP = (1e-4, 0.9999)


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


# The trainer, its config, the sample sheet and the checkpoint files live in .large_train; their
# old names here stay importable for one release.
_MOVED = ("LargeCGNTrainer", "LargeCGNTrainConfig", "train_large_cgn", "large_cgn_sheet",
          "load_large_cgn", "save_large_cgn_checkpoint", "read_large_cgn_checkpoint",
          "load_large_cgn_checkpoint", "apply_large_cgn_checkpoint", "SHEET_CLASSES")


def __getattr__(name):
    if name in _MOVED:
        from . import large_train

        return getattr(large_train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
