"""The package's layering, read from its import statements: which sub-package may import which."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "genint_fast"


def _imports(path: Path) -> set[str]:
    """Top-level sub-packages of genint_fast that `path` imports (anywhere in the file)."""
    rel = path.relative_to(PKG).with_suffix("")
    here = list(rel.parts[:-1])          # the module's package, as parts below genint_fast
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts] if node.module else [base + [a.name] for a in node.names]
            elif node.module and node.module.startswith("genint_fast"):
                names = [node.module.split(".")[1:]]
            else:
                continue
            out.update(p[0] for p in names if p)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("genint_fast."):
                    out.add(a.name.split(".")[1])
    return out


def _package_imports(sub: str) -> dict[str, set[str]]:
    return {p.relative_to(PKG).as_posix(): _imports(p) for p in (PKG / sub).rglob("*.py")}


def test_eval_does_not_import_train():
    bad = {f: i & {"train", "demo", "cli"} for f, i in _package_imports("eval").items()}
    assert {f: i for f, i in bad.items() if i} == {}


def test_classifier_is_a_leaf():
    bad = {f: i & {"train", "eval", "demo", "cli", "cgn", "intervene", "transfer"}
           for f, i in _package_imports("classifier").items()}
    assert {f: i for f, i in bad.items() if i} == {}


def test_diagnostics_stay_below_the_classifier_protocols_and_training():
    bad = {f: i & {"train", "eval", "demo", "cli"}
           for f, i in _package_imports("diagnostics").items()}
    assert {f: i for f, i in bad.items() if i} == {}


def test_data_does_not_import_the_layers_above_it():
    bad = {f: i & {"train", "eval", "demo", "cli", "classifier"}
           for f, i in _package_imports("data").items()}
    assert {f: i for f, i in bad.items() if i} == {}


def test_the_checker_sees_relative_imports(tmp_path):
    # guard against a checker that finds nothing: a known import of eval/checkpoints.py
    assert "classifier" in _imports(PKG / "eval" / "checkpoints.py")
    assert "data" in _imports(PKG / "train" / "trainer.py")


def test_old_import_paths_still_work():
    import genint_fast.classifier.models as new
    import genint_fast.train.models as old
    from genint_fast.classifier import evaluate, load_checkpoint, make_normaliser
    from genint_fast.train import checkpoint, trainer

    assert old is new
    assert trainer.evaluate is evaluate and trainer.make_normaliser is make_normaliser
    assert checkpoint.load_checkpoint is load_checkpoint


def test_the_trainer_reads_the_mode_table_not_mode_names():
    """train/config.py MODE_STREAMS says what each mode trains on; the trainer and its streams
    test its fields, never the mode's name."""
    import re

    from genint_fast.train.config import GENERATOR_MODES, MODE_STREAMS, MODES, TRANSFER_MODES

    for name in ("trainer.py", "streams.py", "data.py"):
        text = (PKG / "train" / name).read_text()
        assert not re.search(r"\bmode\s*(==|!=|in\b|not in\b)", text), name
    assert set(MODES) == set(MODE_STREAMS)
    assert set(GENERATOR_MODES) == {"gan-aug", "genint", "genint-transfer"}
    assert set(TRANSFER_MODES) == {"stylized", "genint-transfer"}
    assert [m for m, s in MODE_STREAMS.items() if s.real is None] == ["cgn"]


def test_moved_diagnostics_and_digit_modules_keep_their_old_names():
    import genint_fast.diagnostics.correlation as correlation
    import genint_fast.diagnostics.nuisance as nuisance
    import genint_fast.diagnostics.shape as shape
    import genint_fast.eval.correlation as old_correlation
    import genint_fast.eval.nuisance as old_nuisance
    import genint_fast.eval.shape as old_shape
    from genint_fast.data import digits, export, shapes

    assert (old_nuisance, old_shape, old_correlation) == (nuisance, shape, correlation)
    assert digits.save_image_folder is export.save_image_folder
    assert digits.export_biased_digits is export.export_biased_digits
    assert digits._digit_masks is shapes.digit_masks
    assert digits.foreground_share is shapes.foreground_share and digits.SIZE == shapes.SIZE
    try:
        digits.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_large_cgn_trainer_keeps_its_old_import_path():
    from genint_fast.cgn import large, large_train

    for name in large._MOVED:
        assert getattr(large, name) is getattr(large_train, name), name
