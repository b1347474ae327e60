"""The fused steering op against its plain-PyTorch definition (genint_fast.ops.reference)."""
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genint_fast.ops import reference, sample_steps, steer

from conftest import HIDE_EXTENSION, devices, requires_cuda

MODES = ["add", "set"]
CLAMPS = [None, 0.8]


def make_inputs(B, D, K, M, dtype=torch.float64, device="cpu", seed=0, noncontig=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    U = torch.nn.functional.normalize(torch.randn(K, D, generator=g, dtype=torch.float64), dim=1)
    sigma = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    mu = 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    idx = torch.stack([torch.randperm(K, generator=g)[:M] for _ in range(B)]) if B else \
        torch.zeros(0, M, dtype=torch.long)
    alpha = 2 * torch.rand(B, M, generator=g, dtype=torch.float64) - 1
    tensors = [t.to(device) for t in (z, U, sigma, mu, idx, alpha)]
    tensors = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
    if noncontig:
        # Same values, non-contiguous storage: transposed copies and strided views.
        z, U, sigma, mu, idx, alpha = tensors
        z = z.t().contiguous().t()
        U = U.t().contiguous().t()
        sigma = torch.stack([sigma, sigma], 1)[:, 0]
        mu = torch.stack([mu, mu], 1)[:, 1]
        idx = idx.t().contiguous().t()
        alpha = alpha.t().contiguous().t()
        tensors = [z, U, sigma, mu, idx, alpha]
    return tensors


def leaf(tensors):
    return [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]


def grads_of(fn, tensors, mode, clamp, seed=1):
    z, U, sigma, mu, idx, alpha = tensors
    out = fn(z, U, sigma, mu, idx, alpha, mode, clamp)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out)
    (out * w).sum().backward()
    return out.detach(), [z.grad, U.grad, sigma.grad, mu.grad, alpha.grad]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clamp", CLAMPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_match_reference(device, mode, clamp, dtype):
    base = make_inputs(33, 130, 12, 5, dtype=dtype, device=device)
    out, grads = grads_of(steer, leaf(base), mode, clamp)
    ref_out, ref_grads = grads_of(reference.steer, leaf(base), mode, clamp)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, ref_out, **tol)
    names = ["z", "directions", "sigma", "mu", "alpha"]
    for name, g, r in zip(names, grads, ref_grads):
        if mode == "set" and name == "sigma":
            assert g is None or torch.count_nonzero(g) == 0  # sigma is unused by "set"
            continue
        torch.testing.assert_close(g, r, **tol, msg=lambda m: f"grad of {name}: {m}")


