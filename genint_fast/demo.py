"""`genint-fast demo`: the whole GenInt method end to end on the built-in biased digits.

Pipeline (everything local, CPU is enough):
1. build the biased-digits benchmark (train at correlation rho, test-id at rho, test-ood at 0);
2. train the small class-conditional 32x32 GAN on the training split, or reuse the checkpoint
   cached in the output folder (`gan.pt`, resumed when it has fewer steps than asked);
3. find its directions (exact SVD of the generator's first linear layer, GANSpace shortcut);
4. train one classifier per method (erm, gan-aug, genint, genint-transfer) and seed with the
   project trainer (genint_fast.train), evaluate top-1 in and out of distribution;
5. write the report folder: results.json, results.md, accuracy.png (bar plot), gan_samples.png,
   interventions.png (one row per direction, steps from -s to +s), transfers.png (real content /
   intervened style / transferred result), and print the table.

The numbers are whatever this run measures; nothing is cached except the GAN and the small
feature network used by style transfer.
"""
from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .io import write_text_atomic

__all__ = ["DemoConfig", "METHODS", "run_demo", "quick_config", "format_results_table"]

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
    # what the interventions do (genint_fast.eval.nuisance): images measured per set
    measure_n: int = 1000
    transfer_batch_size: int = 8
    transfer_steps: tuple = (5, 15)
    transfer_features: str = "small:random"
    # CGN (genint_fast.cgn): mechanisms trained on the training split, cached in OUT/cgn.pt
    cgn_steps: int = 3000
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
    cgn_set: int = 6000               # counterfactuals in the fixed set, sized for the 20-minute
                                      # demo (README tables: 10000 or 20000, --cgn-set)
    cgn_epochs: float = 3.0           # (README tables: 5)
    cgn_resample: bool = False        # True: a fresh set every epoch
    cgn_per_mask: int = 10
    cgn_labels: str = "permute"
    shape_reader_steps: int = 1500    # the shape-consistency reader (cached in OUT)
    cgn_checkpoint: str | None = None  # a CGN checkpoint to use instead of training one (e.g.
                                       # the authors', from `genint-fast cgn import`)
    # corruption robustness (genint_fast.eval): the first corruption_n in-distribution test
    # images under the 15 corruptions x corruption_severities, relative mCE against erm (same
    # seed); in distribution, as ImageNet-C corrupts ImageNet's own validation images (out of
    # distribution erm is at chance already and a relative mCE is undefined)
    corruption_n: int = 200
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
        from .data.digits import VARIANTS, canonical_variant

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


# ---------------------------------------------------------------------------- helpers
def _mean_std(values):
    values = [float(v) for v in values]
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _ci95(values) -> float:
    from .eval.stats import ci95

    return ci95(values)


def machine_line() -> str:
    from .benchmarks.common import machine
    return machine()


def format_results_table(results: dict) -> str:
    """Markdown table: method | ID top-1 | OOD top-1 (mean +- 95% interval half-width, and the
    standard deviation) | seconds per run | seeds."""
    n = results["config"]["seeds"]
    rob = any("rmce_mean" in r for r in results["methods"].values())
    wg = all("oodwg_mean" in r for r in results["methods"].values())
    avg = all("oodavg_std" in r for r in results["methods"].values())
    lines = ["| method | ID top-1 (%) | OOD top-1 (%) | "
             + ("OOD worst-group (%) | " if wg else "")
             + ("OOD average-group (%) | " if avg else "")
             + ("corrupted ID rel. mCE vs erm (%) | " if rob else "")
             + "train s / run | seeds |",
             "|---|---|---|" + ("---|" if wg else "") + ("---|" if avg else "")
             + ("---|" if rob else "") + "---|---|"]

    def cell(r, key, scale=100):
        if f"{key}_mean" not in r:
            return "n/a"
        ci = r.get(f"{key}_ci95", float("nan"))
        ci_txt = f" +- {scale * ci:.1f}" if math.isfinite(ci) else ""
        return f"{scale * r[key + '_mean']:.1f}{ci_txt} (sd {scale * r[key + '_std']:.1f})"

    for name, r in results["methods"].items():
        lines.append(f"| {name} | {cell(r, 'id')} | {cell(r, 'ood')} | "
                     + (f"{cell(r, 'oodwg')} | " if wg else "")
                     + (f"{cell(r, 'oodavg')} | " if avg else "")
                     + (f"{cell(r, 'rmce', 1)} | " if rob else "")
                     + f"{r['seconds_mean']:.0f} | {n} |")
    return "\n".join(lines)


def _selection_note(c: dict) -> str:
    if c.get("select", "last") == "last":
        return ("Model selection: none, every run keeps its last weights of a fixed schedule "
                "(`select=last`; `--select val` is DomainBed's training-domain validation).")
    if c["select"] == "oracle":
        return (f"Model selection: ORACLE (DomainBed's test-domain validation, an upper bound, "
                f"not a result): every run keeps the weights with the best top-1 on "
                f"{c['val_size']} images of the val-ood split (the test distribution on the "
                f"validation digit shapes, disjoint from the test images), scored every "
                f"{c['val_every']} steps.")
    return (f"Model selection: training-domain validation (DomainBed), every run keeps the "
            f"weights with the best top-1 on {c['val_size']} images of the val split (drawn "
            f"from the training distribution, disjoint digit shapes), scored every "
            f"{c['val_every']} steps and at the end; no test split is read.")


def format_environment_table(results: dict) -> str:
    """cmnist: DomainBed's layout, one column per environment (top-1 %, mean +- standard error
    over seeds), then the OOD split's worst-group and average-group top-1."""
    rows = [(name, r["runs"]) for name, r in results["methods"].items()
            if all("environments" in run for run in r["runs"])]
    if not rows:
        return ""
    envs = list(rows[0][1][0]["environments"])

    def mse(vals):
        vals = [100 * v for v in vals]
        se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
        return f"{statistics.fmean(vals):.1f} +- {se:.1f}" if math.isfinite(se) \
            else f"{statistics.fmean(vals):.1f}"
    lines = ["ColoredMNIST (DomainBed's environments; +90% and +80% are the two training "
             "environments' test images, -90% the test environment; top-1 %, mean +- standard "
             "error over seeds):", "",
             "| method | " + " | ".join(envs) + " | -90% worst-group | -90% average-group |",
             "|---|" + "---|" * (len(envs) + 2)]
    for name, runs in rows:
        lines.append(f"| {name} | " + " | ".join(mse(r["environments"][e] for r in runs)
                                                 for e in envs)
                     + f" | {mse(r['ood_worst_group'] for r in runs)}"
                     + f" | {mse(r['ood_average_group'] for r in runs)} |")
    return "\n".join(lines)


