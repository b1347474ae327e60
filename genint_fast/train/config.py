"""Trainer configuration: a dataclass loaded from a YAML recipe (configs/*.yaml) plus
`key=value` command-line overrides (values parsed as YAML scalars). Every check runs before any
work starts; a bad config raises one ValueError sentence naming the key.

Each field carries its one-line meaning in `metadata["help"]`; `config_help()` turns the fields
into the key list of `genint-fast train --help`, so the two cannot drift. This module imports no
torch (the CLI builds its help from it)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["TrainConfig", "load_config", "config_help", "resolve_normalize", "MODES", "MODELS",
           "IMPLEMENTED_MODES", "NORMALIZATIONS", "GENERATOR_MODES", "TRANSFER_MODES"]

MODES = ("erm", "mixup", "autoaugment", "stylized", "gan-aug", "genint", "genint-transfer", "cgn",
         "real+cgn", "groupdro", "jtt", "dfr")
# Modes this trainer runs today; the others are refused with a clear message.
IMPLEMENTED_MODES = MODES
MODELS = ("smallcnn", "resnet18", "resnet50", "resnet152")
GENERATOR_MODES = ("gan-aug", "genint", "genint-transfer")   # modes that load `generator`
TRANSFER_MODES = ("stylized", "genint-transfer")              # modes that use transfer_*
_AMP = ("none", "bf16", "fp16")
# Input normalisation (x in [0, 1] -> (x - mean) / std), by name.
NORMALIZATIONS = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),                       # (x - 0.5) / 0.5
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),       # torchvision's
}
# Generator specs the config can check without loading anything (genint_fast.generators holds
# the loaders; tests/test_recipes.py checks these names against it).
BIGGAN_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
RANDOM_GENERATORS = BIGGAN_NAMES + ("tiny", "small32")
_BIGGAN_FILES = ("config.json", "pytorch_model.bin")


def _key(default, help: str, **kw):
    """A config field: its default and its one line of meaning (shown by `train --help`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


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
    data: str = _key("digits:colored:1.0", "training images: digits:<colored|double-colored|"
                                           "wildlife|cmnist>[:RHO] (built in), folder:DIR or "
                                           "a bare DIR (DIR/<class>/<image>)")
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
        def bad(key, msg):
            raise ValueError(f"invalid config: {key} {msg}")

        # one spelling of an image folder (a bare DIR becomes folder:DIR) for every check below;
        # whether it exists is checked after the mode checks, as before
        for key in ("data", "val_data"):
            value = getattr(self, key)
            if isinstance(value, str) and value.strip() and not value.startswith("digits"):
                from ..data.sources import parse_source

                setattr(self, key, str(parse_source(value, flag=key, must_exist=False)))

        for f in dataclasses.fields(self):
            name, v = f.name, getattr(self, f.name)
            t = str(f.type)
            optional = t.endswith(" | None")
            t = t.removesuffix(" | None")
            if v is None:
                if optional:
                    continue
                bad(name, "must not be null")
            if t == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                bad(name, f"must be an integer{' or null' if optional else ''}, got {v!r}")
            if t == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    bad(name, f"must be a number{' or null' if optional else ''}, got {v!r}")
                setattr(self, name, float(v))
            if t == "bool" and not isinstance(v, bool):
                bad(name, f"must be true or false, got {v!r}")
            if t == "str" and not isinstance(v, str):
                bad(name, f"must be a string{' or null' if optional else ''}, got {v!r}")
            if t == "list" and not isinstance(v, list):
                bad(name, f"must be a list, got {v!r}")
            if t == "dict" and not isinstance(v, dict):
                bad(name, f"must be a mapping, got {v!r}")
        if self.mode not in MODES:
            bad("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode not in IMPLEMENTED_MODES:
            bad("mode", f"{self.mode!r} is not implemented yet; use one of "
                        f"{', '.join(IMPLEMENTED_MODES)}")
        if self.normalize not in ("auto", *NORMALIZATIONS):
            bad("normalize", f"must be auto, {' or '.join(NORMALIZATIONS)}, got "
                             f"{self.normalize!r}")
        if self.intervention_style not in ("multi", "one"):
            bad("intervention_style", f'must be "multi" or "one", got '
                                      f'{self.intervention_style!r}')
        if self.step_ranges not in (None, "reference"):
            bad("step_ranges", f'must be null or "reference", got {self.step_ranges!r}')
        if self.step_ranges == "reference" and self.top_k > 60:
            bad("step_ranges", f"reference covers 60 directions; top_k is {self.top_k}")
        if self.step_ranges == "reference" and self.intervention_mode != "set":
            bad("step_ranges", "reference ranges are set-mode latent units; add "
                "intervention_mode=set (in add mode they would be scaled by sigma again)")
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
            if not Path(self.cgn).is_file():
                bad("cgn", f"must be null or an existing `genint-fast cgn` checkpoint file, got "
                           f"{self.cgn!r}")
            if self.mode == "mixup":
                bad("cgn", "cannot be combined with mode mixup (mixup mixes the real stream "
                           "only); use mode real+cgn")
            if self.cgn_labels not in ("uniform", "permute"):
                bad("cgn_labels", f'must be "uniform" or "permute", got {self.cgn_labels!r}')
            if self.cgn_batch_size < 1 or self.cgn_per_mask < 1:
                bad("cgn_batch_size/cgn_per_mask", "must be >= 1")
            if self.cgn_set < 0 or (0 < self.cgn_set < self.cgn_batch_size):
                bad("cgn_set", f"must be 0 (streamed) or at least cgn_batch_size "
                               f"({self.cgn_batch_size}), got {self.cgn_set}")
        elif self.cgn_set:
            bad("cgn_set", "needs a counterfactual stream (set cgn=CKPT)")
        if self.lambda_cgn is not None and self.lambda_cgn < 0:
            bad("lambda_cgn", f"must be null or a number >= 0, got {self.lambda_cgn!r}")
        if self.heads == "ensemble" and self.cgn is None:
            bad("heads", "ensemble needs a counterfactual stream (set cgn=CKPT): its texture "
                         "and background heads learn from counterfactual labels only")
        if self.model not in MODELS:
            bad("model", f"must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.mode == "groupdro" and self.data.startswith("folder:"):
            bad("mode", "groupdro needs group labels, which the built-in digits carry (class x "
                        "stroke colour id) and image folders do not; use data=digits:<variant>")
        if self.mode == "groupdro" and self.dro_eta <= 0:
            bad("dro_eta", f"must be > 0, got {self.dro_eta}")
        if self.mode == "jtt" and self.data.startswith("folder:"):
            bad("mode", "jtt runs on in-memory data (data=digits:<variant>) for now; image "
                        "folders are not supported yet")
        if self.mode == "jtt" and (self.jtt_id_epochs <= 0 or self.jtt_upweight < 1):
            bad("jtt_id_epochs/jtt_upweight", f"must be > 0 / >= 1, got {self.jtt_id_epochs} / "
                                              f"{self.jtt_upweight}")
        if self.mode == "dfr" and (self.init_weights is None or self.data.startswith("folder:")):
            bad("mode", "dfr retrains the last layer of a trained model on the built-in digits' "
                        "validation split: give init_weights=<an erm checkpoint> and "
                        "data=digits:<variant>")
        if self.mode == "dfr" and self.dfr_retrains < 1:
            bad("dfr_retrains", f"must be >= 1, got {self.dfr_retrains}")
        if self.select not in ("last", "val", "oracle"):
            bad("select", f'must be "last", "val" or "oracle", got {self.select!r}')
        if self.val_every < 0 or self.val_size < 1:
            bad("val_every/val_size", "must be >= 0 / >= 1")
        if self.val_data is not None and not self.val_data.startswith("folder:"):
            bad("val_data", f"must be null or folder:DIR, got {self.val_data!r}")
        if self.select == "oracle" and self.data.startswith("folder:"):
            bad("select", "oracle selects on the built-in digits' val-ood split; on an image "
                          "folder give select=val with val_data=folder:DIR of test-domain "
                          "images and report it as the oracle")
        if (self.select == "val" and self.data.startswith("folder:")
                and self.val_data is None):
            bad("val_data", "is needed for select=val on an image folder: give "
                            "val_data=folder:DIR with validation images of the training "
                            "distribution")
        if self.optimizer not in ("sgd", "adadelta"):
            bad("optimizer", f'must be "sgd" or "adadelta", got {self.optimizer!r}')
        if self.forward not in ("concat", "separate"):
            bad("forward", f'must be "concat" or "separate", got {self.forward!r}')
        if self.producer not in ("thread", "inline"):
            bad("producer", f'must be "thread" or "inline", got {self.producer!r}')
        if self.amp not in _AMP:
            bad("amp", f"must be one of {', '.join(_AMP)}, got {self.amp!r}")
        if self.intervention_mode not in ("add", "set"):
            bad("intervention_mode", f'must be "add" or "set", got {self.intervention_mode!r}')
        for key in ("batch_size", "steps", "checkpoint_every", "log_every", "queue_size",
                    "data_size", "num_directions", "top_k", "m", "eval_size", "image_size",
                    "per_latent"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.num_classes is not None and self.num_classes < 2:
            bad("num_classes", f"must be null (from the data) or >= 2, got {self.num_classes}")
        if self.epochs is not None and not self.epochs > 0:
            bad("epochs", f"must be null (use steps) or > 0, got {self.epochs}")
        if self.gen_batch_size < 0:
            bad("gen_batch_size", f"must be >= 0, got {self.gen_batch_size}")
        if self.mode in GENERATOR_MODES and self.gen_batch_size < 1:
            bad("gen_batch_size", f"must be >= 1 in mode {self.mode}")
        for key in ("lambda1", "lambda2", "weight_decay", "momentum", "scale"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if not 0 < self.truncation <= 1:
            bad("truncation", f"must be in (0, 1], got {self.truncation}")
        if self.mode in TRANSFER_MODES:
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
        from ..feature_spec import parse_feature_spec

        try:    # weight files are checked only where a mode reads them
            parse_feature_spec(self.transfer_features, flag="transfer_features",
                               check_files=self.mode in TRANSFER_MODES)
        except ValueError as exc:
            bad("transfer_features", str(exc).removeprefix("transfer_features "))
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
        if self.threads is not None and self.threads < 1:
            bad("threads", f"must be null or an integer >= 1, got {self.threads!r}")
        if self.init_weights is not None and not Path(self.init_weights).is_file():
            bad("init_weights", f"must be null or an existing file, got {self.init_weights!r}")
        if self.mode in GENERATOR_MODES:
            _check_generator_spec(self.generator, bad)
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
    """The normalisation a run uses: `normalize` unless it is auto; auto = the init checkpoint's
    own (init_normalize, for a genint-fast checkpoint given as init_weights), else imagenet for
    folder data and the ResNets (torchvision's architectures and weights), else half (the
    built-in digits with the small CNN)."""
    if cfg.normalize != "auto":
        return cfg.normalize
    if init_normalize is not None:
        return init_normalize
    if str(cfg.data).startswith("folder:") or cfg.model.startswith("resnet"):
        return "imagenet"
    return "half"


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


def field_default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


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
