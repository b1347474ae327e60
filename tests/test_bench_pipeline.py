"""`genint-fast bench pipeline` (genint_fast.benchmarks.pipeline), quick variant: both paths
deliver the same number of training images, and the reference-style path really wrote them as
PNG files. `genint-fast bench corruptions` (genint_fast.benchmarks.corruptions), quick mode on
tiny sizes: one ratio row per corruption against the imagecorruptions release (same pixels where
the release is reproducible), the total row and the full-evaluation row. No speed bars here (the
benchmark tables report them)."""
import math

import pytest

from genint_fast.benchmarks import corruptions, pipeline
from genint_fast.benchmarks.common import format_table


def test_quick_pipeline_same_images_and_png_files(tmp_path):
    ref, fly, setup, params = pipeline.compare("cpu", quick=True, root=str(tmp_path))
    expected = params["steps"] * (pipeline.GEN_BATCH + pipeline.TR_BATCH)
    assert fly.images == ref.images == expected
    assert fly.bytes_written == 0 and fly.png_files == 0
    pngs = sorted((tmp_path / "reference").rglob("*.png"))
    assert len(pngs) == ref.png_files == expected
    assert ref.bytes_written >= sum(p.stat().st_size for p in pngs) > 0
    # intervened and transferred images, each readable at the generator's resolution
    assert len(list((tmp_path / "reference" / "intervened").rglob("*.png"))) == \
        params["steps"] * pipeline.GEN_BATCH
    from PIL import Image
    with Image.open(pngs[0]) as img:
        assert img.size == (setup.generator.image_size,) * 2
    assert ref.seconds > 0 and fly.seconds > 0
    assert set(ref.stages) == {"generate+write", "transfer+write", "read back"}


def test_run_returns_one_row_with_the_bar(monkeypatch):
    # run() formats compare()'s results; compare is replaced so the row logic is checked fast.
    R = pipeline.PathResult
    fake = (R(24, 2.0, 4096, 24, {"generate+write": 1.0, "transfer+write": 0.5,
                                  "read back": 0.5}),
            R(24, 0.1), pipeline.make_setup("cpu"), {"steps": 1, "transfer_steps": 2})
    monkeypatch.setattr(pipeline, "compare", lambda device, quick: fake)
    (row,) = pipeline.run("cpu", quick=True)
    assert row.bar == 10.0 and abs(row.ratio - 20.0) < 1e-9 and row.passed
    assert "24 PNG files" in row.note and "images/s" in row.note
    assert "20.00x" in format_table([row])


# ------------------------------------------------------------------------------------------------
# genint-fast bench corruptions
# ------------------------------------------------------------------------------------------------

TINY = ("brightness", "gaussian_noise", "glass_blur")   # deterministic, seeded, the slow loop


def test_corruptions_is_a_harness_benchmark():
    from genint_fast.cli.bench import BENCHMARKS
    assert BENCHMARKS["corruptions"] == "genint_fast.benchmarks.corruptions"


def test_quick_corruptions_ratio_rows_and_full_evaluation():
    try:
        corruptions.load_baseline()
    except ImportError as exc:
        pytest.skip(f"needs the baseline: {exc}")
    rows = corruptions.run("cpu", quick=True, n=1, size=32, names=TINY, eval_n=2,
                           eval_workers=0, train_steps=1)
    assert len(rows) == len(TINY) + 2
    per, total, ev = rows[:len(TINY)], rows[-2], rows[-1]
    assert sorted(r.bench.split(",")[0] for r in per) == sorted(TINY)
    assert [r.ours_s for r in per] == sorted((r.ours_s for r in per), reverse=True)
    for r in per:
        assert r.baseline == "imagecorruptions 1.1.2" and not r.skipped, r
        assert "32 px, severities 1-5, 1 photos" in r.bench
        assert r.ours_s > 0 and r.base_s > 0 and math.isfinite(r.ratio) and r.ratio > 0
        assert r.passed is None                       # no bar: a unit test sets no speed
        assert "images/s" in r.note and r.note.endswith("same pixels"), r.note
    assert total.bench.startswith(f"all {len(TINY)} corruptions") and not total.skipped
    assert math.isclose(total.ours_s, sum(r.ours_s for r in per) / len(TINY))
    assert math.isclose(total.base_s, sum(r.base_s for r in per) / len(TINY))
    assert ev.bench.startswith(f"full evaluation: {len(TINY)} corruptions x 5 severities of 2 ")
    assert ev.ours_s > 0 and ev.skipped and math.isnan(ev.ratio) and ev.passed is None
    table = format_table(rows, title="corruptions")
    assert table.count("imagecorruptions 1.1.2") == len(TINY) + 1
    assert f"{per[0].ratio:.2f}x" in table and "skipped: no same-run baseline" in table


def test_corruptions_without_the_package_times_ours_and_says_how_to_install(monkeypatch):
    def missing():
        raise ImportError(f"imagecorruptions 1.1.2 is not installed ({corruptions.INSTALL})")

    monkeypatch.setattr(corruptions, "load_baseline", missing)
    rows = corruptions.corruption_rows(1, 32, ("contrast",), warm=1)
    assert len(rows) == 2
    for r in rows:
        assert r.ours_s > 0 and math.isnan(r.base_s) and r.passed is None
        assert "pip install --no-deps imagecorruptions==1.1.2" in r.skipped
    assert "skipped: imagecorruptions 1.1.2 is not installed" in format_table(rows)


def test_corruptions_outputs_compared():
    import numpy as np
    same = np.zeros((5, 1, 32, 32, 3), np.uint8)
    assert corruptions._agreement("fog", same, same) == "same pixels"
    off = same.copy()
    off[0, 0, 0, 0, 0] = 1
    assert corruptions._agreement("frost", off, same).startswith("within 1 grey level (1 of ")
    off[1, 0, 0, 0, 0] = 9
    assert corruptions._agreement("fog", off, same).startswith("outputs differ (max 9")
    assert "ignores numpy's seed" in corruptions._agreement("impulse_noise", off, same)


def test_corruptions_on_cuda_is_one_skipped_row():
    (row,) = corruptions.run("cuda", quick=True)   # no GPU needed: nothing is run
    assert row.skipped.startswith("CPU code whatever the device")
