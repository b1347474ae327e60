"""The paper's analysis tools for any generator and data (SPEC section 8).

Nuisance-label correlation (paper section 3.1): a predictor learns the nuisance record of
intervened images (the latent's coordinates along the intervention directions, in latent standard
deviations: what the intervention set); applied to the images of a dataset D, its predictions
are the nuisance D's images show. A linear classifier from the predicted nuisance to the label,
scored by 5-fold cross-validation on D, says how much the nuisance tells about the label in D:
accuracy / chance ("times better than chance"); 1 means no nuisance-label correlation left.

Causal-bound score (paper section 5.4): log P(x | z) for held-out real images x and a generation
strategy z (truncation, top-k, scale, ...): P(x_i | x'_j) a Gaussian kernel on features between
the real image x_i and generated image x'_j, P(x'_j | z) = 1 / M for M generated images, so the
score is the mean over i of log (1/M sum_j k(x_i, x'_j)), a kernel density estimate of the real
images under the strategy's images. The bandwidth is fixed once (the median heuristic on real vs
observational images) so that scores of different strategies compare. Larger is better.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["nuisance_coordinates", "train_nuisance_predictor", "correlation_score",
           "bound_features", "causal_bound_score", "median_bandwidth"]


def _prep(images, size=32):
    x = images.float().clamp(0, 1)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return (x - 0.5) / 0.5


def nuisance_coordinates(z_star, directions, top_k) -> torch.Tensor:
    """(B, top_k): the steered latents' coordinates along the first top_k directions, centred
    on mu and in latent standard deviations."""
    d = directions
    u = d.u[:top_k].to(z_star.device, torch.float32)
    mu = d.mu.to(z_star.device, torch.float32)
    sd = d.latent_sd[:top_k].to(z_star.device, torch.float32)
    return ((z_star.float() - mu) @ u.T) / sd


def train_nuisance_predictor(sampler, *, steps=400, batch_size=64, seed=0, log=None):
    """A SmallCNN regressing the nuisance coordinates of the sampler's intervened images (MSE).
    Returns the predictor in eval() (CPU)."""
    from ..classifier.models import SmallCNN

    k = sampler.top_k
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(k)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for step in range(int(steps)):
        images, _, rec = sampler.sample(batch_size)
        target = nuisance_coordinates(rec.z_star, sampler.directions, k).cpu()
        x = _prep(((images.float() + 1) / 2).cpu())
        loss = F.mse_loss(net(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log is not None and (step + 1) % max(int(steps) // 4, 1) == 0:
            log(f"  nuisance predictor step {step + 1}/{steps}: mse {loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def _predict(net, images, batch_size=500):
    return torch.cat([net(_prep(images[i:i + batch_size].cpu()))
                      for i in range(0, images.shape[0], batch_size)])


def correlation_score(predictor, images, labels, *, seed=0) -> dict:
    """Predicted nuisance of images (in [0, 1]) -> label with a logistic regression, 5-fold
    cross-validated: {"accuracy", "chance" (the largest class share), "times_chance", "n"}."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = _predict(predictor, images).numpy()
    y = labels.cpu().numpy()
    counts = torch.bincount(labels.cpu())
    chance = float(counts.max()) / float(labels.numel())
    folds = min(5, int(counts[counts > 0].min()))
    if folds < 2:
        raise ValueError("correlation_score needs at least 2 images of every class present")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    acc = float(cross_val_score(clf, feats, y, cv=StratifiedKFold(folds, shuffle=True,
                                                                  random_state=seed)).mean())
    return {"accuracy": acc, "chance": chance, "times_chance": acc / chance,
            "n": int(labels.numel())}


def bound_features(images, size=16) -> torch.Tensor:
    """The features of the bound's kernel: images in [0, 1], area-averaged to size x size,
    flattened (a pixel-space kernel that needs no trained network)."""
    x = images.float().clamp(0, 1).cpu()
    return F.adaptive_avg_pool2d(x, size).flatten(1)


def median_bandwidth(a, b) -> float:
    """Median heuristic: the median pairwise distance between feature sets a and b."""
    return float(torch.cdist(a, b).median())


def causal_bound_score(real_features, generated_features, bandwidth) -> float:
    """mean_i log (1/M sum_j exp(-||f(x_i) - f(x'_j)||^2 / (2 h^2))) for real features (N, F)
    and generated features (M, F): the estimate of log P(x | z) (larger = tighter bound)."""
    h2 = 2.0 * float(bandwidth) ** 2
    d2 = torch.cdist(real_features.double(), generated_features.double()).pow(2)
    m = generated_features.shape[0]
    return float((torch.logsumexp(-d2 / h2, dim=1) - math.log(m)).mean())
