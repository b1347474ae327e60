"""The MMD style losses against their materialised plain-PyTorch definitions
(genint_fast.ops.reference.mmd)."""
import math
import os
import pytest
import torch

import genint_fast  # noqa: F401
from genint_fast.ops import MMDTarget, mmd, reference, style_loss
from genint_fast.benchmarks.mmd import measure_peak
from genint_fast.ops.mmd import KERNELS

from conftest import devices, requires_cuda


def feats(B, N, C, layout="nc", dtype=torch.float64, device="cpu", seed=0, scale=1.0):
    """(B, N, C) sets, or (B, C, H, W) maps with H * W = N when layout == "chw"."""
    g = torch.Generator().manual_seed(seed)
    t = scale * torch.randn(B, N, C, generator=g, dtype=torch.float64)
    t = t + 0.3 * torch.randn(B, 1, C, generator=g, dtype=torch.float64)  # distinct means
    if layout == "chw":
        h = int(math.isqrt(N))
        assert h * h == N
        t = t.transpose(1, 2).reshape(B, C, h, h).contiguous()
    return t.to(device=device, dtype=dtype)


def leaf(t, grad=True):
    return t.detach().clone().requires_grad_(grad)


def loss_and_grads(fn, x, y, kernel, unbiased, gamma=None, y_grad=True):
    x, y = leaf(x), leaf(y, y_grad)
    out = fn(x, y, kernel=kernel, gamma=gamma, unbiased=unbiased, reduction="none")
    w = torch.linspace(0.5, 1.5, out.shape[0], dtype=torch.float64).to(out)
    (out * w).sum().backward()
    return out.detach(), x.grad, (y.grad if y_grad else None)


# --------------------------------------------------------------------- values and gradients

@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("B, By", [(1, 1), (2, 2), (4, 1), (3, 3)])
def test_values_and_gradients_match_reference_float64(kernel, unbiased, B, By):
    x = feats(B, 49, 6, layout="chw", seed=B)
    y = feats(By, 33, 6, seed=10 + By)
    gamma = None if B % 2 else 0.07
    out, gx, gy = loss_and_grads(mmd, x, y, kernel, unbiased, gamma)
    r_out, r_gx, r_gy = loss_and_grads(reference.mmd, x, y, kernel, unbiased, gamma)
    tol = dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out, r_out, **tol)
    torch.testing.assert_close(gx, r_gx, **tol)
    torch.testing.assert_close(gy, r_gy, **tol)
    assert out.shape == (B,)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", ["nc", "chw"])
