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
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..classifier.inference import evaluate, logits_of  # noqa: F401 - re-exported
from ..classifier.models import build_model, load_state_into
from ..classifier.normalise import make_normaliser, normalise  # noqa: F401 - re-exported
from ..classifier.weights import load_weights  # noqa: F401 - re-exported
from ..classifier.weights import FORMAT, load_checkpoint, read_init_weights
from .checkpoint import rng_states, save_atomic, set_rng_states
from .config import MODE_STREAMS, TrainConfig, parse_data_spec, resolve_normalize
from .data import FolderData, RealData, load_digits_split  # noqa: F401 - re-exported
from .data import random_crop_flip  # noqa: F401 - re-exported
from .objective import Stream, stream_losses
from .producer import Producer, step_seed
from .runlog import Meter, RunLog
from .streams import GeneratedStreams

__all__ = ["Trainer", "RealData", "FolderData", "evaluate", "load_digits_split", "run_training",
           "init_distributed", "normalise", "make_normaliser", "load_weights", "read_init_weights"]

CHECKPOINT_NAME = "checkpoint.pt"
# Config keys that may change between a run and its resume (everything else must match).
_RESUMABLE_CHANGES = {"steps", "epochs", "out", "progress", "log_every", "checkpoint_every",
                      "producer", "queue_size", "extra", "eval_size", "tensorboard"}
