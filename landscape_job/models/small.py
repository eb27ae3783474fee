"""Small networks for the embedded default and for tests.

These have no counterpart in the paper's repository; they exist so that a landscape
can be computed in seconds on a laptop (scikit-learn digits, MNIST-sized inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.models.registry import Family, image_shape, register


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


def _mlp(arch: str, num_classes: int, input_shape: tuple[int, ...], hidden: int | list[int] = 64) -> nn.Module:
    widths = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if not isinstance(widths, (list, tuple)) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in widths):
        raise UserError(f"model.kwargs.hidden: expected a positive integer or a list of them, got {hidden!r}")
    return MLP(flat_size(input_shape), num_classes, hidden=list(widths))


def _cnn(arch: str, num_classes: int, input_shape: tuple[int, ...], channels: Sequence[int] = (16, 32)) -> nn.Module:
    c, _, _ = image_shape(arch, input_shape)
    if not (isinstance(channels, (list, tuple)) and len(channels) == 2
            and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in channels)):
        raise UserError(f"model.kwargs.channels: expected two positive integers like [16, 32], got {channels!r}")
    return SmallCNN(c, num_classes, channels=tuple(channels))


register(Family("small", {"mlp": _mlp, "cnn": _cnn}))
