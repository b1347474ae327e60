"""The evaluation protocols over one image source and several classifiers (one row each).

Every function returns a JSON-ready dict {"protocol", "images", "rows": [...], ...}; `report.py`
turns it into a markdown table. The classifiers are `checkpoints.Classifier`s.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time

import numpy as np
import torch

__all__ = ["accuracy", "corruption_robustness", "corrupt_batch", "corrupt_all", "objectnet",
           "backgrounds", "shape_bias", "gradcam_sheet_for"]


def _topk_hits(logits, labels, k=5):
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(1).sum())


def accuracy(classifiers, images, *, head="mean") -> dict:
    """Top-1 / top-5 of every classifier on the same images (labels = class folders or digits).
    Where the images carry nuisance ids (the built-in digits), also the group accuracies of
    eval.groups: worst-group and average over (class, stroke id) groups, and top-1 on the
    bias-aligned and bias-conflicting images."""
    from .groups import bias_split, group_accuracy, group_ids

    hits = {c.name: [0, 0] for c in classifiers}
    preds = {c.name: [] for c in classifiers}
    labels = []
    n = 0
    for x, y, _ in images.batches():
        for clf in classifiers:
            logits = clf.logits(x, head=head)
            h1, h5 = _topk_hits(logits, y.to(clf.device))
            hits[clf.name][0] += h1
            hits[clf.name][1] += h5
            preds[clf.name].append(logits.argmax(1).cpu())
        labels.append(y)
        n += int(y.shape[0])
    if n == 0:
        raise ValueError("no images to evaluate")
    rows = [{"checkpoint": c.name, "path": c.path, "step": c.step,
             "top1": hits[c.name][0] / n, "top5": hits[c.name][1] / n} for c in classifiers]
    res = {"protocol": "accuracy", "images": {**images.description, "n": n}, "head": head,
           "rows": rows}
    if images.nuisance is not None:
        y = torch.cat(labels)
        groups = group_ids(y, images.nuisance, slot=0)
        aligned, conflicting = bias_split(y, images.nuisance)
        for row, c in zip(rows, classifiers):
            p = torch.cat(preds[c.name])
            g = group_accuracy(p, y, groups)
            hit = (p == y).double()
            row.update({"worst_group": g["worst"], "average_group": g["average"],
                        "aligned": float(hit[aligned].mean()) if aligned.any() else None,
                        "conflicting": (float(hit[conflicting].mean())
                                        if conflicting.any() else None)})
        res["groups"] = {"definition": "class x stroke (texture) colour id", "groups":
                         g["groups"], "min_count": g["min_count"],
                         "small_groups": g["small_groups"],
                         "aligned": int(aligned.sum()), "conflicting": int(conflicting.sum())}
    return res


# ------------------------------------------------------------------------------ corruptions
def corrupt_batch(x_nchw: torch.Tensor, name: str, severity: int, seed: int, start: int):
    """Corrupt a uint8 batch whose first image has global index `start` in the evaluation set:
    image j draws from the corruption's seeded stream of index start + j, so the result does
    not depend on how the set is cut into batches or spread over workers."""
    from .corruptions import corrupt

    return corrupt(x_nchw, name, severity, seed=seed, start=start)


def _corrupt_job(args):
    x, name, severity, seed, start = args
    torch.set_num_threads(1)
    return corrupt_batch(x, name, severity, seed, start)


def _corrupted(x, settings, seed, start, pool):
    jobs = [(x, c, s, seed, start) for c, s in settings]
    return map(_corrupt_job, jobs) if pool is None else pool.map(_corrupt_job, jobs)


def corrupt_all(x: torch.Tensor, settings, *, seed=0, start=0, workers=None) -> dict:
    """{(corruption, severity): corrupted copy of the uint8 batch x} for every setting, made in
    `workers` processes (default min(2, CPUs)); the same result as corrupt_batch per setting."""
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    settings = list(settings)
    pool = _pool(workers)
    try:
        return dict(zip(settings, _corrupted(x, settings, seed, start, pool)))
    finally:
        if pool is not None:
            pool.shutdown()


def _pool(workers):
    if workers <= 0:
        return None
    # fork: the workers inherit the imported modules (no re-import per worker); they run numpy /
    # scipy code only, one thread each.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def corruption_robustness(classifiers, images, *, baseline=None, corruptions=None,
                          severities=(1, 2, 3, 4, 5), seed=0, workers=None, head="mean",
                          log=None) -> dict:
    """Top-1 error of every classifier on the clean images and on each corruption x severity
    (generated on the fly, seeded per image), CE per corruption and mCE against AlexNet's errors,
    and relative mCE against `baseline` (a Classifier evaluated on the same images) when given.
    """
    from .corruptions import CORRUPTIONS
    from .robustness import ALEXNET_ERR, mce, relative_mce, relative_mce_where_defined

    corruptions = tuple(corruptions or CORRUPTIONS)
    bad = [c for c in corruptions if c not in CORRUPTIONS]
    if bad:
        raise ValueError(f"unknown corruption(s) {bad}; choose from {', '.join(CORRUPTIONS)}")
    severities = tuple(int(s) for s in severities)
    if not severities or any(s not in (1, 2, 3, 4, 5) for s in severities):
        raise ValueError(f"severities must be among 1..5, got {severities}")
    models = list(classifiers) + ([baseline] if baseline is not None and
                                  baseline.name not in {c.name for c in classifiers} else [])
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    settings = [(c, s) for c in corruptions for s in severities]
    wrong = {m.name: {"clean": 0, **{f"{c}/{s}": 0 for c, s in settings}} for m in models}
    n = 0
    pool = _pool(workers)
    t_all = time.perf_counter()
    try:
        for x, y, idx in images.batches():
            start = int(idx[0])
            for m in models:
                wrong[m.name]["clean"] += int((m.logits(x, head=head).argmax(1)
                                               != y.to(m.device)).sum())
            for (c, s), xc in zip(settings, _corrupted(x, settings, seed, start, pool)):
                for m in models:
                    wrong[m.name][f"{c}/{s}"] += int((m.logits(xc, head=head).argmax(1)
                                                      != y.to(m.device)).sum())
            n += int(y.shape[0])
            if log:
                log(f"corruptions: {n}/{images.n} images, {time.perf_counter() - t_all:.0f} s")
    finally:
        if pool is not None:
            pool.shutdown()
    if n == 0:
        raise ValueError("no images to evaluate")
    wall = time.perf_counter() - t_all

    def table(name):
        return {c: [wrong[name][f"{c}/{s}"] / n for s in severities] for c in corruptions}

    complete = corruptions == CORRUPTIONS and severities == (1, 2, 3, 4, 5)
    base_err = table(baseline.name) if baseline is not None else None
    base_clean = wrong[baseline.name]["clean"] / n if baseline is not None else None
    rows = []
    for m in models:
        err, clean = table(m.name), wrong[m.name]["clean"] / n
        row = {"checkpoint": m.name, "path": m.path, "step": m.step, "clean_err": clean,
               "errors": err, "mean_err": float(np.mean([v for e in err.values() for v in e])),
               "is_baseline": baseline is not None and m.name == baseline.name}
        if complete:
            a = mce(err)
            row.update(mce=a.mce, ce=a.per_corruption,
                       relative_mce_alexnet=_relative_or_none(relative_mce, err, clean))
        if base_err is not None:
            try:
                score, left_out = relative_mce_where_defined(err, clean, base_err, base_clean)
                row["relative_mce"], row["relative_mce_left_out"] = score.mce, left_out
            except ValueError:
                row["relative_mce"], row["relative_mce_left_out"] = None, list(corruptions)
            row["ce_vs_baseline"] = mce(err, reference=base_err).mce
        rows.append(row)
    return {"protocol": "corruptions", "images": {**images.description, "n": n},
            "corruptions": list(corruptions), "severities": list(severities), "seed": seed,
            "baseline": baseline.name if baseline is not None else None,
            "alexnet_err": ALEXNET_ERR, "complete": complete, "head": head,
            "seconds": {"wall": wall, "workers": workers},
            "rows": rows}


def _relative_or_none(fn, *args):
    try:
        return fn(*args).mce
    except ValueError:
        return None   # the baseline is not degraded by some corruption: undefined


# ------------------------------------------------------------------------------ Grad-CAM
def gradcam_sheet_for(classifiers, images, out_dir, *, n=8, head="mean") -> dict:
    """OUT/gradcam.png: the first n images and one row of Grad-CAM maps (torchcam) per
    classifier, each for its own predicted class; the record lists the predictions."""
    from pathlib import Path

    from .gradcam import gradcam_sheet

    norms = {c.normalize for c in classifiers}
    if len(norms) > 1:
        raise ValueError("the checkpoints normalise their inputs differently; draw their "
                         "Grad-CAM sheets one at a time")
    x, y = images.take(n)
    if x.shape[0] == 0:
        raise ValueError("no images to draw")
    rows = {c.name: (c.model, head) for c in classifiers}
    path = gradcam_sheet(rows, x, y, Path(out_dir) / "gradcam.png",
                         class_names=images.classes, normalise=classifiers[0].normalise)
    out_rows = []
    for c in classifiers:
        pred = c.logits(x, head=head).argmax(1).cpu()
        out_rows.append({"checkpoint": c.name, "path": c.path, "step": c.step,
                         "predicted": pred.tolist(),
                         "correct_on_sheet": int((pred == y.cpu()).sum())})
    return {"protocol": "gradcam", "images": {**images.description, "n": int(x.shape[0])},
            "labels": y.tolist(), "sheet": str(path), "head": head, "library": "torchcam",
            "rows": out_rows}


# ------------------------------------------------------------------------------ folders read
# with a protocol's own transform (ObjectNet) and the CGN tests' class-folder trees
class _PilFiles(torch.utils.data.Dataset):
    """An ImageFolder's files as PIL images through a protocol's own transform."""

    def __init__(self, folder, transform):
        self.folder, self.transform = folder, transform

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, i):
        return self.transform(self.folder.open(i)), i


def _logits_all(classifiers, batches, head):
    """{name: logits (N, C) on the CPU} over (images in [0, 1], indices) batches."""
    out = {c.name: [] for c in classifiers}
    order = []
    for x, idx in batches:
        order.append(idx)
        for c in classifiers:
            out[c.name].append(c.logits(x, head=head).cpu())
    order = torch.cat(order) if order else torch.empty(0, dtype=torch.long)
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}, order


def objectnet(classifiers, folder, mapping_path, *, size=None, batch_size=64, head="mean",
              num_workers=0) -> dict:
    """ObjectNet top-1 / top-5 on the folders the mapping names (GenInt's protocol: 2-pixel border
    cropped, shorter side resized to 1.6 x size, centre crop; an image is right at top-k when any
    of its class's ImageNet indices is among the top k), and the variant restricted to the mapped
    indices."""
    import logging
    from pathlib import Path

    from ..data.folder import ImageFolder
    from .objectnet import load_mapping, objectnet_topk, objectnet_transform

    nc = {c.num_classes for c in classifiers}
    if len(nc) != 1:
        raise ValueError("the checkpoints have different numbers of classes; evaluate them on "
                         "ObjectNet one at a time")
    mapping = load_mapping(mapping_path, num_classes=nc.pop())
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"ObjectNet folder {root} does not exist; pass the folder that holds "
                         "one sub-folder per ObjectNet class")
    present = {p.name for p in root.iterdir() if p.is_dir()}
    used = sorted(k for k in mapping if k in present)
    if not used:
        raise ValueError(f"none of the {len(mapping)} class folders named in {mapping_path} is "
                         f"under {root}; check that the mapping's keys are ObjectNet folder names")
    images = ImageFolder(root, used, ignore_extra=True, what="ObjectNet folder",
                         warn=logging.getLogger("genint_fast.eval").warning)
    skipped = len(images.skipped)
    size = int(size or max(c.size for c in classifiers))
    loader = torch.utils.data.DataLoader(_PilFiles(images, objectnet_transform(size)),
                                         batch_size=batch_size, num_workers=num_workers)
    logits, order = _logits_all(classifiers, loader, head)
    targets = [images.classes[int(images.labels[int(i)])] for i in order]
    sub = {k: mapping[k] for k in used}
    rows = []
    for c in classifiers:
        full = objectnet_topk(logits[c.name], targets, sub)
        restricted = objectnet_topk(logits[c.name], targets, sub, restricted=True)
        rows.append({"checkpoint": c.name, "path": c.path, "step": c.step,
                     "top1": full["top1"], "top5": full["top5"],
                     "restricted_top1": restricted["top1"], "restricted_top5": restricted["top5"]})
    return {"protocol": "objectnet",
            "images": {"folder": str(root), "n": len(targets), "size": size,
                       "skipped_files": skipped},
            "classes_used": len(used), "classes_in_mapping": len(mapping),
            "missing_folders": sorted(set(mapping) - present)[:20], "head": head,
            "mapping": str(mapping_path), "percent": True, "rows": rows}


def backgrounds(classifiers, folder, *, in9_map=None, size=224, crop_fraction=None,
                batch_size=64, head="mean") -> dict:
    """CGN's background test on ImageNet-9: accuracy on original, mixed_same and mixed_rand
    (1000-class predictions mapped to the 9 classes, an unmapped prediction counts wrong; counted
    over the true number of images) and BG-gap = mixed_same - mixed_rand, in points."""
    from pathlib import Path

    from .backgrounds import (IN9_CLASSES, VARIANTS, background_gap, count_correct,
                              in9_class_from_folder, in9_predictions, load_in9_map)
    from .sources import folder_images

    table = load_in9_map(in9_map)
    bad = [c.name for c in classifiers if c.num_classes not in (9, 1000)]
    if bad:
        raise ValueError(f"{bad[0]} has neither 1000 (ImageNet) nor 9 (IN-9) classes; the "
                         "background test needs one of them")
    root = Path(folder)
    dirs = {}
    for v in VARIANTS:
        d = root / v
        if (d / "val").is_dir():
            d = d / "val"
        if d.is_dir():
            dirs[v] = d
    if "mixed_same" not in dirs or "mixed_rand" not in dirs:
        raise ValueError(f"{root} lacks mixed_same/ or mixed_rand/; pass the backgrounds "
                         "challenge's root (original/, mixed_same/, mixed_rand/, each with "
                         "00_dog ... 08_fish)")
    hits = {c.name: {} for c in classifiers}
    counts, skipped = {}, 0
    for v, d in dirs.items():
        imgs = folder_images(d, size=size, crop_fraction=crop_fraction or 1.0,
                             batch_size=batch_size)
        try:
            ids = [in9_class_from_folder(name) for name in imgs.classes]
        except ValueError as exc:
            raise ValueError(f"{d}: {exc}") from None
        if sorted(ids) != ids or max(ids) >= len(IN9_CLASSES):
            raise ValueError(f"{d} has class folders {imgs.classes[:3]}...; expected 00_dog "
                             "... 08_fish")
        ids = torch.tensor(ids)
        skipped += imgs.description["skipped_files"]
        for x, y, _ in imgs.batches():
            t9 = ids[y]
            for c in classifiers:
                p9 = in9_predictions(c.logits(x, head=head).cpu(), table)
                k, n = count_correct(p9, t9)
                a = hits[c.name].setdefault(v, [0, 0])
                a[0] += k
                a[1] += n
        counts[v] = imgs.n
    rows = []
    for c in classifiers:
        acc = {v: 100.0 * k / n for v, (k, n) in hits[c.name].items() if n}
        rows.append({"checkpoint": c.name, "path": c.path, "step": c.step,
                     **background_gap(acc)})
    return {"protocol": "backgrounds", "images": {"folder": str(root), "n": sum(counts.values()),
                                                  "per_variant": counts, "size": size,
                                                  "skipped_files": skipped},
            "head": head, "percent": True, "rows": rows}


def shape_bias(classifiers, folder, *, size=224, crop_fraction=0.875, batch_size=64,
               head="mean") -> dict:
    """Shape bias on cue-conflict images: decisions over the 16 categories (1000-class softmax
    averaged per category), images whose shape equals their texture left out; shape bias =
    shape decisions / (shape + texture decisions)."""
    from pathlib import Path

    from .cue_conflict import decisions_16, load_cue_conflict_map, parse_cue_conflict_name
    from .cue_conflict import shape_bias as score
    from .sources import folder_images

    bad = [c.name for c in classifiers if c.num_classes not in (16, 1000)]
    if bad:
        raise ValueError(f"{bad[0]} has neither 1000 (ImageNet) nor 16 classes; the shape-bias "
                         "test needs one of them")
    mapping = load_cue_conflict_map()
    imgs = folder_images(folder, size=size, crop_fraction=crop_fraction, batch_size=batch_size)
    decisions = {c.name: [] for c in classifiers}
    shapes, textures = [], []
    for x, _, idx in imgs.batches():
        for f in imgs.files(idx):
            try:
                s, t = parse_cue_conflict_name(Path(f).name)
            except ValueError as exc:
                raise ValueError(f"{f}: {exc}") from None
            shapes.append(s)
            textures.append(t)
        for c in classifiers:
            decisions[c.name].append(decisions_16(c.logits(x, head=head).cpu(), mapping))
    rows = [{"checkpoint": c.name, "path": c.path, "step": c.step,
             **score(torch.cat(decisions[c.name]), shapes, textures)} for c in classifiers]
    return {"protocol": "shape-bias", "images": {**imgs.description, "n": imgs.n},
            "head": head, "percent": True, "rows": rows}
