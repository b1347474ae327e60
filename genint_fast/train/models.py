"""Classifiers: a small CNN for 32x32 images and torchvision ResNet-18/50/152, each with one
head or as CGN's invariant ensemble (a shared backbone and one head per mechanism)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "EnsembleModel", "build_model", "HEADS", "MECHANISMS"]

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
