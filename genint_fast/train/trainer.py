"""The GenInt trainer: real + generated streams, objective (1), overlapped producers, SGD with
a step schedule, atomic checkpoints and exact resume.

Determinism: the model is initialised from `seed`; the real batch of step t (epoch permutation,
crop offsets, flips), the mixup draw of step t and the generated batch of step t are pure
functions of (seed, t) through `step_seed`, so a resumed run only needs the step, the model,
optimiser, scheduler and scaler states (all in the checkpoint, with the global RNG states).
On CPU with a fixed thread count a resumed run is bitwise equal to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import FORMAT, load_checkpoint, rng_states, save_atomic, set_rng_states
from .config import NORMALIZATIONS, TrainConfig, parse_data_spec, resolve_normalize
from .models import SmallCNN, build_model, load_state_into
from .objective import Stream, stream_losses
from .producer import Producer, step_seed

__all__ = ["Trainer", "RealData", "FolderData", "evaluate", "load_digits_split", "run_training",
           "init_distributed", "normalise", "make_normaliser", "load_weights", "read_init_weights"]

CHECKPOINT_NAME = "checkpoint.pt"
# torchvision's random transforms draw from the global torch RNG: every per-step re-seeding of
# it (fork_rng + manual_seed) holds this lock, so producer threads cannot interleave.
_GLOBAL_RNG_LOCK = threading.Lock()
# Config keys that may change between a run and its resume (everything else must match).
_RESUMABLE_CHANGES = {"steps", "epochs", "out", "progress", "log_every", "checkpoint_every",
                      "producer", "queue_size", "extra", "eval_size", "tensorboard"}
# What a checkpoint written before a key existed ran with.
_OLD_DEFAULTS = {"normalize": "half", "epochs": None}


def _gen(seed: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def load_digits_split(cfg: TrainConfig, split: str, n: int | None = None, *, nuisance=False):
    """(images, labels) of a built-in split, plus its nuisance ids (N, 2) if asked."""
    from ..data.digits import make_biased_digits

    variant, rho = parse_data_spec(cfg.data)
    if variant == "folder":
        raise ValueError("the run trained on an image folder; evaluate with --folder DIR")
    ds = make_biased_digits(variant, split, rho, seed=cfg.data_seed, n=n)
    return (ds.images, ds.labels, ds.nuisance) if nuisance else (ds.images, ds.labels)


class RealData:
    """Real images (uint8 N,3,H,W) kept on the device; batch(step) is a pure function of
    (seed, step). With rank/world > 1 each rank takes every world-th index of the epoch's
    permutation (disjoint shards)."""

    prefetch = False

    def __init__(self, images, labels, *, batch_size, seed, device, augment=True, rank=0,
                 world=1, autoaugment=None, flip=False):
        self.flip = bool(flip)
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.n = self.images.shape[0]
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.augment, self.rank, self.world = augment, rank, world
        self.size = tuple(self.images.shape[-2:])
        self.autoaugment = None
        if autoaugment is not None:   # torchvision's policy, drawn per image
            from torchvision.transforms import v2
            self.autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy(autoaugment))
        self.per_epoch = (self.n // world) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size {batch_size} x {world} rank(s) is larger than the "
                             f"{self.n} training images")
        self._perm_epoch, self._perm = None, None

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def indices(self, step: int) -> torch.Tensor:
        """The training-set indices of the batch of `step`."""
        epoch, i = divmod(step, self.per_epoch)
        if self._perm_epoch != epoch:
            perm = torch.randperm(self.n, generator=_gen(step_seed(self.seed, epoch, "perm"),
                                                           "cpu"))
            self._perm = perm[self.rank::self.world].to(self.device)
            self._perm_epoch = epoch
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]

    def batch(self, step: int):
        idx = self.indices(step)
        raw = self.images[idx]
        if self.autoaugment is not None:
            # AutoAugment draws from the global torch RNG: fork it and seed it per step.
            with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
                torch.manual_seed(step_seed(self.seed, step, "autoaugment"))
                raw = torch.stack([self.autoaugment(img) for img in raw])
        x = raw.float().div_(255)
        if self.augment:
            x = random_crop_flip(x, _gen(step_seed(self.seed, step, "aug"), "cpu"), flip=self.flip)
        return x, self.labels[idx]

    def augment_like_real(self, x, step: int, stream: str):
        """The real stream's augmentation (random crop of the 4-padded image, + flip if on)
        applied to images x in [0, 1] of another stream, seeded by (seed, step, stream)."""
        if not self.augment:
            return x
        return random_crop_flip(x, _gen(step_seed(self.seed, step, f"aug-{stream}"), "cpu"),
                                flip=self.flip)

    def random_images(self, step: int, n: int, stream: str):
        """n real images in [0, 1] drawn uniformly (with replacement, no augmentation) by a
        pure function of (seed, step, stream): content and style images of the transfer."""
        g = _gen(step_seed(self.seed, step, f"{stream}{self.rank}"), "cpu")
        idx = torch.randint(self.n, (n,), generator=g).to(self.device)
        return self.images[idx].float().div_(255), self.labels[idx]


class FolderData:
    """Real images from an image-folder tree (validated once with genint_fast.data), with the
    RealData interface: batch(step) decodes its files in a thread pool and augments them
    (random resized crop + flip, or resize + centre crop) under a per-step seed, so it is a
    pure function of (seed, step) like the in-memory data. The trainer prefetches it with a
    Producer."""

    prefetch = True

    def __init__(self, root, *, batch_size, seed, device, size, augment=True, rank=0, world=1,
                 autoaugment=None, threads=4, log=None):
        from concurrent.futures import ThreadPoolExecutor

        from torchvision.transforms import v2

        from ..data.folder import ImageFolder
        from ..data.loader import CROP_RATIO, CROP_SCALE

        self.folder = ImageFolder(root, threads=threads, warn=log or (lambda msg: None))
        self.classes, self.files = self.folder.classes, self.folder.files
        self.labels, self.skipped = self.folder.labels, self.folder.skipped
        self.n = len(self.files)
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.rank, self.world, self.size = rank, world, (size, size)
        self.per_epoch = (self.n // world) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size {batch_size} x {world} rank(s) is larger than the "
                             f"{self.n} readable images under {root}")
        self.train_tf = (v2.Compose([v2.RandomResizedCrop(self.size, scale=CROP_SCALE,
                                                          ratio=CROP_RATIO, antialias=True),
                                     v2.RandomHorizontalFlip()]) if augment else None)
        self.eval_tf = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(self.size)])
        self.autoaugment = (v2.AutoAugment(v2.AutoAugmentPolicy(autoaugment))
                            if autoaugment is not None else None)
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self._perm_epoch, self._perm = None, None

    def epoch_of(self, step):
        return step // self.per_epoch

    def _decode(self, idx):
        return self.folder.read_many(idx, self.pool)

    def _stack(self, imgs, step, train, stream):
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):   # see _GLOBAL_RNG_LOCK
            torch.manual_seed(step_seed(self.seed, step, stream))
            out = []
            for img in imgs:
                if train and self.autoaugment is not None:
                    img = self.autoaugment(img)
                img = (self.train_tf if train and self.train_tf is not None
                       else self.eval_tf)(img)
                out.append(img)
        return torch.stack(out).to(self.device).float().div_(255)

    def batch(self, step: int):
        epoch, i = divmod(step, self.per_epoch)
        if self._perm_epoch != epoch:
            perm = torch.randperm(self.n, generator=_gen(step_seed(self.seed, epoch, "perm"),
                                                           "cpu"))
            self._perm, self._perm_epoch = perm[self.rank::self.world], epoch
        idx = self._perm[i * self.batch_size:(i + 1) * self.batch_size].tolist()
        x = self._stack(self._decode(idx), step, True, "aug")
        return x, self.labels[idx].to(self.device)

    def augment_like_real(self, x, step: int, stream: str):
        """The real stream's random resized crop + flip, per image, on images x in [0, 1] of
        another stream (already at the training size), seeded by (seed, step, stream)."""
        if self.train_tf is None:
            return x
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, step, f"aug-{stream}"))
            return torch.stack([self.train_tf(img) for img in x])

    def random_images(self, step: int, n: int, stream: str):
        g = _gen(step_seed(self.seed, step, f"{stream}{self.rank}"), "cpu")
        idx = torch.randint(self.n, (n,), generator=g).tolist()
        return (self._stack(self._decode(idx), step, False, stream),
                self.labels[idx].to(self.device))


def random_crop_flip(x, g: torch.Generator, pad=4, flip=True):
    """Per-image random crop of the zero-padded image (pad 4) and, if flip, horizontal flip
    (p = 0.5)."""
    b, _, h, w = x.shape
    offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=g).tolist()
    flips = (torch.rand(b, generator=g) < 0.5).tolist() if flip else [False] * b
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.stack([xp[j, :, oy:oy + h, ox:ox + w] for j, (oy, ox) in enumerate(offs)])
    flip_idx = [j for j, f in enumerate(flips) if f]
    if flip_idx:
        out[flip_idx] = out[flip_idx].flip(-1)
    return out


def normalise(x):
    """The half normalisation, (x - 0.5) / 0.5: the built-in digits with the small CNN."""
    return (x - 0.5) / 0.5


def make_normaliser(name: str):
    """x in [0, 1] -> the model's input: "half" ((x - 0.5) / 0.5, the function `normalise`) or
    "imagenet" ((x - mean) / std with torchvision's ImageNet statistics)."""
    if name == "half":
        return normalise
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {name!r}; use one of {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[name]
    cache = {}

    def norm(x):
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = (torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1),
                          torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1))
        m, s = cache[key]
        return (x - m) / s
    norm.__name__ = f"normalise_{name}"
    return norm


