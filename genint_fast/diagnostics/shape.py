"""Shape consistency of CGN counterfactuals: does the shape mechanism draw the asked class?

A shape-only reader (a small CNN trained on colour-free digit masks from the benchmark's train
pool, never used to train any classifier) reads the mask of each counterfactual; the share read as
the asked shape class is the mechanism's class consistency. A counterfactual-trained classifier can
only learn real shapes as well as this reader recognises the CGN's shapes as their classes, so the
number explains a CGN result that falls short.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["digit_shapes", "fit_reader", "train_shape_reader", "cached_shape_reader",
           "shape_consistency", "shape_check", "mask_transfer", "shape_diversity",
           "cgn_shape_diversity"]


def digit_shapes(split="train", n=4000, seed=0, shapes="mnist"):
    """(N, 3, 32, 32) colour-free digit masks in [0, 1] (white strokes on black, placed like the
    benchmark places them) and labels, from the benchmark's train or test shape pool."""
    from ..data.shapes import digit_masks, place_masks, shape_pools

    _, targets = digit_masks(shapes)
    pool = shape_pools(seed, shapes)["train" if split == "train" else "test"]
    rng = np.random.Generator(np.random.PCG64([seed, 0x5A4E]))
    src = pool[rng.integers(0, pool.size, n)]
    out = place_masks(src, rng, shapes)
    x = torch.from_numpy(np.ascontiguousarray(out))[:, None].expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(targets[src])