def test_float32_tiles_and_chunks_match_reference(kernel, layout):
    # N and M are not multiples of the CPU tile (128 rows x 512 columns) and M spans 3 chunks.
    x = feats(2, 17 * 17, 24, layout=layout, dtype=torch.float32, seed=1)
    y = feats(2, 1100, 24, dtype=torch.float32, seed=2)
    out, gx, gy = loss_and_grads(mmd, x, y, kernel, False)
    r_out, r_gx, r_gy = loss_and_grads(reference.mmd, x.double(), y.double(), kernel, False)
    scale = r_out.abs().max().item()
    torch.testing.assert_close(out.double(), r_out, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(gx.double(), r_gx, rtol=1e-3, atol=1e-5 * r_gx.abs().max().item())
    torch.testing.assert_close(gy.double(), r_gy, rtol=1e-3, atol=1e-5 * r_gy.abs().max().item())


def test_reductions_and_loss_is_zero_for_identical_sets():
    x = feats(3, 40, 5)
    per = mmd(x, x, "gaussian", reduction="none")
    torch.testing.assert_close(per, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    y = feats(3, 30, 5, seed=4)
    per = mmd(x, y, "gaussian", reduction="none")
    assert (per > 0).all()
    torch.testing.assert_close(mmd(x, y, "gaussian", reduction="sum"), per.sum())
    torch.testing.assert_close(mmd(x, y, "gaussian"), per.mean())


def test_poly2_is_gram_matching_and_linear_is_mean_matching():
    x, y = feats(2, 20, 4), feats(2, 30, 4, seed=5)
    gx = x.transpose(1, 2) @ x / 20
    gy = y.transpose(1, 2) @ y / 30
    torch.testing.assert_close(mmd(x, y, "poly2", reduction="none"),
                               (gx - gy).square().sum((1, 2)))
    torch.testing.assert_close(mmd(x, y, "linear", reduction="none"),
                               (x.mean(1) - y.mean(1)).square().sum(-1))


def test_default_gamma_is_the_documented_formula():
    # One bandwidth per target: 1 / (2 * mean over that target's pairs of ||y_i - y_j||^2).
    y = feats(2, 50, 7, seed=3)
    d2 = torch.cdist(y, y).square().mean((1, 2))  # (2,), mean over all pairs of each target
    got = reference.gaussian_default_gamma(y)
    assert got.dtype == torch.float64 and got.shape == (2,)
    torch.testing.assert_close(got, 1.0 / (2.0 * d2), rtol=1e-9, atol=0)
    no_spread = reference.gaussian_default_gamma(torch.ones(1, 10, 4))
    assert no_spread.tolist() == [0.25]  # 1 / C
    x = feats(2, 40, 7)
    torch.testing.assert_close(mmd(x, y, "gaussian", reduction="none"),
                               mmd(x, y, "gaussian", gamma=1.0 / (2.0 * d2), reduction="none"))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("target_batch", [1, 3])
def test_batching_never_changes_a_pairs_result(kernel, unbiased, target_batch):
    # Each pair's loss and gradients in a batch equal the pair computed alone, for every kernel
    # and the default bandwidth (one per target), through mmd and through an MMDTarget.
    x = feats(3, 30, 6, dtype=torch.float32)
    y = feats(target_batch, 25, 6, dtype=torch.float32, seed=1,
              scale=1.0) * torch.tensor([1.0, 4.0, 0.25][:target_batch]).view(-1, 1, 1)
    xb = leaf(x)
    batched = mmd(xb, y, kernel, unbiased=unbiased, reduction="none")
    (gxb,) = torch.autograd.grad(batched.sum(), xb)
    target = MMDTarget(y, kernel, unbiased=unbiased)
    torch.testing.assert_close(mmd(x, target, kernel, unbiased=unbiased, reduction="none"),
                               batched.detach(),
                               rtol=1e-5, atol=1e-7)
    for b in range(3):
        xa = leaf(x[b:b + 1])
        alone = mmd(xa, y[b:b + 1] if target_batch > 1 else y, kernel, unbiased=unbiased,
                    reduction="none")
        (gxa,) = torch.autograd.grad(alone.sum(), xa)
        torch.testing.assert_close(alone[0], batched[b].detach(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(gxa[0], gxb[b], rtol=1e-5, atol=1e-7)


def test_per_pair_bandwidth_tensor():
    # gamma as a (B,) tensor: pair b uses gamma[b] (equal to that pair alone with the number).
    x, y = feats(3, 20, 5), feats(1, 15, 5, seed=1)
    gammas = torch.tensor([0.05, 0.2, 1.0], dtype=torch.float64)
    got = mmd(x, y, "gaussian", gamma=gammas, reduction="none")
    want = reference.mmd(x, y, "gaussian", gamma=gammas, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    for b in range(3):
        alone = mmd(x[b:b + 1], y, "gaussian", gamma=float(gammas[b]), reduction="none")
        torch.testing.assert_close(got[b], alone[0], rtol=1e-12, atol=1e-14)
    target = MMDTarget(y, "gaussian", gamma=gammas)
    torch.testing.assert_close(mmd(x, target, "gaussian", reduction="none"), want, rtol=1e-9,
                               atol=1e-12)
    with pytest.raises(ValueError, match="one per pair"):
        mmd(x, y, "gaussian", gamma=torch.ones(2))


def test_compiled_gaussian_does_not_recompile_per_bandwidth():
    # The bandwidth is a tensor input of the op: new values reuse the compiled graph.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    x, y = feats(2, 20, 5, dtype=torch.float32), feats(1, 15, 5, dtype=torch.float32, seed=1)
    f = torch.compile(lambda x, y, g: mmd(x, y, "gaussian", gamma=g, reduction="none"),
                      fullgraph=True)
    for value in (0.1, 0.2, 0.7):
        g = torch.tensor([value], dtype=torch.float64)
        torch.testing.assert_close(f(x, y, g), mmd(x, y, "gaussian", gamma=value,
                                                   reduction="none"))
    assert counters["stats"]["unique_graphs"] == 1


# -------------------------------------------------------------------------------- gradcheck

@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("unbiased", [False, True])
def test_gradcheck_float64(kernel, unbiased):
    x = leaf(feats(2, 9, 3, layout="chw"))
    y = leaf(feats(1, 7, 3, seed=2))

    def f(x, y):
        return mmd(x, y, kernel, gamma=0.3, unbiased=unbiased, reduction="none")

    assert torch.autograd.gradcheck(f, (x, y))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(device, requires_grad):
    # With requires_grad inputs opcheck also checks the autograd registration and traces the
    # backward with AOTAutograd (test_autograd_registration, test_aot_dispatch_dynamic).
    x = leaf(feats(2, 11, 5, dtype=torch.float32, device=device), requires_grad)
    y = leaf(feats(1, 13, 5, dtype=torch.float32, device=device, seed=1), requires_grad)
    op = torch.ops.genint_fast.mmd_gaussian.default
    G02 = torch.tensor([0.2], device=device)
    for unbiased in (False, True):
        torch.library.opcheck(op, (x, y, G02, unbiased, True, True, None))
        torch.library.opcheck(op, (x, y.detach(), G02, unbiased, True, False, None))
        torch.library.opcheck(op, (x.detach(), y, G02, unbiased, False, True, None))
    yy = torch.ops.genint_fast.mmd_gaussian_self.default(y.detach(), G02)
    torch.library.opcheck(op, (x, y.detach(), G02, False, True, False, yy))
    torch.library.opcheck(torch.ops.genint_fast.mmd_gaussian_self.default, (y, G02))
    y3 = leaf(feats(3, 13, 5, dtype=torch.float32, device=device, seed=2), requires_grad)
    torch.library.opcheck(torch.ops.genint_fast.mmd_gaussian_self.default, (y3, G02))


def test_opcheck_without_gradient_outputs():
    # no gradient asked: the two empty gradient outputs must be distinct tensors (the schema
    # forbids aliased outputs)
    x = feats(2, 11, 5, dtype=torch.float32)
    y = feats(1, 13, 5, dtype=torch.float32, seed=1)
    torch.library.opcheck(torch.ops.genint_fast.mmd_gaussian.default,
                          (x, y, torch.tensor([0.2]), False, False, False, None),
                          test_utils="test_schema")


# ------------------------------------------------------------------------ second derivatives

TWICE_DIFFERENTIABLE = [k for k in KERNELS if k != "gaussian"]


@pytest.mark.parametrize("kernel", TWICE_DIFFERENTIABLE)
@pytest.mark.parametrize("unbiased", [False, True])
def test_double_backward_gradgradcheck_float64(kernel, unbiased):
    x = leaf(feats(2, 9, 3, layout="chw"))
    y = leaf(feats(1, 7, 3, seed=2))

    def f(x, y):
        return mmd(x, y, kernel, unbiased=unbiased, reduction="none")

    assert torch.autograd.gradgradcheck(f, (x, y))
    target = MMDTarget(y, kernel, unbiased=unbiased)
    assert torch.autograd.gradgradcheck(
        lambda x: mmd(x, target, kernel, unbiased=unbiased, reduction="none"), (x,))


def second_derivatives(fn, x, y, kernel, y_grad=True):
    """The gradient of sum(grad^2) where grad = d (loss^2) / d (x, y): a Hessian-vector product."""
    x, y = leaf(x), leaf(y, y_grad)
    wrt = [x, y] if y_grad else [x]
    loss = fn(x, y, kernel=kernel, gamma=0.3)
    grads = torch.autograd.grad(loss.square(), wrt, create_graph=True)
    return torch.autograd.grad(sum(g.square().sum() for g in grads), wrt)


@pytest.mark.parametrize("kernel", TWICE_DIFFERENTIABLE)
@pytest.mark.parametrize("y_grad", [True, False])
def test_second_derivatives_equal_the_reference(kernel, y_grad):
    # poly2 used to reuse the graph-less Gram matrices in backward: its second derivative came
    # out 1.6 off on a true value of 2.1. Compare with the materialised definition.
    x, y = feats(2, 12, 4, layout="nc", seed=3), feats(1, 9, 4, seed=4)
    ours = second_derivatives(mmd, x, y, kernel, y_grad)
    ref = second_derivatives(reference.mmd, x, y, kernel, y_grad)
    assert ref[0].abs().max() > 1e-3
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-12)


def test_gaussian_double_backward_refuses_with_one_sentence():
    from genint_fast.ops.mmd import GAUSSIAN_DOUBLE_BACKWARD

    x, y = leaf(feats(2, 9, 3)), leaf(feats(1, 7, 3, seed=2))
    loss = mmd(x, y, "gaussian", gamma=0.3)
    gx, gy = torch.autograd.grad(loss, (x, y), create_graph=True)
    # The first derivative itself stays exact under create_graph=True ...
    r_gx, r_gy = torch.autograd.grad(reference.mmd(x, y, "gaussian", gamma=0.3), (x, y))
    torch.testing.assert_close(gx, r_gx, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gy, r_gy, rtol=1e-9, atol=1e-12)
    # ... and differentiating it again raises instead of silently dropping the Hessian term.
    for g, wrt in ((gx, x), (gx, y), (gy, x), (gy, y)):
        with pytest.raises(RuntimeError, match="does not support second derivatives") as err:
            torch.autograd.grad(g.square().sum(), wrt, retain_graph=True)
        assert GAUSSIAN_DOUBLE_BACKWARD in str(err.value)
    with pytest.raises(RuntimeError, match="genint_fast.ops.reference.mmd"):
        torch.autograd.gradgradcheck(lambda x: mmd(x, y.detach(), "gaussian", gamma=0.3), (x,))
    # Through a cached target too.
    target = MMDTarget(y, "gaussian", gamma=0.3)
    (gx,) = torch.autograd.grad(mmd(x, target, "gaussian"), x, create_graph=True)
    with pytest.raises(RuntimeError, match="does not support second derivatives"):
        gx.sum().backward()


def test_gaussian_self_term_is_twice_differentiable():
    # mmd_gaussian_self (the cached y-y sum of a target) has an exact gradient in row blocks,
    # against the materialised sum; its second derivative against finite differences.
    op = torch.ops.genint_fast.mmd_gaussian_self.default
    y = leaf(feats(2, 9, 3))
    for g03 in (torch.tensor([0.3], dtype=torch.float64),
                torch.tensor([0.3, 0.7], dtype=torch.float64)):   # one, or one per element
        assert torch.autograd.gradcheck(lambda y: op(y, g03), (y,))
        assert torch.autograd.gradgradcheck(lambda y: op(y, g03), (y,))
    one = leaf(feats(1, 9, 3))  # batch 1 under two bandwidths: two sums, gradients added
    assert torch.autograd.gradcheck(lambda y: op(y, torch.tensor([0.3, 0.7],
                                                                 dtype=torch.float64)), (one,))
    big = leaf(feats(1, 2100, 3, seed=1))   # more than one block of rows
    (g,) = torch.autograd.grad(op(big, torch.tensor([0.3], dtype=torch.float64)).sum(), big)
    (r,) = torch.autograd.grad(reference.gaussian_kernel_matrix(big, big, 0.3).sum(), big)
    torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)


def test_compile_fullgraph_forward_and_backward():
    x = leaf(feats(2, 16, 4, dtype=torch.float32))
    y = feats(1, 20, 4, dtype=torch.float32, seed=1)

    def f(x):
        return (mmd(x, y, "gaussian", gamma=0.25) + mmd(x, y, "poly2")
                + mmd(x, y, "linear") + mmd(x, y, "bn"))

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(x)
    loss.backward()
    xr = leaf(x)
    ref = sum(reference.mmd(xr, y, k, gamma=0.25) for k in KERNELS)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------- targets, style loss

@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("unbiased", [False, True])
def test_cached_target_matches_direct_call(kernel, unbiased):
    x, y = feats(3, 36, 5, layout="chw"), feats(1, 25, 5, layout="chw", seed=7)
    target = MMDTarget(y, kernel, unbiased=unbiased)
    a, ga, _ = loss_and_grads(lambda x, t, **kw: mmd(x, target, **kw), x, y, kernel, unbiased,
                              y_grad=False)
    b, gb, _ = loss_and_grads(reference.mmd, x, y, kernel, unbiased, y_grad=False)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-12)


def test_target_mismatch_raises():
    t = MMDTarget(feats(1, 10, 5), "gaussian", gamma=0.5)
    x = feats(2, 10, 5)
    with pytest.raises(ValueError, match="built for kernel"):
        mmd(x, t, "poly2")
    with pytest.raises(ValueError, match="unbiased"):
        mmd(x, t, "gaussian", unbiased=True)
    with pytest.raises(ValueError, match="gamma"):
        mmd(x, t, "gaussian", gamma=0.1)
    with pytest.raises(ValueError, match="channels"):
        mmd(feats(2, 10, 4), t, "gaussian")


def test_style_loss_is_the_weighted_sum_over_layers():
    xs = [leaf(feats(2, 16, 3, layout="chw")), leaf(feats(2, 9, 6, layout="chw", seed=1))]
    ys = [feats(1, 16, 3, layout="chw", seed=2), feats(1, 4, 6, layout="chw", seed=3)]
    for kernel in KERNELS:
        got = style_loss(xs, ys, [1e3, 0.5], kernel=kernel)
        want = 1e3 * reference.mmd(xs[0], ys[0], kernel) + 0.5 * reference.mmd(xs[1], ys[1],
                                                                                 kernel)
        torch.testing.assert_close(got, want)
        targets = [MMDTarget(y, kernel) for y in ys]
        torch.testing.assert_close(style_loss(xs, targets, [1e3, 0.5], kernel=kernel), want)
    with pytest.raises(ValueError, match="weights"):
        style_loss(xs, ys, [1.0])
    with pytest.raises(ValueError, match="same number"):
        style_loss(xs, ys[:1])


# --------------------------------------------------------------------------- half precision

def half_errors(kernel, dtype, device="cpu"):
    """Max error of ours in dtype and of the reference in dtype, against float64: the loss and
    the x gradient, each relative to the float64 magnitude."""
    x = feats(2, 64, 32, layout="chw", seed=3)
    y = feats(2, 48, 32, seed=4)
    gamma = 0.02
    exact, gx, _ = loss_and_grads(reference.mmd, x, y, kernel, False, gamma, y_grad=False)
    errs = {}
    for name, fn in (("ours", mmd), ("reference", reference.mmd)):
        out, g, _ = loss_and_grads(fn, x.to(device, dtype), y.to(device, dtype), kernel, False,
                                   gamma, y_grad=False)
        errs[name] = ((out.double().cpu() - exact).abs().max().item() / exact.abs().max().item(),
                      (g.double().cpu() - gx).abs().max().item() / gx.abs().max().item())
    return errs["ours"], errs["reference"]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kernel", KERNELS)
def test_half_precision_within_twice_reference_error(device, dtype, kernel):
    ours, ref = half_errors(kernel, dtype, device)
    eps = torch.finfo(dtype).eps
    for o, r, what in zip(ours, ref, ["loss", "grad x"]):
        assert o <= 2 * r + eps, f"{what}: error {o:.3g} > 2 x reference error {r:.3g}"


# ------------------------------------------------------------------------------- bad inputs

BAD = {
    "channel mismatch": (lambda x, y: (x, y[..., :-1]), "channels"),
    "batch neither equal nor 1": (lambda x, y: (x, torch.cat([y, y, y])[:3]), "batch"),
    "empty x set": (lambda x, y: (x[:, :0], y), "empty set"),
    "empty y set": (lambda x, y: (x, y[:, :0]), "empty set"),
    "empty batch": (lambda x, y: (x[:0], y), "empty batch"),
    "2-D x": (lambda x, y: (x[0], y), "must be"),
    "integer x": (lambda x, y: (x.long(), y), "floating-point"),
    "dtype mismatch": (lambda x, y: (x, y.float()), "dtype"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("kernel", KERNELS)
def test_bad_inputs_raise_clear_errors(case, kernel):
    x, y = feats(2, 10, 4), feats(2, 8, 4, seed=1)
    mutate, message = BAD[case]
    x, y = mutate(x, y)
    with pytest.raises(ValueError, match=message):
        mmd(x, y, kernel)


def test_bad_arguments_raise_clear_errors():
    x, y = feats(2, 10, 4), feats(2, 8, 4, seed=1)
    with pytest.raises(ValueError, match="kernel must be one of"):
        mmd(x, y, "cubic")
    with pytest.raises(ValueError, match="reduction"):
        mmd(x, y, "poly2", reduction="max")
    with pytest.raises(ValueError, match="gamma must be finite and > 0"):
        mmd(x, y, "gaussian", gamma=-1.0)
    with pytest.raises(ValueError, match="at least 2 vectors"):
        mmd(x[:, :1], y, "gaussian", unbiased=True)


def test_op_level_checks_raise_runtime_errors():
    op = torch.ops.genint_fast.mmd_gaussian.default
    x, y = feats(2, 10, 4, dtype=torch.float32), feats(2, 8, 4, dtype=torch.float32, seed=1)
    g = torch.tensor([0.1])
    cases = [
        ((x, y[..., :3], g, False, True, False, None), "channels"),
        ((x, torch.cat([y, y])[:3], g, False, True, False, None), "batch"),
        ((x[:, :0], y, g, False, True, False, None), "empty set"),
        ((x, y, torch.tensor([float("nan")]), False, True, False, None),
         "gamma must be finite"),
        ((x, y, torch.tensor([0.1, -1.0]), False, True, False, None), "gamma must be finite"),
        ((x, y, torch.ones(3), False, True, False, None), r"gamma must have shape \(1,\) or"),
        ((x, y, torch.ones(1, dtype=torch.long), False, True, False, None), "floating"),
        ((x[:, :1], y, g, True, True, False, None), "at least 2"),
        ((x, y, g, False, True, False, torch.zeros(2)), "yy must be float64"),
        ((x, y, g, False, True, True, torch.zeros(2, dtype=torch.float64)), "constant y"),
        ((x[0], y, g, False, True, False, None), "3-D"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            op(*args)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_give_nan(kernel, bad):
    # Documented: a non-finite value anywhere in x or y gives a NaN loss (never a crash or a
    # silently finite number).
    x, y = feats(2, 10, 4), feats(2, 8, 4, seed=1)
    x[1, 3, 2] = bad
    out = mmd(x, y, kernel, gamma=0.5, reduction="none")
    assert torch.isnan(out[1]) and torch.isfinite(out[0])
    out = mmd(y, x, kernel, gamma=0.5, reduction="none")
    assert torch.isnan(out[1]) and torch.isfinite(out[0])


# ------------------------------------------------------------------------------------ memory

def peak_extra_bytes(n, m, c, threads=2):
    """Peak resident memory added by one Gaussian forward+backward (x requires grad), measured
    in a fresh process (peak RSS reset before the call, read after it)."""
    extra, _ = measure_peak("gaussian", (n, m, c), threads=threads)
    return extra


def test_gaussian_memory_does_not_grow_with_n_times_m():
    # 16384 x 16384 pairs: the materialised matrix alone would be 1 GiB (float32); the tiled op
    # adds a few MB. The full bar (N = M = 65536, C = 64, <= 1 GB) is measured by
    # `genint-fast bench mmd` (about a minute on 2 cores) and by the slow test below.
    extra = peak_extra_bytes(16384, 16384, 16)
    assert extra < 64 * 2**20, f"peak extra memory {extra / 2**20:.0f} MiB"


@pytest.mark.slow
def test_gaussian_memory_bar_65536():
    extra = peak_extra_bytes(65536, 65536, 64)
    assert extra <= 10**9, f"peak extra memory {extra / 2**20:.0f} MiB > 1 GB"


# -------------------------------------------------------------------------------------- CUDA

@requires_cuda
@pytest.mark.parametrize("C", [3, 64, 100, 128, 256, 512, 700])
@pytest.mark.parametrize("unbiased", [False, True])
def test_cuda_matches_cpu_across_width_tiers(C, unbiased):
    x = feats(3, 77, C, dtype=torch.float32, seed=C)
    y = feats(1, 45, C, dtype=torch.float32, seed=C + 1)
    gamma = 0.5 / C
    cpu = loss_and_grads(mmd, x, y, "gaussian", unbiased, gamma)
    cuda = loss_and_grads(mmd, x.cuda(), y.cuda(), "gaussian", unbiased, gamma)
    for a, b in zip(cuda, cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


TILED_SHAPES = [(1, 1, 1), (5, 70, 3), (64, 64, 32), (65, 130, 33), (300, 257, 128),
                (100, 37, 700)]


@requires_cuda
@pytest.mark.parametrize("N, M, C, unbiased",
                         [(*shape, False) for shape in TILED_SHAPES]
                         + [(*shape, True) for shape in TILED_SHAPES[1:]])  # unbiased: N, M >= 2
def test_cuda_tiled_sum_kernel_matches_the_default(monkeypatch, N, M, C, unbiased):
    """GENINT_FAST_GAUSSIAN_KERNEL=tiled (sums without gradient: no_grad losses, the cached y-y
    term of an MMDTarget) gives the default kernel's values; the gradient path is unchanged."""
    x = feats(3, N, C, dtype=torch.float32, seed=N).cuda()
    y = feats(1, M, C, dtype=torch.float32, seed=M + 1).cuda()
    gamma = 0.5 / C
    with torch.no_grad():
        want = mmd(x, y, "gaussian", gamma=gamma, unbiased=unbiased, reduction="none")
        want_self = torch.ops.genint_fast.mmd_gaussian_self.default(
            y, torch.tensor([gamma], device="cuda"))
    monkeypatch.setenv("GENINT_FAST_GAUSSIAN_KERNEL", "tiled")
    with torch.no_grad():
        got = mmd(x, y, "gaussian", gamma=gamma, unbiased=unbiased, reduction="none")
        got_self = torch.ops.genint_fast.mmd_gaussian_self.default(
            y, torch.tensor([gamma], device="cuda"))
        target = MMDTarget(y, "gaussian", gamma=gamma, unbiased=unbiased)
        got_target = mmd(x, target, "gaussian", unbiased=unbiased, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_self, want_self, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_target, want, rtol=1e-5, atol=1e-6)


@requires_cuda
def test_cuda_falls_back_when_tiles_exceed_the_block_shared_memory(tmp_path):
    """A device that grants a block less shared memory than the tiles need (consumer GPUs for
    C > 377, T4 for C > 237) takes the ATen composition instead of failing at launch. The limit
    is lowered through GENINT_FAST_CUDA_SMEM_LIMIT so that any GPU takes the fallback."""
    import subprocess
    import sys

    prog = (
        "import sys, torch\n"
        "from genint_fast.ops import mmd\n"
        "g = torch.Generator().manual_seed(0)\n"
        "rows = []\n"
        "for C in (64, 512):\n"
        "    x = torch.randn(2, 70, C, generator=g).cuda().requires_grad_()\n"
        "    y = torch.randn(1, 50, C, generator=g).cuda()\n"
        "    loss = mmd(x, y, 'gaussian', gamma=0.5 / C)\n"
        "    loss.backward()\n"
        "    rows.append(torch.cat([loss.detach().reshape(1), x.grad.flatten()]).cpu())\n"
        "torch.save(rows, sys.argv[1])\n"
    )
    out = {}
    for name, limit in (("kernel", None), ("fallback", "1000")):
        env = dict(os.environ)
        env.pop("GENINT_FAST_CUDA_SMEM_LIMIT", None)
        if limit:
            env["GENINT_FAST_CUDA_SMEM_LIMIT"] = limit
        path = tmp_path / f"{name}.pt"
        res = subprocess.run([sys.executable, "-c", prog, str(path)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        out[name] = torch.load(path)
    for a, b in zip(out["kernel"], out["fallback"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


@requires_cuda
def test_cuda_device_mismatch_raises():
    x, y = feats(2, 10, 4, dtype=torch.float32), feats(2, 8, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="is on"):
        mmd(x.cuda(), y, "gaussian")


@pytest.mark.parametrize("n", [1, 128, 129, 385, 600, 1000])
def test_self_sum_visits_every_pair_once(n):
    # The y-y sum without gradient visits each unordered pair of 128-row blocks once (odd and
    # even block counts); it must equal the full materialised sum.
    y = feats(2, n, 5, seed=n)
    g = torch.tensor([0.2], dtype=torch.float64)
    got = torch.ops.genint_fast.mmd_gaussian_self.default(y, g)
    want = reference.gaussian_kernel_matrix(y, y, 0.2).sum((1, 2))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-9)
    got32 = torch.ops.genint_fast.mmd_gaussian_self.default(y.float(), g)
    torch.testing.assert_close(got32, want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("n", [1, 257, 600, 1300])
def test_self_term_gradient_tournament_schedule(n):
    # With x requiring grad, the x-x term visits each pair of 256-row blocks once (round-robin
    # rounds of disjoint pairs; 1, 2, 3 and 6 blocks) and adds both blocks' gradients.
    x, y = feats(2, n, 5, seed=n), feats(1, 77, 5, seed=1)
    out, gx, _ = loss_and_grads(mmd, x, y, "gaussian", False, 0.3, y_grad=False)
    r_out, r_gx, _ = loss_and_grads(reference.mmd, x, y, "gaussian", False, 0.3, y_grad=False)
    torch.testing.assert_close(out, r_out, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(gx, r_gx, rtol=1e-9, atol=1e-15)


def test_gaussian_float32_is_shift_invariant():
    # The Gaussian MMD and its gradients do not change when x and y move by a common offset;
    # the kernels centre the sets first, so float32 keeps its digits for data far from 0 (the
    # uncentred |a|^2 + |b|^2 - 2 a.b would cancel about 4 of them at an offset of 100).
    x = feats(2, 300, 16, dtype=torch.float32)
    y = feats(1, 200, 16, dtype=torch.float32, seed=1)
    want_x, want_y = leaf(x.double()), leaf(y.double())
    want = mmd(want_x, want_y, "gaussian", gamma=0.05, reduction="none")
    want_gx, want_gy = torch.autograd.grad(want.sum(), (want_x, want_y))
    for offset in (0.0, 100.0):
        xs, ys = leaf(x + offset), leaf(y + offset)
        got = mmd(xs, ys, "gaussian", gamma=0.05, reduction="none")
        gx, gy = torch.autograd.grad(got.sum(), (xs, ys))
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gx.double(), want_gx, rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(gy.double(), want_gy, rtol=1e-3, atol=1e-7)
        # Through a cached target (the y-y term computed once) too.
        target = MMDTarget(ys.detach(), "gaussian", gamma=0.05)
        torch.testing.assert_close(mmd(xs, target, "gaussian", reduction="none").double(), want,
                                   rtol=1e-4, atol=1e-6)


def test_gaussian_workers_keep_the_callers_thread_local_state():
    # The CPU kernel runs ATen ops (in-place GEMMs into the output) on at::parallel_for worker
    # threads; they must run under the caller's inference mode, or updating an inference
    # tensor from a worker raises.
    op = torch.ops.genint_fast.mmd_gaussian.default
    x = feats(1, 1024, 64, dtype=torch.float32)
    y = feats(1, 512, 64, dtype=torch.float32, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.tensor([0.05])
        want = op(x, y, g, False, True, True, None)
        with torch.inference_mode():
            got = op(x, y, g, False, True, True, None)
    finally:
        torch.set_num_threads(threads)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