# What a checkpoint written before a key existed ran with.
_OLD_DEFAULTS = {"normalize": "half", "epochs": None}


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
        self.spec = MODE_STREAMS[cfg.mode]
        kind, where = parse_data_spec(cfg.data)
        say = log if rank == 0 else (lambda msg: None)
        labels = self._build_data(data, kind, where, say)
        num_classes = self._num_classes(cfg, kind, where, labels, given_data=data is not None)
        self.cfg = cfg = dataclasses.replace(cfg, num_classes=num_classes)
        self.generated = GeneratedStreams(cfg, self.data, rank=rank, world=world,
                                          device=self.device, log=log)
        # what an epoch counts: the counterfactual set when there is no real stream (mode cgn
        # with a fixed set), else the real training images
        epoch_data = (self.cf_set if (self.spec.real is None and self.cf_set is not None)
                      else self.data)
        self.epoch_data = epoch_data
        init_state, init_norm = (read_init_weights(cfg.init_weights) if cfg.init_weights
                                 else (None, None))
        # The run's resolved settings (classes, normalisation, length) are what the checkpoint
        # records, so evaluation and resume read them back as they were used.
        steps = (max(1, math.ceil(cfg.epochs * epoch_data.per_epoch)) if cfg.epochs is not None
                 else cfg.steps)
        self.cfg = cfg = dataclasses.replace(cfg, num_classes=num_classes, steps=steps,
                                             normalize=resolve_normalize(cfg, init_norm))
        self.generated.cfg = cfg
        self.normalise = make_normaliser(cfg.normalize)
        say(f"classifier: {cfg.model}, {num_classes} classes, inputs normalised "
            f"{cfg.normalize}" + (f", initialised from {cfg.init_weights}" if cfg.init_weights
                                  else "") + f"; {steps} steps of {epoch_data.per_epoch} per epoch")
        self._build_model(init_state)
        amp_on = self.device.type == "cuda" and cfg.amp != "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.amp_on = amp_on
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_on and cfg.amp == "fp16")
        self.step = 0
        self.generated.build_generators()
        self.producer = None
        self.selector = self._build_selector(say) if cfg.select != "last" else None
        self.dro = self._build_group_dro(say) if self.spec.real == "groupdro" else None

    def _build_data(self, data, kind, where, say):
        """self.data (a FolderData for a folder, else a RealData over the given or built-in
        images; JTT's upsampled set in mode jtt) and the training labels."""
        cfg, rank, world = self.cfg, self.rank, self.world
        autoaug = cfg.autoaugment_policy if self.spec.autoaugment else None
        if kind == "folder" and data is None:
            self.data = FolderData(where, batch_size=cfg.batch_size, seed=cfg.seed,
                                   device=self.device, size=cfg.image_size, augment=cfg.augment,
                                   rank=rank, world=world, autoaugment=autoaug, log=say)
            labels = self.data.labels
        else:
            images, labels, *nuisance = data if data is not None else load_digits_split(
                cfg, "train", cfg.data_size, nuisance=self.spec.real == "groupdro")
            self.nuisance = nuisance[0] if nuisance else None
            if self.spec.prepare == "jtt":   # train twice: upsample what an ERM run gets wrong
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
        return labels

    def _build_model(self, init_state) -> None:
        """The classifier (seeded by cfg.seed, optionally initialised), DDP, the optimiser and
        the step schedule."""
        cfg, world = self.cfg, self.world
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
        step_size = max(1, int(round(cfg.lr_step_epochs * self.epoch_data.per_epoch)))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size,
                                                         gamma=cfg.lr_gamma)

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

    # ------------------------------------------------------------------ generated streams
    # (train/streams.py builds and draws them; these names keep the trainer's interface)
    @property
    def sampler(self):
        return self.generated.sampler

    @property
    def transfer(self):
        return self.generated.transfer

    @property
    def counterfactuals(self):
        return self.generated.counterfactuals

    @property
    def cf_set(self):
        return self.generated.cf_set

    @property
    def cf_set_images(self):
        return self.generated.cf_set_images

    @property
    def cf_set_heads(self):
        return self.generated.cf_set_heads

    def to_real_range(self, images):
        """Generator output in [-1, 1] -> [0, 1] at the real images' size."""
        return self.generated.to_real_range(images)

    _to_real_range = to_real_range   # the old private name, for one release

    def make_generated(self, step: int) -> dict:
        """The generated streams of `step` (GeneratedStreams.make): {name: (images in [0, 1],
        labels[, mechanism labels])}, a pure function of (seed, step)."""
        return self.generated.make(step)

    # ------------------------------------------------------------------ one step
    def streams_for(self, step: int, generated=None, real=None):
        cfg = self.cfg
        if self.spec.real is None:   # counterfactuals only (the reference CGN classifier)
            x, y, heads = generated["counterfactual"]
            return [Stream("counterfactual", self.normalise(x), y, 1.0, head_labels=heads)]
        x, y = self.data.batch(step) if real is None else real
        if self.spec.real == "mixup":
            rng = np.random.default_rng(step_seed(cfg.seed, step, "mixup"))
            lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
            perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
            x = lam * x + (1 - lam) * x[perm]
            return [Stream("real", self.normalise(x), y, 1.0, labels2=y[perm], lam=lam)]
        if self.spec.real == "groupdro":
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
    def _start_producers(self):
        """The generated streams' producer (if any stream is generated) and the real images'
        (folders: decoding overlaps the classifier too)."""
        cfg = self.cfg
        if self.generated.active:
            self.producer = Producer(self.make_generated, self.step,
                                     threaded=cfg.producer == "thread",
                                     queue_size=cfg.queue_size, device=self.device)
        if self.data.prefetch and self.spec.real is not None:
            return Producer(self.data.batch, self.step, threaded=True,
                            queue_size=cfg.queue_size, device=self.device)
        return None

    def _one_step(self, real_producer):
        """Train one step; (streams, total loss, per-stream losses, seconds waited)."""
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
        return streams, total, per, wait

    def _after_step(self, row, out):
        """Validation, checkpoints and the end of selection after step self.step."""
        cfg = self.cfg
        if self.selector is not None and self.selector.due(self.step, cfg.steps,
                                                           self.epoch_data.per_epoch):
            row["val_top1"] = self._select()
            out.write({"step": self.step, "val_top1": row["val_top1"]}, scalars=False)
        if (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
                or self.step % self.data.per_epoch == 0):   # every N, epoch end, end
            self.save()
        if self.selector is not None and self.step == cfg.steps:
            self._end_with_selected()

    def fit(self, on_step=None) -> dict:
        """Train from self.step to cfg.steps. on_step(trainer, metrics) runs after each step.
        Returns the last metrics row."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        if self.spec.fit == "dfr":
            from .dfr import refit_trainer

            return refit_trainer(self)
        out = RunLog(self.out, rank=self.rank, tensorboard=cfg.tensorboard,
                     progress=cfg.progress, steps=cfg.steps, start=self.step)
        real_producer = self._start_producers()
        row, meter = {}, Meter()
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                streams, total, per, wait = self._one_step(real_producer)
                meter.add(wait, time.perf_counter() - t0, sum(s.images.shape[0] for s in streams))
                row = {"step": self.step, "epoch": self.data.epoch_of(self.step - 1),
                       "loss": total, **{f"loss_{k}": v for k, v in per.items()},
                       "lr": self.optimizer.param_groups[0]["lr"], "wait_s": wait}
                out.progress(per, meter)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row.update(meter.summary())
                    out.write(row)
                    meter.reset()
                self._after_step(row, out)
                if on_step is not None:
                    on_step(self, row)
        finally:
            if real_producer is not None:
                real_producer.close()
            if self.producer is not None:
                self.producer.close()
                self.producer = None
            out.close()
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
