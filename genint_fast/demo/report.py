"""The demo's report: tables (ID / OOD, environments, relative mCE), the verdicts, results.md,
the bar plot and the multi-variant summary."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


from .config import CGN_TARGETS, DemoConfig, why_variant


def _mean_std(values):
    values = [float(v) for v in values]
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _ci95(values) -> float:
    from ..eval.stats import ci95

    return ci95(values)


def machine_line() -> str:
    from ..benchmarks.common import machine
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


def _relative_mce_vs_erm(per_method: dict, cfg: DemoConfig) -> None:
    """Adds rmce_mean / rmce_std / rmce_ci95 to every method: the relative mCE (%) of each seed
    against erm's run with the same seed (genint_fast.eval.robustness), over the corruptions
    that raise erm's error above its clean error in every seed (the others have no relative CE;
    they are listed in per_method["erm"]["rmce_left_out"])."""
    from ..eval.corruptions import CORRUPTIONS
    from ..eval.robustness import relative_mce

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


def _generated_only_section(results: dict) -> list:
    from ..train.generated_only import format_generated_only

    g = results["generated_only"]
    return ["## Trained only on generated images (the paper's Table 4)", "",
            f"The same small CNN ({g['steps']} SGD steps) trained only on {g['n']} generated "
            f"images per set, {g['seeds']} seed(s), tested on the real splits; mean +- 95% "
            "interval. The paper: interventional 45.06% vs observational 42.65% on ImageNet "
            "validation (+2.4).", "", format_generated_only(g), ""]


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
    from ..diagnostics.nuisance import format_measures_table

    c = results["config"]
    return [
        "## What the interventions do", "",
        "Measured with two readers trained on a separate decorrelated (rho = 0) instance of the "
        "benchmark and never used in training (held-out accuracy: " + ", ".join(
            f"{k} {v:.1f}" if k.endswith("_deg") else f"{k} {100 * v:.1f}%"
            for k, v in results["measures"]["readers_accuracy"].items())
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

    c = results["config"]
    lines = [
        "# genint-fast demo: results", "",
        f"Machine: {results['machine']}  ",
        f"Date: {results['date']}  ",
        f"Wall time: {results['wall_s']:.0f} s ({'quick' if c['quick'] else 'full'} mode)", "",
        f"Benchmark: biased digits, variant `{c['variant']}`, rho {c['rho']}, "
        f"{c['train_size']} training images, {c['test_size']} per test split.", "",
        f"Why this variant: {results.get('why_variant') or why_variant(c['variant'])}", "",
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
