"""`run_demo`: the stages in order, the classifier runs, the report."""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .config import CGN_METHODS, GAN_METHODS, DemoConfig, why_variant
from .report import (_bar_plot, _cgn_verdict, _ci95, _mean_std, _relative_mce_vs_erm, _verdict,
                     _write_markdown, format_results_table, machine_line)
from .runs import (_figure_trainer, _group_scores, _JobPool, _parallel_runs, _run_model,
                   _sequential_runs, _worker_cgn)
from .stages import (_cgn, _corrupted_test, _data, _gan, _gan_samples_figure, _generated_only,
                     _gradcam_figure, _intervention_figure, _measures, _select_scale,
                     _transfer_figure)


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


def _gan_stages(cfg: DemoConfig, out: Path, train, tests, log):
    """Stages 2-5: the GAN, its directions, the intervention scale, the measures and the
    generated-only table; (cfg with the chosen scale, what the report keeps)."""
    from ..directions import discover, save_directions

    found = dict(gan_path=None, dir_path=None, gan=None, selection=None, measures=None,
                 generated_only=None)
    if not any(m in GAN_METHODS for m in cfg.methods):
        log("[2-5/8] GAN, directions, scale and intervention measures: not needed by the chosen "
            "methods")
        return cfg, found
    log(f"[2/8] small conditional GAN: {cfg.gan_steps} steps (cached in {out / 'gan.pt'})")
    found["gan_path"], gen, found["gan"] = _gan(cfg, train, out, log)

    log(f"[3/8] directions: exact SVD of gen_z, k = {cfg.num_directions}")
    directions = discover(gen, cfg.num_directions, method="svd", truncation=cfg.truncation)
    found["dir_path"] = save_directions(directions, out / "directions.safetensors")

    log("[4/8] intervention scale from the validation split (causal-bound score)")
    found["selection"] = _select_scale(cfg, gen, directions, log)
    cfg = replace(cfg, scale=found["selection"]["scale"])
    _gan_samples_figure(gen, out)
    _intervention_figure(gen, directions, cfg, out)

    log("[5/8] what the interventions do: nuisance-label agreement, class consistency")
    found["measures"] = _measures(cfg, gen, directions, train, cfg.scale, out, log)
    if cfg.generated_only:
        log(f"[5b/8] generated only: {cfg.generated_only} images per set, {cfg.seeds} seed(s)")
        found["generated_only"] = _generated_only(cfg, gen, directions, tests, log)
    return cfg, found


def _summarise(cfg: DemoConfig, out: Path, rows: dict, seed0_models: dict, test_ood) -> dict:
    """{method: mean, std and 95% interval of each score over the seeds, and the runs}."""
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
        summary = {}
        for key, col in (("id", "id"), ("ood", "ood"), ("oodwg", "ood_worst_group"),
                         ("oodavg", "ood_average_group")):
            values = [r[col] for r in runs]
            summary[f"{key}_mean"], summary[f"{key}_std"] = _mean_std(values)
            summary[f"{key}_ci95"] = _ci95(values)
        summary["seconds_mean"] = statistics.fmean(r["seconds"] for r in runs)
        per_method[method] = {**summary, "runs": runs}
    _relative_mce_vs_erm(per_method, cfg)
    return per_method


def _run_stages(cfg: DemoConfig, out: Path, train, tests, corrupted, pool, t_start, log) -> dict:
    """Stages 2-8 of run_demo; the CGN and the classifier runs go to `pool` when given."""
    wants_cgn = any(m in CGN_METHODS for m in cfg.methods)
    if pool is not None and wants_cgn:
        log(f"[6/8] CGN: the given checkpoint {cfg.cgn_checkpoint}" if cfg.cgn_checkpoint else
            f"[6/8] CGN: {cfg.cgn_train_steps()} steps in a worker process, beside the GAN stages "
            f"(cached in {out / 'cgn.pt'})")
        pool.submit("cgn", _worker_cgn, replace(cfg, threads=1), str(out))

    requested_scale = cfg.scale
    cfg, found = _gan_stages(cfg, out, train, tests, log)

    cgn_path, cgn_summary = None, None
    if pool is None and wants_cgn:
        log(f"[6/8] CGN: the given checkpoint {cfg.cgn_checkpoint}" if cfg.cgn_checkpoint else
            f"[6/8] CGN: {cfg.cgn_train_steps()} steps (cached in {out / 'cgn.pt'})")
        cgn_path, cgn_summary = _cgn(cfg, train, out, log)
    elif not wants_cgn:
        log("[6/8] CGN: not needed by the chosen methods")
    # (with a pool the CGN's result arrives among the classifier runs', which wait for it)

    log(f"[7/8] classifiers: {', '.join(cfg.methods)} x {cfg.seeds} seed(s), {cfg.steps} steps"
        + (f", {pool.workers} at a time" if pool is not None else ""))
    gens = dict(gan_path=found["gan_path"], dir_path=found["dir_path"], cgn_path=cgn_path)
    if pool is None:
        rows, seed0_models = _sequential_runs(cfg, out, train, tests, corrupted, gens, log)
    else:
        rows, cgn_done = _parallel_runs(cfg, out, pool, gens, wants_cgn, log)
        if cgn_done is not None:
            cgn_summary = cgn_done
        seed0_models = {m: _run_model(cfg, out, m, 0) for m in cfg.methods}
    per_method = _summarise(cfg, out, rows, seed0_models, tests["ood"])

    log("[8/8] report")
    if "genint-transfer" in cfg.methods:
        _transfer_figure(_figure_trainer(cfg, out, gens, train), out)
    gradcam = _gradcam_figure(per_method, seed0_models, tests["ood"], out)
    cfg_dict = asdict(cfg)
    cfg_dict["requested_scale"] = requested_scale
    for key in ("methods", "scale_candidates", "transfer_steps"):
        cfg_dict[key] = list(getattr(cfg, key))
    results = {
        "format": "genint_fast.demo.v1", "config": cfg_dict,
        "why_variant": why_variant(cfg.variant),
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch_threads": torch.get_num_threads(), "gan": found["gan"],
        "selection": found["selection"], "measures": found["measures"],
        "generated_only": found["generated_only"], "cgn": cgn_summary, "methods": per_method,
        "gradcam": gradcam,
    }
    results["effect_shown"], results["verdict"] = _verdict(results)
    results["cgn_target_met"], results["cgn_verdict"] = _cgn_verdict(results)
    results["wall_s"] = time.perf_counter() - t_start
    _write_report(results, out, log)
    return results


def _write_report(results: dict, out: Path, log) -> None:
    """results.json, results.md, accuracy.png and the tables on the log."""
    from ..diagnostics.nuisance import format_measures_table

    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    _write_markdown(results, out / "results.md")
    _bar_plot(results, out / "accuracy.png")
    log("")
    log(format_results_table(results))
    if results["measures"] is not None:
        log(format_measures_table(results["measures"]))
    log(f"verdict: {results['verdict']}")
    if results["cgn_verdict"]:
        log(f"CGN: {results['cgn_verdict']}")
    log(f"wall time {results['wall_s']:.0f} s; report in {out}")
