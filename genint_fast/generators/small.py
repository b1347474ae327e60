"""A small class-conditional GAN for 32x32 images that trains on 2 CPU cores in minutes.

Generator: BigGAN's layout in miniature — a first linear layer `gen_z` on cat(z, class
embedding) (so GANSpace's exact SVD shortcut applies to it too), three residual up-sampling
blocks with class-conditional batch norm, a 3x3 convolution to RGB and tanh.
Discriminator: residual down-sampling blocks with spectral norm
(torch.nn.utils.parametrizations.spectral_norm) and a projection head (Miyato & Koyama 2018):
D(x, y) = w . phi(x) + embed(y) . phi(x).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import ConditionalGenerator, check_truncation, probe_linear_z_block
from ..gan_config import SmallGANConfig
from ..layers import NearestUpConv2d

__all__ = ["SmallGANConfig", "SmallGenerator", "ProjectionDiscriminator"]


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias come from the class: BatchNorm2d(affine=False) then
    (1 + gamma_y) * x + beta_y."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x, y):
        g = 1.0 + self.gain(y)[:, :, None, None]
        b = self.bias(y)[:, :, None, None]
        return self.bn(x) * g.to(x.dtype) + b.to(x.dtype)


class GBlock(nn.Module):
    def __init__(self, cin, cout, num_classes):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(cin, num_classes)
        self.conv1 = NearestUpConv2d(cin, cout, 3, padding=1)   # upsamples x2 first
        self.bn2 = ConditionalBatchNorm(cout, num_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, y):
        h = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x, y))), y)))
        # a 1x1 convolution commutes with nearest upsampling: it runs on the 4x smaller input
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class SmallGenerator(ConditionalGenerator):
    direction_layer = "gen_z"

    def __init__(self, config: SmallGANConfig | None = None, generator_id: str = "small32"):
        super().__init__()
        c = config or SmallGANConfig()
        self.config = c
        self.latent_dim, self.num_classes, self.image_size = c.latent_dim, c.num_classes, 32
        self.generator_id = generator_id
        w = 4 * c.ch
        nb = c.num_classes if c.class_bn else 1
        self.embed = nn.Embedding(c.num_classes, c.embed_dim)
        self.gen_z = nn.Linear(c.latent_dim + c.embed_dim, 4 * 4 * w)
        self.blocks = nn.ModuleList([GBlock(w, w, nb), GBlock(w, 2 * c.ch, nb),
                                     GBlock(2 * c.ch, c.ch, nb)])
        self.bn_out = nn.BatchNorm2d(c.ch)
        self.to_rgb = nn.Conv2d(c.ch, 3, 3, padding=1)

    def forward(self, z, y, truncation=1.0):
        check_truncation(truncation)  # z already carries t (z = t * TruncNormal); kept for the API
        z = self.check_latents(z)
        y = self.check_labels(y, z.shape[0])
        h = self.gen_z(torch.cat([z, self.embed(y).to(z.dtype)], dim=1))
        h = h.view(z.shape[0], -1, 4, 4)
        yb = y if self.config.class_bn else torch.zeros_like(y)
        for block in self.blocks:
            h = block(h, yb)
        return torch.tanh(self.to_rgb(F.relu(self.bn_out(h))))

    def linear_z_map(self):
        return probe_linear_z_block(self.gen_z, self.latent_dim, self.config.embed_dim)


class DBlock(nn.Module):
    def __init__(self, cin, cout, down=True, first=False):
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1)) if (cin != cout or down) else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.skip is not None:
            s = self.skip(s)
            if self.down:
                s = F.avg_pool2d(s, 2)
        return h + s


class ProjectionDiscriminator(nn.Module):
    def __init__(self, config: SmallGANConfig | None = None):
        super().__init__()
        c = config or SmallGANConfig()
        self.blocks = nn.Sequential(
            DBlock(3, c.ch, first=True), DBlock(c.ch, 2 * c.ch), DBlock(2 * c.ch, 4 * c.ch),
            DBlock(4 * c.ch, 4 * c.ch, down=False))
        self.linear = spectral_norm(nn.Linear(4 * c.ch, 1))
        self.embed = spectral_norm(nn.Embedding(c.num_classes, 4 * c.ch))

    def forward(self, x, y):
        phi = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(phi).squeeze(1) + (self.embed(y) * phi).sum(1)
