"""The edge-of-stability example's network and loss (``examples/digits-series.yaml``).

Cohen et al. (ICLR 2021) see progressive sharpening and the edge of stability most
cleanly with a tanh network and the squared error on its raw outputs; the built-in
``mse`` compares softmax outputs (the paper's choice for surfaces), whose curvature
saturates. So the example brings its own, through ``python:`` references.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tanh_mlp(in_features: int = 64, hidden: tuple[int, ...] | list[int] = (32, 32), classes: int = 10) -> nn.Module:
    """flatten -> [Linear -> tanh]* -> Linear, PyTorch's default initialisation."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def half_squared_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """½‖f(x) − onehot(y)‖² per sample, on the raw outputs."""
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return 0.5 * ((logits - target) ** 2).sum(dim=1)