def fit_reader(x, y, steps, batch_size=64, seed=0, shift=0, num_classes=10):
    """A measuring net: a SmallCNN(num_classes) fitted to images x in [0, 1] and labels y with Adam
    (lr 3e-3), seeded; shift > 0 rolls each batch by up to +-shift pixels so the net does not
    depend on where the digit sits. Returned in eval()."""
    from ..classifier.models import SmallCNN

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(int(steps)):
        idx = torch.randint(x.shape[0], (batch_size,), generator=g)
        xb = x[idx]
        if shift:
            dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(net((xb - 0.5) / 0.5), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def train_shape_reader(steps=300, batch_size=64, seed=0):
    """A SmallCNN trained on colour-free train-pool digits; returns (reader in eval(), its
    top-1 on colour-free test-pool digits)."""
    x, y = digit_shapes("train", seed=seed)
    xt, yt = digit_shapes("test", n=1000, seed=seed)
    reader = fit_reader(x, y, steps, batch_size, seed)
    with torch.no_grad():
        acc = (reader((xt - 0.5) / 0.5).argmax(1) == yt).float().mean().item()
    return reader, acc


def cached_shape_reader(path, steps=1500, seed=0, log=None):
    """train_shape_reader, cached in `path` (keyed by steps and seed): (reader, its accuracy)."""
    from pathlib import Path

    from ..io import save_atomic

    path = Path(path)
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("steps") == steps and blob.get("seed") == seed:
            from ..classifier.models import SmallCNN

            reader = SmallCNN(10)
            reader.load_state_dict(blob["state"])
            return reader.eval(), float(blob["accuracy"])
    if log:
        log(f"  training the shape reader ({steps} steps) -> {path}")
    reader, acc = train_shape_reader(steps=steps, seed=seed)
    save_atomic({"state": reader.state_dict(), "accuracy": acc, "steps": steps, "seed": seed},
                path)
    return reader, acc


@torch.no_grad()
def shape_consistency(cgn, reader, n=1000, seed=0, digit_to_class=None) -> float:
    """Share of CGN masks (uniformly drawn classes) that `reader` reads as their class;
    `digit_to_class` maps the reader's digit to the CGN's class where they differ (cmnist)."""
    m, y = _cgn_masks(cgn, n, seed)
    read = reader((m - 0.5) / 0.5).argmax(1)
    if digit_to_class is not None:
        read = digit_to_class(read)
    return (read == y).float().mean().item()


def shape_check(reader, variant):
    """cgn -> shape_consistency(cgn, reader) on a built-in digits variant, cmnist's digit ranges
    (0-4, 5-9) mapped to its two classes: what train_cgn_checked's shape_check asks for."""
    from ..data.benchmark import canonical_variant

    to_class = (lambda d: (d >= 5).long()) if canonical_variant(variant) == "cmnist" else None
    return lambda cgn: shape_consistency(cgn, reader, digit_to_class=to_class)


@torch.no_grad()
def _cgn_masks(cgn, n, seed):
    """n CGN masks of uniformly drawn classes, (n, 3, H, W) on the CPU, and their classes."""
    g = torch.Generator(device=cgn.device).manual_seed(seed)
    y = torch.randint(cgn.num_classes, (n,), generator=g, device=cgn.device)
    m = cgn.eval().mask(cgn.sample_noise(n, g), y).expand(-1, 3, -1, -1)
    return m.cpu().contiguous(), y.cpu()


def mask_transfer(cgn, steps=750, n=4000, seed=0, test_n=1000, digit_to_class=None, real=True,
                  fits=3):
    """How well the CGN's shapes stand in for real ones: a SmallCNN fitted to n CGN masks (as
    their asked classes; the shape reader's recipe, same steps) reads colour-free test-pool digits.
    Returns (that accuracy, the same net fitted to n real train-pool digits instead, or None when
    real is False). Shape consistency asks whether each mask is its class; this asks whether the
    masks cover the real shapes' variety: a classifier trained on counterfactuals alone reads real
    digits no better. One fit on CGN masks varies by a few points with its seed (one colored
    CGN, 9000 steps: 79.8 / 88.2 / 89.2% for seeds 0 / 1 / 2), so the CGN part is the mean of
    `fits` fits (seeds seed, seed + 1, ...; masks drawn anew for each); the real part is one fit
    (95.6% at 750 steps).
    A diagnostic only; nothing is chosen on it."""
    xt, yt = digit_shapes("test", n=test_n, seed=seed)
    if digit_to_class is not None:
        yt = digit_to_class(yt)

    def read(xs, ys, fit_seed):
        net = fit_reader(xs, ys, steps, seed=fit_seed, num_classes=cgn.num_classes)
        with torch.no_grad():
            return (net((xt - 0.5) / 0.5).argmax(1) == yt).float().mean().item()

    fake = sum(read(*_cgn_masks(cgn, n, seed + i), seed + i) for i in range(fits)) / fits
    if not real:
        return fake, None
    xr, yr = digit_shapes("train", n=n, seed=seed)
    return fake, read(xr, digit_to_class(yr) if digit_to_class is not None else yr, seed)


def shape_diversity(masks, labels, per_class=200, num_classes=10) -> float:
    """Mean pairwise 1 - IoU of the binarised (> 0.5) masks within each class, averaged over the
    classes that have at least two (the first `per_class` of each): 0 when a class's masks are all
    the same shape, higher the more they differ. Compare a CGN's masks with real digit shapes:
    fewer styles per class show as a lower value (thinner strokes raise it, so read it beside the
    mask mean)."""
    per = []
    for c in range(num_classes):
        b = (masks[labels == c][:per_class, 0].flatten(1) > 0.5).float()
        n = b.shape[0]
        if n < 2:
            continue
        inter = b @ b.T
        area = b.sum(1)
        iou = inter / (area[:, None] + area[None] - inter).clamp(min=1)
        per.append(((1 - iou).sum() / (n * (n - 1))).item())   # the diagonal adds 0
    return sum(per) / len(per) if per else float("nan")


def cgn_shape_diversity(cgn, n=4000, seed=0) -> tuple[float, float]:
    """(shape_diversity of n CGN masks, of n real train-pool digit shapes)."""
    x, y = _cgn_masks(cgn, n, seed)
    xr, yr = digit_shapes("train", n=n, seed=seed)
    return (shape_diversity(x, y, num_classes=cgn.num_classes),
            shape_diversity(xr, yr, num_classes=cgn.num_classes))
