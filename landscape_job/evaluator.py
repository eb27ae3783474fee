"""Loss and accuracy of θ* + a·δ + b·η, one grid point at a time.

A grid point is one forward pass over each split; nothing else should cost anything.
So the data is decoded and normalised once and kept on the device, the directions
live on the device next to the weights, and each point sets θ in place from a saved
copy of θ* with fused foreach operations (recomputed from θ* each time, so no error
accumulates over thousands of points). Loss is the exact mean over the split, summed
in float64.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from landscape_job.curvature import CurvatureProbe
from landscape_job.data import Split
from landscape_job.directions import Directions, named_tensors
from landscape_job.spec import DEFAULT_METRICS, HessianSpec


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from landscape_job.errors import UserError

        raise UserError("compute.device: cuda was asked for but no CUDA device is visible; use auto or cpu")
    return torch.device(name)


def configure_precision(precision: str) -> None:
    """TF32 only when asked for: fp32 must mean fp32 on Ampere and later too."""
    allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32


def batch_loss_sum(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Summed loss of a batch; ``mse`` compares softmax outputs with one-hot labels, as the paper does."""
    logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
    if loss == "cross_entropy":
        return F.cross_entropy(logits, labels, reduction="sum")
    if loss == "mse":
        one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return ((F.softmax(logits, dim=1) - one_hot) ** 2).mean(dim=1).sum()
    if loss.startswith("python:"):
        from landscape_job.losses import custom_loss_sum

        return custom_loss_sum(logits, labels, loss)
    raise ValueError(f"unknown loss {loss!r}")


@dataclass
class _DeviceSplit:
    name: str
    inputs: torch.Tensor
    labels: torch.Tensor

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), batch_size):
            yield self.inputs[start:start + batch_size], self.labels[start:start + batch_size]


class Evaluator:
    """Evaluates the model at points of the plane spanned by the directions through θ*."""

    def __init__(self, model: nn.Module, directions: Directions, splits: list[Split], *,
                 loss: str = "cross_entropy", precision: str = "fp32", batch_size: int = 1024,
                 device: torch.device | str = "cpu", metrics: tuple[str, ...] = DEFAULT_METRICS,
                 hessian: HessianSpec | None = None, hessian_split: Split | None = None):
        self.device = torch.device(device)
        self.loss = loss
        self.precision = precision
        self.batch_size = batch_size
        dtype = torch.float64 if precision == "fp64" else torch.float32
        configure_precision(precision)
        self.model = model.to(self.device, dtype).eval()
        self.splits = [_DeviceSplit(s.name, s.inputs.to(self.device, dtype), s.labels.to(self.device))
                       for s in splits]
        named = named_tensors(self.model, directions.dir_type)
        if len(named) != len(directions.x):
            raise ValueError(f"directions hold {len(directions.x)} tensors, the model {len(named)}")
        # Only floating-point tensors move; integer buffers (num_batches_tracked) stay.
        keep = [i for i, (_, t) in enumerate(named) if torch.is_floating_point(t)]
        self._targets = [named[i][1] for i in keep]
        self._centre = [t.detach().clone() for t in self._targets]
        self._dx = [directions.x[i].to(self.device, self._targets[k].dtype) for k, i in enumerate(keep)]
        self._dy = (None if directions.y is None else
                    [directions.y[i].to(self.device, self._targets[k].dtype) for k, i in enumerate(keep)])
        self._kinds = [k for m, k in (("loss", "loss"), ("accuracy", "acc")) if m in metrics]
        if not self._kinds:
            self.splits = []  # metrics: [hessian] alone needs no forward pass over the splits
        self.curvature: CurvatureProbe | None = None
        #: Points whose Lanczos run hit hessian.iterations before its tolerance.
        self.unconverged = 0
        if "hessian" in metrics:
            if hessian is None or hessian_split is None:
                raise ValueError("metrics has hessian but no hessian options or split were given")
            self.curvature = CurvatureProbe(
                model=self.model, inputs=hessian_split.inputs.to(self.device, dtype),
                labels=hessian_split.labels.to(self.device), options=hessian, loss=loss,
                batch_size=hessian.batch_size or batch_size)

    def metric_names(self) -> list[str]:
        names = [f"{s.name}_{m}" for s in self.splits for m in self._kinds]
        return names + (["max_eig", "min_eig"] if self.curvature is not None else [])

    @torch.no_grad()
    def set_point(self, a: float, b: float = 0.0) -> None:
        """θ = θ* + a·δ + b·η, computed from θ* (not from the previous point)."""
        torch._foreach_copy_(self._targets, self._centre)
        if a != 0.0:
            torch._foreach_add_(self._targets, self._dx, alpha=a)
        if b != 0.0 and self._dy is not None:
            torch._foreach_add_(self._targets, self._dy, alpha=b)

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_copy_(self._targets, self._centre)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _evaluate_split(self, split: _DeviceSplit) -> tuple[float, float]:
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        with self._autocast():
            for inputs, labels in split.batches(self.batch_size):
                logits = self.model(inputs)
                total += batch_loss_sum(logits, labels, self.loss).double()
                correct += (logits.argmax(dim=1) == labels).sum()
        n = len(split.labels)
        # One synchronisation per split, not per batch.
        return total.item() / n, 100.0 * correct.item() / n

    def evaluate(self, a: float, b: float = 0.0) -> dict[str, float]:
        """Mean loss and accuracy (percent) on every split at (a, b); inf/NaN are kept, not raised."""
        self.set_point(a, b)
        try:
            results: dict[str, float] = {}
            for split in self.splits:
                loss, acc = self._evaluate_split(split)
                values = {"loss": loss, "acc": acc}
                for kind in self._kinds:
                    results[f"{split.name}_{kind}"] = values[kind]
            if self.curvature is not None:
                # Gradients are enabled inside the probe only; the extremes come from
                # θ as set_point left it.
                found = self.curvature.extremes()
                self.unconverged += int(not found.converged and found.max_eig == found.max_eig)  # NaN: diverged, not slow
                results["max_eig"] = found.max_eig
                results["min_eig"] = found.min_eig
            return results
        finally:
            self.restore()
