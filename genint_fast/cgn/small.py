"""Small-image CGN (32x32): shape, texture and background mechanisms and their discriminators.

Layout of the published small CGN (../shared/CGN.md): one label embedding shared by the three
mechanisms; each mechanism maps cat(u, embed(y)) (noise u ~ N(0, I)) to an image:

- shape: a mask m, normalised per image (instance norm) and clamped to [1e-4, 0.9999] (no
  sigmoid), so it lies in (0, 1);
- foreground texture f and background b: RGB through tanh, then the *shuffler*: a random cyclic
  shift per sample, so that a texture keeps its statistics but cannot line up with the mask and
  so cannot carry shape;
- composite x = m * f + (1 - m) * b.

With bg_crop = k > 0 (not the reference) the background mechanism draws (32 + k)^2 pixels and a
random 32x32 window is cut out instead of the cyclic shift: the window cannot line up with the
mask either, and a background whose pattern does not tile a 32-pixel torus needs no seam.

Discriminators: an MLP on cat(flattened image, label embedding) (colour variants) or a small conv
net with the label as a fourth input plane (textures).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..cgn_config import DISCRIMINATORS, CGNConfig  # the settings live torch-free
from ..layers import NearestUpConv2d

__all__ = ["CGNConfig", "DISCRIMINATORS", "SmallCGN", "MLPDiscriminator", "ConvDiscriminator",
           "shuffle_texture", "crop_texture", "composite", "build_discriminator", "MASK_MIN",
           "MASK_MAX", "CGNOutput"]

MASK_MIN, MASK_MAX = 1e-4, 0.9999


@dataclass
class CGNOutput:
    mask: torch.Tensor        # (B, 1, H, W) in (0, 1)
    foreground: torch.Tensor  # (B, 3, H, W) in [-1, 1], shuffled
    background: torch.Tensor  # (B, 3, H, W) in [-1, 1], shuffled
    image: torch.Tensor       # (B, 3, H, W) composite in [-1, 1]


def shuffle_texture(x: torch.Tensor, generator: torch.Generator | None = None,
                    shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Cyclic shift of each sample by its own random (dy, dx): the reference's "tile 2x2 and take
    a random crop" exactly. `shifts` (B, 2) int64 may be given instead of drawing them."""
    b, _, h, w = x.shape
    if shifts is None:
        shifts = torch.stack([torch.randint(h, (b,), generator=generator, device=x.device),
                              torch.randint(w, (b,), generator=generator, device=x.device)], 1)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[:, :1]) % h     # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[:, 1:]) % w     # (B, W)
    x = x.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, w))
    return x.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], h, -1))


def crop_texture(x: torch.Tensor, size: int, generator: torch.Generator | None = None,
                 offsets: torch.Tensor | None = None) -> torch.Tensor:
    """A random size x size window of each sample (no wrap-around); `offsets` (B, 2) int64
    may be given instead of drawing them."""
    b, _, h, w = x.shape
    if offsets is None:
        offsets = torch.stack([torch.randint(h - size + 1, (b,), generator=generator,
                                             device=x.device),
                               torch.randint(w - size + 1, (b,), generator=generator,
                                             device=x.device)], 1)
    ar = torch.arange(size, device=x.device)
    rows = ar[None, :] + offsets[:, :1]                                       # (B, size)
    cols = ar[None, :] + offsets[:, 1:]
    x = x.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, w))
    return x.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], size, -1))


def composite(mask, foreground, background):
    """x = m * f + (1 - m) * b."""
    return mask * foreground + (1.0 - mask) * background


def _up_block(cin, cout):
    # index 0 stays a (parameter-free) module so that the state dict keys keep their numbers:
    # the upsampling happens inside NearestUpConv2d
    return [nn.Identity(), NearestUpConv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]


class _Mechanism(nn.Module):
    """Linear(noise + embedding -> ch x base x base; base 8 for a 32x32 output) followed by a
    convolutional body."""

    def __init__(self, cfg: CGNConfig, body: list, norm_first: bool, base: int = 8):
        super().__init__()
        self.ch, self.base = cfg.ch, base
        self.fc = nn.Linear(cfg.noise_dim + cfg.embed_dim, cfg.ch * base * base)
        self.norm = nn.InstanceNorm2d(cfg.ch) if norm_first else nn.Identity()
        self.body = nn.Sequential(*body)

    def forward(self, h):
        return self.body(self.norm(self.fc(h).view(h.shape[0], self.ch, self.base, self.base)))


