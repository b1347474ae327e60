"""Grad-CAM maps and sheets for the package's classifiers (SmallCNN, ResNet-18/50/152, one head or
CGN's invariant ensemble), computed with torchcam's GradCAM rather than a local reimplementation.

- `gradcam(model, images)`: one map per image, (N, H, W) in [0, 1], upsampled to the image size,
  for the predicted class (or given classes); on an ensemble for the mean prediction or for one
  mechanism head (shape / texture / background).
- `gradcam_sheet(rows, images, labels, path)`: a PNG grid, the images on the first row and one row
  of overlaid maps per named (model, head).

Maps are taken with the model in eval mode (BatchNorm running statistics, no batch dependence, no
statistics update); its train/eval mode is restored afterwards, torchcam's hooks are removed and
no parameter's .grad is touched (torchcam takes the gradient with torch.autograd.grad).
"""
from __future__ import annotations

import os
import tempfile
from difflib import get_close_matches
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classifier.models import MECHANISMS, EnsembleModel

__all__ = ["default_target_layer", "gradcam", "gradcam_sheet", "HEAD_CHOICES"]

HEAD_CHOICES = ("mean",) + MECHANISMS


def _default_normalise(x):
    from ..classifier.normalise import normalise

    return normalise(x)


def _last_relu_after_last_conv(module: nn.Module) -> str | None:
    """Name (inside `module`) of the rectified output of its last Conv2d: the last ReLU after the
    last Conv2d, else that Conv2d itself; None without any Conv2d."""
    conv, relu = None, None
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            conv, relu = name, None
        elif isinstance(m, nn.ReLU) and conv is not None:
            relu = name
    return relu or conv


def default_target_layer(model: nn.Module) -> str:
    """The layer whose feature map Grad-CAM weighs: the last conv feature map.

    SmallCNN -> "features.2.2" (the last block's ReLU: the rectified last conv map, before the
    block's 2x pooling, 8x8 on 32 px images); torchvision ResNets -> "layer4"; an EnsembleModel ->
    the same inside "backbone." (smallcnn: "backbone.features.2.2", ResNets: "backbone.layer4").
    Other nets: the last ReLU after the last Conv2d (or that Conv2d)."""
    if isinstance(model, EnsembleModel):
        return "backbone." + default_target_layer(model.backbone)
    if isinstance(getattr(model, "layer4", None), nn.Module):
        return "layer4"
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        inner = _last_relu_after_last_conv(features)
        if inner is not None:
            return f"features.{inner}"
    name = _last_relu_after_last_conv(model)
    if not name:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to take Grad-CAM at; pass "
                         "target_layer= the name of a layer with a (N, C, h, w) output "
                         "(see model.named_modules()).")
    return name


class _HeadOutput(nn.Module):
    """One mechanism head of an EnsembleModel as a single-output model (what torchcam expects)."""

    def __init__(self, model: EnsembleModel, index: int):
        super().__init__()
        self.model = model
        self.index = index

    def forward(self, x):
        return self.model(x, heads=True)[self.index]


def _as_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
            or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty (N, 3, H, W) tensor, got {shape}; add a batch "
                         "dimension with images[None] or convert channels-last with "
                         ".permute(0, 3, 1, 2).")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1] or uint8, got {images.dtype}; convert "
                         "them with images.float() / 255.")
    x = images.detach().float()
    if not torch.isfinite(x).all() or x.min() < -1e-3 or x.max() > 1 + 1e-3:
        raise ValueError("images must be finite and in [0, 1] (not already normalised); pass the raw "
                         "images and let normalise= map them to the model's input range.")
    return x


def _as_classes(classes, n: int) -> torch.Tensor | None:
    if classes is None:
        return None
    c = torch.as_tensor(classes)
    if c.ndim == 0:
        c = c.expand(n)
    if c.ndim != 1 or c.shape[0] != n or c.is_floating_point() or c.dtype == torch.bool:
        raise ValueError(f"classes must be None or one integer class per image ({n}), got "
                         f"{c.dtype} of shape {tuple(c.shape)}; pass a LongTensor of shape (N,).")
    if n and int(c.min()) < 0:
        raise ValueError("classes must be non-negative class indices; pass a LongTensor of "
                         "class ids in [0, num_classes).")
    return c.long().cpu()


