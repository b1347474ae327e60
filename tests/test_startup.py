"""Start-up and packaging: `import genint_fast` and the CLI's --help import no torch, the ops load
lazily, the CLI's copies of library constants equal the library's, and DALI is optional."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _help_commands():
    """Every argv that prints a help: the top level, each command, each sub-command (data's
    actions, eval's protocols, analyze's analyses)."""
    import argparse

    from genint_fast.cli import build_parser

    def subparsers(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices
        return {}

    argvs = [[]]
    for name, p in subparsers(build_parser()).items():
        argvs.append([name])
        argvs.extend([name, sub] for sub in subparsers(p))
    return argvs


HELP_ARGVS = _help_commands()


def test_every_command_and_protocol_is_listed():
    names = {" ".join(a) for a in HELP_ARGVS}
    for cmd in ("bench", "gan", "directions", "generate", "cgn", "data export", "data validate",
                "train", "transfer", "analyze correlation", "analyze bound",
                "analyze interventions", "demo"):
        assert cmd in names
    for protocol in ("accuracy", "corruptions", "objectnet", "backgrounds", "shape-bias",
                     "gradcam"):
        assert f"eval {protocol}" in names


def test_import_genint_fast_and_cli_import_no_torch():
    proc = _run("import sys\n"
                "import genint_fast, genint_fast.cli\n"
                "genint_fast.cli.build_parser()\n"
                "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
                "('torch', 'torchvision', 'numpy', 'PIL', 'scipy', 'pytorch_pretrained_biggan'))\n"
                "print(heavy)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", HELP_ARGVS, ids=lambda a: " ".join(a) or "genint-fast")
def test_help_imports_no_torch(argv):
    # What `genint-fast ... --help` does, then a look at what it imported.
    proc = _run("import contextlib, io, sys\n"
                "from genint_fast.cli import build_parser\n"
                "out = io.StringIO()\n"
                "with contextlib.redirect_stdout(out):\n"
                "    try:\n"
                f"        build_parser().parse_args({argv!r} + ['--help'])\n"
                "    except SystemExit as exc:\n"
                "        assert exc.code == 0, exc.code\n"
                "assert out.getvalue().startswith('usage: genint-fast'), out.getvalue()[:200]\n"
                "print('torch' in sys.modules)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False", f"`genint-fast {' '.join(argv)} --help` imports torch"


def test_ops_load_lazily():
    proc = _run("import sys\n"
                "import genint_fast\n"
                "assert 'torch' not in sys.modules and 'genint_fast._C' not in sys.modules\n"
                "import torch\n"
                "z = torch.zeros(2, 4)\n"
                "u = torch.eye(4)[:3]\n"
                "idx = torch.tensor([[0], [2]])\n"
                "alpha = torch.tensor([[1.0], [-2.0]])\n"
                "sigma, mu = torch.ones(3), torch.zeros(4)\n"
                "out = genint_fast.ops.steer(z, u, sigma, mu, idx, alpha)\n"
                "assert 'genint_fast._C' in sys.modules\n"
                "ref = genint_fast.ops.reference.steer(z, u, sigma, mu, idx, alpha)\n"
                "assert torch.allclose(out, ref), (out, ref)\n"
                "assert hasattr(torch.ops.genint_fast, 'steer')\n"
                "from genint_fast import ops\n"
                "assert ops is genint_fast.ops and 'ops' in dir(genint_fast)\n"
                "print('ok')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_unknown_attribute_is_an_attribute_error():
    import genint_fast

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        genint_fast.nope  # noqa: B018


# ------------------------------------------ the CLI reads the library's constants, no copies

def test_cli_generator_specs_are_the_library_s():
    from genint_fast import gan_config, generator_spec
    from genint_fast.cli import gen
    from genint_fast.generators import (GENERATOR_SPECS, GANTrainConfig, SmallGANConfig,
                                        load_generator, train_gan)

    assert gen.GENERATOR_SPECS is GENERATOR_SPECS
    assert load_generator is generator_spec.load_generator and callable(train_gan)
    assert GANTrainConfig is gan_config.GANTrainConfig
    assert SmallGANConfig is gan_config.SmallGANConfig


def test_cli_dtypes_are_torch_dtypes():
    import torch

    from genint_fast.cli import gen

    assert [gen._dtype(n) for n in gen.DTYPES] == [torch.float32, torch.bfloat16, torch.float16]


def test_cli_digits_constants_are_the_library_s():
    from genint_fast.cli import data as cli_data
    from genint_fast.data import digits

    for name in ("VARIANTS", "SPLITS", "EXPORT_SPLITS", "DEFAULT_SIZES", "SIZE", "DEFAULT_RHO",
                 "SHAPE_SOURCES"):
        assert getattr(cli_data, name) is getattr(digits, name), name


def test_source_help_names_every_variant():
    from genint_fast.data.benchmark import VARIANTS
    from genint_fast.data.sources import source_help

    text = source_help("train split")
    assert all(v in text for v in VARIANTS) and "folder:DIR" in text and "train split" in text


def test_constant_modules_import_without_torch():
    code = ("import sys; import genint_fast.data.benchmark, genint_fast.data.sources, "
            "genint_fast.generator_spec, genint_fast.gan_config, genint_fast.config_fields, "
            "genint_fast.cgn_config, "
            "genint_fast.data; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_cli_demo_reads_the_library_config():
    """The demo's help shows DemoConfig's own defaults (no copies to keep equal)."""
    import argparse

    from genint_fast import demo
    from genint_fast.cli import demo as cli_demo

    assert cli_demo.METHODS is demo.METHODS
    sub = argparse.ArgumentParser().add_subparsers()
    cli_demo.register(sub)
    text = sub.choices["demo"].format_help()
    cfg = demo.DemoConfig()
    assert f"(default {cfg.seeds})" in text and f"(default {cfg.cgn_steps})" in text


def test_cli_demo_flags_are_demo_config_fields():
    """Every demo flag that sets a DemoConfig field shows the field's own help, and its default
    stays None so that --quick and the config's defaults fill what is not given."""
    import argparse
    import dataclasses

    from genint_fast.cli import demo as cli_demo
    from genint_fast.demo import DemoConfig

    p = argparse.ArgumentParser()
    cli_demo.register(p.add_subparsers())
    demo = p._subparsers._group_actions[0].choices["demo"]   # no public accessor in argparse
    helps = {a.dest: " ".join(a.help.replace("%%", "%").split()) for a in demo._actions
             if a.help}
    meaning = {f.name: " ".join(f.metadata["help"].split()) for f in dataclasses.fields(DemoConfig)}
    names = [name for name, _, _ in cli_demo._FIELD_FLAGS] + ["variant", "rho", "methods"]
    for name in names:
        assert helps[name].startswith(meaning[name]), name
        assert demo.get_default(name) is None, name


