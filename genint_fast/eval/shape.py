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

__all__ = ["digit_shapes", "train_shape_reader", "shape_consistency"]


def digit_shapes(split="train", n=4000, seed=0):
    """(N, 3, 32, 32) colour-free digit masks in [0, 1] (white strokes on black, placed at
    random offsets like the benchmark) and labels, from the benchmark's train or test pool."""
    from ..data.digits import SIZE, _DIGIT_BOX, _digit_masks, _pools

    masks, targets = _digit_masks()
    train_pool, test_pool = _pools(seed)
    pool = train_pool if split == "train" else test_pool
    rng = np.random.Generator(np.random.PCG64([seed, 0x5A4E]))
    src = pool[rng.integers(0, pool.size, n)]
    off = rng.integers(0, SIZE - _DIGIT_BOX + 1, (n, 2))
    out = np.zeros((n, SIZE, SIZE), np.float32)
    for i, (s, (r, c)) in enumerate(zip(src, off)):
        out[i, r:r + _DIGIT_BOX, c:c + _DIGIT_BOX] = masks[s]
    x = torch.from_numpy(out)[:, None].expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(targets[src])


def train_shape_reader(steps=300, batch_size=64, seed=0):
    """A SmallCNN trained on colour-free train-pool digits; returns (reader in eval(), its
    top-1 on colour-free test-pool digits)."""
    from ..train.models import SmallCNN

    x, y = digit_shapes("train", seed=seed)
    xt, yt = digit_shapes("test", n=1000, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reader = SmallCNN(10)
    opt = torch.optim.Adam(reader.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    reader.train()
    for _ in range(int(steps)):
        idx = torch.randint(x.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(reader((x[idx] - 0.5) / 0.5), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    reader.eval()
    with torch.no_grad():
        acc = (reader((xt - 0.5) / 0.5).argmax(1) == yt).float().mean().item()
    return reader, acc


@torch.no_grad()
def shape_consistency(cgn, reader, n=1000, seed=0) -> float:
    """Share of CGN masks (uniformly drawn classes) that `reader` reads as their class."""
    g = torch.Generator(device=cgn.device).manual_seed(seed)
    y = torch.randint(cgn.num_classes, (n,), generator=g, device=cgn.device)
    m = cgn.eval().mask(cgn.sample_noise(n, g), y).expand(-1, 3, -1, -1).cpu()
    return (reader((m - 0.5) / 0.5).argmax(1) == y.cpu()).float().mean().item()
