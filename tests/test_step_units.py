"""Steps mean the same on every generator (SPEC sections 3-4): an "add" step of s' moves the
direction layer's component j by s' of its standard deviations; "set" steps are in latent
standard deviations; the reference code's one-direction style and its range table."""
import pytest
import torch

from genint_fast.directions import discover_sampled, discover_svd, latent_std
from genint_fast.generators import SmallGenerator, tiny_biggan
from genint_fast.intervene import (InterventionSampler, ObservationalSampler, matched_norm_scale,
                                   reference_ranges)


def _small():
    torch.manual_seed(0)
    return SmallGenerator().eval()


def _component_moves(gen, d, j, step, mode="add"):
    """How far (in units of sigma_j) one step along direction j moves component j of the layer,
    for 16 random latents and classes."""
    g = torch.Generator().manual_seed(1)
    n = 16
    y = torch.randint(gen.num_classes, (n,), generator=g)
    z = gen.sample_latents(n, generator=g) if hasattr(gen, "sample_latents") else \
        torch.randn(n, gen.latent_dim, generator=g)
    idx = torch.full((n, 1), j, dtype=torch.long)
    alpha = torch.full((n, 1), float(step))
    from genint_fast import ops
    sig, steps = d.steering_args(idx, alpha, mode)
    z_star = ops.steer(z, d.u, sig, d.mu, idx, steps, mode)
    with torch.no_grad():
        a0 = gen.layer_activations(z, y).double()
        a1 = gen.layer_activations(z_star, y).double()
    comp = d.components[j].double()
    return ((a1 - a0) @ comp) / float(d.sigma[j])


@pytest.mark.parametrize("make", [_small, lambda: tiny_biggan(seed=0, decay=0.8)],
                         ids=["small32", "tiny-biggan"])
@pytest.mark.parametrize("step", [1.0, -2.5])
def test_add_step_moves_component_by_its_std_svd(make, step):
    gen = make()
    d = discover_svd(gen, 8)
    for j in (0, 3, 7):
        moved = _component_moves(gen, d, j, step)
        assert torch.allclose(moved, torch.full_like(moved, step), rtol=0.05), (j, moved)


def test_add_step_units_with_the_sampled_estimator():
    gen = _small()
    d = discover_sampled(gen, 6, n_samples=4000, seed=0)
    for j in (0, 2, 5):
        moved = _component_moves(gen, d, j, 2.0)
        # the sampled components are estimates: within 5% of the asked step
        assert abs(float(moved.mean()) - 2.0) <= 0.1, (j, moved.mean())
    assert torch.allclose(d.latent_sd, torch.full_like(d.latent_sd, latent_std(1.0)), rtol=0.08)


def test_set_steps_are_latent_standard_deviations():
    gen = _small()
    d = discover_svd(gen, 8)
    s = InterventionSampler(gen, d, top_k=8, m=1, scale=3.0, mode="set", seed=0)
    _, z, idx, alpha, z_star = s.steer_latents(32)
    u = d.u[idx[:, 0]]
    coord = (z_star * u).sum(1)
    expect = (d.mu * u).sum(1) + alpha[:, 0] * latent_std(1.0)
    assert torch.allclose(coord, expect, atol=1e-4)


def test_reference_range_table_is_the_reference():
    t = reference_ranges()
    assert t.shape == (60, 2)
    for j, (lo, hi) in {0: (-3, 3), 1: (-4, 2), 20: (-8, 12), 51: (6, 12), 55: (-12, 15),
                        39: (-12, 10), 23: (-10, 10)}.items():
        assert t[j].tolist() == [lo, hi], j
    assert bool((t[:, 0] <= t[:, 1]).all())
    assert reference_ranges(20).shape == (20, 2)
    with pytest.raises(ValueError, match="60"):
        reference_ranges(61)


def test_one_direction_style_changes_exactly_one_coordinate():
    gen = _small()
    d = discover_svd(gen, gen.latent_dim)       # a complete orthonormal basis of latent space
    s = InterventionSampler(gen, d, top_k=20, style="one", per_latent=5,
                            ranges=reference_ranges(20), mode="set", seed=3)
    labels, z, idx, alpha, z_star = s.steer_latents(20)
    assert idx.shape == (20, 1) and alpha.shape == (20, 1)
    delta = (z_star - z) @ d.u.T                # coordinates of the change in the basis
    changed = (delta.abs() > 1e-4).sum(1)
    assert changed.tolist() == [1] * 20
    assert (delta.abs().argmax(1) == idx[:, 0]).all()
    # five images per base latent, one class per base latent, distinct directions
    for g in range(4):
        rows = slice(5 * g, 5 * g + 5)
        assert torch.equal(z[rows], z[5 * g].expand(5, -1))
        assert labels[rows].unique().numel() == 1
        assert idx[rows, 0].unique().numel() == 5
    # steps inside each direction's range
    lo, hi = reference_ranges(20)[idx[:, 0]].unbind(1)
    assert bool(((alpha[:, 0] >= lo) & (alpha[:, 0] <= hi)).all())


def test_bad_style_arguments():
    gen = _small()
    d = discover_svd(gen, 8)
    with pytest.raises(ValueError, match="style"):
        InterventionSampler(gen, d, top_k=8, style="two")
    with pytest.raises(ValueError, match="per_latent"):
        InterventionSampler(gen, d, top_k=4, style="one", per_latent=5)


def test_random_control_directions_and_matched_norm():
    gen = _small()
    d = discover_svd(gen, 8)
    r = d.random_like(seed=1)
    assert torch.allclose(r.u.norm(dim=1), torch.ones(8), atol=1e-5)
    assert torch.equal(r.step, d.step) and r.meta["control"] == "random-directions"
    assert (r.u @ d.u.T).abs().max() < 0.9      # not the principal directions
    s = InterventionSampler(gen, d, top_k=8, m=5, scale=4.0, seed=0)
    state = s.rng.get_state()
    factor = matched_norm_scale(s, n=4096)
    assert torch.equal(state, s.rng.get_state())    # the sampler's stream is left as it was
    _, z, _, _, z_star = s.steer_latents(4096)
    # |z|^2 ~ 64 sd^2 plus 5 steps of variance 16/3 sd^2 (one step = one latent sd here): the
    # mean norms differ by about sqrt(1 + 80/3 / 64) = 1.19
    assert abs(factor - (1 + 80 / 3 / 64) ** 0.5) < 0.02, factor
    assert abs(factor - float(z_star.norm(dim=1).mean() / z.norm(dim=1).mean())) < 0.05
    obs = ObservationalSampler(gen, seed=0, latent_scale=factor, batch_size=8)
    _, _, rec = obs.sample()
    ratio = float(rec.z.norm(dim=1).mean() / z.norm(dim=1).mean())
    assert abs(ratio - factor) / factor < 0.2
    with pytest.raises(ValueError, match="latent_scale"):
        ObservationalSampler(gen, latent_scale=0)
