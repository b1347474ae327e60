"""Trainer configuration: a dataclass loaded from a YAML recipe (configs/*.yaml) plus
`key=value` command-line overrides (values parsed as YAML scalars). Every check runs before any
work starts; a bad config raises one ValueError sentence naming the key.

Each field carries its one-line meaning in `metadata["help"]`; `config_help()` turns the fields
into the key list of `genint-fast train --help`, so the two cannot drift. This module imports no
torch (the CLI builds its help from it)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..classifier.normalise import NORMALIZATIONS
from ..classifier.normalise import resolve_normalize as _resolve_normalize
from ..config_fields import field_default
from ..config_fields import key as _key
from ..data.sources import source_help

__all__ = ["TrainConfig", "load_config", "config_help", "resolve_normalize", "MODES", "MODELS",
           "IMPLEMENTED_MODES", "NORMALIZATIONS", "GENERATOR_MODES", "TRANSFER_MODES",
           "MODE_STREAMS", "ModeStreams"]



@dataclass(frozen=True)
class ModeStreams:
    """What a mode trains on, read by the trainer instead of tests of the mode's name.

    real: the real stream's form: "plain", "mixup" (mixed pairs), "groupdro" (Group DRO's
      weighted group losses) or None (no real stream: counterfactuals only).
    sampler: the generator stream: "generated" (observational samples) or "intervened"
      (GenInt's interventions); None: no generator.
    transfer_style: the style images of the "transferred" stream: "real" (other real images) or
      "intervened"; None: no style transfer.
    counterfactual: the CGN stream is required (`cgn=`); any mode may add it when `cgn` is set.
    autoaugment: real images pass through torchvision's AutoAugment policy first.
    prepare: a run before training ("jtt": the ERM identification run whose errors are
      upsampled); fit: "dfr" refits the last layer of init_weights instead of training.
    """

    real: str | None = "plain"
    sampler: str | None = None
    transfer_style: str | None = None
    counterfactual: bool = False
    autoaugment: bool = False
    prepare: str | None = None
    fit: str = "train"


MODE_STREAMS = {
    "erm": ModeStreams(),
    "mixup": ModeStreams(real="mixup"),
    "autoaugment": ModeStreams(autoaugment=True),
    "stylized": ModeStreams(transfer_style="real"),
    "gan-aug": ModeStreams(sampler="generated"),
    "genint": ModeStreams(sampler="intervened"),
    "genint-transfer": ModeStreams(sampler="intervened", transfer_style="intervened"),
    "cgn": ModeStreams(real=None, counterfactual=True),
    "real+cgn": ModeStreams(counterfactual=True),
    "groupdro": ModeStreams(real="groupdro"),
    "jtt": ModeStreams(prepare="jtt"),
    "dfr": ModeStreams(fit="dfr"),
}
MODES = tuple(MODE_STREAMS)
# Modes this trainer runs today; the others are refused with a clear message.
IMPLEMENTED_MODES = MODES
MODELS = ("smallcnn", "resnet18", "resnet50", "resnet152")
GENERATOR_MODES = tuple(m for m, s in MODE_STREAMS.items() if s.sampler)   # load `generator`
TRANSFER_MODES = tuple(m for m, s in MODE_STREAMS.items() if s.transfer_style)  # transfer_*
_AMP = ("none", "bf16", "fp16")
# Generator specs the config can check without loading anything (genint_fast.generators holds
# the loaders; tests/test_recipes.py checks these names against it).
BIGGAN_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
RANDOM_GENERATORS = BIGGAN_NAMES + ("tiny", "small32")
_BIGGAN_FILES = ("config.json", "pytorch_model.bin")


@dataclass
class TrainConfig:
    # what to train
    mode: str = _key("genint", "what to train: " + " | ".join(MODES))
    model: str = _key("smallcnn", "classifier: smallcnn (32x32 images) | resnet18 | resnet50 | "
                                  "resnet152 (torchvision architectures)")
    heads: str = _key("single", "single | ensemble (CGN's invariant ensemble: shape, texture and "
                                "background heads on a shared backbone)")
    num_classes: int | None = _key(None, "number of classes; null = from the data (10 for the "
                                         "digits, the class-folder count for a folder); a set "
                                         "value must match the data")
    init_weights: str | None = _key(None, "fine-tuning: a state-dict file (e.g. torchvision's "
                                          "resnet152-*.pth) or a genint-fast checkpoint; null = "
                                          "random initialisation")
    normalize: str = _key("auto", "input normalisation: auto (imagenet for folders, ResNets and "
                                  "torchvision weights; half for digits + smallcnn; an init "
                                  "checkpoint's own) | imagenet | half ((x - 0.5) / 0.5)")
    # data
    data: str = _key("digits:colored:1.0", "training images: " + source_help(
        "train split", "DIR/<class>/<image>"))
    data_size: int = _key(10000, "digits: training images drawn from the built-in split")
    data_seed: int = _key(0, "digits: seed of the built-in benchmark")
    augment: bool = _key(True, "augment real images, seeded per step: digits random crop (pad 4) "
                               "(+ flip if hflip); folders random resized crop + flip (SPEC 6)")
    hflip: bool | None = _key(None, "horizontal flips in the digits' augmentation; null = off "
                                    "(a mirrored digit is another shape; folders always flip)")
    augment_generated: bool = _key(True, "the real stream's augmentation on every other stream "
                                         "(generated, intervened, transferred, counterfactual)")
    image_size: int = _key(224, "folder data: training resolution in pixels (digits are 32)")
    # streams and objective L = CE(real) + lambda1 CE(int) + lambda2 CE(transferred)
    batch_size: int = _key(64, "real images per step (per process under torchrun)")
    gen_batch_size: int = _key(16, "generated (intervened / GAN) images per step")
    lambda1: float = _key(0.05, "weight of the intervened (or gan-aug generated) stream's CE")
    lambda2: float = _key(0.0, "weight of the transferred stream's CE")
    forward: str = _key("concat", "concat (one forward, shared batch-norm statistics) | separate "
                                  "(one forward per stream)")
    mixup_alpha: float = _key(0.4, "mode mixup: Beta(alpha, alpha) of the mixing weight")
    autoaugment_policy: str = _key("cifar10", "mode autoaugment: torchvision policy imagenet | "
                                              "cifar10 | svhn")
    # style transfer (modes stylized, genint-transfer; genint_fast.transfer)
    transfer_batch_size: int = _key(8, "transferred images per step (modes stylized, "
                                       "genint-transfer)")
    transfer_features: str = _key("small:random", "style-transfer features (genint_fast."
                                                  "feature_spec): small:random[:SEED] "
                                                  "| small (trained on the digits, cached) | "
                                                  "vgg19 (torchvision cache) | vgg19:FILE")
    transfer_steps: list = _key([20, 70], "[lo, hi]: optimisation steps per transfer batch, "
                                          "drawn per batch (reference [20, 70])")
    transfer_optimizer: str = _key("lbfgs", "lbfgs (reference, lr 1) | adam")
    transfer_kernel: str = _key("poly2", "style MMD kernel: poly2 (Gram) | linear | gaussian | bn")
    # generator and interventions
    generator: str = _key("random:small32:0", "generator: a BigGAN weights folder (config.json + "
                                              "pytorch_model.bin), biggan-deep-128|256|512 "
                                              "(package cache), a `genint-fast gan` checkpoint, "
                                              "or random:ARCH[:SEED] (untrained)")
    directions: str | None = _key(None, "GANSpace directions file; null = exact SVD directions of "
                                        "the generator's first layer, computed at start")
    num_directions: int = _key(20, "k: directions computed (reference 80)")
    truncation: float = _key(1.0, "latent truncation t in (0, 1]")
    top_k: int = _key(20, "interventions choose among the top_k directions (reference 60)")
    m: int = _key(5, "intervention_style multi: directions edited per latent")
    scale: float = _key(1.0, "steps U[-scale, scale] in standard deviations (when step_ranges is "
                             "null)")
    step_ranges: str | None = _key(None, "null (use scale) | reference (the reference code's "
                                         "per-direction range table, 60 directions)")
    intervention_mode: str = _key("add", "add (paper: component std units) | set (reference "
                                         "code: sets the latent coordinate)")
    intervention_style: str = _key("multi", "multi (m directions per latent) | one (reference: "
                                            "one direction per image, per_latent images per "
                                            "latent)")
    per_latent: int = _key(5, "intervention_style one: images per base latent (reference 5)")
    control: str = _key("none", "none | random-directions | matched-norm (genint modes: controls "
                                "for the steering)")
    # CGN counterfactual stream (modes cgn, real+cgn; or added to any mode when cgn is set)
    cgn: str | None = _key(None, "a `genint-fast cgn` checkpoint: adds the counterfactual stream")
    cgn_batch_size: int = _key(64, "counterfactuals per step")
    cgn_per_mask: int = _key(1, "counterfactuals drawn per shape mask")
    cgn_labels: str = _key("uniform", "counterfactual classes: uniform (independent) | permute "
                                      "(reference code)")
    cgn_set: int = _key(0, "0: fresh counterfactuals every step; N: one fixed set of N drawn "
                           "before training (the reference's protocol; mode cgn then counts "
                           "epochs over it)")
    cgn_resample: bool = _key(False, "with cgn_set: a fresh set every epoch (streamed "
                                     "counterfactuals counted in epochs of cgn_set)")
    lambda_cgn: float | None = _key(None, "weight of the counterfactual stream; null = lambda1 "
                                          "(mode cgn: the only stream, weight 1)")
    # producers
    producer: str = _key("thread", "thread (background producer, bounded queue) | inline")
    queue_size: int = _key(4, "batches the producers make ahead")
    # optimisation (SGD, step schedule: lr *= gamma every lr_step_epochs epochs)
    epochs: float | None = _key(None, "training length in epochs of the real data; when set it "
                                      "replaces steps")
    steps: int = _key(1000, "training steps (when epochs is null)")
    optimizer: str = _key("sgd", "sgd (momentum, weight_decay) | adadelta (the CGN reference "
                                 "classifier: lr 1.0, lr_gamma 0.7 every epoch)")
    lr: float = _key(0.1, "learning rate")
    momentum: float = _key(0.9, "SGD momentum")
    weight_decay: float = _key(1e-4, "weight decay")
    lr_step_epochs: float = _key(30.0, "multiply the learning rate by lr_gamma every this many "
                                       "epochs")
    lr_gamma: float = _key(0.1, "learning-rate decay factor (1 = constant)")
    amp: str = _key("none", "mixed precision on CUDA: none | bf16 | fp16")
    channels_last: bool = _key(False, "channels-last memory format (CUDA only)")
    # run
    device: str = _key("cpu", "cpu | cuda | cuda:N")
    seed: int = _key(0, "seed of the model, data order, augmentation and generated streams")
    threads: int | None = _key(None, "torch intra-op threads (a fixed count gives bitwise resume "
                                     "on CPU); null = torch's default")
    out: str = _key("runs/demo", "output folder: checkpoint.pt, metrics.jsonl, tb/")
    checkpoint_every: int = _key(200, "write a checkpoint every this many steps (and at each "
                                      "epoch end and the end)")
    log_every: int = _key(20, "write a metrics row every this many steps")
    progress: bool = _key(True, "show a progress bar")
    tensorboard: bool = _key(False, "also write TensorBoard events to OUT/tb (needs tensorboard)")
    eval_size: int = _key(2000, "digits: images per test split in the end-of-run summary")
    dro_eta: float = _key(0.01, "groupdro: step size of the group weights' exponentiated "
                                "gradient ascent (Sagawa et al.'s 0.01)")
    jtt_id_epochs: float = _key(1.0, "jtt: length of the ERM identification run, in epochs of "
                                     "the training data (Liu et al.'s CelebA setting: 1)")
    jtt_upweight: int = _key(50, "jtt: how many times each misclassified training image is "
                                 "drawn in the second run (Liu et al.'s CelebA setting: 50)")
    dfr_retrains: int = _key(10, "dfr: last-layer fits on balanced subsets of the validation "
                                 "split, averaged (the paper's 10)")
    # model selection (train/selection.py): training-domain validation, DomainBed's rule
    select: str = _key("last", "last: keep the last weights | val: keep the weights that score "
                               "best on a validation split of the training distribution "
                               "(OUT/best.pt); no test split is read | oracle: the same on the "
                               "built-in val-ood split (test distribution, unseen shapes): "
                               "DomainBed's test-domain upper bound, never a result")
    val_every: int = _key(0, "select=val: score every this many steps (0: every epoch end) "
                             "and at the end")
    val_size: int = _key(2000, "select=val on the built-in digits: images of the val split")
    val_data: str | None = _key(None, "select=val on an image folder: folder:DIR of validation "
                                      "images drawn like the training images")
    extra: dict = _key({}, "free-form notes, kept in the checkpoint")

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Check every key (one "invalid config: KEY ..." sentence for the first bad one),
        normalise a folder's spelling, and return self. The checks, in this order, are in
        train/checks.py."""
        from .checks import CHECKS

        def bad(key, msg):
            raise ValueError(f"invalid config: {key} {msg}")

        for check in CHECKS:
            check(self, bad)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_generator_spec(spec: str, bad) -> None:
    """The generator spec's form, and for a path that it exists (weights are read at start)."""
    if spec.startswith("random:"):
        parts = spec.split(":")
        if (len(parts) not in (2, 3) or parts[1] not in RANDOM_GENERATORS
                or (len(parts) == 3 and not parts[2].isdigit())):
            bad("generator", f"must be random:<{'|'.join(RANDOM_GENERATORS)}>[:SEED] when it "
                             f"starts with random:, got {spec!r}")
        return
    if spec in BIGGAN_NAMES:
        return                      # the package cache is looked up when the run starts
    path = Path(spec)
    if path.is_dir():
        lacking = [f for f in _BIGGAN_FILES if not (path / f).is_file()]
        if lacking:
            bad("generator", f"folder {spec!r} lacks {' and '.join(lacking)}; a BigGAN weights "
                             f"folder holds config.json and pytorch_model.bin "
                             f"(pytorch-pretrained-biggan's files)")
        return
    if not path.is_file():
        bad("generator", f"{spec!r} does not exist; give a BigGAN weights folder (config.json + "
                         f"pytorch_model.bin), {'|'.join(BIGGAN_NAMES)} (package cache), a "
                         f"`genint-fast gan` checkpoint, or random:small32 (untrained)")


def resolve_normalize(cfg: TrainConfig, init_normalize: str | None = None) -> str:
    """The normalisation a run of `cfg` uses (classifier.normalise.resolve_normalize)."""
    return _resolve_normalize(cfg.normalize, str(cfg.data), cfg.model, init_normalize)


def _yaml_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_help() -> str:
    """Every config key with its default (as `key=default`) and its one line of meaning."""
    lines = ["config keys (in a YAML recipe, or as key=value after the options):"]
    for f in dataclasses.fields(TrainConfig):
        lines.append(f"  {f.name}={_yaml_text(field_default(f))}")
        lines.append(f"      {f.metadata['help']}")
    return "\n".join(lines)


def parse_data_spec(spec: str):
    """"digits:<variant>[:rho]" -> (variant, rho); "folder:<DIR>" or a bare DIR -> ("folder",
    DIR) (the grammar of genint_fast.data.sources)."""
    from ..data.sources import parse_source

    try:
        src = parse_source(spec, flag="data")
    except ValueError as exc:
        raise ValueError(f"invalid config: {exc}") from None
    return ("folder", src.root) if src.is_folder else (src.variant, src.rho)


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
        from ..io import read_yaml_mapping

        try:
            loaded = read_yaml_mapping(path, "config file")
        except ValueError as exc:
            raise ValueError(f"invalid config: {exc}") from None
        raw.update(_apply(loaded, str(path)))
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
