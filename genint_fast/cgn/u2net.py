"""U^2-Net (Qin et al. 2020), the frozen salient-object model of the large-image CGN (CGN.md).

The architecture is written here from the paper's description; parameter and buffer names follow
the published U-2-Net repository (xuebinqin/U-2-Net, model/u2net.py) so that its checkpoints
(u2net.pth, ~44 M parameters, 176 MB; u2netp.pth, ~1.1 M parameters, 4.7 MB) load with a strict
key check:

    REBNCONV  conv_s1 (3x3 conv, dilation d) -> bn_s1 -> ReLU
    RSU-L     rebnconvin, rebnconv1 .. rebnconv{L} (2x2 max-pool, ceil mode, after 1 .. L-2; the
              last one dilated by 2), decoder rebnconv{L-1}d .. rebnconv1d, residual hx1d + hxin
    RSU-4F    rebnconvin, rebnconv1..4 with dilations 1, 2, 4, 8, rebnconv3d/2d/1d (4, 2, 1)
    U2NET     stage1..stage6 (encoder), stage5d..stage1d (decoder), side1..side6 (3x3 convs to
              one channel), outconv (1x1 conv fusing the six side maps into d0)

Upsampling is bilinear to the size of the skip connection (align_corners=False), as in the
repository's current `_upsample_like`.

Input and output (both models): `forward(x)` takes RGB images in [-1, 1] (the generators' range)
and returns the saliency map sigmoid(d0), shape (B, 1, H, W), values in (0, 1). It applies the
repository's test-time normalisation itself: x01 = (x + 1) / 2, divided by its per-image
maximum (ToTensorLab: image / max(image)), then ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225). (The repository also resizes to 320x320 before inference; set
`input_size=320` for that; the CGN reference feeds the 256x256 generator output as it is and
skips the normalisation altogether, a documented difference.) `side_outputs(x_normalised)` gives
the seven raw logit maps (d0, d1, .., d6) for inputs already normalised.

load_u2net(path) builds the model, checks the file's keys strictly and freezes it. The weights are
never downloaded: the user provides u2net.pth (the U-2-Net repository's README links it).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["REBNCONV", "RSU", "RSU4F", "U2NET", "U2NETP", "load_u2net", "U2NET_KINDS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _up_to(src, ref):
    return F.interpolate(src, size=ref.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 conv (dilation d, 'same' padding) + batch norm + ReLU."""

    def __init__(self, in_ch=3, out_ch=3, dirate=1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height L (RSU-7, -6, -5, -4): a small U-Net with L - 2 poolings whose
    output is added to its input convolution."""

    def __init__(self, height, in_ch, mid_ch, out_ch):
        super().__init__()
        if height < 3:
            raise ValueError(f"RSU height must be >= 3, got {height}")
        self.height = int(height)
        self.rebnconvin = REBNCONV(in_ch, out_ch, 1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, 1)
        for i in range(2, height):
            self.add_module(f"rebnconv{i}", REBNCONV(mid_ch, mid_ch, 1))
        self.add_module(f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, 2))
        for i in range(height - 1, 1, -1):
            self.add_module(f"rebnconv{i}d", REBNCONV(2 * mid_ch, mid_ch, 1))
        self.rebnconv1d = REBNCONV(2 * mid_ch, out_ch, 1)

    def forward(self, x):
        L = self.height
        hxin = self.rebnconvin(x)
        skips = []
        h = hxin
        for i in range(1, L):           # encoder levels 1 .. L-1, pooling after 1 .. L-2
            h = getattr(self, f"rebnconv{i}")(h)
            skips.append(h)
            if i < L - 1:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        d = getattr(self, f"rebnconv{L}")(h)   # dilated bottom, same size as level L-1
        for i in range(L - 1, 0, -1):
            d = getattr(self, f"rebnconv{i}d")(torch.cat((d, skips[i - 1]), 1))
            if i > 1:
                d = _up_to(d, skips[i - 2])
        return d + hxin


class RSU4F(nn.Module):
    """RSU-4 with dilated convolutions (1, 2, 4, 8) instead of pooling (the coarse stages)."""

    def __init__(self, in_ch, mid_ch, out_ch):
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, 1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, 1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, 2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, 4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, 8)
        self.rebnconv3d = REBNCONV(2 * mid_ch, mid_ch, 4)
        self.rebnconv2d = REBNCONV(2 * mid_ch, mid_ch, 2)
        self.rebnconv1d = REBNCONV(2 * mid_ch, out_ch, 1)

    def forward(self, x):
        hxin = self.rebnconvin(x)
        h1 = self.rebnconv1(hxin)
        h2 = self.rebnconv2(h1)
        h3 = self.rebnconv3(h2)
        h4 = self.rebnconv4(h3)
        d3 = self.rebnconv3d(torch.cat((h4, h3), 1))
        d2 = self.rebnconv2d(torch.cat((d3, h2), 1))
        d1 = self.rebnconv1d(torch.cat((d2, h1), 1))
        return d1 + hxin


def _block(spec):
    kind, in_ch, mid_ch, out_ch = spec
    return RSU4F(in_ch, mid_ch, out_ch) if kind == "4F" else RSU(kind, in_ch, mid_ch, out_ch)


class _U2NetBase(nn.Module):
    """Six-stage encoder, five-stage decoder, six side outputs fused by a 1x1 conv."""

    encoder: tuple = ()
    decoder: tuple = ()
    kind = ""

    def __init__(self, in_ch=3, out_ch=1, input_size=None):
        super().__init__()
        for i, spec in enumerate(self.encoder, start=1):
            kind, _, mid, out = spec
            self.add_module(f"stage{i}", _block((kind, in_ch if i == 1 else spec[1], mid, out)))
        for i, spec in zip(range(5, 0, -1), self.decoder):
            self.add_module(f"stage{i}d", _block(spec))
        side_in = [self.decoder[-1][3]] + [s[3] for s in reversed(self.decoder[:-1])] + \
            [self.encoder[-1][3]]
        for i, c in enumerate(side_in, start=1):
            self.add_module(f"side{i}", nn.Conv2d(c, out_ch, 3, padding=1))
        self.outconv = nn.Conv2d(6 * out_ch, out_ch, 1)
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def side_outputs(self, x):
        """Logits (d0, d1, .., d6), each (B, out_ch, H, W), for normalised inputs x."""
        hs = []
        h = x
        for i in range(1, 7):
            h = getattr(self, f"stage{i}")(h)
            hs.append(h)
            if i < 6:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        dec = {6: hs[5]}
        d = hs[5]
        for i in range(5, 0, -1):
            d = getattr(self, f"stage{i}d")(torch.cat((_up_to(d, hs[i - 1]), hs[i - 1]), 1))
            dec[i] = d
        d1 = self.side1(dec[1])
        sides = [d1] + [_up_to(getattr(self, f"side{i}")(dec[i]), d1) for i in range(2, 7)]
        d0 = self.outconv(torch.cat(sides, 1))
        return (d0, *sides)

    def normalise(self, x):
        """Images in [-1, 1] -> the repository's test-time input (see the module docstring)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"U^2-Net: expected RGB images (B, 3, H, W), got {tuple(x.shape)}")
        x01 = (x + 1.0) * 0.5
        peak = x01.detach().flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
        x01 = x01 / peak
        return (x01 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x):
        size = x.shape[2:]
        h = self.normalise(x)
        if self.input_size is not None and tuple(size) != (self.input_size,) * 2:
            h = F.interpolate(h, size=(self.input_size,) * 2, mode="bilinear",
                              align_corners=False)
        d0 = self.side_outputs(h)[0]
        if d0.shape[2:] != size:
            d0 = F.interpolate(d0, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(d0)


class U2NET(_U2NetBase):
    """The full U^2-Net (~44.0 M parameters)."""

    kind = "u2net"
    encoder = ((7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512),
               ("4F", 512, 256, 512), ("4F", 512, 256, 512))
    decoder = (("4F", 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128),
               (6, 256, 32, 64), (7, 128, 16, 64))


class U2NETP(_U2NetBase):
    """The small U^2-Net (U^2-Net+, ~1.1 M parameters)."""

    kind = "u2netp"
    encoder = ((7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64),
               ("4F", 64, 16, 64), ("4F", 64, 16, 64))
    decoder = (("4F", 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64),
               (6, 128, 16, 64), (7, 128, 16, 64))


U2NET_KINDS = {"u2net": U2NET, "u2netp": U2NETP}
_FILES = {"u2net": "u2net.pth", "u2netp": "u2netp.pth"}


def load_u2net(path, kind="u2net", device="cpu", input_size=None) -> _U2NetBase:
    """A frozen U^2-Net (eval(), requires_grad False) from a state-dict file of the U-2-Net
    repository (or one saved from U2NET(P).state_dict()).

    A missing file is a FileNotFoundError at once; keys are checked strictly (ValueError naming
    the missing and unexpected keys; a uniform 'module.' prefix from DataParallel is removed
    first); a tensor of the wrong shape is a ValueError naming it.
    """
    from ..generators.biggan import KeyReport

    if kind not in U2NET_KINDS:
        raise ValueError(f"unknown U^2-Net kind {kind!r}; choose 'u2net' or 'u2netp'")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"U^2-Net weights file {str(path)!r} does not exist: download {_FILES[kind]} "
            f"(linked from the README of github.com/xuebinqin/U-2-Net; genint-fast never "
            f"downloads it) and pass its path")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read U^2-Net weights {path} ({exc}); the file is not a "
                           f"PyTorch state dict or is damaged") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RuntimeError(f"U^2-Net weights {path} do not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    model = U2NET_KINDS[kind](input_size=input_size)
    want = model.state_dict()
    report = KeyReport(sorted(k for k in want if k not in state),
                       sorted(k for k in state if k not in want))
    if not report.ok:
        raise ValueError(f"U^2-Net weights {path} do not match the {kind} architecture: "
                         f"{report}")
    bad = [k for k in want if tuple(state[k].shape) != tuple(want[k].shape)]
    if bad:
        other = "u2netp" if kind == "u2net" else "u2net"
        raise ValueError(f"U^2-Net weights {path} do not fit the {kind} architecture: {bad[0]} "
                         f"has shape {tuple(state[bad[0]].shape)}, {kind} needs "
                         f"{tuple(want[bad[0]].shape)} (is it a {other} file? pass "
                         f"kind={other!r})")
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    return model.to(device).eval()
