"""`genint-fast analyze generated-only` (the GenInt paper's Table 4) on a tiny run."""
from __future__ import annotations

import json

from genint_fast.cli import main

TINY = ["analyze", "generated-only", "--generator", "random:small32:0", "--data",
        "digits:colored", "--n", "64", "--seeds", "2", "--train-steps", "3",
        "--num-directions", "6", "--top-k", "6", "--m", "2", "--sweep-truncation", "0.5,1",
        "--threads", "1"]


def test_generated_only_rows_runs_and_determinism(tmp_path, capsys):
    assert main(TINY + ["--out", str(tmp_path / "a.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert list(a["rows"]) == ["observational (t = 0.5)", "observational (t = 1)",
                               "interventional (s = 4)", "random directions (control)",
                               "matched norm (control)"]
    for row in a["rows"].values():
        assert [r["seed"] for r in row["runs"]] == [0, 1]
        for split in ("test-id", "test-ood"):
            vals = [r[split] for r in row["runs"]]
            assert all(0 <= v <= 1 for v in vals)
            assert abs(row[f"{split}_mean"] - sum(vals) / 2) < 1e-9
    assert "| trained only on | test-id top-1 (%) | test-ood top-1 (%) |" in \
        capsys.readouterr().out
    assert main(TINY + ["--out", str(tmp_path / "b.json")]) == 0      # seeded: the same numbers
    b = json.loads((tmp_path / "b.json").read_text())
    assert {k: v["runs"] for k, v in a["rows"].items()} == \
        {k: v["runs"] for k, v in b["rows"].items()}


def test_generated_only_refuses_a_folder(tmp_path, capsys):
    assert main(TINY[:5] + [str(tmp_path)] + TINY[6:]) == 2
    assert "tests on the built-in digits" in capsys.readouterr().err


def test_demo_reports_the_generated_only_table(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--methods", "gan-aug", "--generated-only", "64",
                 "--jobs", "1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    rows = res["generated_only"]["rows"]
    scale = res["config"]["scale"]
    assert list(rows) == ["observational (t = 0.5)", "observational (t = 1)",
                          f"interventional (s = {scale:g})", "random directions (control)",
                          "matched norm (control)"]
    assert all(0 <= r["OOD_mean"] <= 1 and len(r["runs"]) == 1 for r in rows.values())
    assert "## Trained only on generated images (the paper's Table 4)" in \
        (out / "results.md").read_text()
    assert main(["demo", "--quick", "--generated-only", "8", "--out", str(tmp_path / "x")]) == 2
