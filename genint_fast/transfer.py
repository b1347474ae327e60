"""Style-transfer interventions X_itr = T(X_int, X) (SPEC section 5), batched.

B content images (real, labelled) and B style images (intervened, generated) are transferred
at once: the pixels of each content image are optimised so that its deep features keep its
content (mean-squared error at the content layers) and take the style statistics of its style
image (MMD through genint_fast.ops.mmd at the style layers, poly2 = Gram matching by default).

Every pair is independent: the objective is the sum over pairs of per-pair losses (so the
gradient of pair i depends only on pair i), the feature network runs in eval() mode, and both
optimisers keep per-pair state:
- "adam": Adam's update is elementwise, so pairs never interact;
- "lbfgs" (the reference's optimiser, lr 1, no line search, like torch.optim.LBFGS's default):
  a batched L-BFGS whose curvature history, initial scaling and step size are per pair (the
  two-loop recursion runs on (B, D) rows). torch.optim.LBFGS on the whole batch would couple
  the pairs through its shared dot products and step size.
The number of steps is drawn once per batch from a range (reference [20, 70]) with the
transfer's own seeded generator; pixels are clamped to [0, 1] after every step; the labels of
the results are the content labels (TransferStream).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .features import CONTENT_LAYER
from .ops.mmd import KERNELS, MMDTarget, mmd

__all__ = ["StyleTransfer", "TransferResult", "TransferStream", "OPTIMIZERS",
           "reference_layer_weights"]

OPTIMIZERS = ("lbfgs", "adam")
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


def reference_layer_weights(kernel, channels):
    """Per-layer style weights that reproduce the reference's scale: its Gram loss is
    mse(F F^T / (C N), ...) = MMD_poly2^2 / C^4, so poly2 layers get 1 / C^4; linear and bn get
    1 / C (a mean over channels); gaussian 1 (its MMD^2 is already in [0, 2])."""
    if kernel == "poly2":
        return [1.0 / float(c) ** 4 for c in channels]
    if kernel in ("linear", "bn"):
        return [1.0 / float(c) for c in channels]
    return [1.0 for _ in channels]


@dataclass
class TransferResult:
    """images (B, 3, H, W) in [0, 1]; steps taken; per-evaluation losses of every pair:
    style[i] and content[i] are (B,) tensors (weighted, before the step of evaluation i; with
    final_eval the last entry is after the last step)."""

    images: torch.Tensor
    steps: int
    style: list = field(default_factory=list)
    content: list = field(default_factory=list)


class _PairLBFGS:
    """L-BFGS with per-pair state on x (B, D): history (S, Y, rho) per row, per-row H0 scale,
    per-row first step min(1, 1/|g|_1) * lr like torch.optim.LBFGS, fixed step lr after that,
    no line search. A pair whose curvature y.s <= 1e-10 skips that history update; a pair whose
    direction is not a descent direction falls back to -H0 g. With restart, a pair whose loss
    rose since its previous evaluation drops its history and takes the scaled first step again
    (all per pair: no pair's state or step depends on another's)."""

    def __init__(self, x, lr, history, restart=False):
        b, d = x.shape
        self.lr, self.m, self.restart = float(lr), int(history), bool(restart)
        self.S = x.new_zeros(self.m, b, d)
        self.Y = x.new_zeros(self.m, b, d)
        self.rho = x.new_zeros(self.m, b)
        self.h = x.new_ones(b)
        self.order = []          # ring slots, oldest first
        self.prev_x = self.prev_g = None

    def _first(self, g):
        t = (1.0 / g.abs().sum(1).clamp_min(1e-30)).clamp(max=1.0) * self.lr
        return -g * t[:, None]

    def direction(self, x, g, f=None):
        """The step for x (B, D) with gradient g; f (B,), the pair losses, enables restarts:
        a pair whose loss rose since its last step drops its history and restarts with the
        scaled gradient step (restart=True)."""
        if self.prev_g is None:
            self.prev_x, self.prev_g = x.clone(), g.clone()
            self.prev_f = None if f is None else f.clone()
            return self._first(g)
        restart = None
        if self.restart and f is not None and self.prev_f is not None:
            restart = f > self.prev_f
            keep = (~restart).to(x.dtype)
            self.S *= keep[None, :, None]
            self.Y *= keep[None, :, None]
            self.rho *= keep[None, :]
            self.h = torch.where(restart, torch.ones_like(self.h), self.h)
        self.prev_f = None if f is None else f.clone()
        s = x - self.prev_x
        y = g - self.prev_g
        ys = (y * s).sum(1)
        ok = ys > 1e-10
        if len(self.order) < self.m:
            slot = len(self.order)
        else:
            slot = self.order.pop(0)
        self.order.append(slot)
        okf = ok.to(x.dtype)
        self.S[slot] = s * okf[:, None]
        self.Y[slot] = y * okf[:, None]
        self.rho[slot] = torch.where(ok, 1.0 / ys.where(ok, torch.ones_like(ys)),
                                     torch.zeros_like(ys))
        yy = (y * y).sum(1)
        self.h = torch.where(ok, ys / yy.where(ok, torch.ones_like(yy)), self.h)
        q = g.neg()
        alphas = {}
        for i in reversed(self.order):
            a = self.rho[i] * (self.S[i] * q).sum(1)
            alphas[i] = a
            q = q - a[:, None] * self.Y[i]
        r = q * self.h[:, None]
        for i in self.order:
            beta = self.rho[i] * (self.Y[i] * r).sum(1)
            r = r + self.S[i] * (alphas[i] - beta)[:, None]
        descent = (r * g).sum(1) < 0
        r = torch.where(descent[:, None], r, -g * self.h[:, None]) * self.lr
        if restart is not None:
            r = torch.where(restart[:, None], self._first(g), r)
        self.prev_x, self.prev_g = x.clone(), g.clone()
        return r


class StyleTransfer:
    """Batched neural style transfer with MMD style losses.

    Args:
        features: a module mapping images (B, 3, H, W) in [0, 1] to a list of feature maps,
            e.g. genint_fast.features.vgg19_features() or small_vgg(); it is put in eval().
        style_layers / content_layers: which maps are style / content terms, as indices into
            the list or (for a LayerFeatures) layer names. Defaults: all maps are style maps;
            content is conv2_2 when the network names it, else the last map.
        kernel, gamma, unbiased: the MMD (genint_fast.ops.mmd); poly2 (Gram) by default.
        style_weight, content_weight: 1e6 and 0.1 as in the reference.
        layer_weights: one float per style layer, or "reference" (reference_layer_weights).
        optimizer: "lbfgs" (reference, lr 1) or "adam" (lr 0.02); lr overrides; history: the
            L-BFGS memory per pair; restart: L-BFGS drops a pair's history and restarts from a
            scaled gradient step when that pair's loss rose (off by default = the reference).
        steps: an int, or a range (lo, hi) from which each batch draws its number of steps
            (inclusive; reference (20, 70)).
        resize: "style" resizes style images to the content size (bilinear, antialiased);
            "error" rejects mismatched sizes.
        seed: seeds the generator of the step draws.
    """

    def __init__(self, features, *, style_layers=None, content_layers=None, kernel="poly2",
                 gamma=None, unbiased=False, style_weight=1e6, content_weight=0.1,
                 layer_weights="reference", optimizer="lbfgs", lr=None, history=10,
                 steps=(20, 70), resize="style", seed=0, check_range=True, restart=False):
        if not isinstance(features, torch.nn.Module):
            raise ValueError("features must be a torch.nn.Module returning a list of feature maps")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{optimizer!r}")
        if resize not in ("style", "error"):
            raise ValueError(f'resize must be "style" or "error", got {resize!r}')
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        names = list(getattr(features, "layers", []) or [])
        self.style_idx = self._indices(style_layers, names, "style_layers")
        if content_layers is None:
            content_layers = [CONTENT_LAYER] if CONTENT_LAYER in names else [-1]
        self.content_idx = self._indices(content_layers, names, "content_layers")
        self.kernel, self.gamma, self.unbiased = kernel, gamma, bool(unbiased)
        self.style_weight, self.content_weight = float(style_weight), float(content_weight)
        self.layer_weights = layer_weights
        self.optimizer = optimizer
        self.lr = float(_DEFAULT_LR[optimizer] if lr is None else lr)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if int(history) < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.history = int(history)
        self.restart = bool(restart)
        self.steps = self._steps(steps)
        self.resize = resize
        self.check_range = bool(check_range)
        self.seed = int(seed)
        self.rng = torch.Generator().manual_seed(self.seed)

    # -------------------------------------------------------------------------- set-up
    @staticmethod
    def _indices(layers, names, what):
        if layers is None:
            return None  # all maps
        if isinstance(layers, (str, int)):
            layers = [layers]
        out = []
        for lay in layers:
            if isinstance(lay, str):
                if lay not in names:
                    raise ValueError(f"{what}: no layer {lay!r} in the feature network "
                                     f"(it has {', '.join(names) or 'no named layers'})")
                out.append(names.index(lay))
            else:
                out.append(int(lay))
        if not out:
            raise ValueError(f"{what} must name at least one layer")
        return out

    @staticmethod
    def _steps(steps):
        if isinstance(steps, (tuple, list)):
            if len(steps) != 2:
                raise ValueError(f"steps must be an int or a (lo, hi) range, got {steps!r}")
            lo, hi = int(steps[0]), int(steps[1])
        else:
            lo = hi = int(steps)
        if lo < 1 or hi < lo:
            raise ValueError(f"steps range must satisfy 1 <= lo <= hi, got ({lo}, {hi})")
        return lo, hi

    @property
    def device(self):
        for t in list(self.features.parameters()) + list(self.features.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self):
        """The working dtype: the feature network's floating-point parameter dtype (float32
        unless the network was converted, e.g. .double() for exact comparisons)."""
        for t in self.features.parameters():
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    def draw_steps(self) -> int:
        """The number of steps of the next batch, from the seeded generator."""
        lo, hi = self.steps
        return int(torch.randint(lo, hi + 1, (1,), generator=self.rng))

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "seed": self.seed}

    def load_state_dict(self, state) -> None:
        self.rng.set_state(state["rng"])

    def prepare(self, content, style):
        """Check a pair batch and return (content, style) on the device in the working dtype,
        style resized to the content size (resize="style"); raises ValueError on bad input."""
        for name, t in (("content", content), ("style", style)):
            if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[1] != 3:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"transfer: {name} images must be a (B, 3, H, W) tensor, got "
                                 f"{shape}")
            if not t.is_floating_point():
                raise ValueError(f"transfer: {name} images must be floating point in [0, 1], "
                                 f"got {t.dtype}")
            if t.shape[0] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
                raise ValueError(f"transfer: {name} images are empty: {tuple(t.shape)}")
        if style.shape[0] not in (content.shape[0], 1):
            raise ValueError(f"transfer: {style.shape[0]} style images for {content.shape[0]} "
                             "content images (give one per content image, or one for all)")
        if style.shape[2:] != content.shape[2:]:
            if self.resize == "error":
                raise ValueError(f"transfer: style images are {tuple(style.shape[2:])} but "
                                 f"content images are {tuple(content.shape[2:])} (resize them, "
                                 'or use resize="style")')
            wide = style.to(torch.promote_types(style.dtype, torch.float32))
            style = F.interpolate(wide, size=tuple(content.shape[2:]), mode="bilinear",
                                  align_corners=False, antialias=True).clamp_(0, 1)
        dev, dt = self.device, self.dtype
        content = content.to(dev, dt)
        style = style.to(dev, dt)
        if self.check_range:
            lo = torch.stack([content.amin(), style.amin()])
            hi = torch.stack([content.amax(), style.amax()])
            bounds = torch.cat([lo, hi]).tolist()
            if not all(v == v for v in bounds):
                raise ValueError("transfer: the images contain NaN")
            if min(bounds[:2]) < -1e-3 or max(bounds[2:]) > 1 + 1e-3:
                raise ValueError(f"transfer: images must be in [0, 1], got values in "
                                 f"[{min(bounds[:2]):.3g}, {max(bounds[2:]):.3g}] (generator "
                                 "output in [-1, 1] maps to [0, 1] as (x + 1) / 2)")
        # Contiguous (N)CHW: the per-pair optimiser state is laid out as (B, D) rows.
        return (content.clamp(0, 1).contiguous(memory_format=torch.contiguous_format),
                style.clamp(0, 1).contiguous(memory_format=torch.contiguous_format))

    def _select(self, maps, idx):
        maps = list(maps)
        return maps if idx is None else [maps[i] for i in idx]

    # ----------------------------------------------------------------------- the transfer
    def __call__(self, content, style, steps=None):
        return self.run(content, style, steps).images

    def run(self, content, style, steps=None, final_eval=False) -> TransferResult:
        """Transfer B pairs; steps None draws the batch's number from the range."""
        content, style = self.prepare(content, style)
        n_steps = self.draw_steps() if steps is None else int(steps)
        if n_steps < 0:
            raise ValueError(f"steps must be >= 0, got {n_steps}")
        with torch.no_grad():
            s_maps = self._select(self.features(style), self.style_idx)
            c_all = list(self.features(content))
        c_maps = [c_all[i].detach() for i in self.content_idx]
        targets = [MMDTarget(m, self.kernel, gamma=self.gamma, unbiased=self.unbiased)
                   for m in s_maps]
        lw = self.layer_weights
        if isinstance(lw, str):
            if lw != "reference":
                raise ValueError(f'layer_weights must be "reference" or a list, got {lw!r}')
            lw = reference_layer_weights(self.kernel, [m.shape[1] for m in s_maps])
        lw = [float(w) for w in lw]
        if len(lw) != len(targets):
            raise ValueError(f"{len(lw)} layer weights for {len(targets)} style layers")

        def losses(x):
            maps = list(self.features(x))
            xs = self._select(maps, self.style_idx)
            style_l = None
            for xm, t, w in zip(xs, targets, lw):
                term = w * mmd(xm, t, self.kernel, gamma=self.gamma, unbiased=self.unbiased,
                               reduction="none")
                style_l = term if style_l is None else style_l + term
            content_l = None
            for i, cm in zip(self.content_idx, c_maps):
                term = (maps[i] - cm).square().flatten(1).mean(1)
                content_l = term if content_l is None else content_l + term
            return self.style_weight * style_l, self.content_weight * content_l

        b = content.shape[0]
        x = content.clone()
        result = TransferResult(images=x, steps=n_steps)
        if self.optimizer == "adam":
            x.requires_grad_(True)
            opt = torch.optim.Adam([x], lr=self.lr)
        else:
            lbfgs = _PairLBFGS(x.view(b, -1), self.lr, self.history, self.restart)
        for _ in range(n_steps):
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                s_l, c_l = losses(xg)
                (s_l + c_l).sum().backward()
            result.style.append(s_l.detach())
            result.content.append(c_l.detach())
            with torch.no_grad():
                if self.optimizer == "adam":
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    x.clamp_(0, 1)
                else:
                    flat = x.view(b, -1)
                    d = lbfgs.direction(flat, xg.grad.view(b, -1), (s_l + c_l).detach())
                    x = (flat + d).clamp_(0, 1).view_as(content)
        if final_eval:
            with torch.no_grad():
                s_l, c_l = losses(x.detach())
            result.style.append(s_l)
            result.content.append(c_l)
        result.images = x.detach()
        return result


