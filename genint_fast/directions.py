"""GANSpace direction discovery (SPEC section 3), save/load with metadata.

Two estimators of the same thing:
- sampled (the general path): N latents z = t * TruncNormal(-2, 2) for one class, the direction
  layer's activations recorded by a hook, PCA with k components (scikit-learn PCA, or
  IncrementalPCA in batches when the activations would not fit in `max_memory_bytes`), then a
  least-squares regression of z on the PCA coordinates; u_j = normalised rows of its
  coefficient matrix, sigma_j = sqrt(explained variance_j).
- svd (exact shortcut where the layer is affine in z, e.g. BigGAN's gen_z): the activation
  covariance is var(z) * W_z W_z^T, so the components are the left singular vectors of W_z,
  u_j the right singular vectors and sigma_j = std(z) * s_j — one SVD of a (H, D) matrix.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .generators.base import ConditionalGenerator, check_truncation, truncated_latents

__all__ = ["Directions", "discover", "discover_svd", "discover_sampled", "save_directions",
           "load_directions", "latent_std"]

FORMAT = "genint_fast.directions.v1"


def latent_std(truncation=1.0) -> float:
    """Standard deviation of one coordinate of t * TruncNormal(-2, 2) (scipy's truncnorm)."""
    from scipy.stats import truncnorm

    return check_truncation(truncation) * float(truncnorm(-2.0, 2.0).std())


@dataclass
class Directions:
    """k latent directions u (k, D, unit rows), their scales sigma (k,), the latent mean mu (D,);
    optionally the activation-space components (k, H) and mean (H,), and metadata.

    Units of a step (SPEC sections 3-4): sigma_j is the standard deviation of the layer's
    component j. `step` (k,) is the latent distance along u_j that moves component j by one
    sigma_j (sigma_j / ||W_z u_j|| for a layer linear in z; sigma_j times the regression
    coefficient's norm for the sampled estimator), and `latent_sd` (k,) the standard deviation of
    the latent coordinate z . u_j. An "add" step s' moves z by s' * step_j * u_j, so component j
    moves by s' of its standard deviations on every generator; a "set" step s' sets z's
    coordinate along u_j to mu . u_j + s' * latent_sd_j (latent standard deviations, as the
    reference code does)."""

    u: torch.Tensor
    sigma: torch.Tensor
    mu: torch.Tensor
    components: torch.Tensor | None = None
    act_mean: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    step: torch.Tensor | None = None
    latent_sd: torch.Tensor | None = None

    def __post_init__(self):
        # Files written before the step units existed: the SVD estimator's values follow from
        # its metadata (isotropic latents, a linear layer); a sampled file must be recomputed.
        if self.step is None or self.latent_sd is None:
            if self.meta.get("method") == "svd":
                sd = latent_std(self.meta.get("truncation", 1.0))
                fill = torch.full((self.k,), sd, dtype=self.sigma.dtype, device=self.sigma.device)
                self.step = fill.clone() if self.step is None else self.step
                self.latent_sd = fill.clone() if self.latent_sd is None else self.latent_sd

    @property
    def k(self) -> int:
        return int(self.u.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.u.shape[1])

    def to(self, device=None, dtype=None) -> "Directions":
        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype or t.dtype)
        return Directions(mv(self.u), mv(self.sigma), mv(self.mu), mv(self.components),
                          mv(self.act_mean), dict(self.meta), mv(self.step), mv(self.latent_sd))

    def steering_args(self, idx, alpha, mode):
        """(scales, steps) to pass to genint_fast.ops.steer as (sigma, alpha) so that a step
        alpha (B, m) in standard-deviation units means what the class docstring says."""
        if self.step is None or self.latent_sd is None:
            raise ValueError("these directions carry no step units (a sampled directions file "
                             "from an older genint-fast); recompute them with `genint-fast "
                             "directions`")
        if mode == "add":
            return self.step, alpha
        return None, alpha * self.latent_sd.to(alpha.dtype)[idx]

    def random_like(self, seed=0) -> "Directions":
        """GANSpace's control: k random unit directions in latent space with this object's
        step units (the step of direction j is kept), mu and metadata."""
        g = torch.Generator().manual_seed(int(seed))
        u = torch.randn(self.k, self.latent_dim, generator=g, dtype=torch.float64)
        u = (u / u.norm(dim=1, keepdim=True)).to(self.u.dtype).to(self.u.device)
        meta = dict(self.meta, control="random-directions", control_seed=int(seed))
        return Directions(u, self.sigma.clone(), self.mu.clone(), None, None, meta,
                          None if self.step is None else self.step.clone(),
                          None if self.latent_sd is None else self.latent_sd.clone())

    def check_compatible(self, generator: ConditionalGenerator, source="directions") -> None:
        """ValueError unless these directions were computed for this generator (id, layer,
        latent size, and the layer's weights, compared to 1%)."""
        m = self.meta
        problems = []
        if m.get("generator_id") != generator.generator_id:
            problems.append(f"generator {m.get('generator_id')!r} != {generator.generator_id!r}")
        if m.get("layer") != generator.direction_layer:
            problems.append(f"layer {m.get('layer')!r} != {generator.direction_layer!r}")
        if self.latent_dim != generator.latent_dim:
            problems.append(f"latent size {self.latent_dim} != {generator.latent_dim}")
        fp = m.get("fingerprint")
        if not problems and fp is not None and not _same_fingerprint(fp, generator.fingerprint()):
            problems.append("the layer's weights differ")
        if problems:
            raise ValueError(
                f"{source} do not match generator {generator.generator_id!r} "
                f"({'; '.join(problems)}); recompute them with `genint-fast directions "
                f"--generator <this generator> --out <file>`")


