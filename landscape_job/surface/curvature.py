"""The Hessian of a model's mean loss over a data split: the glue between a network and ``hessian``.

The Hessian is taken with respect to the model's parameters (``parameters()`` order),
all of them or only those of dim > 1 (``hessian.ignore: biasbn``, the paper's choice:
biases and BatchNorm affine parameters are held fixed). The model is in eval mode, so
BatchNorm uses its running statistics and the loss is a fixed function of the weights.
No autocast: a bf16 run still takes its Hessian in the model's own dtype, since a
second derivative through bf16 rounding is noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.datasets.builtin import Split, subset_indices
from landscape_job.spec.sections import HessianSpec, Spec
from landscape_job.surface.directions import Directions
from landscape_job.surface.hessian import (
    HessianOperator,
    LanczosResult,
    TraceEstimate,
    hutchinson_trace,
    lanczos,
    unflatten,
)
from landscape_job.surface.losses import batch_loss_sum

#: The largest eigenvalues recorded at θ* (``top_eigenvalues``), whatever the directions.
TOP_EIGENVALUES = 3
#: A Lanczos tolerance looser than this can stop on a Ritz value before the spectrum's end is
#: found: λmin ≈ 0 after a handful of steps (README, "Curvature"), so the run says so.
SAFE_TOLERANCE = 1e-3


def lanczos_caution(result: LanczosResult, options: HessianSpec, dim: int) -> str | None:
    """Why the extreme eigenvalues of one Lanczos run may be off, in a line; None when they are sound."""
    if result.iterations >= dim:
        return None  # T is the whole operator: exact
    if not result.converged:
        return (f"Lanczos stopped at hessian.iterations ({result.iterations}) before its residual test; "
                f"raise hessian.iterations")
    if options.tolerance > SAFE_TOLERANCE:
        return (f"λmin after {result.iterations} Lanczos steps at hessian.tolerance {options.tolerance:g} (looser "
                f"than {SAFE_TOLERANCE:g}) may not be the smallest eigenvalue; use {SAFE_TOLERANCE:g} or tighter "
                f"where its sign matters")
    return None


def hessian_parameters(model: nn.Module, ignore: str) -> list[int]:
    """Indices (in ``parameters()`` order) of the tensors the Hessian is taken over."""
    params = list(model.parameters())
    chosen = [i for i, p in enumerate(params) if ignore == "none" or p.dim() > 1]
    if not chosen:
        raise UserError(f"hessian.ignore: {ignore} leaves no parameter of this model; use ignore: none")
    return chosen


@dataclass
class CurvatureProbe:
    """The Hessian of the model's mean loss on one split, at whatever θ the model holds now.

    ``inputs``/``labels`` live on the model's device and dtype; call it any number of
    times while the caller moves θ in place (the Evaluator's ``set_point``).
    """

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    options: HessianSpec
    loss: str
    batch_size: int

    def __post_init__(self) -> None:
        params = list(self.model.parameters())
        self.indices = hessian_parameters(self.model, self.options.ignore)
        self.params = [params[i] for i in self.indices]
        for p in self.params:
            p.requires_grad_(True)
        self.operator = HessianOperator(self.params, self._loss_terms, normaliser=float(len(self.labels)))

    def _loss_terms(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.labels), self.batch_size):
            inputs = self.inputs[start:start + self.batch_size]
            labels = self.labels[start:start + self.batch_size]
            yield batch_loss_sum(self.model(inputs), labels, self.loss)

    def extremes(self, top_k: int = 0) -> LanczosResult:
        return lanczos(self.operator, self.operator.dim, iterations=self.options.iterations,
                       tolerance=self.options.tolerance, seed=self.options.seed, top_k=top_k,
                       dtype=self.operator.dtype, device=self.operator.device)

    def trace(self) -> TraceEstimate | None:
        if self.options.trace_samples == 0:
            return None
        return hutchinson_trace(self.operator, self.operator.dim, samples=self.options.trace_samples,
                                seed=self.options.seed, dtype=self.operator.dtype, device=self.operator.device)

    def as_direction(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """A flat eigenvector as one tensor per parameter, zeros on the tensors left out."""
        params = list(self.model.parameters())
        parts = dict(zip(self.indices, unflatten(vector, self.params)))
        return [parts[i].detach().float().cpu().clone() if i in parts else torch.zeros(p.shape)
                for i, p in enumerate(params)]


def hessian_split(spec: Spec) -> Split:
    """The samples the Hessian is taken over: ``hessian.split``, subset by ``hessian.subset`` or ``data.subset``."""
    from landscape_job.datasets.builtin import load_split

    h = spec.hessian
    if h.subset is None:
        return load_split(spec.data, h.split)
    full = load_split(replace(spec.data, subset=None), h.split)
    if h.subset > len(full.labels):
        raise UserError(f"hessian.subset: {h.subset} is larger than the {h.split} split "
                        f"({len(full.labels)} samples); lower it or drop it")
    chosen = subset_indices(len(full.labels), h.subset, h.subset_seed)
    return Split(inputs=full.inputs[chosen], labels=full.labels[chosen], num_classes=full.num_classes, name=full.name)


def probe_for(model: nn.Module, split: Split, spec: Spec) -> CurvatureProbe:
    """A probe on the model's own device and dtype (the caller has placed the model)."""
    reference = next(model.parameters())
    batch = spec.hessian.batch_size or spec.compute.batch_size
    return CurvatureProbe(model=model, inputs=split.inputs.to(reference.device, reference.dtype),
                          labels=split.labels.to(reference.device), options=spec.hessian, loss=spec.loss,
                          batch_size=batch)


def centre_analysis(model: nn.Module, split: Split, spec: Spec, two_d: bool) -> tuple[Directions | None, dict]:
    """At θ*: the extreme eigenvalues and the trace (for the manifest), and the eigen-directions if asked for.

    One Lanczos run gives the sharpness, λmin, the ``TOP_EIGENVALUES`` largest and, for
    ``directions.type: hessian``, the top one or two eigenvectors, so the directions cost
    nothing extra. ``caution`` says when λmin may not be the smallest (``lanczos_caution``).
    """
    probe = probe_for(model, split, spec)
    wants_directions = spec.directions.type == "hessian"
    top_k = (2 if two_d else 1) if wants_directions else 0
    result = probe.extremes(top_k=max(top_k, TOP_EIGENVALUES))
    if wants_directions and len(result.top_vectors) < top_k:
        raise UserError(f"directions.type: hessian: the Hessian at model.checkpoint is not finite on the "
                        f"{spec.hessian.split} split; no eigenvectors to use as directions")
    trace = probe.trace()
    summary = {
        "sharpness": result.max_eig, "max_eig": result.max_eig, "min_eig": result.min_eig,
        "top_eigenvalues": list(result.top_values),
        "trace": None if trace is None else trace.trace,
        "trace_stderr": None if trace is None else trace.stderr,
        "trace_samples": spec.hessian.trace_samples,
        "iterations": result.iterations, "converged": result.converged,
        "residual_max": result.residual_max, "residual_min": result.residual_min,
        "split": spec.hessian.split, "samples": len(split.labels), "ignore": spec.hessian.ignore,
        "parameters": probe.operator.dim, "hessian_vector_products": probe.operator.products,
        "caution": lanczos_caution(result, spec.hessian, probe.operator.dim),
    }
    if not wants_directions:
        return None, summary
    names = [n for n, _ in model.named_parameters()]
    x = probe.as_direction(result.top_vectors[0])
    y = probe.as_direction(result.top_vectors[1]) if two_d else None
    return Directions(dir_type="weights", names=names, x=x, y=y), summary