def test_cli_demo_unset_flags_read_their_field_s_type():
    """A field whose default is None (`float | None`) gives its flag the annotation's type."""
    from genint_fast.cli import build_parser

    args = build_parser().parse_args(["demo", "--scale", "2", "--cgn-checkpoint", "c.pt"])
    assert args.scale == 2.0 and isinstance(args.scale, float) and args.cgn_checkpoint == "c.pt"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--scale", "big"])


# ------------------------------------------------------------------------ DALI is optional

def test_dali_is_an_optional_extra():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("dali" in d for d in project["dependencies"])
    assert any(d.startswith("nvidia-dali") for d in project["optional-dependencies"]["dali"])


@pytest.fixture
def no_dali(monkeypatch):
    """NVIDIA DALI made unimportable, as on an install without the [dali] extra."""
    for name in ("nvidia.dali", "nvidia.dali.plugin", "nvidia.dali.plugin.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)
    from genint_fast.data.loader import dali_available

    assert not dali_available()


def _tiny_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_without_dali_the_dali_loader_says_how_to_install_it(no_dali, tmp_path):
    from genint_fast.data.loader import make_loader

    root = _tiny_folder(tmp_path / "imgs")
    with pytest.raises(RuntimeError, match=r"pip install genint-fast\[dali\]"):
        make_loader(str(root), loader="dali", batch_size=2, size=8)
    # the default loader is the torch one and works without DALI
    ld = make_loader(str(root), batch_size=4, size=8, augment="none", num_threads=0,
                     cache_path=str(tmp_path / "cache.json"))
    assert ld.name == "torch"
    labels = sorted(y for _, ys in ld for y in ys.tolist())
    assert labels == [0, 0, 0, 1, 1, 1]


def test_without_dali_the_loader_benchmark_says_how_to_install_it(no_dali, capsys):
    from genint_fast.cli import main

    assert main(["bench", "loader", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install genint-fast[dali]" in err


def test_no_default_loader_is_dali():
    import inspect

    from genint_fast.data import loader

    assert loader.DEFAULT_LOADER == "torch"
    assert inspect.signature(loader.make_loader).parameters["loader"].default == "torch"
    # recipes that name a loader do not ask for DALI by default
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        text = path.read_text()
        assert "loader: dali" not in text, path
    assert set(loader.LOADERS) == {"torch", "dali"}   # DALI stays available as an option
