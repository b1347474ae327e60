"""Generators: the conditional-generator interface, BigGAN-deep (pytorch-pretrained-biggan),
tiny random BigGANs for tests, and a small class-conditional 32x32 GAN with its trainer. The
generator-spec grammar (`genint_fast.generator_spec`) and the small GAN's settings
(`genint_fast.gan_config`) are torch-free modules outside this package, re-exported here."""
from __future__ import annotations

from ..gan_config import GANTrainConfig, SmallGANConfig
from ..generator_spec import GENERATOR_SPECS, load_generator
from .base import ConditionalGenerator, layer_fingerprint, truncated_latents
from .biggan import (PRETRAINED_NAMES, TINY_CONFIGS, BigGANGenerator, KeyReport, load_biggan,
                     random_biggan, resolve_biggan_files, save_biggan_folder, tiny_biggan,
                     warm_up)
from .small import ProjectionDiscriminator, SmallGenerator
from .train_gan import load_small_generator, train_gan

__all__ = [
    "ConditionalGenerator", "truncated_latents", "layer_fingerprint", "BigGANGenerator",
    "KeyReport", "PRETRAINED_NAMES", "TINY_CONFIGS", "load_biggan", "random_biggan",
    "resolve_biggan_files", "save_biggan_folder", "tiny_biggan", "warm_up", "SmallGANConfig",
    "SmallGenerator", "ProjectionDiscriminator", "GANTrainConfig", "train_gan",
    "load_small_generator", "load_generator", "GENERATOR_SPECS",
]
