"""`genint-fast demo --quick`: the whole pipeline runs and writes a complete report."""
from __future__ import annotations

import json
import math

import pytest

from genint_fast.cli import main


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = main(["demo", "--quick", "--out", str(out), "--threads", "2"])
    return rc, out


def test_quick_demo_writes_report(quick_report):
    rc, out = quick_report
    assert rc == 0
    for name in ("results.json", "results.md", "accuracy.png", "interventions.png",
                 "transfers.png", "gan_samples.png", "gan.pt", "directions.safetensors",
                 "cgn.pt", "counterfactuals.png"):
        f = out / name
        assert f.is_file() and f.stat().st_size > 0, f"missing {name}"
    for name in ("accuracy.png", "interventions.png", "transfers.png", "gan_samples.png",
                 "counterfactuals.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]) == {"erm", "gan-aug", "genint", "genint-transfer",
                                   "random-directions", "matched-norm", "cgn", "real+cgn"}
    # the scale was selected on the validation split among the candidates, by the bound score
    sel = res["selection"]
    assert sel["selected"] and res["config"]["requested_scale"] is None
    assert set(sel["scores"]) == {"0", "2", "8"}
    assert sel["scale"] == max((float(k) for k in sel["scores"] if k != "0"),
                               key=lambda k: sel["scores"][f"{k:g}"])
    assert res["config"]["scale"] == sel["scale"]
    # the mechanism measures: every set measured, shares in [0, 1], the readers' accuracy kept
    rows = res["measures"]["rows"]
    assert {"training images", "random directions (control)", "matched norm (control)"} <= set(rows)
    assert any(k.startswith("intervened") for k in rows)
    for name, r in rows.items():
        assert r["n"] == res["config"]["measure_n"], name
    # the nuisance reader reads the training images' stroke colour: a share rho of them carries
    # the label's colour and a tenth of the rest by chance; at the default rho 1 every stroke
    # has its label's colour, so the agreement is the reader's own accuracy (the colours'
    # jitter lets neighbouring classes overlap: no reader reaches 100%; n = 100)
    rho = res["config"]["rho"]
    assert rho == 1.0
    assert rows["training images"]["agreement_stroke"] == pytest.approx(
        res["measures"]["readers_accuracy"]["stroke"], abs=0.1)
    assert set(res["measures"]["readers_accuracy"]) == {"class", "stroke"}
    # the CGN was trained for the asked steps, its masks measured, and the verdict is stated
    assert res["cgn"]["steps"] == res["config"]["cgn_steps"] == 20
    assert 0.0 < res["cgn"]["mask"]["mean"] < 1.0
    assert f"shape consistency {100 * res['cgn']['shape_consistency']:.0f}%" in res["cgn_verdict"]
    assert isinstance(res["cgn_target_met"], bool) and "cgn OOD" in res["cgn_verdict"]
    for name, r in res["methods"].items():
        assert len(r["runs"]) == res["config"]["seeds"] == 1
        for key in ("id_mean", "ood_mean", "id_std", "ood_std"):
            assert math.isfinite(r[key]), (name, key)
        # the table is the mean of the runs it lists
        assert r["id_mean"] == pytest.approx(r["runs"][0]["id"])
        assert r["ood_mean"] == pytest.approx(r["runs"][0]["ood"])
    # erm takes the colour shortcut: right in distribution, near chance out of it
    assert res["methods"]["erm"]["id_mean"] > res["methods"]["erm"]["ood_mean"] + 0.3
    assert isinstance(res["effect_shown"], bool) and res["verdict"]
    md = (out / "results.md").read_text()
    for name in res["methods"]:
        assert f"| {name} |" in md
    assert "Verdict" in md and res["machine"] in md and "CGN:" in md
    assert "What the interventions do" in md and "nuisance-label agreement" in md
    assert "causal-bound score" in md
    assert "counterfactuals.png" in md
    # corruption robustness: every run measured on the same corrupted ID images (quick: all 15
    # corruptions at severity 3); erm against itself (same seed) is exactly 100
    from genint_fast.eval.corruptions import CORRUPTIONS
    for name, r in res["methods"].items():
        errs = r["runs"][0]["corruption"]
        assert set(errs) == {"clean"} | {f"{c}/3" for c in CORRUPTIONS}, name
    assert res["methods"]["erm"]["runs"][0]["rmce_vs_erm"] == pytest.approx(100.0)
    assert "corrupted ID rel. mCE vs erm (%)" in md and "relative mCE" in md
    # Grad-CAM sheet: erm against the method with the best OOD mean
    best = max((m for m in res["methods"] if m != "erm"),
               key=lambda m: res["methods"][m]["ood_mean"])
    assert res["gradcam"]["rows"] == ["erm", best]
    assert (out / "gradcam.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gradcam.png" in md


def test_quick_demo_reuses_cached_gan(quick_report, tmp_path):
    """A second run on the same folder resumes the cached GAN (no new GAN steps)."""
    import torch

    _, out = quick_report
    before = torch.load(out / "gan.pt", map_location="cpu", weights_only=False)["step"]
    rc = main(["demo", "--quick", "--out", str(out), "--methods", "erm,gan-aug", "--threads",
               "2"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["gan"]["steps"] == before
    assert list(res["methods"]) == ["erm", "gan-aug"] and res["effect_shown"] is None
    # without a GAN method the GAN stages are skipped altogether
    assert main(["demo", "--quick", "--out", str(out), "--methods", "erm", "--threads", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["gan"] is None and res["selection"] is None and list(res["methods"]) == ["erm"]


def test_resume_keeps_finished_runs_and_redoes_changed_ones(quick_report, capsys):
    """--resume keeps a finished run whose fingerprint is unchanged (same row, no training) and
    redoes one whose settings changed."""
    _, out = quick_report
    # --jobs 1: every run in this process (the other tests run the worker processes)
    assert main(["demo", "--quick", "--out", str(out), "--methods", "erm,groupdro,jtt,dfr",
                 "--threads", "2", "--jobs", "1"]) == 0
    first = json.loads((out / "results.json").read_text())["methods"]["erm"]["runs"][0]
    assert {"groupdro", "jtt", "dfr"} <= set(
        json.loads((out / "results.json").read_text())["methods"])
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--methods", "erm", "--threads", "2",
                 "--resume"]) == 0
    log = capsys.readouterr().out
    assert "erm              seed 0: kept from" in log
    assert json.loads((out / "results.json").read_text())["methods"]["erm"]["runs"][0] == first
    assert main(["demo", "--quick", "--out", str(out), "--methods", "erm", "--threads", "2",
                 "--steps", "7", "--resume"]) == 0
    assert "kept from" not in capsys.readouterr().out


def test_demo_bad_input_is_one_sentence(capsys, tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--methods", "erm,nope"]) == 2
    err = capsys.readouterr().err
    assert "methods must be a non-empty subset" in err
    assert main(["demo", "--quick", "--out", str(tmp_path), "--rho", "1.5"]) == 2
    assert "rho must be in [0, 1]" in capsys.readouterr().err


def test_cgn_steps_preset_takes_the_default_presets_length_per_variant(capsys, tmp_path):
    """cgn_steps "preset" (--cgn-steps preset, `cgn-steps: preset` in a recipe) trains each
    variant's CGN for the default preset's length; anything else but a count is refused."""
    from genint_fast.cgn_config import preset_configs
    from genint_fast.data.digits import VARIANTS
    from genint_fast.demo import DemoConfig

    for v in VARIANTS:
        cfg = DemoConfig(variant=v, cgn_steps="preset").validate()
        assert cfg.cgn_train_steps() == preset_configs("default", v)[1].steps
    assert DemoConfig(variant="colored", cgn_steps="preset").cgn_train_steps() == 9000
    assert DemoConfig(variant="double-colored", cgn_steps="preset").cgn_train_steps() == 6000
    assert DemoConfig(cgn_steps=123).cgn_train_steps() == 123
    with pytest.raises(ValueError, match='number of steps >= 0 or "preset"'):
        DemoConfig(cgn_steps="long").validate()
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--out", str(tmp_path), "--cgn-steps", "long"])
    assert exc.value.code == 2
    assert "give a number of steps or preset, not 'long'" in capsys.readouterr().err
    from genint_fast.cli import build_parser

    args = build_parser().parse_args(["demo", "--cgn-steps", "preset"])
    assert args.cgn_steps == "preset"


def test_summary_over_settings_has_a_row_per_setting_and_method(tmp_path):
    from genint_fast.demo import write_summary

    def method(id_, ood, n=3):
        runs = [{"id": id_, "ood": ood}] * n
        return {"id_mean": id_, "id_std": 0.01, "ood_mean": ood, "ood_std": 0.02,
                "id_ci95": 0.025, "ood_ci95": 0.05, "seconds_mean": 10.0, "runs": runs}

    def result(rho, ood_cgn):
        return {"config": {"variant": "colored", "rho": rho, "seeds": 3}, "machine": "M",
                "date": "D", "wall_s": 60.0, "methods": {"erm": method(0.91, 0.10),
                                                          "cgn": method(0.5, ood_cgn)},
                "cgn_verdict": f"target NOT met: cgn OOD {100 * ood_cgn:.1f}",
                "effect_shown": None, "verdict": ""}

    path = write_summary([result(0.9, 0.3), result(1.0, 0.123)], tmp_path / "summary.md")
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| colored |")]
    assert len(rows) == 4
    assert rows[3].startswith("| colored | 1 | cgn | 50.0 +- 2.5 (sd 1.0) | 12.3 +- 5.0 (sd 2.0) | 3 |")
    assert "- colored, rho 0.9: CGN target NOT met: cgn OOD 30.0" in text
    assert "Wall time: 120 s" in text


def test_run_fingerprint_follows_the_generator_weights_not_the_file(tmp_path):
    """A cached generator re-saved on resume (new RNG or optimiser state) keeps its digest; new
    weights change it."""
    import torch

    from genint_fast.demo import _weights_digest

    w = torch.arange(6.0).reshape(2, 3)
    torch.save({"G": {"w": w}, "rng": torch.tensor([1]), "opt_g": {"s": 1}}, tmp_path / "a.pt")
    torch.save({"G": {"w": w.clone()}, "rng": torch.tensor([2]), "opt_g": {"s": 2}},
               tmp_path / "b.pt")
    torch.save({"G": {"w": w + 1}, "rng": torch.tensor([1]), "opt_g": {"s": 1}}, tmp_path / "c.pt")
    a, b, c = (_weights_digest(tmp_path / f"{n}.pt") for n in "abc")
    assert a == b != c


def test_combined_streams_run_real_intervened_and_counterfactual_together(tmp_path):
    """genint+cgn: one run trains on the real, intervened and counterfactual streams at once."""
    out = tmp_path / "comb"
    assert main(["demo", "--quick", "--out", str(out), "--methods", "genint+cgn",
                 "--jobs", "1"]) == 0
    last = json.loads((out / "runs" / "genint_cgn_seed0" / "metrics.jsonl").read_text()
                      .strip().splitlines()[-1])
    assert {"loss_real", "loss_intervened", "loss_counterfactual"} <= set(last)
    res = json.loads((out / "results.json").read_text())
    assert math.isfinite(res["methods"]["genint+cgn"]["ood_mean"])