@settings(max_examples=40, deadline=None)
@given(
    B=st.sampled_from([0, 1, 2, 7, 64]),
    D=st.integers(1, 1024),
    K=st.integers(1, 40),
    m_frac=st.floats(0.0, 1.0),
    mode=st.sampled_from(MODES),
    clamp=st.sampled_from(CLAMPS),
    noncontig=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_cpu(B, D, K, m_frac, mode, clamp, noncontig, seed):
    M = 1 + int(m_frac * (K - 1))
    base = make_inputs(B, D, K, M, dtype=torch.float32, seed=seed, noncontig=noncontig)
    out, grads = grads_of(steer, leaf(base), mode, clamp, seed=seed)
    ref_out, ref_grads = grads_of(reference.steer, leaf(base), mode, clamp, seed=seed)
    assert out.shape == (B, D)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    for i in (0, 4):  # z and alpha: the gradients the fused backward kernel computes
        torch.testing.assert_close(grads[i], ref_grads[i], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clamp", CLAMPS)
def test_gradcheck_float64(mode, clamp):
    z, U, sigma, mu, idx, alpha = leaf(make_inputs(4, 9, 6, 3))
    if clamp is not None:
        clamp = 1.3  # keep values away from the kink, where finite differences are undefined

    def f(z, U, sigma, mu, alpha):
        return steer(z, U, sigma, mu, idx, alpha, mode, clamp)

    assert torch.autograd.gradcheck(f, (z, U, sigma, mu, alpha))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clamp", CLAMPS)
def test_double_backward_gradgradcheck_float64(mode, clamp):
    # Second derivatives through the fused op (create_graph=True), every differentiable input,
    # against finite differences of its own gradient.
    z, U, sigma, mu, idx, alpha = leaf(make_inputs(4, 9, 6, 3))
    if clamp is not None:
        clamp = 1.3  # away from the kink, as above

    def f(z, U, sigma, mu, alpha):
        return steer(z, U, sigma, mu, idx, alpha, mode, clamp)

    assert torch.autograd.gradgradcheck(f, (z, U, sigma, mu, alpha))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clamp", CLAMPS)
def test_second_derivatives_equal_the_reference(mode, clamp):
    # The old formula treated the fused backward as a constant under create_graph=True: the
    # Hessian-vector products below came out as zero (errors up to 22.7 on a scalar like this).
    base = make_inputs(6, 11, 7, 3, seed=5)
    if clamp is not None:
        clamp = 1.5

    def hvp(fn):
        z, U, sigma, mu, idx, alpha = leaf(base)
        wrt = [z, U, sigma, mu, alpha]
        out = fn(z, U, sigma, mu, idx, alpha, mode, clamp)
        grads = torch.autograd.grad(out.pow(3).sum(), wrt, create_graph=True,
                                    allow_unused=True)  # sigma is unused by "set"
        scalar = sum(g.square().sum() for g in grads if g is not None)
        return [g if g is not None else torch.zeros_like(w)
                for g, w in zip(torch.autograd.grad(scalar, wrt, allow_unused=True), wrt)]

    ours, ref = hvp(steer), hvp(reference.steer)
    assert any(r.abs().max() > 1.0 for r in ref)   # a second derivative that is far from 0
    for name, o, r in zip(["z", "directions", "sigma", "mu", "alpha"], ours, ref):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-9,
                                   msg=lambda m: f"second derivative via {name}: {m}")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(device, mode, requires_grad):
    # With requires_grad inputs opcheck also checks the autograd registration and traces the
    # backward with AOTAutograd (test_autograd_registration, test_aot_dispatch_dynamic).
    base = make_inputs(5, 17, 6, 3, dtype=torch.float32, device=device)
    z, U, sigma, mu, idx, alpha = leaf(base) if requires_grad else base
    for clamp in CLAMPS:
        torch.library.opcheck(torch.ops.genint_fast.steer.default,
                              (z, U, sigma, mu, idx, alpha, mode, clamp))
        g = torch.randn(z.shape, device=device).requires_grad_(requires_grad)
        torch.library.opcheck(torch.ops.genint_fast.steer_backward.default,
                              (g, z, U, sigma, mu, idx, alpha, mode, clamp))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clamp", [None, 1.3])
def test_steer_backward_is_differentiable(mode, clamp):
    # The derivative of the fused backward itself (what double backward runs), every input,
    # and its value equals the ATen formula steer_backward_torch.
    from genint_fast.ops.steer import steer_backward_torch

    z, U, sigma, mu, idx, alpha = leaf(make_inputs(4, 9, 6, 3, seed=2))
    g = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g.requires_grad_()

    def f(g, z, U, sigma, mu, alpha):
        return torch.ops.genint_fast.steer_backward.default(g, z, U, sigma, mu, idx, alpha,
                                                            mode, clamp)

    assert torch.autograd.gradcheck(f, (g, z, U, sigma, mu, alpha))
    for a, b in zip(f(g, z, U, sigma, mu, alpha),
                    steer_backward_torch(g, z, U, sigma, mu, idx, alpha, mode, clamp)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def half_errors(dtype, mode, device="cpu"):
    """(max error of the kernel in dtype, max error of the reference run in dtype), both
    against the float64 reference; forward and the z / alpha gradients."""
    base = make_inputs(256, 128, 60, 5, device=device, seed=3)
    exact_out, exact_grads = grads_of(reference.steer, leaf(base), mode, None)
    low = [t.to(dtype) if t.is_floating_point() else t for t in base]
    errs = {}
    for name, fn in (("kernel", steer), ("reference", reference.steer)):
        out, grads = grads_of(fn, leaf(low), mode, None)
        e = [(out.double() - exact_out).abs().max().item()]
        e += [(grads[i].double() - exact_grads[i]).abs().max().item() for i in (0, 4)]
        errs[name] = e
    return errs["kernel"], errs["reference"]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", MODES)
def test_half_precision_within_twice_reference_error(device, dtype, mode):
    kernel, ref = half_errors(dtype, mode, device)
    eps = torch.finfo(dtype).eps
    for k, r, what in zip(kernel, ref, ["output", "grad z", "grad alpha"]):
        # Flash-attention's rule; the eps floor covers a reference that happens to be exact.
        assert k <= 2 * r + eps, f"{what}: kernel error {k:.3g} > 2 x reference error {r:.3g}"


def test_empty_and_degenerate_shapes():
    for B, M in [(0, 3), (4, 0)]:
        z, U, sigma, mu, idx, alpha = make_inputs(B, 8, 5, 3, dtype=torch.float32)
        idx, alpha = idx[:, :M], alpha[:, :M]
        for mode in MODES:
            out = steer(z, U, sigma, mu, idx, alpha, mode)
            torch.testing.assert_close(out, reference.steer(z, U, sigma, mu, idx, alpha, mode))


def test_set_mode_sets_the_coordinate():
    z, U, sigma, mu, idx, alpha = make_inputs(16, 32, 8, 1, dtype=torch.float64)
    out = steer(z, U, sigma, mu, idx, alpha, "set")
    coord = ((out - mu) * U[idx[:, 0]]).sum(-1)
    torch.testing.assert_close(coord, alpha[:, 0])


def test_clamp_bounds_output():
    z, U, sigma, mu, idx, alpha = make_inputs(16, 32, 8, 3, dtype=torch.float32)
    out = steer(3 * z, U, sigma, mu, idx, alpha, "add", clamp=0.5)
    assert out.abs().max() <= 0.5
    assert (out.abs() == 0.5).any()


def test_compile_fullgraph_forward_and_backward():
    z, U, sigma, mu, idx, alpha = leaf(make_inputs(8, 16, 6, 3, dtype=torch.float32))

    def f(z, alpha):
        return steer(z, U, sigma, mu, idx, alpha, "add", 2.0).square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(z, alpha)
    loss.backward()
    ref = leaf([z, alpha])
    reference.steer(ref[0], U, sigma, mu, idx, ref[1], "add", 2.0).square().sum().backward()
    torch.testing.assert_close(loss, f(z, alpha))
    torch.testing.assert_close(z.grad, ref[0].grad)
    torch.testing.assert_close(alpha.grad, ref[1].grad)


BAD = {
    "z rank": (lambda t: t.update(z=t["z"][0]), "z must be 2-D"),
    "directions D": (lambda t: t.update(U=t["U"][:, :-1]), "directions have D"),
    "mu D": (lambda t: t.update(mu=t["mu"][:-1]), "mu has D"),
    "sigma K": (lambda t: t.update(sigma=t["sigma"][:-1]), "sigma has K"),
    "idx B": (lambda t: t.update(idx=t["idx"][:-1], alpha=t["alpha"][:-1]), "idx has B"),
    "alpha shape": (lambda t: t.update(alpha=t["alpha"][:, :-1]), "alpha has shape"),
    "idx negative": (lambda t: t["idx"].__setitem__((0, 0), -1), "idx must lie in"),
    "idx too large": (lambda t: t["idx"].__setitem__((1, 1), 6), "idx must lie in"),
    "idx dtype": (lambda t: t.update(idx=t["idx"].int()), "idx must be int64"),
    "dtype mismatch": (lambda t: t.update(U=t["U"].double()), "directions has dtype"),
    "int z": (lambda t: t.update(z=t["z"].long()), "z must be float32"),
    "negative clamp": (lambda t: t.update(clamp=-1.0), "clamp must be >= 0"),
    "mode": (lambda t: t.update(mode="mul"), "mode must be"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_raise_clear_errors(case):
    z, U, sigma, mu, idx, alpha = make_inputs(4, 8, 6, 3, dtype=torch.float32)
    t = dict(z=z, U=U, sigma=sigma, mu=mu, idx=idx.clone(), alpha=alpha, mode="add", clamp=None)
    mutate, message = BAD[case]
    mutate(t)
    with pytest.raises(RuntimeError, match=message):
        steer(t["z"], t["U"], t["sigma"], t["mu"], t["idx"], t["alpha"], t["mode"], t["clamp"])


@requires_cuda
def test_device_mismatch_raises():
    z, U, sigma, mu, idx, alpha = make_inputs(4, 8, 6, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="is on"):
        steer(z.cuda(), U, sigma, mu, idx, alpha)


@requires_cuda
@pytest.mark.parametrize("D", [1, 31, 33, 128, 700, 1024, 1500])
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu_across_register_tiers(D, mode):
    assert_cuda_matches_cpu(make_inputs(37, D, 10, 4, dtype=torch.float32), mode, out_tol=1e-5)


def assert_cuda_matches_cpu(base, mode, out_tol):
    """Values and gradients (z, U, mu, alpha) of the CUDA op equal the CPU op's, with and
    without clamp."""
    for clamp in CLAMPS:
        cpu_out, cpu_grads = grads_of(steer, leaf(base), mode, clamp)
        cuda_out, cuda_grads = grads_of(steer, leaf([t.cuda() for t in base]), mode, clamp)
        torch.testing.assert_close(cuda_out.cpu(), cpu_out, rtol=out_tol, atol=out_tol)
        for i in (0, 1, 3, 4):
            torch.testing.assert_close(cuda_grads[i].cpu(), cpu_grads[i], rtol=1e-4, atol=1e-4)


@requires_cuda
@pytest.mark.parametrize("mode", MODES)
def test_cuda_long_rows_of_steps_and_misaligned_rows(mode):
    """M > 32 steps per row (read directly, not broadcast by shuffles) give the CPU op's values
    and gradients; rows whose data do not start on a 16-byte boundary (the scalar path) give the
    vector path's values up to the order of the warp's float32 sums."""
    assert_cuda_matches_cpu(make_inputs(19, 128, 50, 40, dtype=torch.float32), mode, out_tol=1e-4)
    z, U, sigma, mu, idx, alpha = [t.cuda() for t in make_inputs(9, 128, 10, 4,
                                                                 dtype=torch.float32)]
    shifted = torch.empty(z.numel() + 1, device="cuda")[1:].view_as(z).copy_(z)
    assert shifted.is_contiguous() and shifted.data_ptr() % 16 != 0
    torch.testing.assert_close(steer(shifted, U, sigma, mu, idx, alpha, mode),
                               steer(z, U, sigma, mu, idx, alpha, mode), rtol=1e-5, atol=1e-6)


@requires_cuda
@pytest.mark.device_assert
def test_cuda_index_check_runs_on_the_device():
    """On CUDA the index range is checked inside the kernel (no host synchronisation): an index
    out of range stops the process with a device-side assert naming the check, as ATen's own
    indexing does, instead of reading outside the directions."""
    prog = (
        "import torch\n"
        "from genint_fast.ops import steer\n"
        "z = torch.randn(4, 128, device='cuda'); U = torch.randn(6, 128, device='cuda')\n"
        "idx = torch.zeros(4, 3, dtype=torch.long, device='cuda'); idx[1, 1] = 6\n"
        "steer(z, U, torch.ones(6, device='cuda'), torch.zeros(128, device='cuda'), idx,\n"
        "      torch.ones(4, 3, device='cuda'))\n"
        "torch.cuda.synchronize()\n"
    )
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode != 0
    assert "steer: idx must lie in [0, K)" in res.stderr + res.stdout


# ---------------------------------------------------------------------------------- sampler

@pytest.mark.parametrize("device", devices())
def test_sampler_is_reproducible_and_valid(device):
    def draw(seed):
        g = torch.Generator(device=device).manual_seed(seed)
        return sample_steps(512, 60, 5, scale=2.5, generator=g)

    idx, alpha = draw(0)
    idx2, alpha2 = draw(0)
    idx3, _ = draw(1)
    assert torch.equal(idx, idx2) and torch.equal(alpha, alpha2)
    assert not torch.equal(idx, idx3)
    assert idx.device.type == device and idx.dtype == torch.long and idx.shape == (512, 5)
    assert int(idx.min()) >= 0 and int(idx.max()) < 60
    assert all(len(set(row.tolist())) == 5 for row in idx.cpu())  # distinct per row
    assert float(alpha.abs().max()) <= 2.5
    # Uniform over the top k: every direction is drawn, none much more than its share.
    counts = torch.bincount(idx.flatten().cpu(), minlength=60).double()
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()


def test_sampler_per_direction_ranges():
    k = 8
    ranges = torch.stack([-torch.arange(1.0, k + 1), torch.arange(1.0, k + 1) * 0.5], 1)
    idx, alpha = sample_steps(4000, k, 3, ranges=ranges,
                              generator=torch.Generator().manual_seed(0))
    lo, hi = ranges[idx, 0], ranges[idx, 1]
    assert bool(((alpha >= lo) & (alpha <= hi)).all())
    # The spread follows the chosen direction's range.
    wide, narrow = alpha[idx == k - 1], alpha[idx == 0]
    assert wide.std() > 3 * narrow.std()


@pytest.mark.parametrize("kwargs, message", [
    (dict(scale=1.0, ranges=torch.zeros(8, 2)), "exactly one"),
    (dict(scale=1.0, m=9), "1 <= m <= top_k"),
    (dict(ranges=torch.zeros(3, 2)), "ranges must have shape"),
    (dict(ranges=torch.tensor([[1.0, -1.0]] * 8)), "lo <= hi"),
    (dict(scale=-1.0), "scale must be >= 0"),
])
def test_sampler_rejects_bad_arguments(kwargs, message):
    kwargs = {"m": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        sample_steps(4, 8, kwargs.pop("m"), **kwargs)


# ------------------------------------------------------------------------------ packaging

def test_import_without_extension_says_how_to_build():
    # Hide the built extension from the import system, as on a checkout that was never built.
    code = (
        HIDE_EXTENSION +
        "import genint_fast.ops\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "python setup.py build_ext --inplace" in last
    assert "not built" in last


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clamp", CLAMPS)
def test_float32_vector_tails_and_many_directions(mode, clamp):
    # The float32 CPU path runs Vectorized<float> loops: a width that is no multiple of the
    # vector width (tails) and more directions per row than it keeps accumulators for (M > 8).
    base = make_inputs(9, 13, 20, 11, dtype=torch.float32, seed=4)
    out, grads = grads_of(steer, leaf(base), mode, clamp, seed=4)
    ref_out, ref_grads = grads_of(reference.steer, leaf(base), mode, clamp, seed=4)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    for i in (0, 4):
        torch.testing.assert_close(grads[i], ref_grads[i], rtol=1e-4, atol=1e-4)


def test_float32_baseline_kernels_match_the_reference():
    # The float32 loops are built twice (AVX2 + FMA and the baseline); ATEN_CPU_CAPABILITY=default
    # selects the baseline build, which an AVX2 machine would otherwise never run.
    import os
    import subprocess
    import sys

    code = (
        "import torch, genint_fast\n"
        "from genint_fast.ops import steer, mmd, reference\n"
        "g = torch.Generator().manual_seed(0)\n"
        "z = torch.randn(37, 21, generator=g)\n"
        "U = torch.nn.functional.normalize(torch.randn(9, 21, generator=g), dim=1)\n"
        "s = torch.rand(9, generator=g); mu = torch.randn(21, generator=g)\n"
        "idx = torch.randint(0, 9, (37, 10), generator=g); a = torch.randn(37, 10, generator=g)\n"
        "for mode in ('add', 'set'):\n"
        "    for clamp in (None, 0.7):\n"
        "        zl = z.clone().requires_grad_(); al = a.clone().requires_grad_()\n"
        "        zr = z.clone().requires_grad_(); ar = a.clone().requires_grad_()\n"
        "        gr = torch.randn(37, 21, generator=g)\n"
        "        out = steer(zl, U, s, mu, idx, al, mode, clamp); out.backward(gr)\n"
        "        ref = reference.steer(zr, U, s, mu, idx, ar, mode, clamp); ref.backward(gr)\n"
        "        for p, q in ((out, ref), (zl.grad, zr.grad), (al.grad, ar.grad)):\n"
        "            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4)\n"
        "x = torch.randn(1, 300, 7, generator=g); y = torch.randn(1, 200, 7, generator=g) + 0.5\n"
        "torch.testing.assert_close(mmd(x, y, 'gaussian', gamma=0.1).double(),\n"
        "    reference.mmd(x.double(), y.double(), 'gaussian', gamma=0.1), rtol=1e-4, atol=1e-7)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=root)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