def _same_fingerprint(a, b, rtol=1e-2) -> bool:
    if len(a) != len(b):
        return False
    for (na, sa, norm_a, sum_a), (nb, sb, norm_b, sum_b) in zip(a, b):
        if na != nb or list(sa) != list(sb):
            return False
        scale = max(abs(norm_a), abs(norm_b), 1e-12)
        if abs(norm_a - norm_b) > rtol * scale or abs(sum_a - sum_b) > rtol * scale:
            return False
    return True


def _meta(generator, *, k, n_samples, method, seed, truncation, class_id):
    return {
        "format": FORMAT, "generator_id": generator.generator_id,
        "layer": generator.direction_layer, "latent_dim": generator.latent_dim, "k": k,
        "n_samples": n_samples, "method": method, "seed": seed, "truncation": truncation,
        "class_id": class_id, "fingerprint": generator.fingerprint(),
    }


def _check_k(generator, k, limit):
    if not 1 <= int(k) <= limit:
        raise ValueError(f"k must be in [1, {limit}] for {generator.generator_id} "
                         f"(latent size {generator.latent_dim}), got {k}")
    return int(k)


def _thin_svd(W, k):
    """Top-k singular triplets of a tall (H, D) float64 matrix, H >> D, through the D x D Gram
    matrix: eigh(W^T W) gives V and s^2, then U = W V / s. In float64 the squared condition
    number costs nothing that matters for the leading directions, and it is several times
    faster than a full thin SVD of the (H, D) matrix."""
    evals, V = torch.linalg.eigh(W.T @ W)
    order = torch.argsort(evals, descending=True)[:k]
    S = evals[order].clamp_min(0).sqrt()
    V = V[:, order]
    U = (W @ V) / S.clamp_min(torch.finfo(W.dtype).tiny)
    return U, S, V.T


@torch.no_grad()
def discover_svd(generator: ConditionalGenerator, k=80, *, truncation=1.0,
                 class_id=0) -> Directions:
    """Exact GANSpace directions of a layer affine in z: one SVD of its z-block."""
    t = check_truncation(truncation)
    W = generator.linear_z_map()
    if W is None:
        raise ValueError(f"layer {generator.direction_layer!r} of {generator.generator_id} is "
                         f"not linear in z; use the sampled estimator (--method sampled)")
    k = _check_k(generator, k, min(W.shape))
    U, S, Vh = _thin_svd(W.to("cpu", torch.float64), k)
    y = torch.full((1,), int(class_id), dtype=torch.long, device=generator.device)
    zero = torch.zeros(1, generator.latent_dim, device=generator.device)
    act_mean = generator.layer_activations(zero, y, t)[0].float().cpu()
    return Directions(
        u=Vh[:k].float().contiguous(),
        sigma=(latent_std(t) * S[:k]).float(),
        mu=torch.zeros(generator.latent_dim),
        components=U[:, :k].T.float().contiguous(),
        act_mean=act_mean,
        meta=_meta(generator, k=k, n_samples=0, method="svd", seed=None, truncation=t,
                   class_id=int(class_id)),
        # sigma_j = sd * S_j and the gain of v_j is S_j: one sigma_j is sd in latent units.
        step=torch.full((k,), latent_std(t)),
        latent_sd=torch.full((k,), latent_std(t)),
    )


