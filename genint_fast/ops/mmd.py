"""Batched MMD style losses (SPEC section 5): linear, poly2 (Gram), Gaussian and BN statistics.

The Gaussian kernel goes through the fused op torch.ops.genint_fast.mmd_gaussian (csrc/ops.cpp,
csrc/cpu/mmd.cpp, csrc/cuda/mmd.cu), which computes MMD^2 tile by tile and never forms an N x M
matrix; this module registers its fake function and autograd formula. linear, poly2 and bn are
reductions of size O(N C + C^2) built from ATen ops (the Gram matrices come from one bmm each;
poly2 has a hand-written backward that needs one bmm where autograd of F F^T needs two).
genint_fast.ops.reference.mmd is the definition of every kernel.

Second derivatives (create_graph=True): linear, bn and poly2 are exact (poly2's backward
recomputes its Grams with a graph in that mode); mmd_gaussian_self (the cached y-y sum) has an
exact, blockwise ATen gradient; the Gaussian op refuses with GAUSSIAN_DOUBLE_BACKWARD when its
gradient is differentiated again (its gradient is a constant computed in the forward pass).
"""
from __future__ import annotations

import torch

from . import reference
from .reference import gaussian_default_gamma, mmd_sets

__all__ = ["mmd", "style_loss", "MMDTarget", "gaussian_default_gamma", "KERNELS",
           "GAUSSIAN_DOUBLE_BACKWARD"]

