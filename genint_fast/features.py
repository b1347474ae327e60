"""Feature networks for style transfer (SPEC section 5): VGG19 and a small VGG-like network.

A feature network is any nn.Module whose forward(x) returns a list of feature maps (B, C, H, W)
for images x (B, 3, H, W) in [0, 1]. LayerFeatures is the one built here: a VGG-style
nn.Sequential with the input normalisation inside, returning the outputs of the named conv
layers (before their ReLU, as in the reference code) and stopping after the last one.

- vgg19_features(): torchvision's VGG19 architecture, weights from a user-given file or
  torchvision's cache (<TORCH_HOME>/hub/checkpoints/vgg19-dcbb9e9d.pth); nothing is downloaded,
  a missing file is one clear FileNotFoundError naming the folder and the file.
- small_vgg(): the same layer layout (conv1_1 .. conv3_1) with 16/32/64 channels, for the
  built-in benchmark; project_small_vgg() trains it in seconds as a classifier on the
  biased-digits data and caches it (or loads it from the cache).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from .io import save_atomic

__all__ = ["REFERENCE_LAYERS", "CONTENT_LAYER", "LayerFeatures", "vgg19_features",
           "vgg19_weights_file", "small_vgg", "train_small_vgg", "project_small_vgg",
           "load_small_vgg", "save_small_vgg", "feature_cache_dir"]

REFERENCE_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")
CONTENT_LAYER = "conv2_2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_names(seq: nn.Sequential) -> dict:
    """{'conv1_1': index, ...}: VGG naming (block = pools seen + 1, i = conv within block)."""
    names, block, i = {}, 1, 0
    for idx, m in enumerate(seq):
        if isinstance(m, nn.Conv2d):
            i += 1
            names[f"conv{block}_{i}"] = idx
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            block, i = block + 1, 0
    return names


class LayerFeatures(nn.Module):
    """Outputs of named conv layers of a VGG-style nn.Sequential, in the order of `layers`.

    Names are "convX_Y" (the conv output, before its ReLU) or "reluX_Y" (the output of the
    first ReLU after convX_Y).

    Input: images (B, 3, H, W) in [0, 1]; they are normalised with (mean, std) first. The
    sequence is cut after the last requested layer; ReLUs are made out-of-place so a returned
    map is the conv output itself. Parameters are frozen and the module is in eval().
    """

    def __init__(self, body: nn.Sequential, layers=REFERENCE_LAYERS, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, name="features"):
        super().__init__()
        names = _conv_names(body)
        conv_only = list(names)
        names.update(_relu_names(body, names))
        layers = tuple(layers)
        if not layers:
            raise ValueError("LayerFeatures needs at least one layer name")
        missing = [n for n in layers if n not in names]
        if missing:
            raise ValueError(f"unknown layer {missing[0]!r}; this network has "
                             f"{', '.join(conv_only)} (and reluX_Y after each convX_Y)")
        last = max(names[n] for n in layers)
        mods = []
        for m in list(body)[: last + 1]:
            mods.append(nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m)
        self.body = nn.Sequential(*mods)
        self.layers = layers
        self.name = name
        self._index = {names[n]: n for n in layers}
        self.channels = [_layer_channels(self.body, names[n]) for n in layers]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):  # always a frozen feature extractor
        return super().train(False)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"features: expected images (B, 3, H, W), got {tuple(x.shape)}")
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        got = {}
        for idx, m in enumerate(self.body):
            h = m(h)
            if idx in self._index:
                got[self._index[idx]] = h
        return [got[n] for n in self.layers]


# ------------------------------------------------------------------------------------- VGG19

def vgg19_weights_file() -> Path:
    """Where torchvision keeps the ImageNet VGG19 weights: <torch.hub.get_dir()>/checkpoints/
    vgg19-dcbb9e9d.pth (TORCH_HOME moves it)."""
    from torchvision.models import VGG19_Weights

    name = os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def vgg19_features(weights="cache", layers=REFERENCE_LAYERS, device="cpu") -> LayerFeatures:
    """VGG19 (torchvision architecture) cut after the last of `layers`, ImageNet normalisation.

    weights: "cache" (torchvision's cache file, never downloaded), a path to a VGG19 state dict
    (torchvision's keys 'features.N.weight', or the features alone 'N.weight'), or None for
    random weights (timing only). Missing weights raise FileNotFoundError at once.
    """
    from torchvision.models import vgg19

    if weights == "cache":
        path = vgg19_weights_file()
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 weights not found: no file {path.name} in {path.parent}; put torchvision's "
                f"vgg19 checkpoint there (or set TORCH_HOME) or pass the weights file explicitly")
    elif weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights file {str(path)!r} does not exist")
    model = vgg19(weights=None)
    body = model.features
    if weights is not None:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or not a state dict
            raise RuntimeError(f"cannot read VGG19 weights from {path} ({type(exc).__name__}: "
                               f"{exc}); pass a torchvision VGG19 state dict") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise RuntimeError(f"{path} does not hold a state dict")
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            feats = dict(state)
        want = body.state_dict()
        missing = [k for k in want if k not in feats]
        if missing:
            raise RuntimeError(f"{path} is not a VGG19 checkpoint: no tensor for "
                               f"features.{missing[0]}")
        bad = [k for k in want if tuple(feats[k].shape) != tuple(want[k].shape)]
        if bad:
            raise RuntimeError(f"{path} is not a VGG19 checkpoint: features.{bad[0]} has shape "
                               f"{tuple(feats[bad[0]].shape)}, VGG19 needs {tuple(want[bad[0]].shape)}")
        body.load_state_dict({k: feats[k] for k in want})
    return LayerFeatures(body, layers, name=f"vgg19:{path.name if weights else 'random'}"
                         ).to(device)


# ------------------------------------------------------------------------- small VGG-like net

SMALL_WIDTHS = (16, 16, 32, 32, 64)


def _small_body(widths=SMALL_WIDTHS) -> nn.Sequential:
    c11, c12, c21, c22, c31 = widths
    return nn.Sequential(
        nn.Conv2d(3, c11, 3, padding=1), nn.ReLU(), nn.Conv2d(c11, c12, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c12, c21, 3, padding=1), nn.ReLU(), nn.Conv2d(c21, c22, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c22, c31, 3, padding=1), nn.ReLU())


def small_vgg(layers=REFERENCE_LAYERS, seed=0, device="cpu", widths=SMALL_WIDTHS,
              state=None) -> LayerFeatures:
    """The small VGG-like network (VGG19's first five conv layers at 16/32/64 channels), random
    weights from `seed` (tests) or a state dict of its body (`state`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        body = _small_body(widths)
    if state is not None:
        body.load_state_dict(state)
    return LayerFeatures(body, layers, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         name=f"small-vgg:{'trained' if state is not None else f'seed={seed}'}"
                         ).to(device)


def train_small_vgg(images, labels, *, steps=300, batch_size=32, lr=3e-3, seed=0,
                    widths=SMALL_WIDTHS, return_accuracy=False):
    """Train the small network's body as a classifier (body + ReLU + global average pool +
    linear) on images (N, 3, H, W) in [0, 1] with int labels; returns the body's state dict
    (and the accuracy on the batches of the last 20 steps with return_accuracy)."""
    if images.dim() != 4 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError("train_small_vgg: need images (N, 3, H, W) and N labels, N >= 1")
    classes = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        body = _small_body(widths)
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1],
                                                                             classes))
    net = nn.Sequential(body, head)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    x_all = (images.float() - 0.5) / 0.25
    hits = []
    for step in range(int(steps)):
        idx = torch.randint(images.shape[0], (batch_size,), generator=g)
        logits = net(x_all[idx])
        loss = nn.functional.cross_entropy(logits, labels[idx])
        if step >= int(steps) - 20:
            hits.append((logits.argmax(1) == labels[idx]).float().mean().item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    state = {k: v.detach().clone() for k, v in body.state_dict().items()}
    if return_accuracy:
        return state, sum(hits) / max(len(hits), 1)
    return state


def feature_cache_dir(cache_dir=None) -> Path:
    """The user cache folder for feature networks: cache_dir, else $GENINT_FAST_CACHE/features,
    else $XDG_CACHE_HOME/genint_fast/features (~/.cache/genint_fast/features)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("GENINT_FAST_CACHE"):
        return Path(os.environ["GENINT_FAST_CACHE"]) / "features"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genint_fast" / "features"


def save_small_vgg(state: dict, path) -> Path:
    path = Path(path)
    save_atomic({"kind": "small-vgg", "widths": list(SMALL_WIDTHS), "state": state}, path)
    return path


def load_small_vgg(path, layers=REFERENCE_LAYERS, device="cpu") -> LayerFeatures:
    """A small VGG saved by save_small_vgg / project_small_vgg."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"small feature network file {str(path)!r} does not exist")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read the small feature network {path} "
                           f"({type(exc).__name__}: {exc}); pass a file written by "
                           "genint_fast.features.save_small_vgg") from None
    if not isinstance(blob, dict) or blob.get("kind") != "small-vgg":
        raise RuntimeError(f"{path} is not a small feature network saved by genint_fast")
    return small_vgg(layers, device=device, widths=tuple(blob["widths"]), state=blob["state"])


def project_small_vgg(cache_dir=None, layers=REFERENCE_LAYERS, device="cpu", *, steps=300,
                      variant="wildlife", seed=0, log=None) -> LayerFeatures:
    """The project's own small feature network: trained as a digit classifier on the
    biased-digits `variant` (rho 0.5, 3000 images, `steps` Adam steps of batch 32, ~86% training accuracy: 20 s to 1.5 min
    on 2 busy cores)
    the first time, then loaded from the cache folder (feature_cache_dir())."""
    key = hashlib.sha1(f"{variant}|{seed}|{steps}|{SMALL_WIDTHS}|lr3e-3|mnist-v3".encode()).hexdigest()[:10]
    path = feature_cache_dir(cache_dir) / f"small_vgg_digits_{variant}_{key}.pt"
    if not path.is_file():
        from .data import make_biased_digits

        if log:
            log(f"training the small feature network on biased digits ({variant}) -> {path}")
        ds = make_biased_digits(variant, "train", rho=0.5, seed=seed, n=3000)
        state, acc = train_small_vgg(ds.float_images(), ds.labels, steps=steps, seed=seed,
                                     return_accuracy=True)
        if log:
            log(f"small feature network: training accuracy {acc:.1%} over the last 20 steps")
        save_small_vgg(state, path)
    return load_small_vgg(path, layers, device)


# -------------------------------------------------------------- reluX_Y names and VGG16

VGG16_PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _relu_names(seq: nn.Sequential, conv_names: dict) -> dict:
    """{'reluX_Y': index}: the first ReLU after convX_Y, before the next conv or pooling."""
    out = {}
    for name, idx in conv_names.items():
        for j in range(idx + 1, len(seq)):
            m = seq[j]
            if isinstance(m, nn.ReLU):
                out["relu" + name[len("conv"):]] = j
                break
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                break
    return out


def _layer_channels(seq: nn.Sequential, idx: int) -> int:
    """Output channels of layer idx: its own for a conv, the nearest conv's before it else."""
    for j in range(idx, -1, -1):
        if isinstance(seq[j], nn.Conv2d):
            return seq[j].out_channels
    raise ValueError(f"no convolution at or before layer {idx}")


def vgg16_weights_file() -> Path:
    """Where torchvision keeps the ImageNet VGG16 weights: <torch.hub.get_dir()>/checkpoints/
    vgg16-397923af.pth (TORCH_HOME moves it)."""
    from torchvision.models import VGG16_Weights

    name = os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _vgg16_body() -> nn.Sequential:
    """torchvision's VGG16 `features` (configuration "D"), built without the 120 M-parameter
    classifier, initialised as torchvision does (Kaiming normal, fan_out; zero biases)."""
    layers, c_in = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(c_in, v, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            c_in = v
    return nn.Sequential(*layers)


def vgg16_features(weights="cache", layers=VGG16_PERCEPTUAL_LAYERS, device="cpu") -> LayerFeatures:
    """VGG16 (torchvision architecture) cut after the last of `layers`, ImageNet normalisation;
    inputs are images in [0, 1]. The default layers are the outputs of the last ReLU of the first
    four blocks (the CGN perceptual loss).

    weights: "cache" (torchvision's cache file vgg16-397923af.pth, never downloaded), a path to a
    VGG16 state dict (torchvision's keys 'features.N.weight', or the features alone 'N.weight'),
    or None for random weights (tests, timing). Missing weights raise FileNotFoundError at once.
    """
    if weights == "cache":
        path = vgg16_weights_file()
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG16 weights not found: no file {path.name} in {path.parent}; put torchvision's "
                f"vgg16 checkpoint there (or set TORCH_HOME) or pass the weights file explicitly")
    elif weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"VGG16 weights file {str(path)!r} does not exist")
    body = _vgg16_body()
    if weights is not None:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or not a state dict
            raise RuntimeError(f"cannot read VGG16 weights from {path} ({type(exc).__name__}: "
                               f"{exc}); pass a torchvision VGG16 state dict") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise RuntimeError(f"{path} does not hold a state dict")
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            feats = dict(state)
        want = body.state_dict()
        missing = [k for k in want if k not in feats]
        if missing:
            raise RuntimeError(f"{path} is not a VGG16 checkpoint: no tensor for "
                               f"features.{missing[0]}")
        bad = [k for k in want if tuple(feats[k].shape) != tuple(want[k].shape)]
        if bad:
            raise RuntimeError(f"{path} is not a VGG16 checkpoint: features.{bad[0]} has shape "
                               f"{tuple(feats[bad[0]].shape)}, VGG16 needs "
                               f"{tuple(want[bad[0]].shape)}")
        body.load_state_dict({k: feats[k] for k in want})
    return LayerFeatures(body, layers, name=f"vgg16:{path.name if weights else 'random'}"
                         ).to(device)


__all__ += ["VGG16_PERCEPTUAL_LAYERS", "vgg16_features", "vgg16_weights_file"]


def transfer_feature_net(spec: str, device="cpu", log=print) -> LayerFeatures:
    """The style-transfer feature net a spec names (grammar: genint_fast.feature_spec)."""
    from .feature_spec import parse_feature_spec

    kind, arg = parse_feature_spec(spec)
    if kind == "small":
        return project_small_vgg(device=device, log=log)
    if kind == "random":
        return small_vgg(seed=arg, device=device)
    if kind == "vgg19":
        return vgg19_features(arg or "cache", device=device)
    return load_small_vgg(arg, device=device)
