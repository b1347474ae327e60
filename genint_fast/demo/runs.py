"""The demo's classifier runs: one trainer per (method, seed), their fingerprints for --resume,
the scores each run records, and the process pool that runs them beside the CGN."""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from ..io import write_text_atomic
from .config import CGN_METHODS, COMBINED, CONTROLS, DemoConfig, GAN_METHODS
from .stages import _cgn


def _run_dir(out: Path, method: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{method.replace('+', '_')}_seed{seed}"


def _weights_name(cfg: DemoConfig, method: str) -> str:
    """The file in a run folder that holds the weights its row measured."""
    from ..train.selection import BEST_NAME
    from ..train.trainer import CHECKPOINT_NAME

    return BEST_NAME if cfg.select != "last" and method != "dfr" else CHECKPOINT_NAME


def _run_keys(cfg: DemoConfig, method: str, seed: int, gan_path, dir_path, out: Path,
              cgn_path=None) -> dict:
    """The TrainConfig keys of one classifier run."""
    from ..data.digits import num_classes_of

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
    from ..train.config import TrainConfig
    from ..train.trainer import Trainer, evaluate

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
    from ..eval.checkpoints import load_classifier

    return load_classifier(_run_dir(out, method, seed) / _weights_name(cfg, method)).model


def _figure_trainer(cfg: DemoConfig, out: Path, gens: dict, train):
    """An untrained genint-transfer trainer (seed 0) for the transfer figure: the figure reads
    its sampler and style transfer only, which training does not change."""
    import tempfile

    from ..train.config import TrainConfig
    from ..train.trainer import Trainer

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
    from ..data.digits import CMNIST_ENVIRONMENTS
    from ..train.trainer import logits_of

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
    from ..eval.groups import group_accuracy, group_ids
    from ..train.trainer import logits_of

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

    from ..eval.checkpoints import load_classifier
    from ..train.trainer import CHECKPOINT_NAME

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


def _corruption_errors(model, corrupted) -> dict:
    from ..train.trainer import evaluate

    labels = corrupted["labels"]
    errs = {"clean": 1 - evaluate(model, corrupted["clean"], labels)[0]}
    for (c, s), x in corrupted["images"].items():
        errs[f"{c}/{s}"] = 1 - evaluate(model, x, labels)[0]
    return errs
