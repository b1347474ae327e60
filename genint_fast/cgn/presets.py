"""Named settings of the small CGN (`genint-fast cgn --preset NAME`): ``default`` (fastest to a
decomposition on 2 CPU cores) and ``reference`` (the authors' small CGN). They live torch-free in
genint_fast.cgn_config, whose docstring says what each holds; this module keeps the old import
path."""
from __future__ import annotations

from ..cgn_config import (DEFAULT_EMA, DEFAULT_STEPS, FOLDER_VARIANT, PRESETS, REFERENCE_STEPS,
                          preset_configs)
from ..cgn_config import CGNConfig, CGNTrainConfig  # noqa: F401  (importable here, as before)

__all__ = ["PRESETS", "FOLDER_VARIANT", "preset_configs", "DEFAULT_STEPS", "REFERENCE_STEPS",
           "DEFAULT_EMA"]
