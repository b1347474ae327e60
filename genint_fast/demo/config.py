"""The demo's settings: the methods it can run and DemoConfig (torch-free, so `genint-fast demo
--help` reads its defaults without importing torch)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config_fields import key
from ..cgn_config import SHAPE_READER_STEPS  # torch-free

METHODS = ("erm", "gan-aug", "genint", "genint-transfer", "random-directions", "matched-norm",
           "cgn", "real+cgn", "groupdro", "jtt", "dfr", "genint+cgn")


# What the demo runs unless --methods says otherwise: GenInt, CGN and their baselines; not
# GenInt's two controls (the intervention measures still sample them) nor the group-robustness
# baselines (groupdro and dfr read nuisance labels; jtt trains twice), to stay within the
# demo's 20 minutes on 2 cores.
DEFAULT_METHODS = ("erm", "gan-aug", "genint", "genint-transfer", "cgn", "real+cgn")


GAN_METHODS = ("gan-aug", "genint", "genint-transfer", "random-directions", "matched-norm",
               "genint+cgn")


# The controls are GenInt runs with one thing changed (genint_fast.train.config `control`).
CONTROLS = {"random-directions": "random-directions", "matched-norm": "matched-norm"}


# genint+cgn: the streams combined, real + intervened + counterfactual in one run (the trainer's
# mode genint with a CGN), on real+cgn's classifier protocol
CGN_METHODS = ("cgn", "real+cgn", "genint+cgn")


COMBINED = {"genint+cgn": "genint"}


# The targets for CGN's OOD top-1 (%) per variant (the paper reports 95.1 / 89.0 / 85.7).
CGN_TARGETS = {"colored": 90.0, "double-colored": 85.0, "wildlife": 80.0}


WHY_VARIANTS = {
    "colored":
    "colored digits: the stroke colour is the only nuisance and it is tied to the class with "
    "probability rho; a classifier can reach near-perfect training accuracy from colour alone, "
    "so at high rho ERM learns colour instead of shape and falls to chance (~10%) on the rho = 0 "
    "test split. GenInt can only help where the GAN's latent space moves the colour "
    "independently of the class; the nuisance-label agreement below says whether it does.",
    "hue":
    "hue digits: the stroke hue varies within each class around a class-specific mean "
    "(GenInt's premise of a nuisance that varies within classes, like ImageNet's colour "
    "shifts); the OOD split draws it uniformly. GenInt helps only if the GAN's latent "
    "directions move the hue beyond each class's range; the hue measures below say whether "
    "they do.",
    "rotation":
    "rotated digits: each class's digits are rotated around a class-specific mean angle "
    "(GenInt's premise of a nuisance that varies within classes, like ImageNet's viewpoint); "
    "the OOD split draws the angle uniformly. GenInt helps only if the GAN's latent "
    "directions rotate digits beyond their class's range; the angle measures below say "
    "whether they do.",
}
# The colored text, the default variant's (kept under its earlier name).
WHY_VARIANT = WHY_VARIANTS["colored"]


def why_variant(variant: str) -> str:
    """The report's reason for running `variant` (the colored text for the discrete colour
    and texture variants, whose nuisances are tied to the class the same way)."""
    return WHY_VARIANTS.get(variant, WHY_VARIANTS["colored"])


@dataclass
class DemoConfig:
    # benchmark
    variant: str = key("colored", "biased-digits variant")
    rho: float = key(1.0, "training correlation rho (1: the CGN paper's setting)")
    train_size: int = key(5000, "training images")
    test_size: int = key(1000, "test images per split")
    data_seed: int = key(0, "seed of the benchmark's draws")
    # generator
    gan_steps: int = key(500, "GAN training steps (sized for the 20-minute demo; 2000 on the "
                              "earlier 8x8 benchmark gave class consistency 71-73%)")
    gan_batch_size: int = key(32, "GAN batch size")
    gan_class_bn: bool = key(True, "class-conditional batch norm in the small GAN's blocks")
    # directions and interventions (steps in standard deviations; see genint_fast.directions)
    num_directions: int = key(20, "GANSpace directions found")
    top_k: int = key(20, "directions the interventions draw from")
    m: int = key(5, "directions stepped along per latent")
    scale: float | None = key(None, "intervention steps U[-s, s] in standard deviations; None: "
                                    "chosen by the causal-bound score on the validation split "
                                    "among scale_candidates (never the test splits)")
    scale_candidates: tuple = key((1.0, 2.0, 4.0, 8.0), "the scales the causal-bound score "
                                                        "chooses among")
    intervention_mode: str = key("add", "intervention edit mode", choices=("add", "set"))
    intervention_style: str = key("multi", "multi: m directions per latent; one: one "
                                           "direction per image (reference code)",
                                  choices=("multi", "one"))
    truncation: float = key(1.0, "truncation of the intervened latents")
    # gan-aug as the paper ran it: truncation 0.2, 50% synthetic, stream weight 1
    gan_aug_truncation: float = key(0.2, "gan-aug's truncation (the paper's)")
    gan_aug_batch_size: int | None = key(None, "gan-aug's synthetic images per step (None: "
                                               "batch_size, half of every batch synthetic)")
    lambda_gan_aug: float = key(1.0, "weight of gan-aug's synthetic stream")
    # classifiers
    methods: tuple = key(DEFAULT_METHODS, "the methods run, in order")
    seeds: int = key(3, "seeds per method (the README's tables use 5)")
    steps: int = key(150, "classifier SGD steps per run")
    # model selection (DomainBed's training-domain validation)
    select: str = key("last", "model selection: last weights, the best on the val split drawn "
                              "from the training distribution (DomainBed's training-domain "
                              "validation), or oracle: the best on the test distribution's "
                              "val-ood split (an upper bound, marked as such)",
                      choices=("last", "val", "oracle"))
    val_every: int = key(25, "steps between validation scores (select val / oracle)")
    val_size: int = key(1000, "validation images scored")
    batch_size: int = key(64, "real images per classifier step")
    gen_batch_size: int = key(32, "generated images per classifier step")
    lr: float = key(0.05, "classifier SGD learning rate")
    # Stream weights fixed before any run (not tuned): every generated stream weighs as much as
    # the real one, as the reference weighted its gan-aug and transfer streams.
    lambda1: float = key(1.0, "weight of the generated (intervened) stream")
    lambda1_transfer: float = key(1.0, "weight of the generated stream in genint-transfer")
    lambda2: float = key(1.0, "weight of the transferred stream")
    # what the interventions do (genint_fast.diagnostics.nuisance)
    measure_n: int = key(1000, "images measured per set by the intervention measures")
    transfer_batch_size: int = key(8, "images per style-transfer batch")
    transfer_steps: tuple = key((5, 15), "style-transfer optimisation steps")
    transfer_features: str = key("small:random", "feature net of the style transfer")
    # CGN (genint_fast.cgn): mechanisms trained on the training split, cached in OUT/cgn.pt
    cgn_steps: int | str = key(2000, "CGN training steps (sized for the 20-minute demo), or "
                                     "preset: the default preset's length for the variant "
                                     "(6000-9000, chosen on validation)")
    cgn_batch_size: int = key(32, "CGN batch size")
    cgn_feature_net: str = key("small", "feature net of the CGN's Gram loss")
    cgn_stream_batch_size: int = key(64, "counterfactuals per classifier step")
    lambda_cgn: float = key(1.0, "weight of the counterfactual stream in real+cgn")
    cgn_protocol: str = key("reference", "the CGN rows' classifier: reference (the reference's "
                                         "protocol: Adadelta lr 1.0, x0.7 every epoch of a "
                                         "counterfactual set, cgn_per_mask counterfactuals per "
                                         "mask, texture / background classes permuted, no "
                                         "augmentation, sized for 2 CPU cores) or stream (the "
                                         "erm rows' SGD schedule on fresh counterfactuals)",
                            choices=("reference", "stream"))
    # GenInt's controlled experiment (the paper's Table 4; genint_fast.train.generated_only)
    generated_only: int = key(0, "N > 0: also train classifiers only on N generated images per "
                                 "set (observational at truncations 0.5 and 1, interventional "
                                 "at the selected scale, the two controls): the GenInt paper's "
                                 "Table 4 (0: off)")
    generated_only_steps: int = key(600, "classifier steps of the generated-only runs")
    cgn_set: int = key(4000, "the CGN rows' classifier: counterfactuals in its fixed set (sized "
                             "for the 20-minute demo; the README's tables 50000, chosen on "
                             "validation; the reference 100000)")
    cgn_epochs: float = key(3.0, "the CGN rows' classifier: epochs over that set (the "
                                 "reference 10)")
    cgn_resample: bool = key(False, "a fresh counterfactual set every epoch")
    cgn_per_mask: int = key(10, "counterfactuals per mask")
    cgn_labels: str = key("permute", "how the counterfactuals' texture and background classes "
                                     "are drawn")
    shape_reader_steps: int = key(SHAPE_READER_STEPS, "steps of the shape-consistency reader "
                                                      "(cached in OUT): 95.6% on test-pool "
                                                      "masks; 1500 for the README's CGN tables "
                                                      "(96.7%)")
    cgn_checkpoint: str | None = key(None, "a CGN checkpoint to use for the cgn rows instead of "
                                           "training one (e.g. the authors', converted by "
                                           "`genint-fast cgn import`)")
    # corruption robustness (genint_fast.eval): in distribution, as ImageNet-C corrupts
    # ImageNet's own validation images (out of distribution erm is at chance already and a
    # relative mCE is undefined)
    corruption_n: int = key(100, "in-distribution test images under the 15 corruptions, "
                                 "relative mCE against erm (same seed)")
    corruption_severities: tuple = key((1, 2, 3, 4, 5), "corruption severities")
    threads: int = key(2, "torch threads when jobs is 1")
    jobs: int = key(2, "processes at once, one torch thread each: the CGN trains beside the "
                       "GAN stages, then the classifier runs share them; 1 runs everything in "
                       "one process with `threads` threads")
    resume: bool = key(False, "keep the classifier runs already finished in OUT/runs whose "
                              "settings, data and generators are unchanged (an interrupted "
                              "table goes on)")
    quick: bool = key(False, "tiny settings (about a minute on 2 cores): for tests and CI; the "
                             "numbers mean nothing")
    extra: dict = key({}, "free-form notes kept with the settings in results.json (read by "
                          "nothing else)")

    def cgn_train_steps(self) -> int:
        """The CGN's training length: cgn_steps, or the default preset's for the variant."""
        if self.cgn_steps != "preset":
            return int(self.cgn_steps)
        from ..cgn_config import preset_configs

        return preset_configs("default", self.variant)[1].steps

    def validate(self) -> "DemoConfig":
        from ..data.digits import VARIANTS, canonical_variant

        self.variant = canonical_variant(self.variant)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got "
                             f"{self.variant!r}")
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        for name in ("train_size", "test_size", "seeds", "steps", "batch_size", "gen_batch_size",
                    "num_directions", "top_k", "m", "threads", "jobs", "gan_batch_size",
                    "cgn_batch_size", "cgn_stream_batch_size", "cgn_per_mask", "measure_n",
                    "corruption_n"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cgn_protocol not in ("reference", "stream"):
            raise ValueError(f'cgn_protocol must be "reference" or "stream", got '
                             f'{self.cgn_protocol!r}')
        if self.cgn_protocol == "reference" and (self.cgn_set < self.cgn_stream_batch_size
                                                 or not self.cgn_epochs > 0):
            raise ValueError("the reference CGN protocol needs cgn_set >= cgn_stream_batch_size "
                             "and cgn_epochs > 0")
        if self.cgn_checkpoint is not None and not Path(self.cgn_checkpoint).is_file():
            raise ValueError(f"cgn_checkpoint {self.cgn_checkpoint!r} does not exist; give a "
                             f"`genint-fast cgn` (or `cgn import`) checkpoint")
        if self.gan_steps < 0:
            raise ValueError(f"gan_steps must be >= 0, got {self.gan_steps}")
        if self.cgn_steps != "preset" and not (isinstance(self.cgn_steps, int)
                                               and self.cgn_steps >= 0):
            raise ValueError(f'cgn_steps must be a number of steps >= 0 or "preset" (the '
                             f'default preset\'s length for the variant), got '
                             f'{self.cgn_steps!r}')
        if self.generated_only and (self.generated_only < self.batch_size
                                    or self.generated_only_steps < 1):
            raise ValueError(f"generated_only must be 0 (off) or at least the batch size "
                             f"{self.batch_size}, with generated_only_steps >= 1; got "
                             f"{self.generated_only}, {self.generated_only_steps}")
        if self.variant == "cmnist" and self.rho != 1.0:
            raise ValueError("cmnist has no rho (its environments fix the colour-label "
                             "agreement); leave --rho out")
        if self.select not in ("last", "val", "oracle") or self.val_every < 1 or \
                self.val_size < 1:
            raise ValueError(f"select must be last, val or oracle with val_every, val_size >= 1, "
                             f"got "
                             f"{self.select!r}, {self.val_every}, {self.val_size}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}, got "
                             f"{', '.join(self.methods) or 'nothing'}")
        if "dfr" in self.methods and ("erm" not in self.methods or list(self.methods).index(
                "erm") > list(self.methods).index("dfr")):
            raise ValueError("dfr refits the last layer of the erm runs: list erm before dfr in "
                             "methods")
        if not self.corruption_severities or any(
                int(v) not in (1, 2, 3, 4, 5) for v in self.corruption_severities):
            raise ValueError(f"corruption_severities must be among 1..5, got "
                             f"{self.corruption_severities}")
        if not self.m <= self.top_k <= self.num_directions:
            raise ValueError(f"need m <= top_k <= num_directions, got {self.m}, {self.top_k}, "
                             f"{self.num_directions}")
        return self


def quick_config(**overrides) -> DemoConfig:
    """A small configuration that runs in about a minute on 2 CPU cores (tests, CI)."""
    base = dict(train_size=600, test_size=200, gan_steps=20, gan_batch_size=16, seeds=1,
                measure_n=100, scale_candidates=(2.0, 8.0),
                cgn_steps=20, cgn_batch_size=16, cgn_feature_net="none", cgn_stream_batch_size=16,
                cgn_set=160, cgn_epochs=2, shape_reader_steps=60,
                steps=25, batch_size=32, gen_batch_size=8, transfer_batch_size=4,
                transfer_steps=(2, 3),
                num_directions=10, top_k=10, corruption_n=40, corruption_severities=(3,),
                generated_only_steps=10,
                methods=METHODS[:8], quick=True)     # the controls too: every path tested
    base.update(overrides)
    return DemoConfig(**base)
