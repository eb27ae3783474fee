"""DenseNet of the paper (densenet121), module for module.

Matches ``cifar10/models/densenet.py`` of github.com/tomgoldstein/loss-landscape (the
kuangliu CIFAR DenseNet): conv1 (3x3, 2*growth channels, no BN after it), dense1..dense4
of pre-activation :class:`Bottleneck` layers (bn1, conv1 1x1 to 4*growth, bn2, conv2 3x3
to growth; output is ``cat([new, input])`` in that order), :class:`Transition` trans1..3
(bn, 1x1 conv, 2x2 average pool, channels halved and floored), then ``bn`` and ``linear``.

Deliberate difference: the final pool is global (adaptive) instead of the paper's fixed
``avg_pool2d(out, 4)``; on 32x32 inputs the last map is 4x4 and the two are identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.models.registry import Builder, Family, image_shape, register

# name -> (blocks per dense stage, growth rate). The paper's file also defines 169/201/161
# and densenet_cifar, but its model_loader.py exposes (and its checkpoints use) only 121.
CONFIGS: dict[str, tuple[tuple[int, int, int, int], int]] = {
    "densenet121": ((6, 12, 24, 16), 32),
}


class Bottleneck(nn.Module):
    """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv, concatenated in front of its input."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv-2x2 average pool between dense stages."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """The paper's ``DenseNet`` with reduction 0.5."""

    def __init__(self, nblocks: Sequence[int], growth_rate: int = 12, reduction: float = 0.5,
                 num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.growth_rate = growth_rate
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, padding=1, bias=False)
        # Assignment order below (dense1, trans1, dense2, ...) is the parameters() order.
        for stage, n in enumerate(nblocks, start=1):
            setattr(self, f"dense{stage}", self._dense_stage(planes, n))
            planes += n * growth_rate
            if stage < len(nblocks):
                out_planes = int(math.floor(planes * reduction))
                setattr(self, f"trans{stage}", Transition(planes, out_planes))
                planes = out_planes
        self.num_stages = len(nblocks)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def _dense_stage(self, in_planes: int, n: int) -> nn.Sequential:
        return nn.Sequential(*[Bottleneck(in_planes + i * self.growth_rate, self.growth_rate) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        for stage in range(1, self.num_stages + 1):
            out = getattr(self, f"dense{stage}")(out)
            if stage < self.num_stages:
                out = getattr(self, f"trans{stage}")(out)
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


def _builder(name: str) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, h, w = image_shape(arch, input_shape)
        if min(h, w) < 8:
            # Three 2x2 average pools: anything smaller vanishes before the classifier.
            raise UserError(f"model.arch: '{arch}' needs images of at least 8x8, the data's are {h}x{w}")
        nblocks, growth = CONFIGS[name]
        return DenseNet(nblocks, growth_rate=growth, num_classes=num_classes, in_channels=c)
    return build


register(Family("densenet", {name: _builder(name) for name in CONFIGS}))