def _verdict(results: dict) -> tuple[bool | None, str]:
    """GenInt's bar: genint and genint-transfer each beat erm and gan-aug out of distribution
    by >= 5 points with non-overlapping 95% intervals, and lose <= 2 points in distribution."""
    m = results["methods"]
    need = ("erm", "gan-aug", "genint", "genint-transfer")
    if not all(k in m for k in need):
        return None, "erm, gan-aug, genint and genint-transfer did not all run; no verdict."
    parts, ok = [], True
    for ours in ("genint", "genint-transfer"):
        for base in ("erm", "gan-aug"):
            a, b = m[ours], m[base]
            gain = 100 * (a["ood_mean"] - b["ood_mean"])
            ci_a, ci_b = (100 * x.get("ood_ci95", float("nan")) for x in (a, b))
            apart = (math.isfinite(ci_a) and math.isfinite(ci_b)
                     and 100 * a["ood_mean"] - ci_a > 100 * b["ood_mean"] + ci_b)
            ok &= gain >= 5 and apart
            parts.append(f"{ours} vs {base}: OOD {gain:+.1f}"
                         f"{' (intervals apart)' if apart else ' (intervals overlap)'}")
        id_loss = 100 * (m["erm"]["id_mean"] - m[ours]["id_mean"])
        ok &= id_loss <= 2
        parts.append(f"{ours} ID {-id_loss:+.1f} vs erm")
    head = "effect shown" if ok else "effect NOT shown"
    return ok, (f"{head} (bar: both GenInt variants >= 5 OOD points above erm and gan-aug with "
                f"non-overlapping 95% intervals, <= 2 ID points lost): " + "; ".join(parts) + ".")


# ---------------------------------------------------------------------------- stages
def _data(cfg: DemoConfig):
    from .data.digits import make_biased_digits

    train = make_biased_digits(cfg.variant, "train", cfg.rho, seed=cfg.data_seed,
                               n=cfg.train_size)
    test_id = make_biased_digits(cfg.variant, "test-id", cfg.rho, seed=cfg.data_seed,
                                 n=cfg.test_size)
    test_ood = make_biased_digits(cfg.variant, "test-ood", cfg.rho, seed=cfg.data_seed,
                                  n=cfg.test_size)
    return train, test_id, test_ood


