"""θ = θ* + a·δ + b·η on a model's own tensors: one point in place, or K points stacked.

The evaluator moves the model through the grid; this keeps θ* (a copy of every moving
tensor) and the directions on the device, and writes a point's weights from θ* each time
(never from the previous point, so no error accumulates along a shard). Only
floating-point tensors move; integer buffers (``num_batches_tracked``) stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape_job.surface.directions import Directions, named_tensors


class Displacement:
    """The model's moving tensors, their values at θ*, and δ (and η) in the tensors' dtypes.

    ``half_weights``: bf16/fp16 weights, whose stacked points are summed in float32 and
    rounded once.
    """

    def __init__(self, model: nn.Module, directions: Directions, device: torch.device, half_weights: bool = False):
        named = named_tensors(model, directions.dir_type)
        if len(named) != len(directions.x):
            raise ValueError(f"directions hold {len(directions.x)} tensors, the model {len(named)}")
        keep = [i for i, (_, t) in enumerate(named) if torch.is_floating_point(t)]
        self.device = device
        self.half_weights = half_weights
        self.names = [named[i][0] for i in keep]
        self.targets = [named[i][1] for i in keep]
        self.centre = [t.detach().clone() for t in self.targets]
        self.dx = [directions.x[i].to(device, self.targets[k].dtype) for k, i in enumerate(keep)]
        self.dy = (None if directions.y is None else
                   [directions.y[i].to(device, self.targets[k].dtype) for k, i in enumerate(keep)])

    def held(self) -> list[torch.Tensor]:
        """What this holds beside the model: θ*'s copy and the directions."""
        return [*self.centre, *self.dx, *(self.dy or [])]

    @torch.no_grad()
    def set(self, a: float, b: float = 0.0) -> None:
        """The model's tensors become θ* + a·δ + b·η."""
        torch._foreach_copy_(self.targets, self.centre)
        if a != 0.0:
            torch._foreach_add_(self.targets, self.dx, alpha=a)
        if b != 0.0 and self.dy is not None:
            torch._foreach_add_(self.targets, self.dy, alpha=b)

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_copy_(self.targets, self.centre)

    @torch.no_grad()
    def stacked(self, points: Sequence[tuple[float, float]]) -> dict[str, torch.Tensor]:
        """θ* + a_k·δ + b_k·η for every point k, stacked on a new leading dimension, by tensor name."""
        a = torch.tensor([p[0] for p in points], dtype=torch.float64)
        b = torch.tensor([p[1] for p in points], dtype=torch.float64)
        stacked = {}
        for i, (name, centre) in enumerate(zip(self.names, self.centre)):
            shape = (len(points),) + (1,) * centre.dim()
            # Half-precision weights: summed in float32 and rounded once.
            work = torch.float32 if self.half_weights else centre.dtype
            value = centre.to(work).unsqueeze(0) + a.to(self.device, work).view(shape) * self.dx[i].to(work).unsqueeze(0)
            if self.dy is not None:
                value = value + b.to(self.device, work).view(shape) * self.dy[i].to(work).unsqueeze(0)
            stacked[name] = value.to(centre.dtype)
        return stacked