@torch.no_grad()
def discover_sampled(generator: ConditionalGenerator, k=80, n_samples=100_000, *,
                     truncation=1.0, class_id=0, batch_size=1000, seed=0, incremental=None,
                     max_memory_bytes=1 << 30, blas_threads=None,
                     progress=None) -> Directions:
    """GANSpace's sampled estimator (the general path and the test of the SVD shortcut).

    class_id: the class all samples share (directions transfer across classes; SPEC 3), or None
    to draw classes uniformly. incremental: force IncrementalPCA (True) or PCA (False); by
    default IncrementalPCA is used when N x H float32 activations exceed max_memory_bytes.
    blas_threads: cap scikit-learn's BLAS threads (threadpoolctl) while fitting; on a shared,
    oversubscribed machine multi-threaded OpenBLAS can be 10-20x slower than one thread.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return _discover_sampled(generator, k, n_samples, truncation=truncation,
                                 class_id=class_id, batch_size=batch_size, seed=seed,
                                 incremental=incremental, max_memory_bytes=max_memory_bytes,
                                 progress=progress)


def _fit_incremental(batches, k):
    """IncrementalPCA over two passes of batches(): fit, then transform. Returns (pca, Z,
    coords)."""
    from sklearn.decomposition import IncrementalPCA

    # IncrementalPCA does one SVD of (k + b) x H per batch of b rows: cost per row is
    # about (k + b)^2 / b, smallest near b = k; we feed it chunks of max(2k, 256) rows
    # (fewer calls where k is small: each call has a fixed overhead).
    chunk = max(2 * k, 256)
    pca = IncrementalPCA(n_components=k)
    zs, buf, held = [], [], 0
    for z, acts in batches():
        zs.append(z)
        buf.append(acts)
        held += acts.shape[0]
        if held >= 2 * chunk:
            block = np.concatenate(buf)
            start = 0
            while held - start >= 2 * chunk:  # leave >= chunk rows for the end
                pca.partial_fit(block[start:start + chunk])
                start += chunk
            buf, held = [block[start:].copy()], held - start
    if held:
        pca.partial_fit(np.concatenate(buf))  # the rest: >= chunk rows, or all N >= k
    Z = np.concatenate(zs)
    coords = np.concatenate([pca.transform(acts) for _, acts in batches()])
    return pca, Z, coords


def _fit_in_memory(batches, k, seed):
    """PCA of all activations held at once. Returns (pca, Z, coords)."""
    from sklearn.decomposition import PCA

    zs, acts_all = zip(*batches())
    Z, X = np.concatenate(zs), np.concatenate(acts_all)
    pca = PCA(n_components=k, svd_solver="auto", random_state=int(seed)).fit(X)
    return pca, Z, pca.transform(X)


def _regressed_directions(pca, Z, coords, meta) -> Directions:
    """Least squares z ~ coords (both centred): coefficient matrix B (k, D); u_j its
    normalised rows."""
    A = torch.from_numpy(coords).double()
    Zt = torch.from_numpy(Z).double()
    mu = Zt.mean(0)
    B = torch.linalg.lstsq(A - A.mean(0), Zt - mu).solution
    norms = B.norm(dim=1, keepdim=True).clamp_min(1e-30)
    u = B / norms
    sigma = torch.from_numpy(np.sqrt(pca.explained_variance_)).double()
    return Directions(
        u=u.float().contiguous(),
        sigma=sigma.float(),
        mu=mu.float(),
        components=torch.from_numpy(pca.components_).float().contiguous(),
        act_mean=torch.from_numpy(pca.mean_).float(),
        meta=meta,
        # Moving coordinate j by one sigma_j moves z by sigma_j * B_j (regression of z on the
        # coordinates); latent_sd_j: the spread of the sampled latents along u_j.
        step=(sigma * norms[:, 0]).float(),
        latent_sd=((Zt - mu) @ u.T).std(dim=0).float(),
    )


def _discover_sampled(generator, k, n_samples, *, truncation, class_id, batch_size, seed,
                      incremental, max_memory_bytes, progress):
    t = check_truncation(truncation)
    n = int(n_samples)
    if n < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = generator.device
    rng = torch.Generator(device=device).manual_seed(int(seed))

    def batches():
        # The same seed replays the same latents: the incremental path passes twice.
        rng.manual_seed(int(seed))
        done = 0
        while done < n:
            b = min(batch_size, n - done)
            z = truncated_latents(b, generator.latent_dim, t, generator=rng, device=device)
            if class_id is None:
                y = torch.randint(generator.num_classes, (b,), generator=rng, device=device)
            else:
                y = torch.full((b,), int(class_id), dtype=torch.long, device=device)
            acts = generator.layer_activations(z, y, t).float().cpu().numpy()
            yield z.float().cpu().numpy(), acts
            done += b
            if progress is not None:
                progress(done, n)

    y0 = torch.zeros(1, dtype=torch.long, device=device)
    H = generator.layer_activations(truncated_latents(1, generator.latent_dim, t, device=device),
                                    y0, t).shape[1]
    k = _check_k(generator, k, min(generator.latent_dim, H, n))
    if incremental is None:
        incremental = n * H * 4 > max_memory_bytes
    if incremental:
        pca, Z, coords = _fit_incremental(batches, k)
    else:
        pca, Z, coords = _fit_in_memory(batches, k, seed)
    meta = _meta(generator, k=k, n_samples=n, method="incremental-pca" if incremental else "pca",
                 seed=int(seed), truncation=t, class_id=class_id)
    return _regressed_directions(pca, Z, coords, meta)


def discover(generator, k=80, *, method="auto", **kwargs) -> Directions:
    """method: "svd" (exact, needs a layer linear in z), "sampled", or "auto" (svd where the
    layer is linear in z, else sampled)."""
    if method not in ("auto", "svd", "sampled"):
        raise ValueError(f'method must be "auto", "svd" or "sampled", got {method!r}')
    if method == "auto":
        method = "svd" if generator.linear_z_map() is not None else "sampled"
    if method == "svd":
        kw = {key: kwargs[key] for key in ("truncation", "class_id") if key in kwargs}
        return discover_svd(generator, k, **kw)
    return discover_sampled(generator, k, **kwargs)


# ---------------------------------------------------------------------------- persistence
def save_directions(d: Directions, path) -> Path:
    """safetensors file; metadata values are JSON strings."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"u": d.u, "sigma": d.sigma, "mu": d.mu}
    for name in ("step", "latent_sd"):
        if getattr(d, name) is not None:
            tensors[name] = getattr(d, name)
    if d.components is not None:
        tensors["components"] = d.components
    if d.act_mean is not None:
        tensors["act_mean"] = d.act_mean
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    meta = {key: json.dumps(value) for key, value in d.meta.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_directions(path, generator: ConditionalGenerator | None = None, *,
                    device=None) -> Directions:
    """Load a directions file; with `generator`, refuse one computed for another generator."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no directions file at {path}; make one with "
                                f"`genint-fast directions --generator ... --out {path}`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw_meta = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception as exc:
        raise ValueError(f"{path} is not a readable safetensors directions file ({exc})") from None
    try:
        meta = {key: json.loads(value) for key, value in raw_meta.items()}
    except json.JSONDecodeError:
        meta = {}
    if meta.get("format") != FORMAT or not {"u", "sigma", "mu"} <= set(tensors):
        raise ValueError(f"{path} is not a genint-fast directions file")
    d = Directions(tensors["u"], tensors["sigma"], tensors["mu"], tensors.get("components"),
                   tensors.get("act_mean"), meta, tensors.get("step"), tensors.get("latent_sd"))
    if d.u.dim() != 2 or d.sigma.shape != (d.k,) or d.mu.shape != (d.latent_dim,) or \
            not all(math.isfinite(v) for v in d.sigma.tolist()) or \
            any(t is not None and t.shape != (d.k,) for t in (d.step, d.latent_sd)):
        raise ValueError(f"{path} holds inconsistent direction tensors")
    if generator is not None:
        d.check_compatible(generator, source=f"directions in {path}")
    if device is not None:
        d = d.to(device)
    return d