@torch.no_grad()
def evaluate(model, images, labels, *, batch_size=256, device="cpu", normalize="half"):
    """(top-1, top-5) accuracy in [0, 1] of `model` on uint8 images, normalised by
    `normalize` (a name: half, the digits' default, or imagenet; or a function of x in [0, 1];
    a trainer's is `trainer.normalise`)."""
    c1 = c5 = 0
    k = 5
    for i, logits in logits_of(model, images, batch_size=batch_size, device=device,
                               normalize=normalize):
        y = labels[i:i + logits.shape[0]].to(device)
        top = logits.topk(min(k, logits.shape[1]), dim=1).indices
        c1 += (top[:, 0] == y).sum().item()
        c5 += (top == y[:, None]).any(dim=1).sum().item()
    n = images.shape[0]
    return c1 / n, c5 / n


@torch.no_grad()
def logits_of(model, images, *, batch_size=256, device="cpu", normalize="half"):
    """Yields (start index, float logits) of uint8 `images` in batches, in eval mode, inputs
    normalised as in `evaluate`."""
    norm = make_normaliser(normalize) if isinstance(normalize, str) else normalize
    model.eval()
    for i in range(0, images.shape[0], batch_size):
        x = norm(images[i:i + batch_size].to(device).float().div_(255))
        yield i, model(x).float()


