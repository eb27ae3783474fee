"""Small networks for the embedded default and for tests.

These have no counterpart in the paper's repository; they exist so that a landscape
can be computed in seconds on a laptop (scikit-learn digits, MNIST-sized inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """flatten -> [Linear -> ReLU]* -> Linear.

    A bias-carrying MLP has tensors of dim 1 and 2 only, which exercises the
    ``ignore: biasbn`` branch of filter normalisation without any BatchNorm.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (64,)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """conv-BN-ReLU-conv-BN-ReLU-adaptive pool(2)-linear.

    BatchNorm is there on purpose: it gives the model running statistics, so that
    ``dir_type: weights`` and ``dir_type: states`` produce different directions even on
    the tiny default problem. The adaptive pool makes it run on 8x8, 28x28 and 32x32.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.linear = nn.Linear(c2 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.pool(out).flatten(1)
        return self.linear(out)


def flat_size(input_shape: Sequence[int]) -> int:
    """Number of input features once a sample is flattened."""
    return int(math.prod(input_shape))
