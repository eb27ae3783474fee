"""Wide ResNets of the paper (wrn56_2, wrn56_4, wrn56_8, wrn110_2_noshort, ...).

The paper's ``WResNet_cifar`` (``cifar10/models/resnet.py`` of
github.com/tomgoldstein/loss-landscape) is its ``ResNet_cifar`` with every channel count
multiplied by k: the same module names (conv1, bn1, layer1..3, linear) and the same
option-B shortcuts. So it is built here as :class:`CifarResNet` with ``width=k`` rather
than as a second class that could drift from the first. Note that these are *not* the
Zagoruyko-Komodakis WRNs (no pre-activation, no dropout, 16k first conv).
"""

from __future__ import annotations

import re

from landscape_job.models.cifar_resnet import CifarResNet, cifar_builder
from landscape_job.models.registry import Builder, Family, register


def wide_resnet(depth: int, k: int, num_classes: int, in_channels: int, shortcut: bool = True) -> CifarResNet:
    """``wrn<depth>_<k>``: a 6n+2-deep CIFAR ResNet k times as wide."""
    if k < 1:
        raise ValueError(f"width factor {k} must be at least 1")
    return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels, width=k, shortcut=shortcut)


def _names() -> dict[str, Builder]:
    names: dict[str, Builder] = {}
    for k in (2, 4, 8):
        names[f"wrn56_{k}"] = cifar_builder(56, k, True)
        names[f"wrn56_{k}_noshort"] = cifar_builder(56, k, False)
    for k in (2, 4):
        names[f"wrn110_{k}_noshort"] = cifar_builder(110, k, False)
    return names


register(Family("wrn", _names(), re.compile(r"wrn(\d+)_(\d+)(_noshort)?"),
                lambda m: cifar_builder(int(m[1]), int(m[2]), not m[3])))
