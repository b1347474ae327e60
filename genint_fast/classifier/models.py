"""Classifiers: a small CNN for 32x32 images and torchvision ResNet-18/50/152, each with one
head or as CGN's invariant ensemble (a shared backbone and one head per mechanism)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "EnsembleModel", "build_model", "HEADS", "MECHANISMS", "load_state_into",
           "unwrap_state_dict", "guess_architecture"]

HEADS = ("single", "ensemble")
MECHANISMS = ("shape", "texture", "background")


class SmallCNN(nn.Module):
    """conv-bn-relu x 3 (widths w, 2w, 4w, stride-2 pooling) + global average pool + linear."""

    def __init__(self, num_classes=10, width=32):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, width), block(width, 2 * width),
                                      block(2 * width, 4 * width))
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class EnsembleModel(nn.Module):
    """CGN's invariant ensemble: a shared backbone (image -> feature vector) and one linear head
    per mechanism (shape, texture, background). forward(x) gives the mean of the heads' logits
    (the prediction on real images); forward(x, heads=True) gives all of them, (3, B, C)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(feature_dim, num_classes) for _ in MECHANISMS)

    def forward(self, x, heads: bool = False):
        h = self.backbone(x)
        out = torch.stack([head(h) for head in self.heads])
        return out if heads else out.mean(0)


class _Pooled(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def build_model(name: str, num_classes: int, heads: str = "single") -> nn.Module:
    if heads not in HEADS:
        raise ValueError(f"heads must be single or ensemble, got {heads!r}")
    if name == "smallcnn":
        net = SmallCNN(num_classes)
        if heads == "single":
            return net
        return EnsembleModel(_Pooled(net.features), net.head.in_features, num_classes)
    import torchvision

    if name in ("resnet18", "resnet50", "resnet152"):
        net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        if heads == "single":
            return net
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return EnsembleModel(net, dim, num_classes)
    raise ValueError(f"unknown model {name!r}; choose smallcnn, resnet18, resnet50 or resnet152")


# ------------------------------------------------------------------------- initial weights
_RESNET_DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
                  ("bottleneck", (3, 4, 6, 3)): "resnet50",
                  ("bottleneck", (3, 4, 23, 3)): "resnet101",
                  ("bottleneck", (3, 8, 36, 3)): "resnet152"}


def unwrap_state_dict(state) -> dict:
    """The tensors of a saved state dict in its usual wrappings: {"state_dict": ...} or
    {"model": ...} (training scripts' checkpoints, e.g. the reference code's) and a "module."
    prefix on every key (DataParallel / DistributedDataParallel)."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and not any(
                isinstance(v, torch.Tensor) for v in state.values()):
            state = state[key]
    if not isinstance(state, dict):
        return state
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def guess_architecture(state: dict) -> str | None:
    """Which of our (or torchvision's) classifiers a plain state dict belongs to, if any."""
    keys = set(state)
    if "features.0.0.weight" in keys and "head.weight" in keys:
        return "smallcnn"
    if "conv1.weight" in keys and "fc.weight" in keys:
        kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
        blocks = []
        for layer in range(1, 5):
            idx = {int(k.split(".")[1]) for k in keys if k.startswith(f"layer{layer}.")}
            blocks.append(max(idx) + 1 if idx else 0)
        return _RESNET_DEPTHS.get((kind, tuple(blocks)), f"a {kind}-block ResNet")
    return None


def _classifier_rows(state: dict):
    """(key, weight) of a single-head state dict's final linear layer, or (None, None)."""
    for key in ("fc.weight", "head.weight"):
        t = state.get(key)
        if isinstance(t, torch.Tensor) and t.dim() == 2:
            return key, t
    return None, None


def _final_linear(model: nn.Module) -> nn.Linear:
    if isinstance(model, EnsembleModel):
        return model.heads[0]
    return model.fc if hasattr(model, "fc") else model.head


def _to_ensemble(model: "EnsembleModel", state: dict) -> dict:
    """A single-head state dict (ours or torchvision's) as an ensemble's: the backbone's keys
    under backbone.*, and the linear head copied into each mechanism's head."""
    backbone = set(model.backbone.state_dict())
    out, head = {}, {}
    for k, v in state.items():
        if k in backbone:
            out[f"backbone.{k}"] = v
        elif k in ("fc.weight", "fc.bias", "head.weight", "head.bias"):
            head[k.split(".")[-1]] = v
        else:
            out[k] = v
    for i in range(len(model.heads)):
        for name, v in head.items():
            out[f"heads.{i}.{name}"] = v.clone()
    return out


def load_state_into(model: nn.Module, state, *, name: str, where: str) -> None:
    """Load a state dict into `model` (built by build_model(name, ...)), every key checked.
    Accepts our state dicts and torchvision's (same key names for the ResNets), wrapped or
    DataParallel-prefixed, and a single-head one into an ensemble. A file that does not fit
    raises one ValueError sentence saying what to change."""
    state = unwrap_state_dict(state)
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{where} does not hold a state dict of tensors; pass a torchvision "
                         f"or genint-fast weights file")
    arch = guess_architecture(state)
    key, w = _classifier_rows(state)
    last = _final_linear(model)
    if arch == name and key is not None and w.shape[0] != last.out_features \
            and w.shape[1] == last.in_features:
        raise ValueError(f"{where} has {w.shape[0]} classes ({key} is {tuple(w.shape)}) but "
                         f"the model has {last.out_features}; set num_classes={w.shape[0]}")
    if isinstance(model, EnsembleModel) and not any(k.startswith("heads.") for k in state):
        state = _to_ensemble(model, state)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or shapes:
        what = f" (it holds {arch} weights)" if arch and arch != name else ""
        detail = ", ".join(part for part in (
            f"{len(missing)} missing key(s) e.g. {missing[0]}" if missing else "",
            f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}" if unexpected else "",
            f"{len(shapes)} shape mismatch(es) e.g. {shapes[0]} {tuple(state[shapes[0]].shape)}"
            f" vs {tuple(want[shapes[0]].shape)}" if shapes else "") if part)
        fix = (f"set model={arch} or pass {name} weights" if arch in MODEL_NAMES
               else f"pass {name} weights")
        raise ValueError(f"{where} does not fit the model {name}{what}: {detail}; {fix}")
    model.load_state_dict(state, strict=True)


MODEL_NAMES = ("smallcnn", "resnet18", "resnet50", "resnet152")
