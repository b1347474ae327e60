"""The one grammar of the style-transfer feature networks (torch-free; built by
genint_fast.features.transfer_feature_net), read by `train transfer_features=` and
`genint-fast transfer --features`:

- ``small``: the project's small VGG-like net, trained on the biased digits once and cached;
- ``small:random[:SEED]``: the same architecture with seeded random weights (no training);
- ``vgg19``: torchvision's VGG19 from its cache (never downloaded); ``vgg19:FILE`` its weights
  file;
- ``FILE``: a small net saved by `genint_fast.features.save_small_vgg`.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["parse_feature_spec", "FEATURE_FORMS"]

FEATURE_FORMS = "small, small:random[:SEED], vgg19, vgg19:FILE or a saved small-net FILE"


def parse_feature_spec(spec, *, flag: str = "--features", check_files: bool = True):
    """(kind, argument): ("small", None), ("random", seed), ("vgg19", None | FILE) or
    ("file", FILE). One-sentence ValueError naming `flag` for anything else; check_files=False
    skips the existence check of a vgg19:FILE (for configs whose mode never reads it)."""
    text = str(spec)
    if text == "small":
        return "small", None
    parts = text.split(":")
    if parts[0] == "small" and len(parts) >= 2:
        if parts[1] != "random" or len(parts) > 3 or (len(parts) == 3 and not parts[2].isdigit()):
            raise ValueError(f"{flag} {text!r} is not a feature net; give {FEATURE_FORMS}")
        return "random", int(parts[2]) if len(parts) == 3 else 0
    if text == "vgg19":
        return "vgg19", None
    if text.startswith("vgg19:"):
        path = text[len("vgg19:"):]
        if check_files and not Path(path).is_file():
            raise ValueError(f"{flag} names the VGG19 weights file {path!r}, which does not "
                             f"exist; give torchvision's vgg19-dcbb9e9d.pth there")
        return "vgg19", path
    if not Path(text).is_file():      # a typo must not pass as a file name
        raise ValueError(f"{flag} {text!r} is neither a feature net nor an existing file; give "
                         f"{FEATURE_FORMS}")
    return "file", text
