"""The small GAN's settings: its architecture (SmallGANConfig) and its training
(GANTrainConfig). Torch-free, so that `genint-fast gan --help` makes its flags from these fields
(`genint_fast.cli.recipes.add_field_flags`): each default and its meaning are written here once."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .config_fields import key

__all__ = ["SmallGANConfig", "GANTrainConfig", "GAN_LOSSES"]

GAN_LOSSES = ("hinge", "lsgan")


@dataclass
class SmallGANConfig:
    num_classes: int = key(10, "classes (from the data)")
    latent_dim: int = key(64, "latent size")
    embed_dim: int = key(32, "class-embedding size")
    ch: int = key(24, "base width of G and D: G runs 4ch -> 4ch -> 2ch -> ch, D the reverse")
    image_size: int = key(32, "image side, fixed by the three up-sampling blocks from 4x4")
    class_bn: bool = key(True, "class-conditional batch norm in every block (BigGAN); False: "
                               "the class enters through gen_z only, like the latent")

    def __post_init__(self):
        if self.image_size != 32:
            raise ValueError(f"the small GAN makes 32x32 images, got image_size={self.image_size}")
        for name in ("num_classes", "latent_dim", "embed_dim", "ch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"small GAN config: {name} must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GANTrainConfig:
    steps: int = key(2000, "total training steps")
    batch_size: int = key(32, "images per step")
    lr_g: float = key(2e-4, "generator Adam learning rate")
    lr_d: float = key(2e-4, "discriminator Adam learning rate")
    betas: tuple = key((0.0, 0.999), "Adam betas")
    loss: str = key("hinge", "adversarial loss", choices=GAN_LOSSES)
    ema_decay: float = key(0.999, "decay of the generator's weight average (sampled from)")
    checkpoint_every: int = key(200, "steps between checkpoints")
    log_every: int = key(50, "steps between log lines")
    seed: int = key(0, "random seed")

    def __post_init__(self):
        if self.loss not in GAN_LOSSES:
            raise ValueError(f'loss must be "hinge" or "lsgan", got {self.loss!r}')
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