def _gan(cfg: DemoConfig, train, out: Path, log):
    from .data.digits import num_classes_of
    from .generators import GANTrainConfig, SmallGANConfig, load_small_generator, train_gan

    path = out / "gan.pt"
    model_config = SmallGANConfig(num_classes=num_classes_of(cfg.variant),
                                  class_bn=cfg.gan_class_bn)
    if path.is_file():
        from .generators.train_gan import _read_checkpoint

        try:   # a corrupt file or another kind of checkpoint: one sentence, not a traceback
            cached = _read_checkpoint(path).get("model_config", {})
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{exc}; delete the cached {path} and the demo trains the GAN "
                             "afresh") from None
        if SmallGANConfig(**cached).to_dict() != model_config.to_dict():
            log(f"  the cached {path} has another architecture ({cached}); training afresh")
            path.unlink()
    t0 = time.perf_counter()
    summary = train_gan(train.float_images() * 2 - 1, train.labels, path,
                        model_config=model_config,
                        train_config=GANTrainConfig(steps=cfg.gan_steps,
                                                    batch_size=cfg.gan_batch_size,
                                                    log_every=max(cfg.gan_steps // 5, 1),
                                                    checkpoint_every=250, seed=cfg.data_seed),
                        resume=True, log=log)
    summary["wall_s"] = time.perf_counter() - t0
    return path, load_small_generator(path), summary


def _run_dir(out: Path, method: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{method.replace('+', '_')}_seed{seed}"


def _weights_name(cfg: DemoConfig, method: str) -> str:
    """The file in a run folder that holds the weights its row measured."""
    from .train.selection import BEST_NAME
    from .train.trainer import CHECKPOINT_NAME

    return BEST_NAME if cfg.select != "last" and method != "dfr" else CHECKPOINT_NAME


def _run_keys(cfg: DemoConfig, method: str, seed: int, gan_path, dir_path, out: Path,
              cgn_path=None) -> dict:
    """The TrainConfig keys of one classifier run."""
    from .data.digits import num_classes_of

    run_dir = _run_dir(out, method, seed)
    mode = "genint" if method in CONTROLS else COMBINED.get(method, method)
    gen_batch = (cfg.gan_aug_batch_size or cfg.batch_size) if method == "gan-aug" \
        else cfg.gen_batch_size
    keys = dict(
        mode=mode, model="smallcnn", num_classes=num_classes_of(cfg.variant),
        data=f"digits:{cfg.variant}:{cfg.rho}", data_size=cfg.train_size,
        batch_size=cfg.batch_size,
        gen_batch_size=gen_batch if method in GAN_METHODS else 0,
        lambda1={"erm": 0.0, "gan-aug": cfg.lambda_gan_aug, "genint": cfg.lambda1,
                 "genint-transfer": cfg.lambda1_transfer, "random-directions": cfg.lambda1,
                 "matched-norm": cfg.lambda1, "cgn": 0.0, "real+cgn": 0.0,
                 "groupdro": 0.0, "jtt": 0.0, "dfr": 0.0, "genint+cgn": cfg.lambda1}[method],
        control=CONTROLS.get(method, "none"),
        cgn=str(cgn_path) if method in CGN_METHODS else None,
        cgn_batch_size=cfg.cgn_stream_batch_size,
        lambda_cgn=cfg.lambda_cgn if method in CGN_METHODS else None,
        lambda2=cfg.lambda2 if method == "genint-transfer" else 0.0,
        transfer_batch_size=cfg.transfer_batch_size,
        transfer_features=cfg.transfer_features, transfer_steps=list(cfg.transfer_steps),
        generator=str(gan_path) if gan_path else "random:small32:0",
        directions=str(dir_path) if dir_path else None, num_directions=cfg.num_directions,
        truncation=cfg.gan_aug_truncation if method == "gan-aug" else cfg.truncation,
        top_k=cfg.top_k, m=cfg.m, scale=cfg.scale if cfg.scale is not None else 1.0,
        intervention_mode=cfg.intervention_mode,
        intervention_style=cfg.intervention_style,
        steps=cfg.steps, lr=cfg.lr, lr_step_epochs=1e6, seed=seed, threads=cfg.threads,
        **(_selection_keys(cfg) if method != "dfr" else {}),   # dfr chooses C on val itself
        out=str(run_dir), checkpoint_every=10 ** 9, log_every=max(cfg.steps // 4, 1),
        progress=False, device="cpu")
    if method in CGN_METHODS:
        keys.update(_cgn_protocol(cfg))
    if method == "dfr":   # the last layer of the same seed's erm run (as selected), refit
        keys["init_weights"] = str(_run_dir(out, "erm", seed) / _weights_name(cfg, "erm"))
    return keys


def _train_one(cfg: DemoConfig, method: str, seed: int, gan_path, dir_path, train, tests,
               out: Path, log, cgn_path=None, corrupted=None):
    """Train (or, with resume, keep) one classifier run: (row, holder of its model)."""
    from .train.config import TrainConfig
    from .train.trainer import Trainer, evaluate

    keys = _run_keys(cfg, method, seed, gan_path, dir_path, out, cgn_path)
    run_dir = Path(keys["out"])
    tc = TrainConfig(**keys).validate()
    fingerprint = _run_fingerprint(keys, cfg, gan_path, dir_path, cgn_path, corrupted)
    if cfg.resume:
        kept = _kept_run(run_dir, fingerprint, _weights_name(cfg, method))
        if kept is not None:
            log(f"  {method:16s} seed {seed}: kept from {run_dir} (--resume)")
            return kept
    shutil.rmtree(run_dir, ignore_errors=True)   # a run is redone whole, never continued
    t0 = time.perf_counter()
    trainer = Trainer(tc, data=(train.images, train.labels, train.nuisance), log=log)
    last = trainer.fit()
    seconds = time.perf_counter() - t0
    acc = {name: evaluate(trainer.model, ds.images, ds.labels)[0] for name, ds in tests.items()}
    row = {"seed": seed, "id": acc["id"], "ood": acc["ood"], "seconds": seconds,
           "final_loss": last.get("loss")}
    if corrupted is not None:
        row["corruption"] = _corruption_errors(trainer.model, corrupted)
    row.update(_group_scores(trainer.model, tests["ood"]))
    if cfg.variant == "cmnist":
        row["environments"] = _environment_accuracy(trainer.model, tests)
    write_text_atomic(json.dumps({"fingerprint": fingerprint, "row": row}, indent=1),
                      run_dir / "row.json")
    return row, trainer


# ----------------------------------------------------------------------- classifier runs
def _log_row(log, method: str, seed: int, r: dict) -> None:
    log(f"  {method:16s} seed {seed}: ID {100 * r['id']:.1f}  OOD {100 * r['ood']:.1f}"
        f"  ({r['seconds']:.0f} s)")


def _sequential_runs(cfg: DemoConfig, out: Path, train, tests, corrupted, gens, log):
    """Every (method, seed) run in this process: ({(method, seed): row}, {method: seed 0's
    model})."""
    rows, models = {}, {}
    for method in cfg.methods:
        for seed in range(cfg.seeds):
            r, trainer = _train_one(cfg, method, seed, gens["gan_path"], gens["dir_path"], train,
                                    tests, out, log, cgn_path=gens["cgn_path"],
                                    corrupted=corrupted)
            _log_row(log, method, seed, r)
            rows[method, seed] = r
            if seed == 0:
                models[method] = trainer.model
    return rows, models


def _parallel_runs(cfg: DemoConfig, out: Path, pool: "_JobPool", gens: dict, cgn_pending: bool,
                   log):
    """Every (method, seed) run in the worker processes, each submitted once what it reads
    exists (the CGN for cgn rows, the same seed's erm run for dfr): ({(method, seed): row},
    the CGN summary if the CGN was trained in the pool, else None)."""
    gens = dict(gens)
    todo = [(m, s) for m in cfg.methods for s in range(cfg.seeds)]
    rows, cgn_summary, running = {}, None, 1 if cgn_pending else 0

    def ready(m, s):
        return ((m not in CGN_METHODS or not cgn_pending)
                and (m != "dfr" or ("erm", s) in rows))

    while todo or running:
        for m, s in [job for job in todo if ready(*job)]:
            todo.remove((m, s))
            pool.submit((m, s), _worker_run, cfg, m, s, gens, str(out))
            running += 1
        tag, result = pool.next_done()
        running -= 1
        if tag == "cgn":
            cgn_pending = False
            gens["cgn_path"], cgn_summary = Path(result[0]), result[1]
            for w in cgn_summary.get("warnings", []):
                log(f"  WARNING: the decomposition failed: {w}")
            log(f"  CGN done in {cgn_summary['wall_s']:.0f} s (shape consistency "
                f"{100 * cgn_summary['shape_consistency']:.0f}%)")
        else:
            rows[tag], notes = result
            for note in notes:
                log(note)
            _log_row(log, *tag, rows[tag])
    return rows, cgn_summary


def _run_model(cfg: DemoConfig, out: Path, method: str, seed: int):
    """The model a finished run's row measured, read back from its folder."""
    from .eval.checkpoints import load_classifier

    return load_classifier(_run_dir(out, method, seed) / _weights_name(cfg, method)).model


def _figure_trainer(cfg: DemoConfig, out: Path, gens: dict, train):
    """An untrained genint-transfer trainer (seed 0) for the transfer figure: the figure reads
    its sampler and style transfer only, which training does not change."""
    import tempfile

    from .train.config import TrainConfig
    from .train.trainer import Trainer

    keys = _run_keys(cfg, "genint-transfer", 0, gens["gan_path"], gens["dir_path"], out,
                     gens["cgn_path"])
    with tempfile.TemporaryDirectory() as tmp:
        keys["out"] = tmp
        return Trainer(TrainConfig(**keys).validate(),
                       data=(train.images, train.labels, train.nuisance), log=lambda m: None)


_WORKER: dict = {}


def _worker_init(train, tests, corrupted) -> None:
    torch.set_num_threads(1)
    _WORKER.update(train=train, tests=tests, corrupted=corrupted)


def _worker_cgn(cfg: DemoConfig, out: str):
    path, summary = _cgn(cfg, _WORKER["train"], Path(out), lambda m: print(f"  [cgn] {m}",
                                                                               flush=True))
    return str(path), summary


def _worker_run(cfg: DemoConfig, method: str, seed: int, gens: dict, out: str) -> dict:
    w = _WORKER
    said = []     # the trainer's log stays in the worker; the resume note comes back
    row, _ = _train_one(cfg, method, seed, gens["gan_path"], gens["dir_path"], w["train"],
                        w["tests"], Path(out), said.append, cgn_path=gens["cgn_path"],
                        corrupted=w["corrupted"])
    return row, [m for m in said if "(--resume)" in m]


class _JobPool:
    """`workers` spawned processes (one torch thread each) holding the benchmark's tensors;
    submit(tag, fn, *args) queues a call, next_done() returns (tag, result) of the next one to
    finish and raises what a call raised."""

    def __init__(self, workers: int, train, tests, corrupted, log):
        import multiprocessing
        import queue

        self.workers = int(workers)
        self.done = queue.Queue()
        self.pool = multiprocessing.get_context("spawn").Pool(
            self.workers, initializer=_worker_init, initargs=(train, tests, corrupted))
        log(f"  {self.workers} worker processes, one thread each")

    def submit(self, tag, fn, *args) -> None:
        self.pool.apply_async(fn, args, callback=lambda r: self.done.put((tag, r, None)),
                              error_callback=lambda e: self.done.put((tag, None, e)))

    def next_done(self):
        tag, result, error = self.done.get()
        if error is not None:
            raise error
        return tag, result

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


def _selection_keys(cfg: DemoConfig) -> dict:
    """The trainer's model-selection keys; none under select=last, so the runs of earlier
    tables keep their fingerprints."""
    if cfg.select == "last":
        return {}
    return dict(select=cfg.select, val_every=cfg.val_every, val_size=cfg.val_size,
                data_seed=cfg.data_seed)


def _environment_accuracy(model, tests: dict) -> dict:
    """cmnist: top-1 per environment, named as DomainBed's columns ("+90%", "+80%" from the
    test-id split's two training environments, "-90%" the test-ood split)."""
    from .data.digits import CMNIST_ENVIRONMENTS
    from .train.trainer import logits_of

    out = {}
    for ds in tests.values():
        pred = torch.cat([lg.argmax(1).cpu() for _, lg in logits_of(model, ds.images)])
        for e in torch.unique(ds.environment).tolist():
            sel = ds.environment == e
            flip = CMNIST_ENVIRONMENTS[e]     # DomainBed: "+90%" agrees 90%, "-90%" flips 90%
            name = f"+{100 * (1 - flip):.0f}%" if flip < 0.5 else f"-{100 * flip:.0f}%"
            out[name] = (pred[sel] == ds.labels[sel]).float().mean().item()
    return out


def _group_scores(model, test) -> dict:
    """Worst-group and average-group top-1 of `model` on a test split, groups = class x stroke
    colour id (eval.groups; groups of fewer than 5 images cannot be the worst)."""
    from .eval.groups import group_accuracy, group_ids
    from .train.trainer import logits_of

    pred = torch.cat([lg.argmax(1).cpu() for _, lg in logits_of(model, test.images)])
    r = group_accuracy(pred, test.labels, group_ids(test.labels, test.nuisance))
    return {"ood_worst_group": r["worst"], "ood_average_group": r["average"]}


def _run_fingerprint(keys: dict, cfg: DemoConfig, *paths_and_corrupted) -> str:
    """What decides a classifier run's row: its training config, the bytes of the generators
    and directions it reads, the test data and the corruption settings."""
    import hashlib

    *paths, corrupted = paths_and_corrupted
    # the thread count changes no more than the order of float sums: a run made with --jobs 1
    # --threads 2 is kept by a later run in worker processes (one thread each)
    keys = {k: v for k, v in keys.items() if k != "threads"}
    h = hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode())
    for p in paths:
        h.update(_weights_digest(p) if p else b"-")
    h.update(json.dumps([cfg.test_size, cfg.data_seed, cfg.corruption_n if corrupted else 0,
                         list(cfg.corruption_severities)], default=str).encode())
    return h.hexdigest()


def _weights_digest(path) -> bytes:
    """sha256 of the tensors that decide what a generator or directions file produces (the
    generator weights and their moving averages; every tensor of a safetensors file), so a
    cached checkpoint re-saved on resume with new optimiser or RNG state keeps its digest."""
    import hashlib

    h = hashlib.sha256()
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        tensors = load_file(str(path))
    else:
        st = torch.load(str(path), map_location="cpu", weights_only=False)
        tensors = {f"{k}.{n}": t for k in ("G", "G_ema", "ema", "model")
                   if isinstance(st.get(k), dict) for n, t in st[k].items()}
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()


def _kept_run(run_dir: Path, fingerprint: str, weights: str | None = None):
    """(row, holder of the model) of a finished run with this fingerprint, else None; the model
    is read from `weights` in run_dir (default: the last checkpoint)."""
    from types import SimpleNamespace

    from .eval.checkpoints import load_classifier
    from .train.trainer import CHECKPOINT_NAME

    try:
        kept = json.loads((run_dir / "row.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = run_dir / (weights or CHECKPOINT_NAME)
    if kept.get("fingerprint") != fingerprint or not path.is_file():
        return None
    return kept["row"], SimpleNamespace(model=load_classifier(path).model)


def _cgn_protocol(cfg: DemoConfig) -> dict:
    """TrainConfig keys of the CGN rows' classifier (see DemoConfig.cgn_protocol)."""
    if cfg.cgn_protocol == "stream":
        return {"cgn_per_mask": cfg.cgn_per_mask, "cgn_labels": cfg.cgn_labels}
    per_epoch = cfg.cgn_set // cfg.cgn_stream_batch_size
    steps = max(1, math.ceil(cfg.cgn_epochs * per_epoch))
    # the learning rate falls x0.7 after every epoch of the counterfactual set; the trainer
    # counts lr_step_epochs in epochs of the real images in mode real+cgn
    real_per_epoch = max(1, cfg.train_size // cfg.batch_size)
    return {"optimizer": "adadelta", "lr": 1.0, "weight_decay": 0.0, "lr_gamma": 0.7,
            "lr_step_epochs": per_epoch / real_per_epoch, "steps": steps, "augment": False,
            "cgn_set": cfg.cgn_set, "cgn_resample": cfg.cgn_resample,
            "cgn_per_mask": cfg.cgn_per_mask, "cgn_labels": cfg.cgn_labels,
            "log_every": max(steps // 4, 1)}


def _corrupted_test(cfg: DemoConfig, test, log):
    """The first corruption_n test images under every corruption x severity, made once
    (genint_fast.eval.corruptions, seeded per image) and shared by every run."""
    from .eval.corruptions import CORRUPTIONS
    from .eval.protocols import corrupt_all

    n = min(cfg.corruption_n, int(test.labels.shape[0]))
    settings = [(c, int(s)) for c in CORRUPTIONS for s in cfg.corruption_severities]
    t0 = time.perf_counter()
    images = corrupt_all(test.images[:n], settings, seed=cfg.data_seed,
                         workers=min(2, int(cfg.threads)))
    log(f"  {len(settings)} corruption settings x {n} ID test images in "
        f"{time.perf_counter() - t0:.0f} s")
    return {"clean": test.images[:n], "labels": test.labels[:n], "images": images}


def _corruption_errors(model, corrupted) -> dict:
    from .train.trainer import evaluate

    labels = corrupted["labels"]
    errs = {"clean": 1 - evaluate(model, corrupted["clean"], labels)[0]}
    for (c, s), x in corrupted["images"].items():
        errs[f"{c}/{s}"] = 1 - evaluate(model, x, labels)[0]
    return errs


def _relative_mce_vs_erm(per_method: dict, cfg: DemoConfig) -> None:
    """Adds rmce_mean / rmce_std / rmce_ci95 to every method: the relative mCE (%) of each seed
    against erm's run with the same seed (genint_fast.eval.robustness), over the corruptions
    that raise erm's error above its clean error in every seed (the others have no relative CE;
    they are listed in per_method["erm"]["rmce_left_out"])."""
    from .eval.corruptions import CORRUPTIONS
    from .eval.robustness import relative_mce

    if "erm" not in per_method:
        return
    sev = [int(s) for s in cfg.corruption_severities]

    def table(errs, keep):
        return {c: [errs[f"{c}/{s}"] for s in sev] for c in keep}

    base = {r["seed"]: r["corruption"] for r in per_method["erm"]["runs"]}
    keep = [c for c in CORRUPTIONS
            if all(sum(b[f"{c}/{s}"] - b["clean"] for s in sev) > 1e-12 for b in base.values())]
    per_method["erm"]["rmce_left_out"] = [c for c in CORRUPTIONS if c not in keep]
    if not keep:
        return
    for r in per_method.values():
        vals = []
        for run in r["runs"]:
            b = base.get(run["seed"])
            if b is None:
                continue
            run["rmce_vs_erm"] = relative_mce(table(run["corruption"], keep),
                                              run["corruption"]["clean"], table(b, keep),
                                              b["clean"]).mce
            vals.append(run["rmce_vs_erm"])
        if vals:
            r["rmce_mean"], r["rmce_std"] = _mean_std(vals)
            r["rmce_ci95"] = _ci95(vals)


def _cgn(cfg: DemoConfig, train, out: Path, log):
    """Train (or resume) the small CGN on the training split, cached in OUT/cgn.pt; write the
    counterfactual sheet; return (path, summary with mask statistics)."""
    from .cgn import (counterfactual_sheet, decomposition_warnings, load_cgn, mask_statistics,
                      train_cgn)
    from .cgn.presets import preset_configs
    from .data.digits import foreground_share

    t0 = time.perf_counter()
    if cfg.cgn_checkpoint:
        path = Path(cfg.cgn_checkpoint)
        cgn = load_cgn(path)
        log(f"  using the given CGN {path} ({cgn.steps_trained} training steps), not training one")
        summary = {"steps": cgn.steps_trained, "checkpoint": str(path), "given": True,
                   "feature_net": "(given checkpoint)"}
    else:
        path = out / "cgn.pt"
        mc, tc = preset_configs("default", cfg.variant, num_classes=train.num_classes,
                                train_overrides=dict(
            steps=cfg.cgn_steps, batch_size=cfg.cgn_batch_size, feature_net=cfg.cgn_feature_net,
            seed=cfg.data_seed, log_every=max(cfg.cgn_steps // 5, 1), checkpoint_every=250))
        summary = train_cgn(train.float_images() * 2 - 1, train.labels, path, model_config=mc,
                            train_config=tc, resume=True, log=log)
        cgn = load_cgn(path)
    summary["wall_s"] = time.perf_counter() - t0
    summary["mask"] = mask_statistics(cgn)
    summary["warnings"] = decomposition_warnings(summary["mask"], foreground_share())
    for w in summary["warnings"]:
        log(f"  WARNING: the decomposition failed: {w}")
    from .eval.shape import cached_shape_reader, shape_consistency

    reader, reader_acc = cached_shape_reader(out / "shape_reader.pt", cfg.shape_reader_steps,
                                             seed=cfg.data_seed, log=log)
    # cmnist's classes are digit ranges (0-4, 5-9): the reader's digit is mapped to its range
    summary["shape_consistency"] = shape_consistency(
        cgn, reader, digit_to_class=(lambda d: (d >= 5).long()) if cfg.variant == "cmnist"
        else None)
    summary["shape_reader_accuracy"] = reader_acc
    counterfactual_sheet(cgn, out / "counterfactuals.png")
    return path, summary


def _cgn_verdict(results: dict) -> tuple[bool | None, str]:
    m, c = results["methods"], results["config"]
    target = CGN_TARGETS.get(c["variant"])
    if "cgn" not in m or "erm" not in m or target is None:
        return None, ""
    ood = 100 * m["cgn"]["ood_mean"]
    id_gap = 100 * (m["erm"]["id_mean"] - m["cgn"]["id_mean"])
    ok = ood >= target and id_gap <= 3.0
    mask = (results.get("cgn") or {}).get("mask", {})
    consistency = (results.get("cgn") or {}).get("shape_consistency", float("nan"))
    return ok, (f"{'target met' if ok else 'target NOT met'}: cgn OOD {ood:.1f} (target >= "
                f"{target:.0f}), ID {id_gap:+.1f} points below erm (target <= 3); mask mean "
                f"{mask.get('mean', float('nan')):.2f}, near-binary share "
                f"{mask.get('binary_share', float('nan')):.2f}; shape consistency "
                f"{100 * consistency:.0f}% (a shape-only reader reads the CGN's masks as the "
                f"asked class).")


def _generated_only(cfg: DemoConfig, gen, directions, tests, log) -> dict:
    """The paper's Table 4 on the demo's GAN: classifiers trained only on generated images."""
    from .train.generated_only import generated_only

    samplers = {f"observational (t = {t:g})":
                (lambda seed, t=t: _intervention_sampler(gen, directions, replace(cfg,
                                                                                  truncation=t),
                                                         0.0, seed))
                for t in (0.5, 1.0)}
    for name, control in ((f"interventional (s = {cfg.scale:g})", "none"),
                          ("random directions (control)", "random-directions"),
                          ("matched norm (control)", "matched-norm")):
        samplers[name] = (lambda seed, c=control: _intervention_sampler(
            gen, directions, cfg, cfg.scale, seed, control=c))
    return generated_only(samplers, {"ID": tests["id"], "OOD": tests["ood"]},
                          n=cfg.generated_only, seeds=cfg.seeds,
                          steps=cfg.generated_only_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                          num_classes=gen.num_classes, log=log)


def _generated_only_section(results: dict) -> list:
    from .train.generated_only import format_generated_only

    g = results["generated_only"]
    return ["## Trained only on generated images (the paper's Table 4)", "",
            f"The same small CNN ({g['steps']} SGD steps) trained only on {g['n']} generated "
            f"images per set, {g['seeds']} seed(s), tested on the real splits; mean +- 95% "
            "interval. The paper: interventional 45.06% vs observational 42.65% on ImageNet "
            "validation (+2.4).", "", format_generated_only(g), ""]


def _intervention_sampler(gen, directions, cfg, scale, seed, *, control="none"):
    from .intervene import make_sampler

    return make_sampler(gen, directions, truncation=cfg.truncation, top_k=cfg.top_k, m=cfg.m,
                        scale=scale, mode=cfg.intervention_mode, style=cfg.intervention_style,
                        seed=seed, control=control)


def _select_scale(cfg: DemoConfig, gen, directions, log) -> dict:
    """The intervention scale with the largest causal-bound score log P(x|z) of the validation
    split (drawn from the training distribution) among cfg.scale_candidates; the test splits are
    not read. Scale 0 (observational samples) is scored for reference, not chosen."""
    from .data.digits import make_biased_digits
    from .eval.correlation import bound_features, causal_bound_score, median_bandwidth
    from .intervene import ObservationalSampler, draw_images

    val = make_biased_digits(cfg.variant, "val", cfg.rho, seed=cfg.data_seed,
                             n=cfg.measure_n)
    fr = bound_features(val.float_images())
    obs, _ = draw_images(ObservationalSampler(gen, truncation=cfg.truncation, seed=11),
                         cfg.measure_n)
    h = median_bandwidth(fr, bound_features(obs))
    scores = {0.0: causal_bound_score(fr, bound_features(obs), h)}
    for sc in cfg.scale_candidates:
        x, _ = draw_images(_intervention_sampler(gen, directions, cfg, float(sc), 11),
                           cfg.measure_n)
        scores[float(sc)] = causal_bound_score(fr, bound_features(x), h)
    chosen = cfg.scale if cfg.scale is not None else \
        max((s for s in scores if s > 0), key=lambda s: scores[s])
    log("  causal-bound score log P(x|z) on the validation split: " + ", ".join(
        f"s={k:g}: {v:.3f}" for k, v in scores.items()) + f" -> scale {chosen:g}"
        + (" (given)" if cfg.scale is not None else " (selected)"))
    return {"scores": {f"{k:g}": v for k, v in scores.items()}, "bandwidth": h,
            "scale": float(chosen), "selected": cfg.scale is None,
            "rule": "max log P(x|z) of the validation split over the candidate scales"}


def _measures(cfg: DemoConfig, gen, directions, train, scale, out: Path, log) -> dict:
    """Nuisance-label agreement and class consistency (genint_fast.eval.nuisance) of the
    training images, the GAN's observational samples (gan-aug's truncation too), the selected
    interventions and the two controls."""
    from .eval.nuisance import cached_readers, hue_reference, measure_images
    from .intervene import ObservationalSampler, draw_images

    kw = dict(class_steps=60, nuisance_steps=40, n=600) if cfg.quick else {}
    readers = cached_readers(cfg.variant, out / "readers.pt", log=log, data_seed=cfg.data_seed,
                             **kw)
    n = cfg.measure_n
    ref = (hue_reference(train.float_images(), train.labels) if cfg.variant == "hue"
           else None)       # the continuous nuisance, read from the pixels
    rows = {"training images": measure_images(readers, train.float_images()[:n],
                                              train.labels[:n], hue_reference=ref)}
    sets = {"observational (t = %g)" % cfg.truncation:
            ObservationalSampler(gen, truncation=cfg.truncation, seed=21),
            "gan-aug samples (t = %g)" % cfg.gan_aug_truncation:
            ObservationalSampler(gen, truncation=cfg.gan_aug_truncation, seed=22),
            "intervened (genint, s = %g)" % scale:
            _intervention_sampler(gen, directions, cfg, scale, 23),
            "random directions (control)":
            _intervention_sampler(gen, directions, cfg, scale, 24, control="random-directions"),
            "matched norm (control)":
            _intervention_sampler(gen, directions, cfg, scale, 25, control="matched-norm")}
    for name, sampler in sets.items():
        rows[name] = measure_images(readers, *draw_images(sampler, n), hue_reference=ref)
    for name, r in rows.items():
        log(f"  {name:32s} " + "  ".join(f"{k} {100 * v:.1f}%" for k, v in r.items()
                                         if k != "n"))
    return {"readers_accuracy": readers.accuracy, "rows": rows}


def _intervention_figure(gen, directions, cfg, out: Path):
    from .intervene import intervention_grid, save_grid

    rows = list(range(min(8, directions.k)))
    imgs = intervention_grid(gen, directions, rows=rows, steps=9, scale=cfg.scale or 4.0,
                             mode=cfg.intervention_mode, seed=1,
                             class_ids=torch.arange(len(rows)) % gen.num_classes)
    return save_grid(imgs, out / "interventions.png", ncols=9)


def _gan_samples_figure(gen, out: Path):
    from .intervene import save_grid

    rng = torch.Generator().manual_seed(0)
    labels = torch.arange(gen.num_classes).repeat(60 // gen.num_classes)
    with torch.no_grad():
        x = gen(gen.sample_latents(labels.numel(), generator=rng), labels)
    return save_grid(x, out / "gan_samples.png", ncols=10 if gen.num_classes == 10 else 12)


def _gradcam_figure(per_method: dict, models: dict, test_ood, out: Path, n=8):
    """Grad-CAM (torchcam) of erm and of the method with the best OOD mean on the first n OOD
    test images, seed 0 of each: OUT/gradcam.png. Returns what it drew (or None)."""
    from .eval.gradcam import gradcam_sheet

    others = [m for m in per_method if m != "erm" and m in models]
    if "erm" not in models or not others:
        return None
    best = max(others, key=lambda m: per_method[m]["ood_mean"])
    rows = {"erm": (models["erm"], "mean"), best: (models[best], "mean")}
    x, y = test_ood.images[:n], test_ood.labels[:n]
    path = gradcam_sheet(rows, x, y, out / "gradcam.png")
    return {"path": path.name, "rows": list(rows), "images": int(x.shape[0]),
            "split": "test-ood", "seed": 0}


def _transfer_figure(trainer, out: Path, n=8):
    """Rows: real content, intervened style image, transferred result (label = content's)."""
    from .intervene import save_grid

    content, _ = trainer.data.random_images(10 ** 6, n, "content")
    trainer.sampler.rng.manual_seed(7)
    style = trainer._to_real_range(trainer.sampler.sample(n)[0])
    trainer.transfer.rng.manual_seed(7)
    result = trainer.transfer(content, style).detach()
    grid = torch.cat([content.float(), style.float(), result.float()]) * 2 - 1
    return save_grid(grid, out / "transfers.png", ncols=n)


def _bar_plot(results: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["methods"])
    rs = [results["methods"][n] for n in names]
    x = range(len(names))
    w = 0.38
    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(names)), 3.6), dpi=120)
    ax.bar([i - w / 2 for i in x], [100 * r["id_mean"] for r in rs], w,
           yerr=[100 * r["id_std"] for r in rs], label="in distribution", color="#4C72B0",
           capsize=3)
    ax.bar([i + w / 2 for i in x], [100 * r["ood_mean"] for r in rs], w,
           yerr=[100 * r["ood_std"] for r in rs], label="out of distribution (rho = 0)",
           color="#DD8452", capsize=3)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    c = results["config"]
    ax.set_title(f"biased digits ({c['variant']}, rho {c['rho']}), {c['seeds']} seed(s)")
    ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _cgn_settings(results: dict) -> str:
    c, g = results["config"], results["cgn"]
    mask = g.get("mask", {})
    if c["cgn_protocol"] == "reference":
        protocol = (f"the reference's protocol sized for a CPU: Adadelta lr 1.0, x0.7 after "
                    f"every epoch, {c['cgn_epochs']:g} epochs of {c['cgn_set']} counterfactuals "
                    f"({'drawn anew every epoch' if c['cgn_resample'] else 'one fixed set'}; "
                    f"the reference: 10 epochs of one fixed set of 100k), batch "
                    f"{c['cgn_stream_batch_size']}, no augmentation")
    else:
        protocol = (f"the erm rows' SGD schedule, {c['cgn_stream_batch_size']} fresh "
                    f"counterfactuals per step")
    warn = "; ".join(g.get("warnings") or [])
    source = (f"the given checkpoint {g['checkpoint']} ({g['steps']} training steps)"
              if g.get("given") else
              f"{g['steps']} steps of batch {c['cgn_batch_size']} (style features "
              f"{g.get('feature_net')}), {g.get('wall_s', float('nan')):.0f} s this run (0 when "
              f"cached)")
    return (f"CGN: {source}; mask mean {mask.get('mean', float('nan')):.2f}, near-binary share "
            f"{mask.get('binary_share', float('nan')):.2f}, entropy "
            f"{mask.get('entropy_bits', float('nan')):.2f} bits; shape consistency "
            f"{100 * g.get('shape_consistency', float('nan')):.1f}% (shape reader: "
            f"{100 * g.get('shape_reader_accuracy', float('nan')):.1f}% on held-out colour-free "
            f"digits)" + (f"; WARNING: {warn}" if warn else "") + f". Classifier of the CGN "
            f"rows: {protocol}; {c['cgn_per_mask']} counterfactuals per mask, texture and "
            f"background classes {c['cgn_labels']}; cgn = counterfactuals only, real+cgn = real "
            f"+ {c['lambda_cgn']} x counterfactuals.")


def _gan_sections(results: dict) -> list:
    """The report's GenInt part: what the interventions do and how its settings were chosen."""
    from .eval.nuisance import format_measures_table

    c = results["config"]
    return [
        "## What the interventions do", "",
        "Measured with two readers trained on a separate decorrelated (rho = 0) instance of the "
        "benchmark and never used in training (held-out accuracy: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in results["measures"]["readers_accuracy"].items())
        + "). Agreement: share of images whose nuisance, as read, equals their label (chance "
        "10%; the training images agree about rho + (1 - rho) / 10). Class consistency: share "
        "the class reader reads as the asked class. An intervention that works drives agreement "
        "toward 10% while consistency stays high.", "",
        format_measures_table(results["measures"]), "",
        "## How the settings were chosen", "",
        "Intervention scale: " + (
            "selected as the largest causal-bound score log P(x|z) of the validation split "
            "(drawn from the training distribution; the test splits are read once, at the end) "
            if results["selection"]["selected"] else "given on the command line; scores ")
        + "over the candidates: " + ", ".join(f"s = {k}: {v:.3f}" for k, v in
                                              results["selection"]["scores"].items())
        + f" -> scale {results['selection']['scale']:g}. Stream weights were fixed before "
        "any run (every generated stream weighs as much as the real one), the same for every "
        "method; the classifier's learning rate, steps and batch sizes are the earlier demo's "
        "defaults, kept unchanged for every method; nothing in this run was tuned on a test "
        "split.", "",
        "Settings: small CNN, SGD lr {lr}, {steps} steps of {bs} real images; genint streams "
        "{gb} images/step, lambda1 {l1} (genint and its controls), {l1t} (genint-transfer), "
        "lambda2 {l2}; interventions: style {style}, m {m} of the top {k} of {nd} SVD "
        "directions, mode {mode}, scale {s:g} standard deviations, truncation {t}; gan-aug: "
        "truncation {gt}, {gab} synthetic images per step, weight {lg}; every stream gets the "
        "real stream's random crop (no flip: a mirrored digit is another shape); GAN: {gs} "
        "steps.".format(
            lr=c["lr"], steps=c["steps"], bs=c["batch_size"], gb=c["gen_batch_size"],
            l1=c["lambda1"], l1t=c["lambda1_transfer"], l2=c["lambda2"], m=c["m"], k=c["top_k"],
            nd=c["num_directions"], mode=c["intervention_mode"], s=c["scale"],
            style=c["intervention_style"], t=c["truncation"], gt=c["gan_aug_truncation"],
            gab=c["gan_aug_batch_size"] or c["batch_size"], lg=c["lambda_gan_aug"],
            gs=results["gan"]["steps"]), ""
    ]


def _write_markdown(results: dict, path: Path):
    from .eval.nuisance import format_measures_table

    c = results["config"]
    lines = [
        "# genint-fast demo: results", "",
        f"Machine: {results['machine']}  ",
        f"Date: {results['date']}  ",
        f"Wall time: {results['wall_s']:.0f} s ({'quick' if c['quick'] else 'full'} mode)", "",
        f"Benchmark: biased digits, variant `{c['variant']}`, rho {c['rho']}, "
        f"{c['train_size']} training images, {c['test_size']} per test split.", "",
        f"Why this variant: {WHY_VARIANT}", "",
        format_results_table(results), "",
        "OOD worst-group: the lowest top-1 over the OOD split's (class, stroke colour id) "
        "groups of at least 5 images; average-group: their mean (`genint_fast.eval.groups`). "
        + _selection_note(c), "",
        *([format_environment_table(results), ""] if c["variant"] == "cmnist" else []),
        f"**Verdict:** {results['verdict']}", "",
        *([f"**CGN:** {results['cgn_verdict']}", ""] if results.get("cgn_verdict") else []),
        *(_gan_sections(results) if results.get("measures") else []),
        *(_generated_only_section(results) if results.get("generated_only") else []),
        *([_cgn_settings(results), ""] if results.get("cgn") else []),
        *([_robustness_note(results), ""] if any(
            "rmce_mean" in r for r in results["methods"].values()) else []),
        "Figures: `accuracy.png` (bar plot), `gan_samples.png` (one column per class), "
        "`interventions.png` (one row per direction, steps from -s to +s), `transfers.png` "
        "(rows: real content, intervened style, transferred result), `counterfactuals.png` "
        "(CGN: rows mask, texture, background, composite per class, then counterfactual rows: "
        "the shape of one class with the texture and background of each column's class)"
        + (f", `gradcam.png` (Grad-CAM of {' vs '.join(results['gradcam']['rows'])}, seed 0, "
           "on OOD test images: where each classifier looks)" if results.get("gradcam")
           else "") + ".", "",
        "Per seed (top-1 %, ID / OOD):", "",
    ]
    for name, r in results["methods"].items():
        runs = ", ".join(f"{100 * s['id']:.1f} / {100 * s['ood']:.1f}" for s in r["runs"])
        lines.append(f"- {name}: {runs}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _robustness_note(results: dict) -> str:
    c = results["config"]
    left = results["methods"].get("erm", {}).get("rmce_left_out") or []
    return ("Corruption robustness: the first {n} in-distribution test images under the 15 "
            "ImageNet-C "
            "corruptions at severities {sev} (generated on the fly by "
            "`genint_fast.eval.corruptions`, seeded per image); relative mCE = mean over "
            "corruptions of sum_s (err(c, s) - clean err) / the same sum for erm with the same "
            "seed, in % (erm = 100; lower is more robust). AlexNet-normalised mCE is not shown: "
            "its constants are ImageNet's.").format(
        n=c["corruption_n"], sev=", ".join(str(s) for s in c["corruption_severities"])) + (
        f" Left out of the relative mCE (erm's error there is no higher than on clean images "
        f"in some seed, so a relative CE is undefined): {', '.join(left)}."
        if left else "")


def write_summary(results_list: list, path: Path) -> Path:
    """One markdown table over several demo runs (variant, rho): a row per (setting, method)."""
    path = Path(path)
    lines = ["# genint-fast demo: summary over settings", "",
             f"Machine: {results_list[0]['machine']}  ",
             f"Date: {results_list[0]['date']}  ",
             f"Wall time: {sum(r['wall_s'] for r in results_list):.0f} s in all", "",
             "Top-1 (%): mean +- 95% interval half-width (Student t over seeds), standard "
             "deviation in brackets.", "",
             "| variant | rho | method | ID top-1 (%) | OOD top-1 (%) | seeds |",
             "|---|---|---|---|---|---|"]
    for res in results_list:
        c = res["config"]
        for row in format_results_table(res).splitlines()[2:]:
            cells = [x.strip() for x in row.strip("|").split("|")]
            lines.append(f"| {c['variant']} | {c['rho']:g} | {cells[0]} | {cells[1]} | "
                         f"{cells[2]} | {cells[-1]} |")
    lines.append("")
    for res in results_list:
        c = res["config"]
        if res.get("cgn_verdict"):
            lines.append(f"- {c['variant']}, rho {c['rho']:g}: CGN {res['cgn_verdict']}")
        if res.get("effect_shown") is not None:
            lines.append(f"- {c['variant']}, rho {c['rho']:g}: GenInt {res['verdict']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- main entry
def run_demo(cfg: DemoConfig, out, *, log=print) -> dict:
    """Run the whole pipeline, write the report into `out`, return the results dict."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = min(int(cfg.jobs), len(cfg.methods) * cfg.seeds + 1)
    # with jobs > 1 every process computes with one thread: these small nets gain little from
    # a second thread, much from a second process
    torch.set_num_threads(1 if jobs > 1 else int(cfg.threads))
    t_start = time.perf_counter()

    log(f"[1/8] biased digits: {cfg.variant}, rho {cfg.rho}")
    train, test_id, test_ood = _data(cfg)
    tests = {"id": test_id, "ood": test_ood}
    corrupted = _corrupted_test(cfg, test_id, log)
    pool = _JobPool(jobs, train, tests, corrupted, log) if jobs > 1 else None
    try:
        return _run_stages(cfg, out, train, tests, corrupted, pool, t_start, log)
    finally:
        if pool is not None:
            pool.close()


def _run_stages(cfg: DemoConfig, out: Path, train, tests, corrupted, pool, t_start, log) -> dict:
    """Stages 2-8 of run_demo; the CGN and the classifier runs go to `pool` when given."""
    from .directions import discover, save_directions

    test_ood = tests["ood"]
    cgn_future = None
    if pool is not None and any(m in CGN_METHODS for m in cfg.methods):
        log(f"[6/8] CGN: {cfg.cgn_steps} steps in a worker process, beside the GAN stages "
            f"(cached in {out / 'cgn.pt'})")
        pool.submit("cgn", _worker_cgn, replace(cfg, threads=1), str(out))
        cgn_future = True

    requested_scale = cfg.scale
    gan_path = dir_path = gan_summary = selection = measures = generated = None
    if any(m in GAN_METHODS for m in cfg.methods):
        log(f"[2/8] small conditional GAN: {cfg.gan_steps} steps (cached in {out / 'gan.pt'})")
        gan_path, gen, gan_summary = _gan(cfg, train, out, log)

        log(f"[3/8] directions: exact SVD of gen_z, k = {cfg.num_directions}")
        directions = discover(gen, cfg.num_directions, method="svd", truncation=cfg.truncation)
        dir_path = save_directions(directions, out / "directions.safetensors")

        log("[4/8] intervention scale from the validation split (causal-bound score)")
        selection = _select_scale(cfg, gen, directions, log)
        cfg = replace(cfg, scale=selection["scale"])
        _gan_samples_figure(gen, out)
        _intervention_figure(gen, directions, cfg, out)

        log("[5/8] what the interventions do: nuisance-label agreement, class consistency")
        measures = _measures(cfg, gen, directions, train, cfg.scale, out, log)
        if cfg.generated_only:
            log(f"[5b/8] generated only: {cfg.generated_only} images per set, {cfg.seeds} "
                f"seed(s)")
            generated = _generated_only(cfg, gen, directions, tests, log)
    else:
        log("[2-5/8] GAN, directions, scale and intervention measures: not needed by the chosen "
            "methods")

    cgn_path, cgn_summary = None, None
    if cgn_future is not None:
        pass     # the CGN's result arrives among the classifier runs', which wait for it
    elif any(m in CGN_METHODS for m in cfg.methods):
        log(f"[6/8] CGN: {cfg.cgn_steps} steps (cached in {out / 'cgn.pt'})")
        cgn_path, cgn_summary = _cgn(cfg, train, out, log)
    else:
        log("[6/8] CGN: not needed by the chosen methods")

    log(f"[7/8] classifiers: {', '.join(cfg.methods)} x {cfg.seeds} seed(s), {cfg.steps} steps"
        + (f", {pool.workers} at a time" if pool is not None else ""))
    gens = dict(gan_path=gan_path, dir_path=dir_path, cgn_path=cgn_path)
    if pool is None:
        rows, seed0_models = _sequential_runs(cfg, out, train, tests, corrupted, gens, log)
    else:
        rows, cgn_done = _parallel_runs(cfg, out, pool, gens, cgn_future is not None, log)
        if cgn_done is not None:
            cgn_summary = cgn_done
        seed0_models = {m: _run_model(cfg, out, m, 0) for m in cfg.methods}
    per_method = {}
    for method in cfg.methods:
        runs = []
        for seed in range(cfg.seeds):
            r = rows[method, seed]
            if "ood_average_group" not in r:        # rows kept from before these columns
                r.update(_group_scores(seed0_models.get(method) if seed == 0 else
                                       _run_model(cfg, out, method, seed), test_ood))
            runs.append(r)
            if not all(math.isfinite(r[k]) for k in ("id", "ood")):
                raise RuntimeError(f"{method} seed {seed} produced a non-finite accuracy")
        id_m, id_s = _mean_std(r["id"] for r in runs)
        ood_m, ood_s = _mean_std(r["ood"] for r in runs)
        wg_m, wg_s = _mean_std(r["ood_worst_group"] for r in runs)
        per_method[method] = {"id_mean": id_m, "id_std": id_s, "ood_mean": ood_m,
                              "ood_std": ood_s, "id_ci95": _ci95(r["id"] for r in runs),
                              "ood_ci95": _ci95(r["ood"] for r in runs),
                              "oodwg_mean": wg_m, "oodwg_std": wg_s,
                              "oodwg_ci95": _ci95(r["ood_worst_group"] for r in runs),
                              "oodavg_mean": _mean_std(r["ood_average_group"] for r in runs)[0],
                              "oodavg_std": _mean_std(r["ood_average_group"] for r in runs)[1],
                              "oodavg_ci95": _ci95(r["ood_average_group"] for r in runs),
                              "seconds_mean": statistics.fmean(r["seconds"] for r in runs),
                              "runs": runs}

    _relative_mce_vs_erm(per_method, cfg)

    log("[8/8] report")
    if "genint-transfer" in cfg.methods:
        _transfer_figure(_figure_trainer(cfg, out, gens, train), out)
    gradcam = _gradcam_figure(per_method, seed0_models, test_ood, out)
    cfg_dict = asdict(cfg)
    cfg_dict["requested_scale"] = requested_scale
    cfg_dict["methods"] = list(cfg.methods)
    cfg_dict["scale_candidates"] = list(cfg.scale_candidates)
    cfg_dict["transfer_steps"] = list(cfg.transfer_steps)
    results = {
        "format": "genint_fast.demo.v1",
        "config": cfg_dict,
        "why_variant": WHY_VARIANT,
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch_threads": torch.get_num_threads(),
        "gan": gan_summary,
        "selection": selection,
        "measures": measures,
        "generated_only": generated,
        "cgn": cgn_summary,
        "methods": per_method,
        "gradcam": gradcam,
    }
    results["effect_shown"], results["verdict"] = _verdict(results)
    results["cgn_target_met"], results["cgn_verdict"] = _cgn_verdict(results)
    results["wall_s"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    _write_markdown(results, out / "results.md")
    _bar_plot(results, out / "accuracy.png")
    log("")
    log(format_results_table(results))
    from .eval.nuisance import format_measures_table

    if measures is not None:
        log(format_measures_table(measures))
    log(f"verdict: {results['verdict']}")
    if results["cgn_verdict"]:
        log(f"CGN: {results['cgn_verdict']}")
    log(f"wall time {results['wall_s']:.0f} s; report in {out}")
    return results