KERNELS = ("linear", "poly2", "gaussian", "bn")
_REDUCTIONS = ("mean", "sum", "none")


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _sets(t, name):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"mmd: {name} must be a tensor, got {type(t).__name__}")
    if t.dim() not in (3, 4):
        raise ValueError(f"mmd: {name} must be (B, C, H, W) or (B, N, C), got shape "
                         f"{tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"mmd: {name} must be a floating-point tensor, got {t.dtype}")
    s = mmd_sets(t)
    if s.shape[0] == 0:
        raise ValueError(f"mmd: {name} has an empty batch")
    if s.shape[1] == 0:
        raise ValueError(f"mmd: {name} is an empty set of feature vectors (no spatial positions)")
    return s


def _check_pair(x3, y3, unbiased, kernel):
    if x3.shape[2] != y3.shape[2]:
        raise ValueError(f"mmd: x has {x3.shape[2]} channels but y has {y3.shape[2]}")
    if y3.shape[0] not in (x3.shape[0], 1):
        raise ValueError(f"mmd: y has batch {y3.shape[0]} but x has batch {x3.shape[0]} "
                         "(y's batch must equal x's or be 1)")
    if x3.dtype != y3.dtype:
        raise ValueError(f"mmd: x has dtype {x3.dtype} but y has dtype {y3.dtype}")
    if x3.device != y3.device:
        raise ValueError(f"mmd: x is on {x3.device} but y is on {y3.device}")
    if unbiased and (x3.shape[1] < 2 or y3.shape[1] < 2):
        raise ValueError(f"mmd: the unbiased {kernel} estimator needs at least 2 vectors per "
                         f"set, got N = {x3.shape[1]}, M = {y3.shape[1]}")


# ------------------------------------------------------------------------------- Gaussian op

@torch.library.register_fake("genint_fast::mmd_gaussian")
def _mmd_gaussian_fake(x, y, gamma, unbiased, grad_x, grad_y, yy):
    torch._check(x.dim() == 3, lambda: f"mmd_gaussian: x must be 3-D (B, N, C), got {x.dim()}-D")
    torch._check(y.dim() == 3, lambda: f"mmd_gaussian: y must be 3-D (B, M, C), got {y.dim()}-D")
    B = x.shape[0]
    loss = x.new_empty((B,))
    gx = x.new_empty(x.shape) if grad_x else x.new_empty((0,))
    gy = y.new_empty((B, y.shape[1], y.shape[2])) if grad_y else y.new_empty((0,))
    return loss, gx, gy


@torch.library.register_fake("genint_fast::mmd_gaussian_self")
def _mmd_gaussian_self_fake(y, gamma):
    torch._check(y.dim() == 3, lambda: f"mmd_gaussian: y must be 3-D (B, M, C), got {y.dim()}-D")
    batch = gamma.shape[0] if y.shape[0] == 1 else y.shape[0]
    return y.new_empty((batch,), dtype=torch.float64)


GAUSSIAN_DOUBLE_BACKWARD = (
    "genint_fast.ops.mmd with kernel='gaussian' does not support second derivatives "
    "(create_graph=True): its fused op computes the gradient in the forward pass as a constant "
    "and a Hessian would need the N x M kernel matrices; use genint_fast.ops.reference.mmd "
    "(kernel='gaussian') for double backward")


class _RefuseDoubleBackward(torch.autograd.Function):
    """Identity on `value`, attached to the graph of `anchors` (the op's inputs): a gradient
    built with create_graph=True stays usable as a value, and differentiating it again raises
    GAUSSIAN_DOUBLE_BACKWARD instead of silently dropping the Hessian term."""

    @staticmethod
    def forward(ctx, value, *anchors):
        return value.clone()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(GAUSSIAN_DOUBLE_BACKWARD)


def _gaussian_setup_context(ctx, inputs, output):
    x, y, gamma, unbiased, grad_x, grad_y, yy = inputs
    _, gx, gy = output
    ctx.save_for_backward(gx, gy, x, y)
    ctx.y_batch = y.shape[0]
    ctx.has = (grad_x, grad_y)
    ctx.mark_non_differentiable(gx, gy)


def _gaussian_backward(ctx, g_loss, _g_gx, _g_gy):
    gx, gy, x, y = ctx.saved_tensors
    grad_x = grad_y = None
    # create_graph=True runs this with grad mode on. The gradient returned is exact, but it is
    # g_loss times a constant (gx, gy): differentiating it again w.r.t. x or y must refuse.
    create = torch.is_grad_enabled()
    anchors = [t for t in (x, y) if t.requires_grad] if create else []
    if ctx.needs_input_grad[0]:
        if not ctx.has[0]:
            raise RuntimeError("mmd_gaussian: the gradient of x was not computed in the forward "
                               "(call it with grad_x=True, as genint_fast.ops.mmd does)")
        if anchors:
            gx = _RefuseDoubleBackward.apply(gx, *anchors)
        grad_x = g_loss.to(gx.dtype).view(-1, 1, 1) * gx
    if ctx.needs_input_grad[1]:
        if not ctx.has[1]:
            raise RuntimeError("mmd_gaussian: the gradient of y was not computed in the forward "
                               "(call it with grad_y=True, as genint_fast.ops.mmd does)")
        if anchors:
            gy = _RefuseDoubleBackward.apply(gy, *anchors)
        grad_y = g_loss.to(gy.dtype).view(-1, 1, 1) * gy
        if ctx.y_batch == 1 and grad_y.shape[0] != 1:
            grad_y = grad_y.sum(0, keepdim=True)
    return grad_x, grad_y, None, None, None, None, None


torch.library.register_autograd("genint_fast::mmd_gaussian", _gaussian_backward,
                                setup_context=_gaussian_setup_context)


def gaussian_self_grad(y, gamma, g):
    """g_b * d/dy of S_b = sum_ij exp(-gamma_b |y_i - y_j|^2), the gradient of mmd_gaussian_self
    (gamma a (1,) or (B,) tensor): dS/dy_i = -4 gamma (y_i sum_j k_ij - sum_j k_ij y_j).
    Computed in blocks of rows of y with ATen ops (memory O(rows x M), never the M x M matrix
    for a first derivative; the ops are differentiable, so second derivatives are exact as
    well)."""
    acc = _acc(y.dtype)
    ya = y.to(acc)
    gam = gamma.detach().to(acc).view(-1, 1, 1)                    # (1 or B, 1, 1)
    m = ya.shape[1]
    rows = max(1, min(m, (1 << 22) // max(1, m)))
    parts = []
    for s in range(0, m, rows):
        blk = ya[:, s:s + rows]
        k = reference.gaussian_kernel_matrix(blk, ya, gam)         # (B, rows, M)
        parts.append(blk * k.sum(-1, keepdim=True) - k @ ya)
    grad = torch.cat(parts, 1) * ((-4.0 * gam) * g.to(acc).view(-1, 1, 1))
    if grad.shape[0] != y.shape[0]:  # a y of batch 1 summed under several bandwidths
        grad = grad.sum(0, keepdim=True)
    return grad.to(y.dtype)


def _gaussian_self_setup_context(ctx, inputs, output):
    y, gamma = inputs
    ctx.save_for_backward(y, gamma)


def _gaussian_self_backward(ctx, g):
    y, gamma = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None
    return gaussian_self_grad(y, gamma, g), None


torch.library.register_autograd("genint_fast::mmd_gaussian_self", _gaussian_self_backward,
                                setup_context=_gaussian_self_setup_context)


def _gaussian(x3, y3, gamma, unbiased, yy=None):
    grad_on = torch.is_grad_enabled()
    need_x = grad_on and x3.requires_grad
    need_y = grad_on and y3.requires_grad and yy is None
    loss, _, _ = torch.ops.genint_fast.mmd_gaussian.default(
        x3, y3, gamma, bool(unbiased), need_x, need_y, yy)
    return loss


def _gamma_tensor(gamma, y3, pairs):
    """The bandwidth as the op takes it: a float64 (1,) or (pairs,) tensor on y's device. None:
    gaussian_default_gamma(y), one per target (computed on the device, no host read). A number is
    checked here (finite, > 0); a tensor is checked for shape here and for its values by the op
    where they are on the CPU (reading CUDA values would synchronise every call)."""
    if gamma is None:
        return gaussian_default_gamma(y3)
    if torch.is_tensor(gamma):
        g = gamma.detach().to(device=y3.device, dtype=torch.float64).reshape(-1)
        if g.shape[0] not in (1, pairs):
            raise ValueError(f"mmd: gamma must be one number, or a tensor of 1 or {pairs} values "
                             f"(one per pair), got shape {tuple(gamma.shape)}")
        return g
    _check_gamma(float(gamma))
    return torch.full((1,), float(gamma), dtype=torch.float64, device=y3.device)


# -------------------------------------------------------------------------------- poly2 (Gram)

class _Poly2(torch.autograd.Function):
    """MMD^2 with k(a, b) = (a.b)^2 through C x C Gram matrices, on features laid out (B, C, N).

    loss = a (||Gx||^2 - u sum_i |x_i|^4) + yy - 2 e <Gx, Gy> with a = 1/N^2 (1/(N(N-1)) and u = 1
    unbiased), e = 1/(NM), yy the same expression for y (given for a cached target).
    d loss / d Fx = (4 a Gx - 4 e Gy) Fx - 4 a u Fx diag(|x_i|^2): one bmm.
    """

    @staticmethod
    def forward(ctx, fx, fy, gy, yy, m, unbiased):
        acc = _acc(fx.dtype)
        n = fx.shape[2]
        fxa = fx.to(acc)
        a = 1.0 / (n * (n - 1)) if unbiased else 1.0 / (n * n)
        gx = torch.bmm(fxa, fxa.transpose(1, 2))
        xx = gx.square().sum((1, 2))
        if unbiased:
            xx = xx - fxa.square().sum(1).square().sum(1)
        if fy is not None:
            fya = fy.to(acc)
            m = fy.shape[2]
            c = 1.0 / (m * (m - 1)) if unbiased else 1.0 / (m * m)
            gy = torch.bmm(fya, fya.transpose(1, 2))
            yy = gy.square().sum((1, 2))
            if unbiased:
                yy = yy - fya.square().sum(1).square().sum(1)
            yy = c * yy
        e = 1.0 / (n * m)
        loss = a * xx + yy - 2.0 * e * (gx * gy).sum((1, 2))
        ctx.save_for_backward(fx, fy, gx, gy)
        ctx.coef = (a, e, (1.0 / (m * (m - 1)) if unbiased else 1.0 / (m * m)))
        ctx.unbiased = unbiased
        return loss.to(fx.dtype)

    @staticmethod
    def backward(ctx, g):
        fx, fy, gx, gy = ctx.saved_tensors
        a, e, c = ctx.coef
        acc = gx.dtype
        if torch.is_grad_enabled():
            # create_graph=True (the engine runs backward with grad mode on): the Grams saved by
            # forward carry no graph, so recompute them from the features; every op below is
            # then differentiable and second derivatives are exact (one or two extra bmm, only
            # in this mode).
            fxa = fx.to(acc)
            gx = torch.bmm(fxa, fxa.transpose(1, 2))
            if fy is not None:
                fya = fy.to(acc)
                gy = torch.bmm(fya, fya.transpose(1, 2))
        w = g.to(acc).view(-1, 1, 1)
        dfx = dfy = None
        if ctx.needs_input_grad[0]:
            fxa = fx.to(acc)
            dfx = torch.bmm(w * (4.0 * a * gx - 4.0 * e * gy), fxa)
            if ctx.unbiased:
                dfx = dfx - (4.0 * a) * w * fxa * fxa.square().sum(1, keepdim=True)
            dfx = dfx.to(fx.dtype)
        if fy is not None and ctx.needs_input_grad[1]:
            fya = fy.to(acc)
            dy = w * (4.0 * c * gy - 4.0 * e * gx)      # (B, C, C)
            if fy.shape[0] == 1:
                dy = dy.sum(0, keepdim=True)
            dfy = torch.bmm(dy, fya)
            if ctx.unbiased:
                wsum = w.sum(0, keepdim=True) if fy.shape[0] == 1 else w
                dfy = dfy - (4.0 * c) * wsum * fya * fya.square().sum(1, keepdim=True)
            dfy = dfy.to(fy.dtype)
        return dfx, dfy, None, None, None, None


def _features_major(t):
    """(B, C, H, W) -> (B, C, H*W) without a copy; (B, N, C) -> a (B, C, N) view."""
    return t.flatten(2) if t.dim() == 4 else t.transpose(1, 2)


# -------------------------------------------------------------------------------- linear / bn

def _linear(x3, sy, yy, m, unbiased):
    n = x3.shape[1]
    acc = _acc(x3.dtype)
    xa = x3.to(acc)
    sx = xa.sum(1)
    if unbiased:
        xx = (sx.square().sum(-1) - xa.square().sum((1, 2))) / (n * (n - 1))
    else:
        xx = sx.square().sum(-1) / (n * n)
    return xx + yy - 2.0 * (sx * sy).sum(-1) / (n * m)


def _linear_y_terms(y3, unbiased):
    m = y3.shape[1]
    ya = y3.to(_acc(y3.dtype))
    sy = ya.sum(1)
    if unbiased:
        yy = (sy.square().sum(-1) - ya.square().sum((1, 2))) / (m * (m - 1))
    else:
        yy = sy.square().sum(-1) / (m * m)
    return sy, yy


def _bn_stats(t3, unbiased):
    ta = t3.to(_acc(t3.dtype))
    return ta.mean(1), torch.sqrt(ta.var(dim=1, unbiased=unbiased) + reference.BN_EPS)


# ------------------------------------------------------------------------------------ targets

class MMDTarget:
    """A fixed style target y with its statistics precomputed once, for repeated mmd(x, target)
    calls (the inner loop of style transfer): the y-y term of every kernel, the Gram matrix of
    poly2, mean and std of bn, and gamma of the Gaussian kernel. y is detached: no gradient
    reaches it.

    Args mirror mmd(): y (B_y, C, H, W) or (B_y, M, C) with B_y equal to x's batch or 1; kernel;
    gamma (Gaussian only: a number, a tensor of one value per pair, or None for
    gaussian_default_gamma(y), one per target); unbiased.
    """

    def __init__(self, y, kernel="poly2", gamma=None, unbiased=False):
        if kernel not in KERNELS:
            raise ValueError(f"mmd: kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        y3 = _sets(y, "y").detach()
        if unbiased and y3.shape[1] < 2 and kernel != "bn":
            raise ValueError(f"mmd: the unbiased {kernel} estimator needs at least 2 vectors per "
                             f"set, got M = {y3.shape[1]}")
        self.kernel, self.unbiased = kernel, bool(unbiased)
        self.batch, self.m, self.channels = y3.shape
        self.dtype, self.device = y3.dtype, y3.device
        self.gamma = None
        with torch.no_grad():
            if kernel == "linear":
                self.sy, self.yy = _linear_y_terms(y3, unbiased)
            elif kernel == "poly2":
                fy = _features_major(y).detach().to(_acc(y3.dtype))
                m = self.m
                c = 1.0 / (m * (m - 1)) if unbiased else 1.0 / (m * m)
                self.gy = torch.bmm(fy, fy.transpose(1, 2))
                yy = self.gy.square().sum((1, 2))
                if unbiased:
                    yy = yy - fy.square().sum(1).square().sum(1)
                self.yy = c * yy
            elif kernel == "bn":
                self.mean, self.std = _bn_stats(y3, unbiased)
            else:
                pairs = self.batch if not torch.is_tensor(gamma) else max(gamma.numel(), 1)
                self.gamma = _gamma_tensor(gamma, y3, pairs)
                self.gamma_arg = gamma
                self.y3 = y3
                self.yy = torch.ops.genint_fast.mmd_gaussian_self.default(y3, self.gamma)


def _check_gamma(gamma):
    if not (gamma > 0.0 and gamma < float("inf")):
        raise ValueError(f"mmd: gamma must be finite and > 0, got {gamma}")


def _mmd_target(x, t: MMDTarget):
    x3 = _sets(x, "x")
    if x3.shape[2] != t.channels:
        raise ValueError(f"mmd: x has {x3.shape[2]} channels but the target has {t.channels}")
    if t.batch not in (x3.shape[0], 1):
        raise ValueError(f"mmd: the target has batch {t.batch} but x has batch {x3.shape[0]} "
                         "(it must equal x's or be 1)")
    if x3.device != t.device or x3.dtype != t.dtype:
        raise ValueError(f"mmd: x is {x3.dtype} on {x3.device} but the target is {t.dtype} on "
                         f"{t.device}")
    if t.unbiased and x3.shape[1] < 2:
        raise ValueError(f"mmd: the unbiased {t.kernel} estimator needs at least 2 vectors per "
                         f"set, got N = {x3.shape[1]}")
    if t.kernel == "linear":
        return _linear(x3, t.sy, t.yy, t.m, t.unbiased).to(x.dtype)
    if t.kernel == "poly2":
        return _Poly2.apply(_features_major(x), None, t.gy, t.yy, t.m, t.unbiased)
    if t.kernel == "bn":
        mx, sx = _bn_stats(x3, t.unbiased)
        return ((mx - t.mean).square().sum(-1) + (sx - t.std).square().sum(-1)).to(x.dtype)
    if t.gamma.shape[0] not in (1, x3.shape[0]):
        raise ValueError(f"mmd: the target has {t.gamma.shape[0]} bandwidths but x has batch "
                         f"{x3.shape[0]}")
    return _gaussian(x3, t.y3, t.gamma, t.unbiased, yy=t.yy)


# ---------------------------------------------------------------------------------------- API

def mmd(x, y, kernel="poly2", gamma=None, unbiased=False, reduction="mean"):
    """MMD^2 between the feature vectors of x and of y, per image pair.

    Args:
        x: (B, C, H, W) feature maps or (B, N, C) sets: one C-vector per spatial position.
        y: the same for the targets, (B, ...) paired with x or a batch of 1 broadcast to all B;
            or an MMDTarget (precomputed statistics of a fixed target).
        kernel: "linear"   k(a, b) = a.b: biased MMD^2 = ||mean(X) - mean(Y)||^2.
                "poly2"    k(a, b) = (a.b)^2 through the C x C Gram matrices: biased MMD^2 =
                           ||X^T X / N - Y^T Y / M||_F^2 (Gram matching).
                "gaussian" k(a, b) = exp(-gamma ||a - b||^2), fused tiled op: memory O((N + M) C),
                           never an N x M matrix.
                "bn"       sum_c (mean_x,c - mean_y,c)^2 + (std_x,c - std_y,c)^2 with
                           std = sqrt(Var + 1e-5) (population variance; Bessel-corrected when
                           unbiased).
        gamma: Gaussian bandwidth: a number, or a tensor of 1 or B values (one per pair; a
            tensor keeps compiled graphs from specialising on the value). None: one per target,
            gamma_b = 1 / (2 * mean_ij ||y_bi - y_bj||^2) = 1 / (4 * sum_c Var_b(y_c)), exact in
            O(M C) from that target only (1 / C if it has no spread), computed on the device.
            Every pair's loss is therefore the same in a batch as alone. No gradient flows
            through gamma.
        unbiased: the unbiased estimator (i != j terms of the x-x and y-y sums) instead of the
            biased one (V-statistic).
        reduction: "mean" (default) or "sum" over the batch, or "none" for the (B,) values.

    Gradients flow to x always and to y when y requires grad (not through an MMDTarget). For the
    Gaussian kernel the gradients are computed in the same tiled pass as the loss (when x or y
    requires grad) and scaled in backward. Second derivatives (create_graph=True): exact for
    linear, poly2 and bn; the Gaussian kernel refuses them with a RuntimeError when the gradient
    is differentiated again (GAUSSIAN_DOUBLE_BACKWARD; genint_fast.ops.reference.mmd has them).
    Non-finite values in x or y give a NaN loss. Half and bfloat16 inputs are computed in float32 and the loss is
    returned in the input dtype.
    """
    if kernel not in KERNELS:
        raise ValueError(f"mmd: kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mmd: reduction must be one of {', '.join(_REDUCTIONS)}, got "
                         f"{reduction!r}")
    if isinstance(y, MMDTarget):
        if y.kernel != kernel:
            raise ValueError(f"mmd: the target was built for kernel {y.kernel!r}, not {kernel!r}")
        if y.unbiased != bool(unbiased):
            raise ValueError("mmd: the target was built with unbiased="
                             f"{y.unbiased}, not {bool(unbiased)}")
        if gamma is not None and y.kernel == "gaussian" and not (
                y.gamma_arg is not None and not torch.is_tensor(gamma)
                and not torch.is_tensor(y.gamma_arg) and float(gamma) == float(y.gamma_arg)):
            raise ValueError(f"mmd: the target was built with gamma={y.gamma_arg} (None: its "
                             f"default), not {gamma}; pass gamma to MMDTarget only")
        out = _mmd_target(x, y)
    else:
        x3, y3 = _sets(x, "x"), _sets(y, "y")
        _check_pair(x3, y3, unbiased, kernel)
        if kernel == "linear":
            sy, yy = _linear_y_terms(y3, unbiased)
            out = _linear(x3, sy, yy, y3.shape[1], unbiased).to(x.dtype)
        elif kernel == "poly2":
            out = _Poly2.apply(_features_major(x), _features_major(y), None, None, y3.shape[1],
                               bool(unbiased))
        elif kernel == "bn":
            mx, sx = _bn_stats(x3, unbiased)
            my, sy = _bn_stats(y3, unbiased)
            out = ((mx - my).square().sum(-1) + (sx - sy).square().sum(-1)).to(x.dtype)
        else:
            out = _gaussian(x3, y3, _gamma_tensor(gamma, y3, x3.shape[0]), unbiased)
    if reduction == "mean":
        return out.mean()
    if reduction == "sum":
        return out.sum()
    return out


def style_loss(xs, ys, weights=None, kernel="poly2", gamma=None, unbiased=False,
               reduction="mean"):
    """The style loss of SPEC section 5: sum_l weights[l] * mmd(xs[l], ys[l], ...).

    xs: feature maps of the images being optimised, one per style layer; ys: the targets' maps
    of the same layers (tensors, or MMDTargets built once per target batch); weights: one float
    per layer (default 1). gamma: one value for all layers, a list per layer, or None (each
    layer's default). Returns a scalar (or (B,) with reduction="none").
    """
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"style_loss: need the same number (>= 1) of x and y layers, got "
                         f"{len(xs)} and {len(ys)}")
    weights = [1.0] * len(xs) if weights is None else list(weights)
    if len(weights) != len(xs):
        raise ValueError(f"style_loss: {len(weights)} weights for {len(xs)} layers")
    gammas = list(gamma) if isinstance(gamma, (list, tuple)) else [gamma] * len(xs)
    if len(gammas) != len(xs):
        raise ValueError(f"style_loss: {len(gammas)} gamma values for {len(xs)} layers")
    total = None
    for x, y, w, g in zip(xs, ys, weights, gammas):
        term = float(w) * mmd(x, y, kernel=kernel, gamma=g, unbiased=unbiased,
                              reduction=reduction)
        total = term if total is None else total + term
    return total
