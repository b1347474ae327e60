"""Classifiers: a small CNN for 32x32 images and torchvision ResNet-18/50/152."""
from __future__ import annotations

from torch import nn

__all__ = ["SmallCNN", "build_model"]


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


def build_model(name: str, num_classes: int) -> nn.Module:
    if name == "smallcnn":
        return SmallCNN(num_classes)
    import torchvision

    if name in ("resnet18", "resnet50", "resnet152"):
        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}; choose smallcnn, resnet18, resnet50 or resnet152")
