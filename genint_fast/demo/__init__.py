"""`genint-fast demo`: the whole GenInt method end to end on the built-in biased digits.

Pipeline (everything local, CPU is enough):
1. build the biased-digits benchmark (train at correlation rho, test-id at rho, test-ood at 0);
2. train the small class-conditional 32x32 GAN on the training split, or reuse the checkpoint
   cached in the output folder (`gan.pt`, resumed when it has fewer steps than asked);
3. find its directions (exact SVD of the generator's first linear layer, GANSpace shortcut);
4. train the small CGN (beside the GAN stages in a worker process) when a CGN method is asked;
5. train one classifier per method (erm, gan-aug, genint, genint-transfer, cgn, real+cgn by
   default) and seed with the project trainer (genint_fast.train), evaluate top-1 in and out
   of distribution, worst-group and per-environment accuracy;
6. write the report folder: results.json, results.md, accuracy.png (bar plot), gan_samples.png,
   interventions.png (one row per direction, steps from -s to +s), transfers.png (real content /
   intervened style / transferred result), and print the table.

The numbers are whatever this run measures; nothing is cached except the GAN and the small
feature network used by style transfer.

Layout: config.py (methods, DemoConfig; torch-free), stages.py (data, GAN, directions, scale,
measures, CGN, figures), runs.py (classifier runs, fingerprints, the process pool), report.py
(tables, verdicts, results.md), pipeline.py (run_demo). The names below load on first use, so
`genint-fast demo --help` reads the config without importing torch.
"""
import importlib

_WHERE = {
    "CGN_METHODS": "config", "CGN_TARGETS": "config", "COMBINED": "config", "CONTROLS":
    "config", "DEFAULT_METHODS": "config", "DemoConfig": "config", "GAN_METHODS": "config",
    "METHODS": "config", "WHY_VARIANT": "config", "WHY_VARIANTS": "config",
    "why_variant": "config", "quick_config": "config",
    "_bar_plot": "report", "_cgn_settings": "report", "_cgn_verdict": "report", "_ci95":
    "report", "_gan_sections": "report", "_generated_only_section": "report", "_mean_std":
    "report", "_relative_mce_vs_erm": "report", "_robustness_note": "report",
    "_selection_note": "report", "_verdict": "report", "_write_markdown": "report",
    "format_environment_table": "report", "format_results_table": "report", "machine_line":
    "report", "write_summary": "report",
    "_JobPool": "runs", "_WORKER": "runs", "_cgn_protocol": "runs", "_corruption_errors":
    "runs", "_environment_accuracy": "runs", "_figure_trainer": "runs", "_group_scores":
    "runs", "_kept_run": "runs", "_log_row": "runs", "_parallel_runs": "runs", "_run_dir":
    "runs", "_run_fingerprint": "runs", "_run_keys": "runs", "_run_model": "runs",
    "_selection_keys": "runs", "_sequential_runs": "runs", "_train_one": "runs",
    "_weights_digest": "runs", "_weights_name": "runs", "_worker_cgn": "runs", "_worker_init":
    "runs", "_worker_run": "runs",
    "_cgn": "stages", "_corrupted_test": "stages", "_data": "stages", "_gan": "stages",
    "_gan_samples_figure": "stages", "_generated_only": "stages", "_gradcam_figure": "stages",
    "_intervention_figure": "stages", "_intervention_sampler": "stages", "_measures": "stages",
    "_select_scale": "stages", "_transfer_figure": "stages",
    "_gan_stages": "pipeline", "_run_stages": "pipeline", "_summarise": "pipeline",
    "_write_report": "pipeline", "run_demo": "pipeline",
}

__all__ = ["DemoConfig", "METHODS", "DEFAULT_METHODS", "run_demo", "quick_config",
           "format_results_table", "format_environment_table", "write_summary"]


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
