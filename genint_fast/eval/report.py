"""Evaluation reports: one JSON record and one markdown table per protocol, one row per
checkpoint, written atomically (OUT/<protocol>.json and OUT/<protocol>.md)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["markdown", "write_report"]


def _pct(v, digits=1):
    return "n/a" if v is None else f"{100 * v:.{digits}f}"


def _num(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _images_line(res):
    im = res["images"]
    where = im.get("folder") or f"{im.get('data')} split {im.get('split')}"
    extra = f", {im['skipped_files']} unreadable file(s) skipped" if im.get("skipped_files") \
        else ""
    return f"Images: {where}, n = {im['n']}{extra}."


def markdown(res: dict) -> str:
    p = res["protocol"]
    lines = [f"# genint-fast eval {p}", "", _images_line(res), ""]
    if res.get("head", "mean") != "mean":
        lines += [f"Ensemble head: {res['head']}.", ""]
    rows = res["rows"]
    if p == "accuracy" and res.get("groups"):
        g = res["groups"]
        lines += _table(["checkpoint", "step", "top-1 (%)", "top-5 (%)", "worst-group (%)",
                         "average group (%)", "bias-aligned (%)", "bias-conflicting (%)"],
                        [[r["checkpoint"], r["step"], _pct(r["top1"]), _pct(r["top5"]),
                          _pct(r["worst_group"]), _pct(r["average_group"]),
                          _pct(r["aligned"]),
                          _pct(r["conflicting"])]
                         for r in rows])
        lines += ["", f"Groups: {g['definition']}; {g['groups']} groups with images, the worst "
                  f"taken over those with at least {g['min_count']} ({g['small_groups']} "
                  f"smaller); {g['aligned']} bias-aligned and {g['conflicting']} "
                  "bias-conflicting images (every / no nuisance id equals the class)."]
    elif p == "accuracy":
        lines += _table(["checkpoint", "step", "top-1 (%)", "top-5 (%)"],
                        [[r["checkpoint"], r["step"], _pct(r["top1"]), _pct(r["top5"])]
                         for r in rows])
    elif p == "corruptions":
        base = res.get("baseline")
        head = ["checkpoint", "clean err (%)", "mean corrupted err (%)"]
        if res["complete"]:
            head += ["mCE vs AlexNet (%)", "rel. mCE vs AlexNet (%)"]
        if base:
            head += [f"rel. mCE vs {base} (%)", f"mCE vs {base} (%)"]
        body = []
        for r in rows:
            row = [r["checkpoint"] + (" (baseline)" if r.get("is_baseline") else ""),
                   _pct(r["clean_err"]), _pct(r["mean_err"])]
            if res["complete"]:
                row += [_num(r.get("mce")), _num(r.get("relative_mce_alexnet"))]
            if base:
                row += [_num(r.get("relative_mce")), _num(r.get("ce_vs_baseline"))]
            body.append(row)
        lines += _table(head, body)
        lines += ["", "Top-1 error (%) per corruption, mean over severities "
                  f"{', '.join(map(str, res['severities']))}:", ""]
        cs = res["corruptions"]
        lines += _table(["checkpoint", *cs],
                        [[r["checkpoint"], *(_pct(sum(r["errors"][c]) / len(r["errors"][c]))
                                             for c in cs)] for r in rows])
        left = sorted({c for r in rows for c in r.get("relative_mce_left_out") or []})
        if base and left:
            lines += ["", f"Relative mCE vs {base} leaves out {', '.join(left)}: {base}'s error "
                      "there is no higher than on clean images, so a relative CE is undefined."]
        if not res["complete"]:
            lines += ["", "mCE against AlexNet needs all 15 corruptions at severities 1-5; "
                      "not reported for this subset."]
        lines += ["", "mCE vs AlexNet uses ImageNet-C's AlexNet errors: meaningful for "
                  "ImageNet-sized models only; for small images compare against a baseline "
                  "checkpoint (relative mCE)."]
    else:
        lines += _generic(res)
    return "\n".join(lines) + "\n"


def _generic(res):
    keys = [k for k in res["rows"][0] if k not in ("path",) and
            not isinstance(res["rows"][0][k], (dict, list))]
    return _table(keys, [[_fmt(r.get(k)) for k in keys] for r in res["rows"]])


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "n/a" if v is None else str(v)


def write_report(res: dict, out_dir) -> tuple[Path, Path]:
    """OUT/<protocol>.json and OUT/<protocol>.md; returns both paths."""
    from ..io import write_text_atomic

    out = Path(out_dir)
    name = res["protocol"]
    j = write_text_atomic(json.dumps(res, indent=2) + "\n", out / f"{name}.json")
    m = write_text_atomic(markdown(res), out / f"{name}.md")
    return j, m
