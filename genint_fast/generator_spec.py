"""The one grammar of a generator spec string (`--generator SPEC`): its help text and its
loader. Nothing heavy is imported until a generator is loaded, so `genint-fast --help` reads
GENERATOR_SPECS from here; `genint_fast.generators` re-exports both."""
from __future__ import annotations

import math
from pathlib import Path

__all__ = ["GENERATOR_SPECS", "load_generator", "check_truncation"]

GENERATOR_SPECS = (
    "biggan-deep-128 | biggan-deep-256 | biggan-deep-512 (package cache or --cache-dir), "
    "a folder with config.json + pytorch_model.bin, a `genint-fast gan` checkpoint file, "
    "random:<biggan-deep-128|...|tiny>[:SEED] (random warmed-up BigGAN), "
    "random:small32[:SEED] (untrained small GAN)"
)


def check_truncation(truncation) -> float:
    """The truncation t of BigGAN's latent noise as a float; refused outside (0, 1]."""
    t = float(truncation)
    if not (0.0 < t <= 1.0) or math.isnan(t):
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    return t


def load_generator(spec, *, device="cpu", cache_dir=None, strict=True):
    """Build a ConditionalGenerator from a string spec (see GENERATOR_SPECS), in eval()."""
    from .generators.biggan import PRETRAINED_NAMES, load_biggan, random_biggan
    from .generators.small import SmallGenerator
    from .generators.train_gan import load_small_generator

    spec = str(spec)
    if spec.startswith("random:"):
        parts = spec.split(":")
        arch = parts[1] if len(parts) > 1 else ""
        try:
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise ValueError(f"bad seed in generator spec {spec!r}") from None
        if arch == "small32":
            import torch
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                gen = SmallGenerator(generator_id=f"random:small32:seed={seed}")
            return gen.to(device).eval()
        return random_biggan(arch, seed=seed, device=device)
    if spec in PRETRAINED_NAMES:
        return load_biggan(spec, cache_dir=cache_dir, device=device, strict=strict)
    path = Path(spec)
    if path.is_dir():
        return load_biggan(path, device=device, strict=strict)
    if path.is_file():
        return load_small_generator(path, device=device)
    raise FileNotFoundError(f"generator {spec!r} is not a known name, folder or checkpoint; "
                            f"use one of: {GENERATOR_SPECS}")
