"""Style-transfer interventions (issue 6): batched transfer against a loop of single transfers.

Rows:
- CPU (any device): 64x64 images, the project's small VGG-like feature network (trained on the
  biased digits and cached, genint_fast.features.project_small_vgg), reference losses (poly2
  MMD on conv1_1..conv3_1, content conv2_2, 1e6 / 0.1): one batch of B = 8 pairs against a loop
  of 8 single-pair transfers with the same number of steps, for L-BFGS (reference) and Adam.
  Bar: >= 2x images/s. Content: wildlife digits, style: double-coloured digits (upsampled).
- CUDA only: VGG19 at 256x256, B = 8 batched against the single loop (images/s in the note);
  VGG19 weights from torchvision's cache when present, otherwise random (the time does not
  depend on the values; the note says which).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..features import project_small_vgg, small_vgg, vgg19_features, vgg19_weights_file
from ..transfer import StyleTransfer
from .common import Row, time_fn


def digit_pairs(b, size, device, seed=0):
    """b content images (wildlife digits) and b style images (double-coloured digits), in
    [0, 1] at size x size, with the content labels."""
    from ..data import make_biased_digits

    c = make_biased_digits("wildlife", "test-id", rho=0.5, seed=seed, n=max(b, 10))
    s = make_biased_digits("double-colored", "test-id", rho=0.5, seed=seed + 1, n=max(b, 10))
    up = lambda t: F.interpolate(t[:b].float() / 255, size=(size, size), mode="bilinear",  # noqa: E731
                                 align_corners=False).clamp_(0, 1).to(device)
    return up(c.images), up(s.images), c.labels[:b].to(device)


def _pair_rows(net, name, content, style, steps, device, quick, bar):
    rows = []
    b = content.shape[0]
    for opt in ("lbfgs", "adam"):
        tr = StyleTransfer(net, optimizer=opt, steps=steps)
        batched = lambda: tr(content, style, steps=steps)  # noqa: E731

        def loop():
            for i in range(b):
                tr(content[i:i + 1], style[i:i + 1], steps=steps)

        rep = 2 if quick else 3
        t_b = time_fn(batched, device=device, warmup=1, repeat=rep)
        t_l = time_fn(loop, device=device, warmup=1, repeat=rep)
        note = (f"{steps} steps, {b / t_b:.1f} vs {b / t_l:.1f} images/s")
        rows.append(Row(f"transfer {name} {content.shape[-1]}px B={b} {opt}",
                        f"loop of {b} single transfers", t_b, t_l, bar=bar, note=note))
    return rows


def run(device="cpu", quick=False):
    device = torch.device(device)
    rows = []
    steps = 5 if quick else 20
    net = project_small_vgg(device=device)
    content, style, _ = digit_pairs(8, 64, device)
    rows += _pair_rows(net, "small-vgg", content, style, steps, device, quick, bar=2.0)
    if device.type == "cuda":
        have = vgg19_weights_file().is_file()
        vgg = vgg19_features("cache" if have else None, device=device)
        content, style, _ = digit_pairs(8, 256, device)
        for r in _pair_rows(vgg, "vgg19", content, style, steps, device, quick, bar=None):
            r.note += f", {'cached ImageNet' if have else 'random'} VGG19 weights"
            rows.append(r)
    return rows


__all__ = ["run", "digit_pairs", "small_vgg"]
