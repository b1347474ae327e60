"""BigGAN-deep through pytorch-pretrained-biggan, without its network path (SPEC section 2).

We never call BigGAN.from_pretrained (it sends HEAD requests before even looking at the cache,
and loads with strict=False). Instead we find the files ourselves — the package's cache folder
(PYTORCH_PRETRAINED_BIGGAN_CACHE or ~/.pytorch_pretrained_biggan), where they are named by the
sha256 of their URL, or a plain folder with config.json + pytorch_model.bin — build
BigGAN(BigGANConfig) and load the state dict with a key check.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from pytorch_pretrained_biggan.file_utils import url_to_filename
from pytorch_pretrained_biggan.model import (CONFIG_NAME, BigGANBatchNorm, PRETRAINED_CONFIG_ARCHIVE_MAP,
                                             PRETRAINED_MODEL_ARCHIVE_MAP, WEIGHTS_NAME)

from .base import ConditionalGenerator, check_truncation, probe_linear_z_block

__all__ = [
    "BigGANGenerator", "KeyReport", "PRETRAINED_NAMES", "TINY_CONFIGS", "biggan_cache_dir",
    "resolve_biggan_files", "load_biggan", "save_biggan_folder", "random_biggan", "tiny_biggan",
    "warm_up",
]

PRETRAINED_NAMES = tuple(PRETRAINED_MODEL_ARCHIVE_MAP)  # biggan-deep-128/256/512


def _config_for(name: str) -> BigGANConfig:
    """The published configurations (what the package's config.json files hold)."""
    size = int(name.rsplit("-", 1)[1])
    if size == 128:
        return BigGANConfig()
    if size == 256:
        return BigGANConfig(output_dim=256, layers=[
            (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
            (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
            (False, 2, 2), (True, 2, 1)], attention_layer_position=8)
    if size == 512:
        return BigGANConfig(output_dim=512, layers=[
            (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
            (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
            (False, 2, 2), (True, 2, 1), (False, 1, 1), (True, 1, 1)],
            attention_layer_position=8)
    raise ValueError(f"unknown BigGAN size {size}")


# Tiny configurations for tests: 32x32 output, a few thousand to ~100k parameters; finite in
# eval() after warm_up (and mostly before). Upstream constraints: layers halve channels or keep
# them, the last block ends at 1 * channel_width >= 3, z_dim == class_embed_dim.
TINY_CONFIGS = {
    "tiny": dict(output_dim=32, z_dim=32, class_embed_dim=32, channel_width=4, num_classes=10,
                 layers=[(True, 16, 8), (True, 8, 4), (True, 4, 2), (False, 2, 1)],
                 attention_layer_position=1, eps=1e-4, n_stats=51),
}


@dataclass
class KeyReport:
    """What load_state_dict found: keys the model wanted but the file lacks, and the reverse."""

    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        def few(keys):
            head = ", ".join(keys[:5])
            return f"{head}{', ...' if len(keys) > 5 else ''} ({len(keys)} in all)"
        parts = []
        if self.missing:
            parts.append(f"missing keys: {few(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys: {few(self.unexpected)}")
        return "; ".join(parts) or "all keys matched"


class BigGANGenerator(ConditionalGenerator):
    """Adapter: ConditionalGenerator over pytorch_pretrained_biggan.BigGAN (kept in eval())."""

    direction_layer = "model.generator.gen_z"

    def __init__(self, model: BigGAN, generator_id: str, key_report: KeyReport | None = None):
        super().__init__()
        self.model = model
        cfg = model.config
        self.latent_dim = int(cfg.z_dim)
        self.num_classes = int(cfg.num_classes)
        self.image_size = int(cfg.output_dim)
        self.generator_id = generator_id
        self.key_report = key_report or KeyReport()
        self.eval()

    def forward(self, z, y, truncation=1.0):
        t = check_truncation(truncation)
        z = self.check_latents(z)
        y = self.check_labels(y, z.shape[0])
        onehot = F.one_hot(y, self.num_classes).to(z.dtype)
        return self.model(z, onehot, t)

    def linear_z_map(self):
        # gen_z(cat(z, embed(y))) is affine in z for a fixed class: W[:, :z_dim] z + c(y).
        return probe_linear_z_block(self.model.generator.gen_z, self.latent_dim,
                                    int(self.model.config.class_embed_dim))


# ---------------------------------------------------------------------------------- files
def biggan_cache_dir(cache_dir=None) -> Path:
    """The package's cache folder: cache_dir, else $PYTORCH_PRETRAINED_BIGGAN_CACHE, else
    ~/.pytorch_pretrained_biggan (read now, not at import)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("PYTORCH_PRETRAINED_BIGGAN_CACHE",
                               Path.home() / ".pytorch_pretrained_biggan"))


def _cached_file(cache: Path, url: str):
    """The package stores a download as sha256(url)[.sha256(etag)] next to a .json record."""
    stem = url_to_filename(url)
    hits = sorted(p for p in glob.glob(str(cache / (stem + "*"))) if not p.endswith(".json"))
    return Path(hits[0]) if hits else None


def resolve_biggan_files(name_or_folder, cache_dir=None):
    """(config.json path, weights path) for a pretrained name or a local folder, or a
    FileNotFoundError that says where the files are expected and how to get them. Never
    touches the network."""
    name = str(name_or_folder)
    if name in PRETRAINED_MODEL_ARCHIVE_MAP:
        cache = biggan_cache_dir(cache_dir)
        folder = cache / name
        if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
            return folder / CONFIG_NAME, folder / WEIGHTS_NAME
        weights = _cached_file(cache, PRETRAINED_MODEL_ARCHIVE_MAP[name])
        config = _cached_file(cache, PRETRAINED_CONFIG_ARCHIVE_MAP[name])
        if weights is not None and config is not None:
            return config, weights
        raise FileNotFoundError(
            f"no weights for {name} in {cache} (genint-fast never downloads): put "
            f"{CONFIG_NAME} and {WEIGHTS_NAME} in {folder}/ (they are "
            f"{PRETRAINED_CONFIG_ARCHIVE_MAP[name]} and {PRETRAINED_MODEL_ARCHIVE_MAP[name]}), "
            f"or copy a pytorch-pretrained-biggan cache filled on a connected machine there, or "
            f"set PYTORCH_PRETRAINED_BIGGAN_CACHE to the folder that holds them")
    folder = Path(name)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{name!r} is neither a BigGAN name ({', '.join(PRETRAINED_NAMES)}) nor a folder; a "
            f"weights folder must hold {CONFIG_NAME} and {WEIGHTS_NAME}")
    lacking = [f for f in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / f).is_file()]
    if lacking:
        raise FileNotFoundError(
            f"BigGAN folder {folder} lacks {' and '.join(lacking)}; it must hold {CONFIG_NAME} "
            f"and {WEIGHTS_NAME} (pytorch-pretrained-biggan's format)")
    return folder / CONFIG_NAME, folder / WEIGHTS_NAME


def load_biggan(name_or_folder, *, cache_dir=None, device="cpu", strict=True,
                generator_id=None) -> BigGANGenerator:
    """Load BigGAN-deep from the package cache or a local folder, checking state-dict keys.

    strict=True refuses a file whose keys do not match the architecture (ValueError listing
    them); strict=False loads what matches and keeps the report in `.key_report`.
    """
    config_path, weights_path = resolve_biggan_files(name_or_folder, cache_dir)
    try:
        config = BigGANConfig.from_json_file(str(config_path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read BigGAN config {config_path}: {exc}") from None
    try:
        model = BigGAN(config)
    except Exception as exc:  # a config the architecture cannot be built from
        raise ValueError(f"BigGAN config {config_path} does not describe a buildable "
                         f"model: {exc}") from None
    try:
        state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read BigGAN weights {weights_path} ({exc}); the file is "
                           f"not a PyTorch state dict or is damaged") from None
    if not isinstance(state, dict):
        raise RuntimeError(f"BigGAN weights {weights_path} hold a {type(state).__name__}, "
                           f"not a state dict")
    report = _load_checked(model, state)
    if strict and not report.ok:
        raise ValueError(f"BigGAN weights {weights_path} do not match the architecture in "
                         f"{config_path}: {report}")
    gid = generator_id or (str(name_or_folder) if str(name_or_folder) in PRETRAINED_NAMES
                           else f"biggan:{Path(name_or_folder).resolve().name}")
    return BigGANGenerator(model, gid, report).to(device)


def _load_checked(model, state) -> KeyReport:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise ValueError(f"BigGAN weights do not fit the architecture: "
                         f"{str(exc).splitlines()[-1].strip()}") from None
    return KeyReport(sorted(result.missing_keys), sorted(result.unexpected_keys))


def save_biggan_folder(generator, folder) -> Path:
    """Write config.json + pytorch_model.bin (the package's format) for a BigGAN(Generator)."""
    model = generator.model if isinstance(generator, BigGANGenerator) else generator
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(model.config.to_json_string())
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    torch.save(model.state_dict(), str(tmp))
    os.replace(tmp, folder / WEIGHTS_NAME)
    return folder


# ---------------------------------------------------------------------------- random models
@torch.no_grad()
def warm_up(generator: BigGANGenerator, steps=3, batch=2, seed=0) -> BigGANGenerator:
    """A few no-grad forwards in train() so spectral norm's power iteration converges; a freshly
    built BigGAN in eval() overflows to NaN otherwise (SPEC section 2). Leaves it in eval()."""
    g = torch.Generator(device=generator.device).manual_seed(seed)
    generator.train()
    for _ in range(steps):
        z = generator.sample_latents(batch, 1.0, generator=g)
        y = torch.randint(generator.num_classes, (batch,), generator=g, device=generator.device)
        generator(z, y, 1.0)
    generator.eval()
    return generator


def random_biggan(config, *, seed=0, device="cpu", warmup_steps=3,
                  generator_id=None) -> BigGANGenerator:
    """A BigGAN with random, warmed-up weights: a name in PRETRAINED_NAMES (its architecture),
    a key of TINY_CONFIGS, a dict of BigGANConfig fields or a BigGANConfig."""
    label = config if isinstance(config, str) else "custom"
    if isinstance(config, str):
        if config in PRETRAINED_NAMES:
            config = _config_for(config)
        elif config in TINY_CONFIGS:
            config = BigGANConfig(**TINY_CONFIGS[config])
        else:
            raise ValueError(f"unknown BigGAN architecture {config!r}; choose from "
                             f"{', '.join(PRETRAINED_NAMES + tuple(TINY_CONFIGS))}")
    elif isinstance(config, dict):
        config = BigGANConfig(**config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BigGAN(config)
    # Upstream leaves the unconditional batch norm's weight and bias uninitialised
    # (torch.Tensor(n)): garbage memory, different on every run. Give them the usual identity.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BigGANBatchNorm) and not module.conditional:
                module.weight.fill_(1.0)
                module.bias.zero_()
    gen = BigGANGenerator(model, generator_id or f"random:{label}:seed={seed}").to(device)
    return warm_up(gen, warmup_steps, seed=seed)


def tiny_biggan(name="tiny", *, seed=0, device="cpu", decay=None) -> BigGANGenerator:
    """A tiny random BigGAN for tests. decay=r gives gen_z's z-block singular values r**j (a
    spread spectrum, as trained generators have, so that principal directions are well
    separated); the weights are rewarmed after that."""
    gen = random_biggan(name, seed=seed, device=device)
    if decay is not None:
        lin = gen.model.generator.gen_z
        w = lin.weight_orig
        d = gen.latent_dim
        g = torch.Generator().manual_seed(seed + 1)
        q_left, _ = torch.linalg.qr(torch.randn(w.shape[0], d, generator=g, dtype=torch.float64))
        q_right, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        s = float(decay) ** torch.arange(d, dtype=torch.float64)
        with torch.no_grad():
            w[:, :d] = (q_left * s) @ q_right.T
            w[:, d:] *= 0.1
        gen.generator_id += f":decay={decay}"
        warm_up(gen, steps=10, seed=seed)
    return gen
