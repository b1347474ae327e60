"""The CGN authors' released MNIST checkpoints, converted into this package's format.

The reference repository ships trained small CGNs for its three MNIST variants
(`mnists/experiments/cgn_<variant>_MNIST/weights/ckp.pth`, ../shared/CGN.md). They hold the
generator only, as a plain state dict under the reference's module names: `label_emb` (the shared
label embedding), `f_shape` (the mask), `f_text1` (foreground texture) and `f_text2` (background),
each an nn.Sequential whose first entry is the linear layer and whose later indices count the
reshape, upsampling, norm and activation modules too. The architecture is this package's
`SmallCGN(CGNConfig(ch=64, out_batchnorm=True))`: the same layers in the same order, so the
conversion is a renaming with a strict check of every key and shape.

    genint-fast cgn import ckp.pth --variant colored --out cgn.pt

The converted file is a `genint-fast cgn` checkpoint holding the generator (no discriminator or
optimiser state, so it can be sampled and trained on, not resumed). These checkpoints are a
diagnostic oracle for the downstream half (sampler, classifier); they are the authors' files:
never commit them.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..io import save_atomic
from .small import CGNConfig, SmallCGN

__all__ = ["REFERENCE_CONFIG", "reference_key_map", "convert_reference_state",
           "import_reference_checkpoint", "REFERENCE_VARIANTS"]

REFERENCE_VARIANTS = ("colored", "double-colored", "wildlife")
# The reference's per-variant initialisation (recorded in the converted config; the weights are
# the reference's own).
_INIT = {"colored": ("orthogonal", 0.1), "double-colored": ("orthogonal", 0.2),
         "wildlife": ("normal", 0.03)}


def REFERENCE_CONFIG(variant: str = "colored") -> CGNConfig:
    """The package config whose SmallCGN has exactly the reference checkpoint's tensors."""
    init, gain = _INIT[variant]
    return CGNConfig(num_classes=10, noise_dim=32, embed_dim=10, ch=64, init=init,
                     init_gain=gain, out_batchnorm=True,
                     disc="conv" if variant == "wildlife" else "mlp", d_spectral_norm=False)


# Sequential index in the reference -> (our mechanism, index in its body); index 0 is the
# linear layer (our `fc`). Shape: 0 linear, 1 reshape, 2 instance norm (our `norm`), then the
# body from index 3; textures: 0 linear, 1 reshape, then the body from index 2.
_BODY_OFFSET = {"f_shape": ("shape", 3), "f_text1": ("texture", 2), "f_text2": ("background", 2)}


def reference_key_map(state: dict) -> dict:
    """{reference key: package key} for every key of a reference state dict; keys it cannot
    place map to None."""
    out = {}
    for key in state:
        if key == "label_emb.weight":
            out[key] = "embed.weight"
            continue
        head, _, rest = key.partition(".")
        idx, _, param = rest.partition(".")
        if head not in _BODY_OFFSET or not idx.isdigit() or not param:
            out[key] = None
            continue
        mech, offset = _BODY_OFFSET[head]
        i = int(idx)
        out[key] = f"{mech}.fc.{param}" if i == 0 else (
            f"{mech}.body.{i - offset}.{param}" if i >= offset else None)
    return out


def convert_reference_state(state: dict, variant: str = "colored") -> SmallCGN:
    """A SmallCGN holding a reference state dict's weights (strict: every key of both sides
    placed, every shape equal), in eval()."""
    if variant not in REFERENCE_VARIANTS:
        raise ValueError(f"--variant must be one of {', '.join(REFERENCE_VARIANTS)}, got "
                         f"{variant!r}")
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError("not a CGN reference checkpoint: expected a state dict of tensors "
                         "(the reference's weights/ckp.pth)")
    cgn = SmallCGN(REFERENCE_CONFIG(variant))
    ours = cgn.state_dict()
    mapping = reference_key_map(state)
    unplaced = sorted(k for k, v in mapping.items() if v is None or v not in ours)
    missing = sorted(set(ours) - {v for v in mapping.values() if v is not None})
    if unplaced or missing:
        what = (f"unknown keys {', '.join(unplaced[:4])}" if unplaced
                else f"missing keys for {', '.join(missing[:4])}")
        raise ValueError(f"not a CGN reference MNIST checkpoint ({what}{', ...' if len(unplaced or missing) > 4 else ''}); "
                         f"give the reference's mnists/experiments/cgn_<variant>_MNIST/weights/ckp.pth")
    bad = [k for k, v in mapping.items() if tuple(state[k].shape) != tuple(ours[v].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"not a CGN reference MNIST checkpoint: {k} has shape "
                         f"{tuple(state[k].shape)}, the reference architecture has "
                         f"{tuple(ours[mapping[k]].shape)}")
    cgn.load_state_dict({mapping[k]: v for k, v in state.items()}, strict=True)
    return cgn.eval()


def import_reference_checkpoint(path, variant: str, out) -> dict:
    """Convert the reference checkpoint at `path` and write it to `out` as a `genint-fast cgn`
    checkpoint (generator only). Returns a summary."""
    from .train import CHECKPOINT_FORMAT

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"no reference checkpoint at {path}; give the path of the "
                                f"reference's weights/ckp.pth")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a checkpoint file name")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}); "
                         f"give the reference's weights/ckp.pth") from None
    cgn = convert_reference_state(state, variant)
    # The BatchNorm counters hold the number of training steps the authors ran.
    steps = int(state.get("f_shape.5.num_batches_tracked", torch.tensor(0)))
    save_atomic({"format": CHECKPOINT_FORMAT, "model_config": cgn.config.to_dict(),
                 "train_config": None, "step": steps, "G": cgn.state_dict(),
                 "imported_from": {"path": str(path), "variant": variant,
                                   "source": "CGN reference MNIST checkpoint"}}, out)
    return {"checkpoint": str(out), "variant": variant, "steps": steps,
            "parameters": sum(p.numel() for p in cgn.parameters())}
