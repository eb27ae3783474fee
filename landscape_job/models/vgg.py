"""VGG of the paper (vgg9), module for module.

Matches ``cifar10/models/vgg.py`` of github.com/tomgoldstein/loss-landscape: ``features``
is one Sequential of [Conv2d(3x3, bias) - BatchNorm2d - ReLU]* with ceil-mode 2x2 max
pools at the 'M' entries, ``fc`` is Sequential(Linear, BatchNorm1d, ReLU) and
``classifier`` is the final Linear. Keys are therefore ``features.0.weight``,
``features.1.running_mean``, ``fc.0.weight``, ``fc.1.weight``, ``classifier.weight``:
the Sequential indices are part of the checkpoint format, so the layer list must keep
exactly this shape.

Differences from the paper, neither visible on 3x32x32 CIFAR inputs: the input
channels and the spatial size feeding ``fc`` come from the data set's sample shape
(the paper hard-codes 3 and 32), and the number of classes is a parameter (the paper
hard-codes 10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from landscape_job.models.registry import Builder, Family, image_shape, register

# Entries are conv output channels; 'M' is a max pool. The paper's file also defines VGG16
# and VGG19, but its model_loader.py exposes (and its checkpoints use) only vgg9.
CONFIGS: dict[str, list[int | str]] = {
    "vgg9": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"],
}


class VGG(nn.Module):
    """The paper's ``VGG``: conv features, one hidden FC layer with BN, a linear classifier."""

    def __init__(self, config: Sequence[int | str], num_classes: int = 10, in_channels: int = 3,
                 spatial: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, (h, w) = in_channels, spatial
        for entry in config:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            else:
                out = int(entry)
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(channels * h * w, channels), nn.BatchNorm1d(channels),
                                nn.ReLU(inplace=True))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x).flatten(1)
        return self.classifier(self.fc(out))


def _builder(name: str) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, h, w = image_shape(arch, input_shape)
        return VGG(CONFIGS[name], num_classes=num_classes, in_channels=c, spatial=(h, w))
    return build


register(Family("vgg", {name: _builder(name) for name in CONFIGS}))
