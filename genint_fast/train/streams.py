"""The generated streams of a training run: the generator's samples or interventions, style
transfer, and CGN counterfactuals (streamed or as a fixed set), built from the config by the
table `config.MODE_STREAMS`, and `make(step)`, which draws a step's images as a pure function
of (seed, step). The trainer runs `make` on its producer, overlapped with the classifier step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import MODE_STREAMS, TrainConfig
from .data import RealData
from .producer import step_seed

__all__ = ["GeneratedStreams"]


class GeneratedStreams:
    """The generated streams of `cfg` over the real data `data` (for the size, the real stream's
    augmentation and the transfer's content images). Counterfactuals are built at once (a fixed
    set decides what an epoch counts); the generator and the transfer in `build_generators`, after
    the classifier, as the trainer always built them."""

    def __init__(self, cfg: TrainConfig, data, *, rank=0, world=1, device="cpu", log=print):
        self.cfg, self.data, self.rank, self.world = cfg, data, rank, world
        self.device, self.log = torch.device(device), log
        self.spec = MODE_STREAMS[cfg.mode]
        self.sampler = self.transfer = None
        self.cf_set = None
        self.counterfactuals = self._build_counterfactuals()
        self.cf_set = self._build_counterfactual_set()

    def build_generators(self) -> None:
        self.sampler = self._build_sampler()
        self.transfer = self._build_transfer()

    @property
    def active(self) -> bool:
        """Whether any stream is generated (the trainer then starts a producer)."""
        return (self.sampler is not None or self.transfer is not None
                or self.counterfactuals is not None)

    def _build_sampler(self):
        cfg = self.cfg
        if self.spec.sampler is None:
            return None
        from ..generators import load_generator
        from ..intervene import InterventionSampler, ObservationalSampler

        gen = load_generator(cfg.generator, device=self.device)
        self._describe_generator(gen)
        if gen.num_classes != cfg.num_classes:
            raise ValueError(f"generator {cfg.generator!r} has {gen.num_classes} classes but "
                             f"num_classes is {cfg.num_classes}")
        seed = step_seed(cfg.seed, self.rank, "producer")
        if self.spec.sampler == "generated":
            return ObservationalSampler(gen, truncation=cfg.truncation,
                                        batch_size=cfg.gen_batch_size, seed=seed)
        from ..directions import discover, load_directions
        from ..intervene import matched_norm_scale, reference_ranges

        if cfg.directions:
            d = load_directions(cfg.directions, gen)
        else:
            d = discover(gen, cfg.num_directions, method="svd", truncation=cfg.truncation)
        if cfg.control == "random-directions":
            d = d.random_like(seed=cfg.seed)
        ranges = reference_ranges(cfg.top_k) if cfg.step_ranges == "reference" else None
        sampler = InterventionSampler(gen, d, truncation=cfg.truncation, top_k=cfg.top_k,
                                      m=cfg.m, scale=cfg.scale, ranges=ranges,
                                      mode=cfg.intervention_mode, style=cfg.intervention_style,
                                      per_latent=cfg.per_latent, batch_size=cfg.gen_batch_size,
                                      seed=seed)
        if cfg.control == "matched-norm":
            factor = matched_norm_scale(sampler)
            self.log(f"matched-norm control: unsteered latents scaled by {factor:.3f} (the "
                     f"interventions' mean latent norm over a plain latent's)")
            return ObservationalSampler(gen, truncation=cfg.truncation,
                                        batch_size=cfg.gen_batch_size, seed=seed,
                                        latent_scale=factor)
        return sampler

    def _describe_generator(self, gen):
        """One line naming the generator and whether its weights were loaded; a warning line
        when it is untrained (a random:... spec)."""
        if self.rank != 0:
            return
        cfg = self.cfg
        size = getattr(gen, "image_size", "?")
        untrained = str(cfg.generator).startswith("random:")
        self.log(f"generator: {cfg.generator} ({gen.generator_id}, {gen.num_classes} classes, "
                 f"{size} px): " + ("random weights, untrained" if untrained else
                                    "weights loaded"))
        if untrained:
            self.log(f"WARNING: generator {cfg.generator!r} is untrained (random weights), so "
                     f"its images and interventions carry no learned nuisances; for meaningful "
                     f"interventions set generator= to a `genint-fast gan` checkpoint or a "
                     f"BigGAN weights folder (config.json + pytorch_model.bin)")

    def _build_counterfactuals(self):
        cfg = self.cfg
        if cfg.cgn is None:
            return None
        from ..cgn import CounterfactualSampler, load_cgn

        cgn = load_cgn(cfg.cgn, device=self.device)
        if cgn.num_classes != cfg.num_classes:
            raise ValueError(f"CGN {cfg.cgn!r} has {cgn.num_classes} classes but num_classes is "
                             f"{cfg.num_classes}")
        self.log(f"counterfactual stream: CGN {cfg.cgn} ({getattr(cgn, 'steps_trained', '?')} "
                 f"training steps), {cfg.cgn_batch_size} per step, {cfg.cgn_per_mask} per mask, "
                 f"{cfg.cgn_labels} classes")
        return CounterfactualSampler(cgn, batch_size=cfg.cgn_batch_size,
                                     per_mask=cfg.cgn_per_mask, labels=cfg.cgn_labels,
                                     seed=step_seed(cfg.seed, self.rank, "counterfactual"))

    def _build_counterfactual_set(self):
        """cgn_set > 0: a set of counterfactuals drawn before training (the reference
        classifier's protocol: cgn_per_mask redraws of texture and background per mask), kept
        as uint8 like the real images and served by a RealData whose 'labels' are indices
        into the set, so each epoch is a seeded permutation and a batch is a pure function of
        (seed, step). cgn_resample: a fresh set for every epoch, drawn from (seed, epoch)."""
        cfg = self.cfg
        if self.counterfactuals is None or not cfg.cgn_set:
            return None
        self._cf_set_epoch = None
        self._draw_counterfactual_set(0)
        return RealData(self.cf_set_images, torch.arange(self.cf_set_images.shape[0]),
                        batch_size=cfg.cgn_batch_size, seed=step_seed(cfg.seed, 0, "cgn-perm"),
                        device=self.device, augment=cfg.augment and cfg.augment_generated,
                        rank=self.rank, world=self.world, flip=bool(cfg.hflip))

    def _draw_counterfactual_set(self, epoch: int) -> None:
        cfg = self.cfg
        key = epoch if cfg.cgn_resample else 0
        if self._cf_set_epoch == key:
            return
        import time as _time

        cf, t0 = self.counterfactuals, _time.perf_counter()
        cf.rng.manual_seed(step_seed(cfg.seed, key, "cgn-set"))
        chunk = max(cfg.cgn_per_mask, (1000 // cfg.cgn_per_mask) * cfg.cgn_per_mask)
        xs, heads, n = [], [], 0
        while n < cfg.cgn_set:
            images, _, record = cf.sample(min(chunk, cfg.cgn_set - n))
            xs.append(self.to_real_range(images).mul(255).round_().clamp_(0, 255)
                      .to(torch.uint8))
            heads.append(record.labels())
            n += images.shape[0]
        self.cf_set_images, self.cf_set_heads = torch.cat(xs), torch.cat(heads)
        if getattr(self, "cf_set", None) is not None:
            self.cf_set.images = self.cf_set_images.to(self.device)
        self._cf_set_epoch = key
        if key == 0 or not cfg.cgn_resample:
            self.log(f"counterfactual set: {n} images, {cfg.cgn_per_mask} per mask"
                     f"{', drawn anew every epoch' if cfg.cgn_resample else ''} "
                     f"({_time.perf_counter() - t0:.1f} s)")

    def _build_transfer(self):
        cfg = self.cfg
        if self.spec.transfer_style is None:
            return None
        from .. import features
        from ..transfer import StyleTransfer

        net = features.transfer_feature_net(cfg.transfer_features, device=self.device,
                                            log=self.log)
        return StyleTransfer(net, kernel=cfg.transfer_kernel, optimizer=cfg.transfer_optimizer,
                             steps=tuple(cfg.transfer_steps), seed=cfg.seed)

    def to_real_range(self, images):
        """Generator output in [-1, 1] -> [0, 1] at the real images' size (antialiased)."""
        images = ((images.float() + 1) / 2).clamp_(0, 1)
        h, w = self.data.size
        if tuple(images.shape[-2:]) != (h, w):
            images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False,
                                   antialias=True)
        return images

    def make(self, step: int) -> dict:
        """The generated streams of `step`: {name: (images in [0, 1] at the real resolution,
        labels)}; "intervened" (genint, genint-transfer), "generated" (gan-aug), "transferred"
        (stylized: style from other real images; genint-transfer: from intervened images),
        "counterfactual" (CGN: images, shape labels, (B, 3) mechanism labels).
        A pure function of (seed, step)."""
        cfg, out = self.cfg, {}
        s = self.sampler
        if s is not None:
            s.rng.manual_seed(step_seed(cfg.seed, step, f"gen{self.rank}"))
            images, labels, _ = s.sample()
            name = self.spec.sampler
            images = self.to_real_range(images)
            if cfg.augment_generated:
                images = self.data.augment_like_real(images, step, name)
            out[name] = (images, labels)
        if self.transfer is not None:
            b = cfg.transfer_batch_size
            content, labels = self.data.random_images(step, b, "content")
            if self.spec.transfer_style == "real":
                style, _ = self.data.random_images(step, b, "style")
            else:
                style = self.to_real_range(s.sample(b)[0])
            self.transfer.rng.manual_seed(step_seed(cfg.seed, step, f"transfer{self.rank}"))
            images = self.transfer(content, style).detach()
            if cfg.augment_generated:
                images = self.data.augment_like_real(images, step, "transferred")
            out["transferred"] = (images, labels)
        if self.cf_set is not None:
            self._draw_counterfactual_set(self.cf_set.epoch_of(step))
            x, idx = self.cf_set.batch(step)
            heads = self.cf_set_heads[idx.to(self.cf_set_heads.device)].to(x.device)
            out["counterfactual"] = (x, heads[:, 0], heads)
        elif self.counterfactuals is not None:
            cf = self.counterfactuals
            cf.rng.manual_seed(step_seed(cfg.seed, step, f"cgn{self.rank}"))
            images, labels, record = cf.sample()
            images = self.to_real_range(images)
            if cfg.augment_generated:
                images = self.data.augment_like_real(images, step, "counterfactual")
            out["counterfactual"] = (images, labels, record.labels())
        return out