class TransferStream:
    """The producer the trainer pulls from: an endless iterator of (x_itr, labels) batches.

    content: an iterable of (images, labels) (real data; images in content_range); style: an
    iterable of style batches (images, or tuples whose first item is the images, e.g. an
    InterventionSampler, whose images are in [-1, 1] = the default style_range). Each batch
    takes B content images and the first B style images (or 1 for all), maps both to [0, 1] and
    returns T(style, content) with the content labels, on the transfer's device. The iterators
    restart when exhausted (a DataLoader epoch ends), unless cycle=False.
    """

    def __init__(self, transfer: StyleTransfer, content, style, *, content_range=(0.0, 1.0),
                 style_range=(-1.0, 1.0), cycle=True):
        if not isinstance(transfer, StyleTransfer):
            raise ValueError("transfer must be a StyleTransfer")
        self.transfer = transfer
        self._content_src, self._style_src = content, style
        self._content_it, self._style_it = iter(content), iter(style)
        self.content_range, self.style_range = tuple(content_range), tuple(style_range)
        self.cycle = bool(cycle)

    @staticmethod
    def _to01(x, rng):
        lo, hi = float(rng[0]), float(rng[1])
        if not hi > lo:
            raise ValueError(f"value range must be (lo, hi) with hi > lo, got {rng}")
        return ((x.float() - lo) / (hi - lo)).clamp_(0, 1)

    def _next(self, which):
        it = self._content_it if which == "content" else self._style_it
        try:
            return next(it)
        except StopIteration:
            if not self.cycle:
                raise
            src = self._content_src if which == "content" else self._style_src
            it = iter(src)
            if which == "content":
                self._content_it = it
            else:
                self._style_it = it
            return next(it)

    def __iter__(self):
        return self

    def __next__(self):
        images, labels = self._next("content")[:2]
        style = self._next("style")
        if isinstance(style, (tuple, list)):
            style = style[0]
        b = images.shape[0]
        if style.shape[0] < b and style.shape[0] != 1:
            raise ValueError(f"the style source gave {style.shape[0]} images for a content batch "
                             f"of {b}")
        if style.shape[0] != 1:
            style = style[:b]
        dev = self.transfer.device
        x = self._to01(images.to(dev), self.content_range)
        s = self._to01(style.to(dev), self.style_range)
        return self.transfer(x, s), labels.to(dev)