class SmallCGN(nn.Module):
    """The three mechanisms. forward(u, y) is the factual forward (the same noise and class feed
    all three); counterfactual(...) draws each mechanism from its own class and noise."""

    def __init__(self, config: CGNConfig | None = None):
        super().__init__()
        c = config or CGNConfig()
        self.config = c
        self.num_classes, self.noise_dim, self.image_size = c.num_classes, c.noise_dim, 32
        self.embed = nn.Embedding(c.num_classes, c.embed_dim)
        half = max(c.ch // 2, 1)
        self.shape = _Mechanism(c, _up_block(c.ch, half) + [nn.InstanceNorm2d(half)]
                                + _up_block(half, 1) + [nn.InstanceNorm2d(1)], norm_first=True)

        def texture(base=8):
            out_norm = [nn.BatchNorm2d(3)] if c.out_batchnorm else []
            return _Mechanism(c, _up_block(c.ch, c.ch) + _up_block(c.ch, half) + [
                nn.Conv2d(half, 3, 3, padding=1), *out_norm, nn.Tanh()], norm_first=False,
                base=base)

        self.texture = texture()
        self.background = texture(8 + int(c.bg_crop) // 4)
        self.reset_parameters()

    def reset_parameters(self):
        c = self.config
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if c.init == "orthogonal":
                    nn.init.orthogonal_(m.weight, gain=c.init_gain)
                else:
                    nn.init.normal_(m.weight, 0.0, c.init_gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, c.init_gain)
                nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def sample_noise(self, n, generator=None) -> torch.Tensor:
        return torch.randn(int(n), self.noise_dim, generator=generator, device=self.device)

    def check_labels(self, y, n) -> torch.Tensor:
        y = torch.as_tensor(y, device=self.device)
        if y.dim() == 0:
            y = y.expand(n)
        if y.shape != (n,) or y.dtype.is_floating_point:
            raise ValueError(f"CGN labels must be {n} integer class ids, got shape "
                             f"{tuple(y.shape)}")
        if n and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"CGN labels must be in [0, {self.num_classes})")
        return y.long()

    def _input(self, u, y):
        return torch.cat([u, self.embed(y).to(u.dtype)], dim=1)

    def mask(self, u, y):
        """(B, 1, 32, 32) in [1e-4, 0.9999]."""
        return self.shape(self._input(u, y)).clamp(MASK_MIN, MASK_MAX)

    def textures(self, u, y, generator=None, *, which="texture"):
        net = self.texture if which == "texture" else self.background
        x = net(self._input(u, y))
        if which != "texture" and self.config.bg_crop:
            return crop_texture(x, self.image_size, generator)
        return shuffle_texture(x, generator)

    def forward(self, u, y, generator=None) -> CGNOutput:
        y = self.check_labels(y, u.shape[0])
        m = self.mask(u, y)
        f = self.textures(u, y, generator, which="texture")
        b = self.textures(u, y, generator, which="background")
        return CGNOutput(m, f, b, composite(m, f, b))

    def counterfactual(self, y_shape, y_texture, y_background, *, generator=None,
                       u_shape=None, u_texture=None, u_background=None) -> CGNOutput:
        """Shape of class y_shape, texture of y_texture, background of y_background, each with
        its own noise (drawn from `generator` where not given)."""
        y_shape = torch.as_tensor(y_shape, device=self.device)
        n = int(y_shape.shape[0])
        y1, y2, y3 = (self.check_labels(t, n) for t in (y_shape, y_texture, y_background))
        u1 = self.sample_noise(n, generator) if u_shape is None else u_shape
        u2 = self.sample_noise(n, generator) if u_texture is None else u_texture
        u3 = self.sample_noise(n, generator) if u_background is None else u_background
        m = self.mask(u1, y1)
        f = self.textures(u2, y2, generator, which="texture")
        b = self.textures(u3, y3, generator, which="background")
        return CGNOutput(m, f, b, composite(m, f, b))


class UniformDropout(nn.Dropout):
    """nn.Dropout (zero with probability p, scale the rest by 1 / (1 - p)) whose keep mask is
    drawn as rand >= p from the global generator: the same distribution as F.dropout's
    bernoulli_, which is ~3x slower on CPU (12 draws per colored CGN step)."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return x * 0.0
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep.mul_(1.0 / (1.0 - self.p))


class MLPDiscriminator(nn.Module):
    """MLP on cat(flattened image, Embedding(y)): 3 hidden layers of 512, LeakyReLU 0.2,
    dropout 0.4 after the second and third (the reference's colour-variant discriminator).

    projection=True conditions on the label by projection instead (Miyato & Koyama, 2018): the
    MLP sees the image alone, and the score is w . phi(x) + embed(y) . phi(x), so every class
    gets its own template over the last hidden features (disc="mlp-projection")."""

    def __init__(self, config: CGNConfig | None = None, width=512, projection=False,
                 in_channels=3):
        super().__init__()
        c = config or CGNConfig()
        self.projection = bool(projection)
        label_in = 0 if self.projection else c.num_classes
        self.embed = nn.Embedding(c.num_classes, width if self.projection else c.num_classes)
        self.net = nn.Sequential(
            nn.Linear(in_channels * 32 * 32 + label_in, width), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(width, width), UniformDropout(0.4), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(width, width), UniformDropout(0.4), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(width, 1))

    def forward(self, x, y):
        if self.projection:
            h = self.net[:-1](x.flatten(1))
            return self.net[-1](h).squeeze(1) + (self.embed(y).to(h.dtype) * h).sum(1)
        h = linear_of_cat(self.net[0], x.flatten(1), self.embed(y).to(x.dtype))
        return self.net[1:](h).squeeze(1)


def colour_free(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): each pixel's colour distance from the image's median colour
    (per channel), standardised per image. A stroke on a plain background reads the same whatever
    the two colours and which is brighter."""
    ref = x.flatten(2).median(2).values[..., None, None]
    # the colour distance as sqrt of the summed squares (a norm over the 3-channel dim is ~20x
    # slower on CPU); the clamp gives a zero gradient where a pixel equals the median, as
    # norm's backward does
    g = (x - ref).square().sum(1, keepdim=True).clamp_min(1e-12).sqrt()
    mean = g.mean((2, 3), keepdim=True)
    return (g - mean) / (g.std((2, 3), keepdim=True) + 1e-4)


class ColourFreeBranchDiscriminator(nn.Module):
    """The MLP discriminator plus a second MLP on the colour-free view of the image (colour_free)
    with the same label input; the score is the sum of the two (disc="mlp+colour-free"). When
    the colour alone names the class (rho 1), the full branch can check the label by colour; the
    colour-free branch can only check it by the drawn shape, so the masks are pushed to draw the
    asked class (not in the reference)."""

    # the branch joins after the plain MLP has let the masks form, ramped in linearly: started
    # together, its masks covered the background in two of five colored runs (README)
    WARM_UP = (500, 1000)

    def __init__(self, config: CGNConfig | None = None, width=512):
        super().__init__()
        self.full = MLPDiscriminator(config, width)
        self.shape = MLPDiscriminator(config, width, in_channels=1)
        self.branch_weight = 1.0   # set from the step (warm_up), so not saved in checkpoints

    def warm_up(self, step: int) -> None:
        """Set the colour-free branch's weight for training step `step` (0 before WARM_UP[0],
        1 from WARM_UP[1]); a module never warmed up scores with weight 1."""
        start, end = self.WARM_UP
        self.branch_weight = min(max((step - start) / (end - start), 0.0), 1.0)

    def forward(self, x, y):
        score = self.full(x, y)
        if self.branch_weight == 0.0:     # a Python float: no device sync per call
            return score
        return score + self.branch_weight * self.shape(colour_free(x), y)


class ConvDiscriminator(nn.Module):
    """Conv net whose fourth input plane is a learned per-class 32x32 map (channels 32, 64, 128,
    128; batch norm; LeakyReLU 0.2; global average pool; 1x1 conv to one score)."""

    def __init__(self, config: CGNConfig | None = None):
        super().__init__()
        c = config or CGNConfig()
        self.embed = nn.Embedding(c.num_classes, 32 * 32)

        def block(cin, cout, stride, bn=True):
            return [nn.Conv2d(cin, cout, 4 if stride == 2 else 3, stride, 1, bias=not bn)] + \
                ([nn.BatchNorm2d(cout)] if bn else []) + [nn.LeakyReLU(0.2, inplace=True)]

        self.body = nn.Sequential(*block(4, 32, 2, bn=False), *block(32, 64, 2),
                                  *block(64, 128, 2), *block(128, 128, 1))
        self.head = nn.Conv2d(128, 1, 1)

    def forward(self, x, y):
        plane = self.embed(y).view(-1, 1, 32, 32).to(x.dtype)
        h = self.body(torch.cat([x, plane], 1))
        return self.head(F.adaptive_avg_pool2d(h, 1)).flatten()


def build_discriminator(config: CGNConfig) -> nn.Module:
    if config.disc == "projection":   # the small GAN's residual, spectral-norm projection D
        from ..generators.small import ProjectionDiscriminator, SmallGANConfig

        return ProjectionDiscriminator(SmallGANConfig(num_classes=config.num_classes))
    if config.disc in ("mlp", "mlp-projection"):
        d = MLPDiscriminator(config, projection=config.disc == "mlp-projection")
    elif config.disc == "mlp+colour-free":
        d = ColourFreeBranchDiscriminator(config)
    else:
        d = ConvDiscriminator(config)
    if config.d_spectral_norm:
        for name, m in list(d.named_modules()):
            for child_name, child in list(m.named_children()):
                if isinstance(child, (nn.Linear, nn.Conv2d)):
                    setattr(m, child_name, spectral_scaled(child))
    return d


# ------------------------------------------------------------------ spectral normalisation

class _SpectralScaled:
    """Spectral normalisation (Miyato et al., 2018) that divides the layer's *output* by sigma,
    the power-iteration estimate of the weight's largest singular value, instead of the weight:
    layer(x; W / sigma) = (layer(x; W) - b) / sigma + b. The values and gradients are those of
    torch.nn.utils.parametrizations.spectral_norm (one power iteration per training forward,
    the same draws at wrapping), but no weight-sized tensor is divided in the forward or the
    backward: on the CGN's MLP discriminator (a 3082 x 512 first layer) a training step is ~15%
    faster on CPU. Buffers sn_u, sn_v; a state dict saved with the parametrization's key names
    (parametrizations.weight.original / .0._u / .0._v) loads."""

    eps = 1e-12

    def _init_spectral(self, iterations):
        w = self.weight.detach().flatten(1)
        self.register_buffer("sn_u", F.normalize(w.new_empty(w.shape[0]).normal_(0, 1), dim=0,
                                                 eps=self.eps))
        self.register_buffer("sn_v", F.normalize(w.new_empty(w.shape[1]).normal_(0, 1), dim=0,
                                                 eps=self.eps))
        self._power_iteration(iterations)

    @torch.no_grad()
    def _power_iteration(self, n=1):
        w = self.weight.detach().flatten(1)
        for _ in range(n):
            F.normalize(torch.mv(w, self.sn_v), dim=0, eps=self.eps, out=self.sn_u)
            F.normalize(torch.mv(w.t(), self.sn_u), dim=0, eps=self.eps, out=self.sn_v)

    def singular_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, v) for this forward (a power iteration first in training mode), as copies: a later
        forward's power iteration must not change what this one's backward reads."""
        if self.training:
            self._power_iteration()
        return self.sn_u.clone(), self.sn_v.clone()

    def sigma(self) -> torch.Tensor:
        """The weight's spectral-norm estimate u . (W v) (a power iteration first in training
        mode)."""
        u, v = self.singular_vectors()
        return torch.vdot(u, torch.mv(self.weight.flatten(1), v))

    def _scaled(self, out_without_bias, bias_shape):
        out = out_without_bias / self.sigma()
        return out if self.bias is None else out + self.bias.view(bias_shape)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "parametrizations.weight."
        for theirs, mine in (("original", "weight"), ("0._u", "sn_u"), ("0._v", "sn_v")):
            if old + theirs in state_dict:
                state_dict[prefix + mine] = state_dict.pop(old + theirs)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SpectralLinear(_SpectralScaled, nn.Linear):
    def forward(self, x):
        return linear_of_cat(self, x)


class SpectralConv2d(_SpectralScaled, nn.Conv2d):
    def forward(self, x):
        return self._scaled(self._conv_forward(x, self.weight, None), (-1, 1, 1))


class _LinearOfCat(torch.autograd.Function):
    """F.linear(cat([x, e], 1), W), divided by sigma = u . (W v) when u, v are given (u, v
    constants), with the gradients only of what asks for one: the discriminator step's images
    need no input gradient, yet autograd through cat would form the whole (B, 3082) one to
    hand the 10 label columns to the embedding; and sigma's weight gradient u v^T is added
    inside the weight gradient's pass instead of as a separate weight-sized tensor. The
    backward is made of differentiable ops, so second derivatives follow."""

    @staticmethod
    def forward(ctx, x, e, weight, u, v):
        out = F.linear(x if e is None else torch.cat([x, e], 1), weight)
        ctx.sigma = None
        if u is not None:
            ctx.sigma = torch.vdot(u, torch.mv(weight, v))
            out = out / ctx.sigma
        ctx.save_for_backward(x, e, weight, u, v, out)
        ctx.nx = x.shape[1]
        return out

    @staticmethod
    def backward(ctx, g):
        x, e, w, u, v, out = ctx.saved_tensors
        nx = ctx.nx
        # under create_graph, the concatenation and sigma again from the saved inputs (a small
        # copy, one matrix-vector product), so that second derivatives see their dependence on
        # x, e and the weight
        sigma = ctx.sigma
        if u is not None and torch.is_grad_enabled():
            sigma = torch.vdot(u, torch.mv(w, v))
        gs = g if sigma is None else g / sigma
        gx = ge = gw = None
        if ctx.needs_input_grad[0]:
            gx = gs @ w[:, :nx]
        if ctx.needs_input_grad[1]:
            ge = gs @ w[:, nx:]
        if ctx.needs_input_grad[2]:
            xc = x if e is None else torch.cat([x, e], 1)
            if sigma is None:
                gw = gs.t() @ xc
            else:
                # gs^T xc + (d loss / d sigma) u v^T, d loss / d sigma = -sum(g * out) / sigma, as
                # one product with one more inner row ([gs, c u]^T [xc; v^T]): a separate outer
                # product (or addr) costs as much as the product itself on CPU
                c = -(gs * out).sum()
                gw = torch.cat([gs, (c * u)[None]], 0).t() @ torch.cat([xc, v[None]], 0)
        return gx, ge, gw, None, None


def linear_of_cat(layer: nn.Linear, x: torch.Tensor, e: torch.Tensor | None = None):
    """layer(cat([x, e], 1)) (layer(x) when e is None) for an nn.Linear or SpectralLinear, with
    no gradient formed for an input that needs none (see _LinearOfCat)."""
    lead = x.shape[:-1]
    if e is None and x.dim() != 2:
        x = x.reshape(-1, x.shape[-1])
    u = v = None
    if isinstance(layer, SpectralLinear):
        u, v = layer.singular_vectors()
    out = _LinearOfCat.apply(x, e, layer.weight, u, v)
    # the backward reads `out`: a layer without bias returns a copy that may be changed in place
    out = out.clone() if layer.bias is None else out + layer.bias
    return out if e is not None else out.reshape(*lead, out.shape[-1])


def spectral_scaled(layer: nn.Module) -> nn.Module:
    """The spectrally normalised copy of an nn.Linear or nn.Conv2d (same weight and bias; its
    power-iteration vectors drawn from the global RNG, as torch's spectral_norm draws them)."""
    if type(layer) is nn.Linear:
        new = torch.nn.utils.skip_init(SpectralLinear, layer.in_features, layer.out_features,
                                       bias=layer.bias is not None, device=layer.weight.device,
                                       dtype=layer.weight.dtype)
    elif type(layer) is nn.Conv2d:
        new = torch.nn.utils.skip_init(
            SpectralConv2d, layer.in_channels, layer.out_channels, layer.kernel_size,
            layer.stride, layer.padding, layer.dilation, layer.groups, layer.bias is not None,
            layer.padding_mode, device=layer.weight.device, dtype=layer.weight.dtype)
    else:
        raise TypeError(f"spectral_scaled takes an nn.Linear or nn.Conv2d, got "
                        f"{type(layer).__name__}")
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    # torch's spectral_norm runs 15 power iterations, then registering the parametrization
    # evaluates it once (one more iteration for a layer in training mode)
    new._init_spectral(15 + int(layer.training))
    return new.train(layer.training)