def read_init_weights(path):
    """(state, normalisation) of an init_weights file: a plain state dict (e.g. torchvision's
    resnet152 weights; normalisation None) or a genint-fast training checkpoint (its model and
    the normalisation it was trained with; "half" for checkpoints older than the key)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"cannot read init_weights {path} ({first}); pass a PyTorch state-dict "
                         f"file or a genint-fast checkpoint") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return state["model"], (state.get("config") or {}).get("normalize", "half")
    return state, None


def load_weights(model, path, *, name=None):
    """Initialise `model` from a state-dict file (e.g. torchvision's resnet152 weights) or a
    genint-fast training checkpoint; every key must match (no silent partial loads). `name`:
    the model's name in build_model (for the messages)."""
    if name is None:
        name = "smallcnn" if isinstance(model, SmallCNN) else type(model).__name__.lower()
    state, _ = read_init_weights(path)
    load_state_into(model, state, name=name, where=f"init_weights {path}")


class Trainer:
    def __init__(self, cfg: TrainConfig, *, rank=0, world=1, local_rank=0, data=None, log=print):
        self.cfg, self.rank, self.world, self.log = cfg, rank, world, log
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device is cuda but no CUDA GPU is visible; set device=cpu")
        if world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
        if world > 1 and cfg.forward == "separate":
            raise ValueError("forward=separate is not supported with more than one process "
                             "(DDP needs one forward per backward); use forward=concat")
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        autoaug = cfg.autoaugment_policy if cfg.mode == "autoaugment" else None
        kind, where = parse_data_spec(cfg.data)
        say = log if rank == 0 else (lambda msg: None)
        if kind == "folder" and data is None:
            self.data = FolderData(where, batch_size=cfg.batch_size, seed=cfg.seed,
                                   device=self.device, size=cfg.image_size, augment=cfg.augment,
                                   rank=rank, world=world, autoaugment=autoaug, log=say)
            labels = self.data.labels
        else:
            images, labels, *nuisance = data if data is not None else load_digits_split(
                cfg, "train", cfg.data_size, nuisance=cfg.mode == "groupdro")
            self.nuisance = nuisance[0] if nuisance else None
            if cfg.mode == "jtt":   # train twice: upsample what an ERM run gets wrong
                from .jtt import identify_errors, upsample_indices

                if world > 1:
                    raise ValueError("mode jtt runs in one process for now; drop torchrun")

                self.jtt_errors = identify_errors(cfg, images, labels,
                                                  self.out / "jtt_identification", log=say)
                keep = upsample_indices(self.jtt_errors, cfg.jtt_upweight)
                images, labels = images[keep], labels[keep]
            self.data = RealData(images, labels, batch_size=cfg.batch_size, seed=cfg.seed,
                                 device=self.device, augment=cfg.augment, rank=rank,
                                 world=world, autoaugment=autoaug, flip=bool(cfg.hflip))
        num_classes = self._num_classes(cfg, kind, where, labels, given_data=data is not None)
        self.cfg = cfg = dataclasses.replace(cfg, num_classes=num_classes)
        self.counterfactuals = self._build_counterfactuals()
        self.cf_set = self._build_counterfactual_set()
        # what an epoch counts: the counterfactual set in mode cgn with a fixed set, else the
        # real training images
        epoch_data = self.cf_set if (cfg.mode == "cgn" and self.cf_set is not None) else self.data
        self.epoch_data = epoch_data
        init_state, init_norm = (read_init_weights(cfg.init_weights) if cfg.init_weights
                                 else (None, None))
        # The run's resolved settings (classes, normalisation, length) are what the checkpoint
        # records, so evaluation and resume read them back as they were used.
        steps = (max(1, math.ceil(cfg.epochs * epoch_data.per_epoch)) if cfg.epochs is not None
                 else cfg.steps)
        self.cfg = cfg = dataclasses.replace(cfg, num_classes=num_classes, steps=steps,
                                             normalize=resolve_normalize(cfg, init_norm))
        self.normalise = make_normaliser(cfg.normalize)
        say(f"classifier: {cfg.model}, {num_classes} classes, inputs normalised "
            f"{cfg.normalize}" + (f", initialised from {cfg.init_weights}" if cfg.init_weights
                                  else "") + f"; {steps} steps of {epoch_data.per_epoch} per epoch")
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, cfg.num_classes, cfg.heads)
        if init_state is not None:
            load_state_into(self.model, init_state, name=cfg.model,
                            where=f"init_weights {cfg.init_weights}")
        self.model = self.model.to(self.device)
        if cfg.channels_last and self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model = self.model
        if world > 1:   # gradients all-reduced by DDP; batch-norm statistics stay per rank
            from torch.nn.parallel import DistributedDataParallel
            self.forward_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.optimizer == "adadelta":
            self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=cfg.lr,
                                                  weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr,
                                             momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        step_size = max(1, int(round(cfg.lr_step_epochs * epoch_data.per_epoch)))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size,
                                                         gamma=cfg.lr_gamma)
        amp_on = self.device.type == "cuda" and cfg.amp != "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.amp_on = amp_on
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_on and cfg.amp == "fp16")
        self.step = 0
        self.sampler = self._build_sampler()
        self.transfer = self._build_transfer()
        self.producer = None
        self.selector = self._build_selector(say) if cfg.select != "last" else None
        self.dro = self._build_group_dro(say) if cfg.mode == "groupdro" else None

    def _num_classes(self, cfg, kind, where, labels, *, given_data=False) -> int:
        """num_classes, from the data when the config leaves it null; a set value that does not
        match the data is refused."""
        from ..data.digits import num_classes_of

        top = int(labels.max()) + 1 if labels.numel() else 0
        if kind == "folder" and not given_data:
            found = len(self.data.classes)      # the class folders (labels index them)
            if cfg.num_classes is None:
                return found
            if cfg.num_classes != found:
                raise ValueError(f"the data folder {where} has {found} class folders but "
                                 f"num_classes is {cfg.num_classes}; set num_classes={found} or "
                                 f"leave it null to infer it from the folder")
            return found
        builtin = num_classes_of(kind) if kind != "folder" else top
        if cfg.num_classes is None:
            return max(builtin, top)
        if not given_data and cfg.num_classes != builtin:
            raise ValueError(f"the built-in digits have {builtin} classes but num_classes is "
                             f"{cfg.num_classes} (digits:{kind}); set num_classes={builtin} or "
                             "leave it null")
        if top > cfg.num_classes:
            raise ValueError(f"the data has labels up to {top - 1} but num_classes is "
                             f"{cfg.num_classes}; leave num_classes null to infer it")
        return cfg.num_classes

    def _build_group_dro(self, say):
        """mode groupdro: groups = class x stroke colour id of every training image."""
        from ..eval.groups import group_ids
        from .group_dro import GroupDRO

        cfg = self.cfg
        if self.world > 1:
            raise ValueError("mode groupdro runs in one process for now (its group weights "
                             "would differ per rank); drop torchrun")
        if getattr(self, "nuisance", None) is None:
            raise ValueError("mode groupdro needs the training images' nuisance ids: pass data="
                             "(images, labels, nuisance) or train on data=digits:<variant>")
        # Only the groups the training data hold get a weight: an empty group would keep its
        # share of q and scale every loss down (at rho 1, 10 of 100 groups are present).
        present, self.groups = torch.unique(group_ids(self.data.labels.cpu(), self.nuisance),
                                            return_inverse=True)
        self.groups = self.groups.to(self.device)
        dro = GroupDRO(int(present.numel()), cfg.dro_eta, device=self.device)
        say(f"Group DRO: {dro.num_groups} (class, stroke colour) groups present in the training "
            f"data, eta {cfg.dro_eta:g}")
        return dro

    def _build_selector(self, say):
        """select=val: the validation images (built-in val split or val_data folder)."""
        from .selection import ValidationSelector

        cfg = self.cfg
        if cfg.val_data is not None:   # read as the folder's eval transform: resize, centre crop
            from ..eval.sources import folder_images

            h, _ = self.data.size
            val = folder_images(parse_data_spec(cfg.val_data)[1], size=h, crop_fraction=1.0,
                                num_classes=cfg.num_classes)
            pairs = list(val.batches())
            images = torch.cat([x for x, _, _ in pairs])
            labels = torch.cat([y for _, y, _ in pairs])
        else:   # oracle: the test distribution's validation split (DomainBed's upper bound)
            images, labels = load_digits_split(cfg, "val" if cfg.select == "val" else "val-ood",
                                               cfg.val_size)
        say(f"model selection ({cfg.select}): top-1 on {images.shape[0]} validation images every "
            f"{cfg.val_every or 'epoch'}{' steps' if cfg.val_every else ''}; best in "
            f"{self.out / 'best.pt'}")
        return ValidationSelector(images, labels, every=cfg.val_every, out=self.out,
                                  normalise=self.normalise, device=self.device, log=say)

    # ------------------------------------------------------------------ generated stream
    def _build_sampler(self):
        cfg = self.cfg
        if cfg.mode not in ("genint", "gan-aug", "genint-transfer"):
            return None
        from ..generators import load_generator
        from ..intervene import InterventionSampler, ObservationalSampler

        gen = load_generator(cfg.generator, device=self.device)
        self._describe_generator(gen)
        if gen.num_classes != cfg.num_classes:
            raise ValueError(f"generator {cfg.generator!r} has {gen.num_classes} classes but "
                             f"num_classes is {cfg.num_classes}")
        seed = step_seed(cfg.seed, self.rank, "producer")
        if cfg.mode == "gan-aug":
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
            xs.append(self._to_real_range(images).mul(255).round_().clamp_(0, 255)
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
        if cfg.mode not in ("stylized", "genint-transfer"):
            return None
        from .. import features
        from ..transfer import StyleTransfer

        net = features.transfer_feature_net(cfg.transfer_features, device=self.device,
                                            log=self.log)
        return StyleTransfer(net, kernel=cfg.transfer_kernel, optimizer=cfg.transfer_optimizer,
                             steps=tuple(cfg.transfer_steps), seed=cfg.seed)

    def _to_real_range(self, images):
        images = ((images.float() + 1) / 2).clamp_(0, 1)
        h, w = self.data.size
        if tuple(images.shape[-2:]) != (h, w):
            images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False,
                                   antialias=True)
        return images

    def make_generated(self, step: int) -> dict:
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
            name = "generated" if cfg.mode == "gan-aug" else "intervened"
            images = self._to_real_range(images)
            if cfg.augment_generated:
                images = self.data.augment_like_real(images, step, name)
            out[name] = (images, labels)
        if self.transfer is not None:
            b = cfg.transfer_batch_size
            content, labels = self.data.random_images(step, b, "content")
            if cfg.mode == "stylized":
                style, _ = self.data.random_images(step, b, "style")
            else:
                style = self._to_real_range(s.sample(b)[0])
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
            images = self._to_real_range(images)
            if cfg.augment_generated:
                images = self.data.augment_like_real(images, step, "counterfactual")
            out["counterfactual"] = (images, labels, record.labels())
        return out

    # ------------------------------------------------------------------ one step
    def streams_for(self, step: int, generated=None, real=None):
        cfg = self.cfg
        if cfg.mode == "cgn":   # counterfactuals only (the reference CGN classifier)
            x, y, heads = generated["counterfactual"]
            return [Stream("counterfactual", self.normalise(x), y, 1.0, head_labels=heads)]
        x, y = self.data.batch(step) if real is None else real
        if cfg.mode == "mixup":
            rng = np.random.default_rng(step_seed(cfg.seed, step, "mixup"))
            lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
            perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
            x = lam * x + (1 - lam) * x[perm]
            return [Stream("real", self.normalise(x), y, 1.0, labels2=y[perm], lam=lam)]
        if cfg.mode == "groupdro":
            g = self.groups[self.data.indices(step)]
            return [Stream("real", self.normalise(x), y, 1.0,
                           loss_fn=lambda logits, s: self.dro.loss(logits, s.labels, g))]
        streams = [Stream("real", self.normalise(x), y, 1.0)]
        weights = {"intervened": cfg.lambda1, "generated": cfg.lambda1,
                   "transferred": cfg.lambda2,
                   "counterfactual": cfg.lambda1 if cfg.lambda_cgn is None else cfg.lambda_cgn}
        for name, (gx, gy, *heads) in (generated or {}).items():
            streams.append(Stream(name, self.normalise(gx), gy, weights[name],
                                  head_labels=heads[0] if heads else None))
        return streams

    def train_step(self, streams):
        self.model.train()
        if self.cfg.channels_last and self.device.type == "cuda":
            streams = [dataclasses.replace(
                s, images=s.images.contiguous(memory_format=torch.channels_last))
                for s in streams]
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                            enabled=self.amp_on):
            total, per = stream_losses(self.forward_model, streams,
                                       concat=self.cfg.forward == "concat",
                                       ensemble=self.cfg.heads == "ensemble")
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        values = torch.stack([total.detach().float()] + [v.detach().float() for v in per.values()])
        if self.world > 1:   # metrics are the mean over ranks
            import torch.distributed as dist
            dist.all_reduce(values)
            values /= self.world
        values = values.tolist()
        return values[0], dict(zip(per, values[1:]))

    def _fit_dfr(self) -> dict:
        """mode dfr: the last layer refit on the group-balanced validation split (train/dfr.py);
        the rest of the model stays as init_weights left it."""
        from ..eval.groups import group_ids
        from .dfr import embeddings, fit_last_layer, last_linear

        cfg = self.cfg
        images, labels, nuisance = load_digits_split(cfg, "val", cfg.val_size, nuisance=True)
        x = embeddings(self.model, images, normalise=self.normalise, device=self.device)
        res = fit_last_layer(x, labels.numpy(), group_ids(labels, nuisance).numpy(),
                             num_classes=cfg.num_classes, retrains=cfg.dfr_retrains,
                             seed=cfg.seed)
        layer = last_linear(self.model)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(res["weight"], dtype=layer.weight.dtype))
            layer.bias.copy_(torch.as_tensor(res["bias"], dtype=layer.bias.dtype))
        self.step = cfg.steps
        self.save()
        row = {"step": self.step, "dfr_C": res["C"], "dfr_subset": res["subset_size"],
               "dfr_tune_worst_group": res["tune_worst_group"]}
        self.log(f"DFR: last layer refit on {res['subset_size']} group-balanced validation "
                 f"images x {cfg.dfr_retrains} (C {res['C']:g}, tuning worst-group "
                 f"{100 * res['tune_worst_group']:.1f}%)")
        return row

    def _select(self) -> float:
        """Score the model on the validation split (rank 0) and keep it if it is the best."""
        acc = float("nan")
        if self.rank == 0:
            acc = self.selector.update(self.model, self.step, self.state_dict)
        return acc

    def _end_with_selected(self) -> None:
        """select=val: after the last checkpoint (which keeps the last weights, so a longer run
        can resume) the model takes the selected weights of best.pt."""
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()
        self.selector.restore(self.model)
        if self.rank == 0:
            self.log(f"selected step {self.selector.best_step} of {self.step} by validation "
                     f"top-1 {100 * self.selector.best:.1f}% ({self.selector.path})")

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        return {"format": FORMAT, "step": self.step, "config": self.cfg.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rng_states(), "rank_world": (self.rank, self.world),
                **({"selection": self.selector.state_dict()} if self.selector else {}),
                **({"group_dro": self.dro.state_dict()} if self.dro else {})}

    def save(self):
        if self.rank == 0:
            save_atomic(self.state_dict(), self.checkpoint_path)

    def resume(self, path=None) -> bool:
        """Load the latest checkpoint (default: out/checkpoint.pt). False if there is none."""
        path = Path(path) if path is not None else self.checkpoint_path
        if not path.is_file():
            return False
        st = load_checkpoint(path)
        mine, theirs = self.cfg.to_dict(), st["config"]
        diff = sorted(k for k in mine if k not in _RESUMABLE_CHANGES
                      and mine[k] != theirs.get(k, _OLD_DEFAULTS.get(k)))
        if diff:
            raise ValueError(f"cannot resume from {path}: config differs in {', '.join(diff)}")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        set_rng_states(st["rng"])
        self.step = int(st["step"])
        if self.selector is not None and "selection" in st:
            self.selector.load_state_dict(st["selection"])
        if self.dro is not None:
            self.dro.load_state_dict(st["group_dro"])
        return True

    # ------------------------------------------------------------------ loop
    def fit(self, on_step=None) -> dict:
        """Train from self.step to cfg.steps. on_step(trainer, metrics) runs after each step.
        Returns the last metrics row."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        if cfg.mode == "dfr":
            return self._fit_dfr()
        metrics_file = open(self.out / "metrics.jsonl", "a") if self.rank == 0 else None
        tb = None
        if cfg.tensorboard and self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(str(self.out / "tb"))
        if (self.sampler is not None or self.transfer is not None
                or self.counterfactuals is not None):
            self.producer = Producer(self.make_generated, self.step,
                                     threaded=cfg.producer == "thread",
                                     queue_size=cfg.queue_size, device=self.device)
        real_producer = None
        if self.data.prefetch and cfg.mode != "cgn":   # decoding overlaps the classifier too
            real_producer = Producer(self.data.batch, self.step, threaded=True,
                                     queue_size=cfg.queue_size, device=self.device)
        bar = None
        if cfg.progress and self.rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True)
        row, win_wait, win_time, win_images, win_steps = {}, 0.0, 0.0, 0, 0
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                generated, wait = (None, 0.0)
                if self.producer is not None:
                    generated, wait = self.producer.get()
                real = None
                if real_producer is not None:
                    real, real_wait = real_producer.get()
                    wait += real_wait
                streams = self.streams_for(self.step, generated, real)
                total, per = self.train_step(streams)
                if not math.isfinite(total):
                    raise RuntimeError(f"the loss became {total} at step {self.step}; lower lr")
                self.step += 1
                dt = time.perf_counter() - t0
                win_wait += wait
                win_time += dt
                win_images += sum(s.images.shape[0] for s in streams)
                win_steps += 1
                row = {"step": self.step, "epoch": self.data.epoch_of(self.step - 1),
                       "loss": total, **{f"loss_{k}": v for k, v in per.items()},
                       "lr": self.optimizer.param_groups[0]["lr"], "wait_s": wait}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in per.items()} |
                                    {"img/s": f"{win_images / max(win_time, 1e-9):.0f}",
                                     "wait": f"{win_wait / max(win_time, 1e-9):.0%}"})
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row.update({"images_per_s": win_images / max(win_time, 1e-9),
                                "wait_fraction": win_wait / max(win_time, 1e-9),
                                "mean_wait_s": win_wait / win_steps})
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(row) + "\n")
                        metrics_file.flush()
                    if tb is not None:
                        for key, value in row.items():
                            if key != "step":
                                tb.add_scalar(f"train/{key}", value, self.step)
                        tb.flush()
                    win_wait = win_time = 0.0
                    win_images = win_steps = 0
                if self.selector is not None and self.selector.due(
                        self.step, cfg.steps, self.epoch_data.per_epoch):
                    row["val_top1"] = self._select()
                    if metrics_file is not None:
                        metrics_file.write(json.dumps({"step": self.step,
                                                       "val_top1": row["val_top1"]}) + "\n")
                if (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
                        or self.step % self.data.per_epoch == 0):   # every N, epoch end, end
                    self.save()
                if self.selector is not None and self.step == cfg.steps:
                    self._end_with_selected()
                if on_step is not None:
                    on_step(self, row)
        finally:
            if real_producer is not None:
                real_producer.close()
            if self.producer is not None:
                self.producer.close()
                self.producer = None
            if bar is not None:
                bar.close()
            if metrics_file is not None:
                metrics_file.close()
            if tb is not None:
                tb.close()
        return row


def init_distributed(cfg: TrainConfig):
    """(rank, world, local_rank) from torchrun's environment; initialises the process group
    (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1."""
    import os

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            cuda = cfg.device.startswith("cuda")
            if cuda:
                torch.cuda.set_device(local)
            dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, local


def run_training(cfg: TrainConfig, *, resume=False, on_step=None, log=print):
    """Set up (torchrun-aware), optionally resume, train; returns (trainer, last metrics)."""
    rank, world, local = init_distributed(cfg)
    trainer = Trainer(cfg, rank=rank, world=world, local_rank=local, log=log)
    if trainer.checkpoint_path.exists() and not resume:
        raise ValueError(f"{trainer.checkpoint_path} exists; pass --resume to continue it or "
                         f"choose another out=")
    if resume and trainer.resume() and rank == 0:
        log(f"resumed from {trainer.checkpoint_path} at step {trainer.step}")
    row = trainer.fit(on_step)
    return trainer, row
