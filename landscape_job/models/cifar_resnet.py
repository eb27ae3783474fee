"""ResNets of the paper, module for module.

Matches ``cifar10/models/resnet.py`` of github.com/tomgoldstein/loss-landscape:

* :class:`CifarResNet` is the paper's ``ResNet_cifar`` (resnet20/56/110 and the other
  6n+2 depths) and, with ``width=k``, its ``WResNet_cifar`` (wrn56_2, ...): conv1, bn1,
  layer1..layer3 of :class:`BasicBlock`, linear. Shortcuts are the paper's "option B":
  identity where shapes agree, otherwise ``shortcut.0`` (1x1 conv, no bias) and
  ``shortcut.1`` (BatchNorm).
* :class:`ResNet` is the paper's ``ResNet`` (resnet18..resnet152, ImageNet layout run
  on 32x32 CIFAR images): conv1 (64), layer1..layer4, linear.
* ``shortcut=False`` is the paper's ``BasicBlock_noshortcut`` / ``Bottleneck_noshortcut``:
  the block has no ``shortcut`` submodule at all, so its keys are the shortcut model's
  keys minus every ``*.shortcut.*``.

The attribute names and the order in which they are assigned in ``__init__`` are the
contract: they fix the state_dict keys of the released checkpoints and the
``parameters()`` order that the direction files index by position. Do not rename or
reorder them.

One deliberate difference: the final pooling is adaptive (global average) instead of
the paper's fixed ``avg_pool2d(out, 8)`` (``4`` for :class:`ResNet`). On 32x32 inputs
the two are the same operation; on other sizes the paper's code fails, this one runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.models.registry import Builder, Family, image_shape, register


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """The paper's shortcut: empty (identity) unless the shape changes."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs; the paper's ``BasicBlock`` or, with ``shortcut=False``, ``BasicBlock_noshortcut``."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.has_shortcut = shortcut
        if shortcut:
            self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.has_shortcut:
            out = out + self.shortcut(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 block (expansion 4) of the paper's resnet50/101/152."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.has_shortcut = shortcut
        if shortcut:
            self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.has_shortcut:
            # The paper's Bottleneck_noshortcut also skips this final ReLU.
            return F.relu(out + self.shortcut(x))
        return out


Block = type[BasicBlock] | type[Bottleneck]


def _make_stage(block: Block, in_planes: int, planes: int, num_blocks: int, stride: int,
                shortcut: bool) -> tuple[nn.Sequential, int]:
    """One ``layerN``: the first block strides, the rest keep the shape."""
    layers = []
    for s in [stride] + [1] * (num_blocks - 1):
        layers.append(block(in_planes, planes, s, shortcut))
        in_planes = planes * block.expansion
    return nn.Sequential(*layers), in_planes


def cifar_depth_blocks(depth: int) -> int:
    """Blocks per stage for a 6n+2 CIFAR ResNet; ValueError for other depths."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth {depth} is not 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...)")
    return (depth - 2) // 6


class CifarResNet(nn.Module):
    """The paper's ``ResNet_cifar`` (width 1) and ``WResNet_cifar`` (width k): 3 stages of 16k/32k/64k."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: int = 1,
                 shortcut: bool = True) -> None:
        super().__init__()
        n = cifar_depth_blocks(depth)
        planes = 16 * width
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.layer1, c = _make_stage(BasicBlock, planes, 16 * width, n, 1, shortcut)
        self.layer2, c = _make_stage(BasicBlock, c, 32 * width, n, 2, shortcut)
        self.layer3, c = _make_stage(BasicBlock, c, 64 * width, n, 2, shortcut)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


# The paper's ImageNet-layout ResNets (its cifar10/models/resnet.py, ResNet18..ResNet152).
IMAGENET_LAYOUTS: dict[int, tuple[Block, Sequence[int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """The paper's ``ResNet``: 4 stages of 64/128/256/512 (x expansion) on CIFAR-sized input."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: bool = True) -> None:
        super().__init__()
        block, blocks = IMAGENET_LAYOUTS[depth]
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1, c = _make_stage(block, 64, 64, blocks[0], 1, shortcut)
        self.layer2, c = _make_stage(block, c, 128, blocks[1], 2, shortcut)
        self.layer3, c = _make_stage(block, c, 256, blocks[2], 2, shortcut)
        self.layer4, c = _make_stage(block, c, 512, blocks[3], 2, shortcut)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_builder(depth: int, width: int, shortcut: bool) -> Builder:
    """``resnet<depth>`` (width 1) or ``wrn<depth>_<width>`` in the CIFAR layout."""
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, _, _ = image_shape(arch, input_shape)
        if width < 1:
            raise UserError(f"model.arch: '{arch}': width factor {width} must be at least 1")
        try:
            return CifarResNet(depth, num_classes=num_classes, in_channels=c, width=width, shortcut=shortcut)
        except ValueError as e:
            raise UserError(f"model.arch: '{arch}': {e}") from None
    return build


def _imagenet_builder(depth: int, shortcut: bool) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, _, _ = image_shape(arch, input_shape)
        return ResNet(depth, num_classes=num_classes, in_channels=c, shortcut=shortcut)
    return build


def _resnet_names() -> dict[str, Builder]:
    """The names of the paper's model_loader.py."""
    names: dict[str, Builder] = {}
    for depth in IMAGENET_LAYOUTS:
        names[f"resnet{depth}"] = _imagenet_builder(depth, True)
        names[f"resnet{depth}_noshort"] = _imagenet_builder(depth, False)
    for depth in (20, 56, 110):
        names[f"resnet{depth}"] = cifar_builder(depth, 1, True)
    for depth in (20, 32, 44, 56, 110):
        names[f"resnet{depth}_noshort"] = cifar_builder(depth, 1, False)
    names["resnet50_16_noshort"] = cifar_builder(50, 1, False)  # CIFAR layout; "16" is its base width
    return names


def _resnet_from_match(m: re.Match[str]) -> Builder:
    depth, cifar, noshort = int(m[1]), bool(m[2]), bool(m[3])
    if depth in IMAGENET_LAYOUTS and not cifar:
        return _imagenet_builder(depth, not noshort)
    return cifar_builder(depth, 1, not noshort)


register(Family("resnet", _resnet_names(), re.compile(r"resnet(\d+)(_16)?(_noshort)?"), _resnet_from_match))
