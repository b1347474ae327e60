"""The fused ops never synchronise with the host, so they can be captured in CUDA graphs: by
torch.cuda.graph directly (a host synchronisation during capture is an error), by
torch.cuda.make_graphed_callables for forward + backward, and by torch.compile's
"reduce-overhead" mode (which would skip cudagraphs, not fail, so the skip counter is checked)."""
import pytest
import torch

from genint_fast.ops import mmd, steer

from conftest import requires_cuda

pytestmark = requires_cuda

B, D, K, M = 64, 128, 12, 5


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, D, generator=g)
    U = torch.nn.functional.normalize(torch.randn(K, D, generator=g), dim=1)
    sigma = torch.rand(K, generator=g) + 0.5
    mu = 0.1 * torch.randn(D, generator=g)
    idx = torch.randint(0, K, (B, M), generator=g)
    alpha = 2 * torch.rand(B, M, generator=g) - 1
    target = torch.randn(2, 32, 16, generator=g)
    return [t.cuda() for t in (z, U, sigma, mu, idx, alpha, target)]


def loss_fn(z, alpha, U, sigma, mu, idx, target):
    """steer, then every MMD kernel between the steered codes (as 2 sets of 32 16-vectors) and a
    fixed target; the Gaussian bandwidth is given (its default is computed on the host)."""
    out = steer(z, U, sigma, mu, idx, alpha, "add", 3.0)
    sets = out.reshape(2, 32, 8, 16).mean(2)
    total = out.square().mean()
    for kernel in ("poly2", "linear", "bn"):
        total = total + mmd(sets, target, kernel=kernel)
    return total + mmd(sets, target, kernel="gaussian", gamma=0.05)


def test_steer_forward_captures_and_replays():
    z, U, sigma, mu, idx, alpha, _ = inputs(0)
    for mode in ("add", "set"):
        static = [t.clone() for t in (z, idx, alpha)]
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up outside the capture
            steer(static[0], U, sigma, mu, static[1], static[2], mode)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = steer(static[0], U, sigma, mu, static[1], static[2], mode)
        z2, _, _, _, idx2, alpha2, _ = inputs(1)
        for dst, src in zip(static, (z2, idx2, alpha2)):
            dst.copy_(src)
        graph.replay()
        torch.testing.assert_close(out, steer(z2, U, sigma, mu, idx2, alpha2, mode))


def test_forward_and_backward_of_steer_and_mmd_as_a_graphed_callable():
    z, U, sigma, mu, idx, alpha, target = inputs(0)

    def fn(z, alpha):
        return loss_fn(z, alpha, U, sigma, mu, idx, target)

    sample = (z.clone().requires_grad_(), alpha.clone().requires_grad_())
    graphed = torch.cuda.make_graphed_callables(fn, sample)
    z2, _, _, _, _, alpha2, _ = inputs(1)
    for zz, aa in ((z, alpha), (z2, alpha2)):
        a = (zz.clone().requires_grad_(), aa.clone().requires_grad_())
        b = (zz.clone().requires_grad_(), aa.clone().requires_grad_())
        got, want = graphed(*a), fn(*b)
        got.backward()
        want.backward()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a[0].grad, b[0].grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a[1].grad, b[1].grad, rtol=1e-4, atol=1e-6)


def test_compiled_reduce_overhead_uses_cudagraphs():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    z, U, sigma, mu, idx, alpha, target = inputs(0)
    compiled = torch.compile(loss_fn, mode="reduce-overhead", fullgraph=True)
    for seed in (1, 2, 3):
        z, _, _, _, idx, alpha, _ = inputs(seed)
        got = compiled(z, alpha, U, sigma, mu, idx, target).clone()
        torch.testing.assert_close(got, loss_fn(z, alpha, U, sigma, mu, idx, target),
                                   rtol=1e-5, atol=1e-6)
    assert counters["inductor"]["cudagraph_skips"] == 0, dict(counters["inductor"])
    assert counters["stats"]["unique_graphs"] >= 1
