"""Corruption throughput: the 15 ImageNet-C corruptions of genint_fast.eval.corruptions against the
`imagecorruptions` 1.1.2 release they reproduce, timed in the same run, and the wall time of the
full corruption-robustness evaluation.

1. Per corruption: images per second at 224 x 224 over severities 1-5, one process, on crops of
   scikit-image's photos (astronaut, chelsea, coffee, rocket). Ours: the batch API
   `corrupt(images, name, severity, seed)` (what `genint-fast eval corruptions` calls); baseline:
   the package's `corrupt(image, severity, corruption_name)` one image at a time, with numpy's
   global state seeded with our per-image seed (`seed_for`) before each call, so both draw the
   same noise and their outputs are compared (the note says whether the pixels are the same).
   The package is imported as the tests import it (a stand-in `pkg_resources` and
   `scipy.ndimage.interpolation` where they are missing) and, during its timing only, given the
   two minimal patches it needs to run on numpy 2 / scikit-image >= 0.19 (`np.float_` for fog,
   `multichannel=` -> `channel_axis` for glass blur); the patches cost nothing measurable.
   OpenCV (which the package calls) gets as many threads as torch (`--threads`). The package
   is an optional dependency: without it (or without OpenCV) its rows say how to install it and
   ours are still timed.
2. The full evaluation as bench/corruption_throughput.py (now removed) measured it: a small CNN
   trained briefly on the built-in digits (`genint-fast train mode=erm`, not timed), then
   `genint-fast eval corruptions --split test-id --n N --workers W` (15 corruptions x 5
   severities of N built-in 32 px images, plus the clean ones) timed end to end. There is no
   same-run baseline for it (the package has no batch evaluation); the issue's bar is 10 minutes
   for N = 1000.

The corruptions are numpy / scipy / Pillow code on the CPU whatever the device, so with a CUDA
device the benchmark returns one skipped row (it does not spend GPU time on CPU work).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch

from .common import Row

BASELINE = "imagecorruptions 1.1.2"
INSTALL = "pip install --no-deps imagecorruptions==1.1.2 opencv-python-headless"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
EVAL_BAR_S = 600.0   # the bar for the full evaluation of 1000 images


def photos(n: int, size: int) -> torch.Tensor:
    """n crops (300 px, random offsets, seed 0) of scikit-image's photos, resized with
    anti-aliasing to size x size: a uint8 (n, 3, size, size) tensor."""
    from skimage import data
    from skimage.transform import resize

    srcs = [getattr(data, name)() for name in PHOTOS]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = srcs[i % len(srcs)]
        r, c = rng.integers(0, 150, 2)
        crop = img[r:r + 300, c:c + 300]
        out.append((resize(crop, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------- the baseline
@contextlib.contextmanager
def import_shims():
    """For the import only: a stand-in `pkg_resources` (resource_filename relative to the
    package directory) and `scipy.ndimage.interpolation` aliased to scipy.ndimage, each only
    where it is missing (tests/test_eval_corruptions.py imports the package with it too)."""
    added = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # pkg_resources' own deprecation warning
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            stub = types.ModuleType("pkg_resources")

            def resource_filename(package, relative):
                spec = importlib.util.find_spec(package)
                return os.path.normpath(os.path.join(os.path.dirname(spec.origin), relative))

            stub.resource_filename = resource_filename
            sys.modules["pkg_resources"] = stub
            added.append("pkg_resources")
    import scipy.ndimage
    try:
        import scipy.ndimage.interpolation  # noqa: F401
    except ImportError:
        sys.modules["scipy.ndimage.interpolation"] = scipy.ndimage
        added.append("scipy.ndimage.interpolation")
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def load_baseline():
    """The package's modules (imagecorruptions, imagecorruptions.corruptions). Raises ImportError
    with what to install when it or OpenCV is missing."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(f"OpenCV is not installed ({INSTALL})") from exc
    cv2.setNumThreads(torch.get_num_threads())
    try:
        with import_shims(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # its deprecated scipy.ndimage.interpolation import
            import imagecorruptions
            import imagecorruptions.corruptions as icc
    except ImportError as exc:
        raise ImportError(f"{BASELINE} is not installed ({INSTALL})") from exc
    return imagecorruptions, icc


@contextlib.contextmanager
def baseline_patches(icc):
    """The two patches the package needs to run today, undone on exit: `np.float_` (fog's
    plasma fractal) and `gaussian(..., multichannel=True)` -> `channel_axis=-1` (glass blur)."""
    had_float = "float_" in np.__dict__
    old_float = np.__dict__.get("float_")
    gaussian = icc.gaussian

    def gaussian_channel_axis(*args, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(*args, **kwargs)

    np.float_ = np.float64
    icc.gaussian = gaussian_channel_axis
    try:
        yield
    finally:
        icc.gaussian = gaussian
        if had_float:
            np.float_ = old_float
        else:
            del np.float_


# ------------------------------------------------------------------------- per corruption
def _agreement(name, ours, base) -> str:
    """How the outputs of the two timed runs compare (same seeds, every image and severity)."""
    diff = np.abs(ours.astype(np.int16) - base.astype(np.int16))
    if not diff.any():
        return "same pixels"
    k = int((diff > 0).sum())
    if diff.max() <= 1:
        return f"within 1 grey level ({k} of {diff.size} values differ)"
    why = "; the package's impulse noise ignores numpy's seed" if name == "impulse_noise" else ""
    return f"outputs differ (max {int(diff.max())} grey levels, {k} values){why}"


def time_corruption(name, x, baseline=None, severities=(1, 2, 3, 4, 5), seed=0, ours_first=True,
                    warm=4):
    """Seconds for ours and for the baseline to corrupt every image of x (N, 3, H, W uint8) at
    every severity, and how their outputs compare. Returns (ours_s, base_s or None, agreement
    or error). Untimed warm-up: ours on `warm` copies of the first image at every severity with
    another seed (so that the timing is its steady state in a long evaluation: its caches of
    decoded and resized frost images and of blur kernels are filled, whichever of the five frost
    images the draws pick), the package once (it caches nothing; imports, first OpenCV calls)."""
    from ..eval.corruptions import corrupt, seed_for

    imgs = [np.ascontiguousarray(im) for im in x.permute(0, 2, 3, 1).numpy()]

    def ours():
        return np.stack([corrupt(x, name, s, seed=seed).permute(0, 2, 3, 1).numpy()
                         for s in severities])

    def base():
        ic, _ = baseline
        out = []
        for s in severities:
            for i, img in enumerate(imgs):
                np.random.seed(seed_for(seed, name, s, i))
                out.append(ic.corrupt(img, severity=s, corruption_name=name))
        return np.stack(out).reshape((len(severities),) + x.permute(0, 2, 3, 1).shape)

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    for s in severities:                                          # warm-up, not timed
        corrupt(x[:1].expand(warm, -1, -1, -1), name, s, seed=seed + 1)
    if baseline is None:
        t_ours, _ = timed(ours)
        return t_ours, None, ""
    ic, icc = baseline
    with baseline_patches(icc):
        try:
            ic.corrupt(imgs[0], severity=severities[0], corruption_name=name)   # warm-up
        except Exception as exc:   # the release failing on today's stack is a result, not a crash
            t_ours, _ = timed(ours)
            return t_ours, None, f"the package fails: {type(exc).__name__}: {exc}"[:200]
        if ours_first:
            (t_ours, out_ours), (t_base, out_base) = timed(ours), timed(base)
        else:
            (t_base, out_base), (t_ours, out_ours) = timed(base), timed(ours)
    return t_ours, t_base, _agreement(name, out_ours, out_base)


def corruption_rows(n, size, names=None, severities=(1, 2, 3, 4, 5), warm=4):
    """One row per corruption (slowest of ours first) and one for all of them together."""
    from ..eval.corruptions import CORRUPTIONS

    names = tuple(CORRUPTIONS if names is None else names)
    try:
        baseline, missing = load_baseline(), ""
    except ImportError as exc:
        baseline, missing = None, str(exc)
    x = photos(n, size)
    per_image = n * len(severities)
    sev = (f"severities {severities[0]}-{severities[-1]}" if len(severities) > 1
           else f"severity {severities[0]}")
    label = f"{size} px, {sev}, {n} photos, 1 process"
    results = []
    for i, name in enumerate(names):   # alternate the order, so drifting load hits both alike
        results.append((name,) + time_corruption(name, x, baseline, severities,
                                                 ours_first=(i % 2 == 0), warm=warm))
    results.sort(key=lambda r: -r[1])
    rows = []
    for name, t_ours, t_base, agreement in results:
        ips = per_image / t_ours
        if t_base is None:
            rows.append(Row(f"{name}, {label}", BASELINE, t_ours / per_image, float("nan"),
                            note=f"{ips:.1f} images/s",
                            skipped=missing or agreement))
            continue
        rows.append(Row(f"{name}, {label}", BASELINE, t_ours / per_image, t_base / per_image,
                        note=f"{ips:.1f} vs {per_image / t_base:.1f} images/s; {agreement}"))
    both = [r for r in results if r[2] is not None]
    t_ours = sum(r[1] for r in results)
    total = f"all {len(names)} corruptions, {label}"
    if both:
        t_o, t_b = sum(r[1] for r in both), sum(r[2] for r in both)
        k = per_image * len(both)
        which = "" if len(both) == len(results) else f"; the {len(both)} the package ran"
        rows.append(Row(total, BASELINE, t_o / k, t_b / k,
                        note=f"{k / t_o:.1f} vs {k / t_b:.1f} images/s over all{which}"))
    else:
        k = per_image * len(results)
        rows.append(Row(total, BASELINE, t_ours / k, float("nan"),
                        note=f"{k / t_ours:.1f} images/s", skipped=missing or "the package fails"))
    return rows


# -------------------------------------------------------------------------- full evaluation
def _cli(argv):
    """genint_fast.cli.main(argv) with its output kept; raises with the output's tail on
    failure."""
    from ..cli import main as cli_main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = cli_main(argv)
    if code != 0:
        raise RuntimeError(f"genint-fast {' '.join(argv)} exited {code}:\n"
                           f"{buf.getvalue()[-2000:]}")


def full_eval(n, workers, root, *, steps=150, data_size=2000, names=None) -> float:
    """Train a small CNN on the built-in digits (not timed), then time `genint-fast eval
    corruptions` on n test-id images with `workers` processes. Returns seconds."""
    run = Path(root) / "erm"
    _cli(["train", f"steps={steps}", f"data_size={data_size}", "mode=erm", "progress=false",
          f"eval_size={min(100, data_size)}", f"out={run}"])
    argv = ["eval", "corruptions", "--checkpoint", str(run / "checkpoint.pt"), "--split",
            "test-id", "--n", str(n), "--workers", str(workers), "--out", str(Path(root) / "ev")]
    if names is not None:
        argv += ["--corruptions", *names]
    t0 = time.perf_counter()
    _cli(argv)
    return time.perf_counter() - t0


def eval_row(n, workers, *, steps=150, data_size=2000, names=None, root=None) -> Row:
    from ..eval.corruptions import CORRUPTIONS

    with tempfile.TemporaryDirectory(prefix="genint_fast_bench_corruptions_") as tmp:
        wall = full_eval(n, workers, root or tmp, steps=steps, data_size=data_size, names=names)
    k = len(CORRUPTIONS if names is None else names)
    bar = ""
    if n >= 1000 and names is None:
        bar = f"; bar {EVAL_BAR_S / 60:.0f} min: {'ok' if wall <= EVAL_BAR_S else 'MISSED'}"
    return Row(f"full evaluation: {k} corruptions x 5 severities of {n} built-in 32 px test "
               f"images + clean, small CNN ({steps} training steps), {workers} worker processes",
               "none", wall, float("nan"),
               note=f"`genint-fast eval corruptions --n {n}`, {wall:.1f} s wall{bar}",
               skipped="no same-run baseline (wall time only)")


# ---------------------------------------------------------------------------------- entry
def run(device="cpu", quick=False, *, n=None, size=224, names=None, eval_n=None,
        eval_workers=None, train_steps=None):
    """Rows for `genint-fast bench corruptions`. Full: 8 photos per corruption and severity, the
    full evaluation of 1000 images (about 2 minutes on 2 cores, 1 torch thread); quick: 2 photos,
    50 images (about 30 s). The keywords shrink it further (tests)."""
    device = torch.device(device)
    if device.type != "cpu":
        return [Row("corruptions (numpy / scipy / Pillow)", BASELINE, float("nan"), float("nan"),
                    skipped="CPU code whatever the device: run `genint-fast bench corruptions` "
                            "(--device cpu)")]
    n = n or (2 if quick else 8)
    eval_n = eval_n or (50 if quick else 1000)
    workers = min(2, os.cpu_count() or 1) if eval_workers is None else eval_workers
    steps = train_steps or (20 if quick else 150)
    rows = corruption_rows(n, size, names)
    rows.append(eval_row(eval_n, workers, steps=steps, data_size=500 if quick else 2000,
                         names=names))
    return rows
