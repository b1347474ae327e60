"""`make gpu-check`: everything that needs an NVIDIA GPU, in one command, with one report.

    python3 tools/gpu_check.py --preflight        # no torch needed: is a GPU visible at all?
    make build                                     # CPU + CUDA kernels (nvcc via CUDA_HOME)
    .venv/bin/python tools/gpu_check.py --report out/gpu_check.md

The second stage
  1. names the device (torch.cuda.get_device_name, nvidia-smi) and the date;
  2. checks that the built extension has CUDA kernels (one steer call on the GPU);
  3. runs every CUDA test of tests/ (the tests skipped without a GPU: their skip reason is
     "needs a CUDA GPU"), then again under compute-sanitizer --tool memcheck and
     --tool racecheck when compute-sanitizer is on PATH (or in $CUDA_HOME/bin);
  4. runs every GPU benchmark (`genint-fast bench NAME --device cuda`, one process each);
  5. writes one Markdown report with all of it, and exits non-zero if anything failed.
On a machine without a GPU either stage stops with one sentence saying so.

This file is also the pytest plugin that selects the CUDA tests (`-p gpu_check`, with tools/ on
PYTHONPATH): it keeps only the tests marked skipif(..., reason="needs a CUDA GPU").
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUDA_REASON = "needs a CUDA GPU"
NO_GPU = ("gpu-check: no NVIDIA GPU is visible on this machine ({why}); run `make gpu-check` on a "
          "machine with a CUDA GPU.")


# ------------------------------------------------------------------------ pytest plugin
def _is_cuda_test(item) -> bool:
    for mark in item.iter_markers("skipif"):
        if mark.kwargs.get("reason") == CUDA_REASON:
            return True
    return False


def pytest_collection_modifyitems(config, items):
    keep = [i for i in items if _is_cuda_test(i)]
    drop = [i for i in items if not _is_cuda_test(i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


# ----------------------------------------------------------------------------- helpers
def _run(cmd, *, env=None, timeout=None, log=None):
    """Run cmd from the repository root; returns (exit code, seconds, combined output)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        code, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        if isinstance(partial, bytes):
            partial = partial.decode(errors="replace")
        code, out = 124, partial + f"\n(timed out after {timeout} s)"
    except FileNotFoundError as exc:
        code, out = 127, str(exc)
    if log is not None:
        log.write_text(out)
    return code, time.perf_counter() - t0, out


def _tail(text, lines=15):
    return "\n".join(text.rstrip().splitlines()[-lines:])


