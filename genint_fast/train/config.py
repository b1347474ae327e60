"""Trainer configuration: a dataclass loaded from a YAML recipe (configs/*.yaml) plus
`key=value` command-line overrides (values parsed as YAML scalars). Every check runs before any
work starts; a bad config raises one ValueError sentence naming the key."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["TrainConfig", "load_config", "MODES", "MODELS", "IMPLEMENTED_MODES"]

MODES = ("erm", "mixup", "autoaugment", "stylized", "gan-aug", "genint", "genint-transfer", "cgn",
         "real+cgn")
# Modes this trainer runs today; the others are refused with a clear message.
IMPLEMENTED_MODES = MODES
MODELS = ("smallcnn", "resnet18", "resnet50", "resnet152")
_AMP = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    # what to train
    mode: str = "genint"
    model: str = "smallcnn"
    heads: str = "single"           # single | ensemble (CGN's invariant ensemble: shape, texture
                                    # and background heads on a shared backbone)
    num_classes: int = 10
    init_weights: str | None = None  # fine-tuning: a state-dict file or a training checkpoint
    # data: built-in biased digits "digits:<variant>[:rho]" or "folder:<DIR>" (DIR/<class>/<img>)
    data: str = "digits:colored:0.9"
    data_size: int = 10000          # training images drawn from the built-in split
    data_seed: int = 0
    augment: bool = True            # digits: random crop (pad 4) + flip; folder: random resized
                                    # crop + flip (SPEC 6); seeded per step
    augment_generated: bool = True  # the same augmentation on every other stream (generated,
                                    # intervened, transferred, counterfactual), as the reference
    image_size: int = 224           # folder data: training resolution
    # streams and objective L = CE(real) + lambda1 CE(int) + lambda2 CE(transferred)
    batch_size: int = 64            # real images per step
    gen_batch_size: int = 16        # generated images per step
    lambda1: float = 0.05
    lambda2: float = 0.0
    forward: str = "concat"         # concat (shared BN statistics) | separate
    mixup_alpha: float = 0.4
    autoaugment_policy: str = "cifar10"   # torchvision AutoAugmentPolicy: imagenet|cifar10|svhn
    # style transfer (modes stylized, genint-transfer; genint_fast.transfer)
    transfer_batch_size: int = 8
    transfer_features: str = "small:random"   # small:random[:SEED] | small (trained, cached) | vgg19
    transfer_steps: list = field(default_factory=lambda: [20, 70])
    transfer_optimizer: str = "lbfgs"           # lbfgs | adam
    transfer_kernel: str = "poly2"
    # generator and interventions
    generator: str = "random:small32:0"
    directions: str | None = None   # file; null = exact SVD directions computed at start
    num_directions: int = 20
    truncation: float = 1.0
    top_k: int = 20
    m: int = 5
    scale: float = 1.0              # steps U[-scale, scale] in standard deviations
    step_ranges: str | None = None  # null (use scale) | reference (the reference code's
                                    # per-direction table, 60 directions)
    intervention_mode: str = "add"  # add (paper: component std units) | set (reference code:
                                    # latent std units)
    intervention_style: str = "multi"   # multi (m directions per latent) | one (reference: one
                                        # direction per image, per_latent images per latent)
    per_latent: int = 5
    control: str = "none"           # none | random-directions (random unit directions, same
                                    # steps) | matched-norm (unsteered latents scaled to the
                                    # steered latents' mean norm); genint modes only
    # CGN counterfactual stream (modes cgn, real+cgn; or added to any mode when cgn is set)
    cgn: str | None = None          # a `genint-fast cgn` checkpoint
    cgn_batch_size: int = 64        # counterfactuals per step
    cgn_per_mask: int = 1           # counterfactuals drawn per shape mask
    cgn_labels: str = "uniform"     # uniform (independent classes) | permute (reference code)
    lambda_cgn: float | None = None  # weight of the counterfactual stream; null = lambda1
                                     # (mode cgn: the only stream, weight 1)
    # producers
    producer: str = "thread"        # thread (background, bounded queue) | inline (sequential)
    queue_size: int = 4
    # optimisation (SGD, step schedule: lr *= gamma every lr_step_epochs epochs)
    steps: int = 1000
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step_epochs: float = 30.0
    lr_gamma: float = 0.1
    amp: str = "none"               # none | bf16 | fp16 (CUDA only)
    channels_last: bool = False     # CUDA only
    # run
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None      # torch intra-op threads (fixed count: bitwise resume on CPU)
    out: str = "runs/demo"
    checkpoint_every: int = 200
    log_every: int = 20
    progress: bool = True
    tensorboard: bool = False       # also write TensorBoard events to OUT/tb (needs tensorboard)
    eval_size: int = 2000           # images per test split in the end-of-run summary
    extra: dict = field(default_factory=dict)   # free-form notes, kept in the checkpoint

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        def bad(key, msg):
            raise ValueError(f"invalid config: {key} {msg}")

        types = {f.name: f.type for f in dataclasses.fields(self)}
        for name in types:
            v = getattr(self, name)
            t = types[name]
            if t == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                bad(name, f"must be an integer, got {v!r}")
            if t == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    bad(name, f"must be a number, got {v!r}")
                setattr(self, name, float(v))
            if t == "bool" and not isinstance(v, bool):
                bad(name, f"must be true or false, got {v!r}")
            if t == "str" and not isinstance(v, str):
                bad(name, f"must be a string, got {v!r}")
            if t == "list" and not isinstance(v, list):
                bad(name, f"must be a list, got {v!r}")
        if self.mode not in MODES:
            bad("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode not in IMPLEMENTED_MODES:
            bad("mode", f"{self.mode!r} is not implemented yet; use one of "
                        f"{', '.join(IMPLEMENTED_MODES)}")
        if self.intervention_style not in ("multi", "one"):
            bad("intervention_style", f'must be "multi" or "one", got '
                                      f'{self.intervention_style!r}')
        if self.step_ranges not in (None, "reference"):
            bad("step_ranges", f'must be null or "reference", got {self.step_ranges!r}')
        if self.step_ranges == "reference" and self.top_k > 60:
            bad("step_ranges", f"reference covers 60 directions; top_k is {self.top_k}")
        if self.control not in ("none", "random-directions", "matched-norm"):
            bad("control", f'must be "none", "random-directions" or "matched-norm", got '
                           f'{self.control!r}')
        if self.control != "none" and self.mode not in ("genint", "genint-transfer"):
            bad("control", f"applies to the genint modes only, not {self.mode}")
        if self.heads not in ("single", "ensemble"):
            bad("heads", f'must be "single" or "ensemble", got {self.heads!r}')
        if self.mode in ("cgn", "real+cgn") and not self.cgn:
            bad("cgn", f"must name a `genint-fast cgn` checkpoint in mode {self.mode}")
        if self.cgn is not None:
            if not (isinstance(self.cgn, str) and Path(self.cgn).is_file()):
                bad("cgn", f"must be null or an existing `genint-fast cgn` checkpoint file, got "
                           f"{self.cgn!r}")
            if self.mode == "mixup":
                bad("cgn", "cannot be combined with mode mixup (mixup mixes the real stream "
                           "only); use mode real+cgn")
            if self.cgn_labels not in ("uniform", "permute"):
                bad("cgn_labels", f'must be "uniform" or "permute", got {self.cgn_labels!r}')
            if self.cgn_batch_size < 1 or self.cgn_per_mask < 1:
                bad("cgn_batch_size/cgn_per_mask", "must be >= 1")
        if self.lambda_cgn is not None:
            if isinstance(self.lambda_cgn, bool) or not isinstance(self.lambda_cgn, (int, float)) \
                    or self.lambda_cgn < 0:
                bad("lambda_cgn", f"must be null or a number >= 0, got {self.lambda_cgn!r}")
            self.lambda_cgn = float(self.lambda_cgn)
        if self.heads == "ensemble" and self.cgn is None:
            bad("heads", "ensemble needs a counterfactual stream (set cgn=CKPT): its texture "
                         "and background heads learn from counterfactual labels only")
        if self.model not in MODELS:
            bad("model", f"must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.forward not in ("concat", "separate"):
            bad("forward", f'must be "concat" or "separate", got {self.forward!r}')
        if self.producer not in ("thread", "inline"):
            bad("producer", f'must be "thread" or "inline", got {self.producer!r}')
        if self.amp not in _AMP:
            bad("amp", f"must be one of {', '.join(_AMP)}, got {self.amp!r}")
        if self.intervention_mode not in ("add", "set"):
            bad("intervention_mode", f'must be "add" or "set", got {self.intervention_mode!r}')
        for key in ("num_classes", "batch_size", "steps", "checkpoint_every", "log_every",
                    "queue_size", "data_size", "num_directions", "top_k", "m", "eval_size",
                    "image_size", "per_latent"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.num_classes < 2:
            bad("num_classes", f"must be >= 2, got {self.num_classes}")
        if self.gen_batch_size < 0:
            bad("gen_batch_size", f"must be >= 0, got {self.gen_batch_size}")
        if self.mode in ("gan-aug", "genint", "genint-transfer") and self.gen_batch_size < 1:
            bad("gen_batch_size", f"must be >= 1 in mode {self.mode}")
        for key in ("lambda1", "lambda2", "weight_decay", "momentum", "scale"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if not 0 < self.truncation <= 1:
            bad("truncation", f"must be in (0, 1], got {self.truncation}")
        if self.mode in ("stylized", "genint-transfer"):
            if self.transfer_batch_size < 1:
                bad("transfer_batch_size", f"must be >= 1 in mode {self.mode}")
            if self.lambda2 <= 0:
                bad("lambda2", f"must be > 0 in mode {self.mode} (it weights the transferred "
                               f"stream)")
        ts = self.transfer_steps
        if (len(ts) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in ts)
                or not 1 <= ts[0] <= ts[1]):
            bad("transfer_steps", f"must be [lo, hi] integers with 1 <= lo <= hi, got {ts!r}")
        if self.transfer_optimizer not in ("lbfgs", "adam"):
            bad("transfer_optimizer", f'must be "lbfgs" or "adam", got {self.transfer_optimizer!r}')
        if self.transfer_kernel not in ("linear", "poly2", "gaussian", "bn"):
            bad("transfer_kernel", f"must be linear, poly2, gaussian or bn, got "
                                   f"{self.transfer_kernel!r}")
        tf = self.transfer_features.split(":")
        if not (self.transfer_features in ("small", "vgg19") or
                (tf[0] == "small" and tf[1:2] == ["random"] and len(tf) <= 3 and
                 (len(tf) == 2 or tf[2].isdigit()))):
            bad("transfer_features", f"must be small:random[:SEED], small or vgg19, got "
                                     f"{self.transfer_features!r}")
        if self.autoaugment_policy not in ("imagenet", "cifar10", "svhn"):
            bad("autoaugment_policy", f"must be imagenet, cifar10 or svhn, got "
                                      f"{self.autoaugment_policy!r}")
        if self.mixup_alpha <= 0:
            bad("mixup_alpha", f"must be > 0, got {self.mixup_alpha}")
        if self.lr_step_epochs <= 0 or not 0 < self.lr_gamma <= 1:
            bad("lr_step_epochs/lr_gamma", "need lr_step_epochs > 0 and 0 < lr_gamma <= 1")
        if self.m > self.top_k or self.top_k > self.num_directions:
            bad("m/top_k", f"need m <= top_k <= num_directions, got m={self.m}, "
                           f"top_k={self.top_k}, num_directions={self.num_directions}")
        if self.intervention_style == "one" and self.per_latent > self.top_k:
            bad("per_latent", f"must be <= top_k={self.top_k} (distinct directions per latent), "
                              f"got {self.per_latent}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            bad("threads", f"must be null or an integer >= 1, got {self.threads!r}")
        if self.init_weights is not None and not (isinstance(self.init_weights, str) and
                                                  Path(self.init_weights).is_file()):
            bad("init_weights", f"must be null or an existing file, got {self.init_weights!r}")
        if self.directions is not None and not isinstance(self.directions, str):
            bad("directions", f"must be null or a file path, got {self.directions!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            bad("device", f'must be "cpu" or "cuda[:N]", got {self.device!r}')
        parse_data_spec(self.data)
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                bad("tensorboard", "is true but the tensorboard package is missing; "
                                   "pip install tensorboard, or set tensorboard=false")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_data_spec(spec: str):
    """"digits:<variant>[:rho]" -> (variant, rho); "folder:<DIR>" -> ("folder", DIR)."""
    from ..data.digits import VARIANTS

    if str(spec).startswith("folder:"):
        root = str(spec)[len("folder:"):]
        if not Path(root).is_dir():
            raise ValueError(f"invalid config: data folder {root!r} does not exist")
        return "folder", root
    parts = str(spec).split(":")
    if parts[0] != "digits" or len(parts) not in (2, 3) or parts[1] not in VARIANTS:
        raise ValueError(f"invalid config: data must be digits:<{'|'.join(VARIANTS)}>[:RHO] "
                         f"or folder:<DIR>, got {spec!r}")
    try:
        rho = float(parts[2]) if len(parts) == 3 else 0.9
    except ValueError:
        raise ValueError(f"invalid config: data has a bad rho in {spec!r}") from None
    if not 0 <= rho <= 1:
        raise ValueError(f"invalid config: data rho must be in [0, 1], got {rho}")
    return parts[1], rho


def _apply(raw: dict, where: str) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"invalid config: unknown key(s) {', '.join(unknown)} in {where}")
    return raw


def load_config(path=None, overrides=()) -> TrainConfig:
    """Read a YAML recipe (or the defaults when path is None), apply `key=value` overrides,
    validate, and return the config."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no config file at {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"invalid config: {p} is not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"invalid config: {p} must hold a mapping of keys to values")
        raw.update(_apply(loaded, str(p)))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"invalid config: override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError:
            parsed = value
        raw.update(_apply({key.strip(): parsed}, "the command line"))
    try:
        cfg = TrainConfig(**raw)
    except TypeError as exc:  # pragma: no cover - unknown keys are caught above
        raise ValueError(f"invalid config: {exc}") from None
    return cfg.validate()