def _resolve(model: nn.Module, head: str, target_layer: str | None):
    """(single-output model for torchcam, target module) after checking head and layer."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}; pass a "
                         "classifier from genint_fast.classifier.models.build_model.")
    if head not in HEAD_CHOICES:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEAD_CHOICES)}.")
    if head == "mean":
        net = model
    elif isinstance(model, EnsembleModel):
        net = _HeadOutput(model, MECHANISMS.index(head))
    else:
        raise ValueError(f"head={head!r} needs an ensemble model (heads='ensemble') but "
                         f"{type(model).__name__} has a single head; use head='mean'.")
    name = default_target_layer(model) if target_layer is None else target_layer
    modules = dict(model.named_modules())
    if not isinstance(name, str) or not name or name not in modules:
        near = get_close_matches(str(name), [k for k in modules if k], n=3)
        hint = f" (closest: {', '.join(near)})" if near else ""
        raise ValueError(f"target layer {name!r} is not a module of {type(model).__name__}{hint}; "
                         "pass a name from model.named_modules() or leave target_layer=None.")
    return net, modules[name]


def _gradcam(model, images, *, classes=None, head="mean", target_layer=None, normalise=None,
             batch_size=64):
    """(maps (N, H, W) in [0, 1], classes used (N,) long on CPU)."""
    try:
        from torchcam.methods import GradCAM
    except ImportError as e:  # pragma: no cover - torchcam is a declared dependency
        raise ImportError("Grad-CAM needs torchcam; install it with pip install 'torchcam>=0.4'.") from e

    x = _as_images(images)
    n, _, h, w = x.shape
    want = _as_classes(classes, n)
    net, layer = _resolve(model, head, target_layer)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    norm = _default_normalise if normalise is None else normalise
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    modes = [(m, m.training) for m in model.modules()]
    maps, used = [], []
    try:
        model.eval()
        for i in range(0, n, int(batch_size)):
            xb = x[i:i + int(batch_size)].to(device)
            # requires_grad on the input keeps a graph to the target layer even when every
            # parameter is frozen (requires_grad=False).
            inp = norm(xb).detach().requires_grad_(True)
            with torch.enable_grad(), GradCAM(net, target_layer=layer) as extractor:
                scores = net(inp)
                if not isinstance(scores, torch.Tensor) or scores.ndim != 2 \
                        or scores.shape[0] != xb.shape[0]:
                    got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores)
                    raise ValueError(f"the model must return (N, num_classes) logits, got {got}; "
                                     "pass a classifier (for an ensemble, head= picks the output).")
                if want is None:
                    cls = scores.detach().argmax(1).cpu()
                else:
                    cls = want[i:i + xb.shape[0]]
                    if int(cls.max()) >= scores.shape[1]:
                        raise ValueError(f"classes must be below the model's {scores.shape[1]} "
                                         "classes; pass class ids in [0, num_classes).")
                cam = extractor(class_idx=cls.tolist(), scores=scores, normalized=True)[0]
            if cam.ndim != 3:
                raise ValueError(f"target layer output gives maps of shape {tuple(cam.shape)}, not "
                                 "(N, h, w); pass a target_layer with a (N, C, h, w) output.")
            cam = F.interpolate(cam[:, None].float(), size=(h, w), mode="bilinear",
                                align_corners=False)[:, 0]
            maps.append(cam.nan_to_num_(0.0).clamp_(0, 1).detach())
            used.append(cls)
    finally:
        for m, training in modes:
            m.training = training
    out = torch.cat(maps).to(images.device)
    return out, torch.cat(used)


def gradcam(model, images, *, classes=None, head="mean", target_layer=None, normalise=None,
            batch_size=64) -> torch.Tensor:
    """Grad-CAM maps of `model` on `images`, one per image: (N, H, W) in [0, 1].

    images: (N, 3, H, W) float in [0, 1] or uint8 (divided by 255); they are passed through
    `normalise` (default: the trainer's, (x - 0.5) / 0.5) before the model.
    classes: None (each image's predicted class), an int, or a LongTensor (N,) of classes.
    head: "mean" (the model's prediction; the only choice for single-head models), or for an
    ensemble "shape" / "texture" / "background" (that head's logits).
    target_layer: a name from model.named_modules(); None -> default_target_layer(model).
    Maps are torchcam's GradCAM (ReLU of the gradient-weighted feature map, min-max normalised per
    image), bilinearly upsampled to H x W. An all-zero map means no positive evidence at that
    layer. The model's train/eval mode is restored and its hooks removed afterwards."""
    return _gradcam(model, images, classes=classes, head=head, target_layer=target_layer,
                    normalise=normalise, batch_size=batch_size)[0]


def _to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def gradcam_sheet(rows, images, labels, path, *, class_names=None, normalise=None,
                  alpha=0.5) -> Path:
    """Write a PNG grid to `path` and return it as a Path: the first row shows the images (titled
    with their labels), then one row per entry of `rows` ({row name: (model, head)}, a bare model
    meaning head "mean") with each image's Grad-CAM map for the predicted class overlaid (torchcam's
    overlay_mask, jet colour map) and the predicted class in the title (green if it equals the
    label, red otherwise). Written atomically (a temporary file in the same folder, then
    os.replace); drawn with matplotlib's Agg canvas, no screen or pyplot state needed."""
    from matplotlib.figure import Figure
    from PIL import Image
    from torchcam.utils import overlay_mask

    if not isinstance(rows, dict) or not rows:
        raise ValueError("rows must be a non-empty dict {row name: (model, head)}; pass e.g. "
                         "{'resnet18': (model, 'mean')}.")
    x = _as_images(images).cpu()
    n, _, h, w = x.shape
    labels = _as_classes(labels, n)
    if labels is None:
        raise ValueError("labels must be one integer class per image; pass a LongTensor of shape (N,).")
    if class_names is not None and len(class_names) <= int(labels.max()):
        raise ValueError(f"class_names has {len(class_names)} names but labels go up to "
                         f"{int(labels.max())}; pass one name per class.")
    if not 0.0 <= float(alpha) < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}.")

    def name(c: int) -> str:
        c = int(c)
        return str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)

    entries = []
    for row, spec in rows.items():
        model, head = (spec, "mean") if isinstance(spec, nn.Module) else (None, None)
        if model is None:
            if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
                raise ValueError(f"rows[{row!r}] must be a (model, head) pair, e.g. (model, 'mean').")
            model, head = spec
        maps, preds = _gradcam(model, x, head=head, normalise=normalise)
        entries.append((str(row), maps.cpu(), preds))

    scale = max(1, 128 // max(h, w))  # small images are drawn larger, pixels kept sharp
    pil = [Image.fromarray(_to_uint8_hwc(img)).resize((w * scale, h * scale), Image.Resampling.NEAREST)
           for img in x]
    fig = Figure(figsize=(1.6 * n + 0.6, 1.8 * (1 + len(entries))), dpi=100)
    axes = fig.subplots(1 + len(entries), n, squeeze=False)
    for j in range(n):
        axes[0, j].imshow(pil[j])
        axes[0, j].set_title(f"label {name(labels[j])}", fontsize=8)
    for i, (row, maps, preds) in enumerate(entries, start=1):
        for j in range(n):
            mask = Image.fromarray(maps[j].numpy().astype(np.float32))  # mode "F"
            axes[i, j].imshow(overlay_mask(pil[j], mask, alpha=float(alpha)))
            ok = int(preds[j]) == int(labels[j])
            axes[i, j].set_title(f"pred {name(preds[j])}", fontsize=8,
                                 color="green" if ok else "red")
    for i, row in enumerate(["images"] + [e[0] for e in entries]):
        axes[i, 0].set_ylabel(row, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