def nvidia_smi_gpus():
    """(names of the GPUs nvidia-smi lists, why none when empty)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi is not on PATH"
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi failed: {exc}"
    gpus = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not gpus:
        msg = (out.stderr or out.stdout).strip().splitlines()
        return [], f"nvidia-smi lists none{': ' + msg[0] if msg else ''}"
    return gpus, ""


def preflight() -> int:
    gpus, why = nvidia_smi_gpus()
    if not gpus:
        print(NO_GPU.format(why=why), file=sys.stderr)
        return 1
    print(f"gpu-check: {len(gpus)} GPU(s): {'; '.join(gpus)}")
    return 0


def compute_sanitizer():
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    cand = Path(home) / "bin" / "compute-sanitizer"
    return str(cand) if cand.is_file() else None


# ------------------------------------------------------------------------------ report
def check(report: Path, tests: list[str], sanitize_tests: list[str], benchmarks, quick,
          sanitize=True, bench_timeout=None, test_timeout=None) -> int:
    import torch

    if not torch.cuda.is_available():
        gpus, why = nvidia_smi_gpus()
        why = why or f"torch {torch.__version__} sees no CUDA device (CUDA build: " \
                     f"{torch.version.cuda or 'no'})"
        print(NO_GPU.format(why=why), file=sys.stderr)
        return 1
    report.parent.mkdir(parents=True, exist_ok=True)
    logs = report.parent / "gpu_check_logs"
    logs.mkdir(exist_ok=True)
    gpus, _ = nvidia_smi_gpus()
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = ["# GPU check", "",
             f"- Device: {torch.cuda.get_device_name(0)} (torch.cuda.get_device_name)",
             f"- nvidia-smi: {'; '.join(gpus) if gpus else 'not available'}",
             f"- Date: {now}",
             f"- torch {torch.__version__}, CUDA {torch.version.cuda}, "
             f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(unset)')}",
             f"- Commit: {_run(['git', 'rev-parse', '--short', 'HEAD'])[2].strip()}", ""]
    failed = []

    # The extension has CUDA kernels?
    lines += ["## Extension", ""]
    try:
        from genint_fast.ops import steer

        z = torch.zeros(2, 4, device="cuda")
        u = torch.eye(4, device="cuda")[:3]
        idx = torch.zeros(2, 1, dtype=torch.long, device="cuda")
        steer(z, u, None, None, idx, torch.ones(2, 1, device="cuda"))
        torch.cuda.synchronize()
        lines.append("CUDA kernels present (steer ran on the GPU).")
    except Exception as exc:  # noqa: BLE001 - reported, then the rest still runs
        failed.append("extension")
        lines.append(f"FAILED: the extension has no working CUDA kernels ({exc!s:.300}); "
                     "rebuild with nvcc found (`make clean build`).")
    lines.append("")

    # CUDA tests: plain, then under compute-sanitizer.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "tools")] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    pytest = [sys.executable, "-m", "pytest", "-p", "gpu_check", "-p", "no:cacheprovider",
              "-q", "-rfEs"]
    runs = [("CUDA tests", [], tests, {})]
    sanitizer = compute_sanitizer() if sanitize else None
    if sanitizer:
        # The caching allocator would hide out-of-bounds accesses inside its blocks from memcheck.
        san_env = {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
        for tool in ("memcheck", "racecheck"):
            runs.append((f"CUDA tests under compute-sanitizer --tool {tool}",
                         [sanitizer, "--tool", tool, "--error-exitcode", "99",
                          "--target-processes", "all"],
                         # Tests that trip a device-side assert on purpose would count as errors.
                         ["-m", "not device_assert"] + sanitize_tests, san_env))
    lines += ["## CUDA tests", ""]
    for title, prefix, paths, extra in runs:
        code, secs, out = _run(prefix + pytest + paths, env={**env, **extra}, timeout=test_timeout,
                               log=logs / (title.replace(" ", "_").replace("-", "") + ".log"))
        ok = code == 0
        if not ok:
            failed.append(title)
        lines += [f"### {title}: {'passed' if ok else f'FAILED (exit {code})'} "
                  f"({secs:.0f} s)", "", "```", _tail(out), "```", ""]
    if not sanitize:
        lines += ["The compute-sanitizer runs were not asked for (--no-sanitize).", ""]
    elif not sanitizer:
        lines += ["compute-sanitizer is not on PATH (nor in $CUDA_HOME/bin): the memcheck and "
                  "racecheck runs were skipped.", ""]

    # Benchmarks, one process per benchmark so that one failure does not hide the others.
    lines += ["## GPU benchmarks", ""]
    for name in benchmarks:
        # `python -m genint_fast.cli`, so an in-place build runs without a pip install.
        cmd = [sys.executable, "-m", "genint_fast.cli", "bench", name, "--device", "cuda"] \
            + (["--quick"] if quick else [])
        code, secs, out = _run(cmd, env=env, timeout=bench_timeout,
                               log=logs / f"bench_{name}.log")
        if code != 0:
            failed.append(f"bench {name}")
            lines += [f"### {name}: FAILED (exit {code})", "", "```", _tail(out), "```", ""]
            continue
        tables = out[out.find("### "):] if "### " in out else out
        lines += [tables.strip(), "", f"({secs:.0f} s)", ""]

    lines += ["## Result", "",
              "All passed." if not failed else f"FAILED: {', '.join(failed)}.", "",
              f"Full logs: {logs.relative_to(ROOT) if logs.is_relative_to(ROOT) else logs}/"]
    report.write_text("\n".join(lines) + "\n")
    print(f"gpu-check: report written to {report}"
          + ("" if not failed else f"; failed: {', '.join(failed)}"))
    return 0 if not failed else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preflight", action="store_true",
                   help="only check that nvidia-smi lists a GPU (no torch needed)")
    p.add_argument("--report", default=str(ROOT / "out" / "gpu_check.md"))
    p.add_argument("--tests", nargs="*", default=["tests"],
                   help="test paths whose CUDA tests run (default: tests)")
    p.add_argument("--sanitize-tests", nargs="*", default=None,
                   help="test paths run under compute-sanitizer (default: the same as --tests)")
    p.add_argument("--bench", nargs="*", default=None,
                   help="benchmarks to run (default: all of genint-fast bench)")
    p.add_argument("--quick", action="store_true", help="small benchmark sizes")
    p.add_argument("--no-sanitize", action="store_true",
                   help="skip the compute-sanitizer memcheck and racecheck runs")
    p.add_argument("--bench-timeout", type=float, default=None, metavar="S",
                   help="stop a benchmark after S seconds and report it as failed")
    p.add_argument("--test-timeout", type=float, default=None, metavar="S",
                   help="stop a test run (plain or under compute-sanitizer) after S seconds")
    args = p.parse_args(argv)
    if args.preflight:
        return preflight()
    gpus, why = nvidia_smi_gpus()
    import torch

    if not gpus and not torch.cuda.is_available():
        print(NO_GPU.format(why=why), file=sys.stderr)
        return 1
    if args.bench is None:
        from genint_fast.cli.bench import BENCHMARKS

        from genint_fast.data.loader import dali_available

        # The loader benchmark compares against the optional DALI; bench itself drops it too.
        args.bench = [n for n in BENCHMARKS if n != "loader" or dali_available()]
    return check(Path(args.report).resolve(), args.tests,
                 args.tests if args.sanitize_tests is None else args.sanitize_tests,
                 args.bench, args.quick, sanitize=not args.no_sanitize,
                 bench_timeout=args.bench_timeout, test_timeout=args.test_timeout)


if __name__ == "__main__":
    sys.exit(main())
