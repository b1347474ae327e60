"""The demo's settings: the methods it can run and DemoConfig (torch-free, so `genint-fast demo
--help` reads its defaults without importing torch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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


WHY_VARIANT = (
    "colored digits: the stroke colour is the only nuisance and it is tied to the class with "
    "probability rho; a classifier can reach near-perfect training accuracy from colour alone, "
    "so at high rho ERM learns colour instead of shape and falls to chance (~10%) on the rho = 0 "
    "test split. GenInt can only help where the GAN's latent space moves the colour "
    "independently of the class; the nuisance-label agreement below says whether it does.")


@dataclass
class DemoConfig:
    # benchmark
    variant: str = "colored"
    rho: float = 1.0                  # the CGN paper's setting
    train_size: int = 5000
    test_size: int = 1000
    data_seed: int = 0
    # generator
    gan_steps: int = 500              # sized for the 20-minute demo (2000 on the earlier 8x8
                                      # benchmark: class consistency 71-73%; issue 22 revisits)
    gan_batch_size: int = 32
    gan_class_bn: bool = True       # class-conditional batch norm in the small GAN's blocks
    # directions and interventions (steps in standard deviations; see genint_fast.directions)
    num_directions: int = 20
    top_k: int = 20
    m: int = 5
    scale: float | None = None      # None: chosen by the causal-bound score on the validation
    scale_candidates: tuple = (1.0, 2.0, 4.0, 8.0)   # split among these (never the test splits)
    intervention_mode: str = "add"
    intervention_style: str = "multi"
    truncation: float = 1.0
    # gan-aug as the paper ran it: truncation 0.2, 50% synthetic, stream weight 1
    gan_aug_truncation: float = 0.2
    gan_aug_batch_size: int | None = None    # None: batch_size (half of every batch synthetic)
    lambda_gan_aug: float = 1.0
    # classifiers
    methods: tuple = DEFAULT_METHODS
    seeds: int = 3                    # the tables in README use --seeds 5
    steps: int = 150
    # model selection (DomainBed's training-domain validation): "last" keeps every run's last
    # weights; "val" the weights that score best on val_size images of the val split (drawn from
    # the training distribution), scored every val_every steps
    select: str = "last"
    val_every: int = 25
    val_size: int = 1000
    batch_size: int = 64
    gen_batch_size: int = 32
    lr: float = 0.05
    # Stream weights fixed before any run (not tuned): every generated stream weighs as much as
    # the real one, as the reference weighted its gan-aug and transfer streams.
    lambda1: float = 1.0
    lambda1_transfer: float = 1.0
    lambda2: float = 1.0
    # what the interventions do (genint_fast.diagnostics.nuisance): images measured per set
    measure_n: int = 1000
    transfer_batch_size: int = 8
    transfer_steps: tuple = (5, 15)
    transfer_features: str = "small:random"
    # CGN (genint_fast.cgn): mechanisms trained on the training split, cached in OUT/cgn.pt
    cgn_steps: int = 2000             # sized for the 20-minute demo (the preset and the
                                      # README tables: 3000, --cgn-steps)
    cgn_batch_size: int = 32
    cgn_feature_net: str = "small"
    cgn_stream_batch_size: int = 64   # counterfactuals per classifier step
    lambda_cgn: float = 1.0           # weight of the counterfactual stream in real+cgn
    # The CGN rows' classifier: the reference's protocol ("reference": Adadelta lr 1.0, x0.7
    # every epoch of a counterfactual set, 10 counterfactuals per mask, texture / background
    # classes permuted, no augmentation), sized for 2 CPU cores (the reference: 10 epochs of one
    # fixed 100k set); "stream": the erm rows' SGD schedule on fresh counterfactuals.
    cgn_protocol: str = "reference"
    # GenInt's controlled experiment (the paper's Table 4; genint_fast.train.generated_only):
    # N > 0 trains `seeds` classifiers only on N generated images per set (observational at
    # truncations 0.5 and 1, interventional at the selected scale, the two controls)
    generated_only: int = 0
    generated_only_steps: int = 600
    cgn_set: int = 4000               # counterfactuals in the fixed set, sized for the 20-minute
                                      # demo (README tables: 10000 or 20000, --cgn-set)
    cgn_epochs: float = 3.0           # (README tables: 5)
    cgn_resample: bool = False        # True: a fresh set every epoch
    cgn_per_mask: int = 10
    cgn_labels: str = "permute"
    shape_reader_steps: int = 750     # the shape-consistency reader (cached in OUT): 95.6% on
                                      # test-pool masks (1500 steps, the README's CGN tables:
                                      # 96.7%), halved for the 20-minute demo
    cgn_checkpoint: str | None = None  # a CGN checkpoint to use instead of training one (e.g.
                                       # the authors', from `genint-fast cgn import`)
    # corruption robustness (genint_fast.eval): the first corruption_n in-distribution test
    # images under the 15 corruptions x corruption_severities, relative mCE against erm (same
    # seed); in distribution, as ImageNet-C corrupts ImageNet's own validation images (out of
    # distribution erm is at chance already and a relative mCE is undefined)
    corruption_n: int = 100           # 200 before: halved for the 20-minute demo
    corruption_severities: tuple = (1, 2, 3, 4, 5)
    threads: int = 2                  # torch threads when jobs = 1
    jobs: int = 2                     # processes at once (the CGN beside the GAN stages, then
                                      # the classifier runs), one thread each; 1: all in this
                                      # process with `threads` threads
    resume: bool = False              # keep the classifier runs already in OUT/runs whose
                                      # fingerprint (config, generators, data) is unchanged
    quick: bool = False
    extra: dict = field(default_factory=dict)

    def validate(self) -> "DemoConfig":
        from ..data.digits import VARIANTS, canonical_variant

        self.variant = canonical_variant(self.variant)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got "
                             f"{self.variant!r}")
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        for key in ("train_size", "test_size", "seeds", "steps", "batch_size", "gen_batch_size",
                    "num_directions", "top_k", "m", "threads", "jobs", "gan_batch_size",
                    "cgn_batch_size", "cgn_stream_batch_size", "cgn_per_mask", "measure_n",
                    "corruption_n"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
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
        if self.gan_steps < 0 or self.cgn_steps < 0:
            raise ValueError(f"gan_steps and cgn_steps must be >= 0, got {self.gan_steps}, "
                             f"{self.cgn_steps}")
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
