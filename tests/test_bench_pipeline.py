"""`genint-fast bench pipeline` (genint_fast.benchmarks.pipeline), quick variant: both paths
deliver the same number of training images, and the reference-style path really wrote them as
PNG files. No speed bar here (the benchmark table reports it)."""
from genint_fast.benchmarks import pipeline
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
