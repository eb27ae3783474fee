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

import numpy as np
import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.datasets.builtin import Split, subset_indices
from landscape_job.spec.sections import HessianSpec, Spec
from landscape_job.surface.directions import Directions
from landscape_job.surface.hessian import (
    HessianOperator,
    LanczosResult,
    SpectralDensity,
    TraceEstimate,
    hutchinson_trace,
    lanczos,
    spectral_density,
    unflatten,
)
from landscape_job.surface.losses import BatchFn, batch_fn_sum, batch_loss_sum

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
    #: The API's ``batch_fn`` in place of the forward and ``loss`` (None: ``loss``).
    batch_fn: BatchFn | None = None

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
            if self.batch_fn is not None:
                yield batch_fn_sum(self.batch_fn, self.model, inputs, labels)
            else:
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

    def density(self) -> SpectralDensity | None:
        """The eigenvalue density by SLQ (``hessian.density_steps`` steps, ``density_probes`` probes); None when 0."""
        if self.options.density_steps == 0:
            return None
        return spectral_density(self.operator, self.operator.dim, steps=self.options.density_steps,
                                probes=self.options.density_probes, seed=self.options.seed,
                                dtype=self.operator.dtype, device=self.operator.device)

    def tensor_names(self) -> list[str]:
        """The parameter tensors the Hessian is taken over, by name (``hessian.ignore`` decides)."""
        names = [n for n, _ in self.model.named_parameters()]
        return [names[i] for i in self.indices]

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


def probe_for(model: nn.Module, split: Split, spec: Spec, batch_fn: BatchFn | None = None) -> CurvatureProbe:
    """A probe on the model's own device and dtype (the caller has placed the model)."""
    reference = next(model.parameters())
    batch = spec.hessian.batch_size or spec.compute.batch_size
    return CurvatureProbe(model=model, inputs=split.inputs.to(reference.device, reference.dtype),
                          labels=split.labels.to(reference.device), options=spec.hessian, loss=spec.loss,
                          batch_size=batch, batch_fn=batch_fn)


def centre_analysis(model: nn.Module, split: Split, spec: Spec, two_d: bool,
                    batch_fn: BatchFn | None = None) -> tuple[Directions | None, dict]:
    """At θ*: the extreme eigenvalues and the trace (for the manifest), and the eigen-directions if asked for.

    One Lanczos run gives the sharpness, λmin, the ``TOP_EIGENVALUES`` largest and, for
    ``directions.type: hessian``, the top one or two eigenvectors, so the directions cost
    nothing extra. ``caution`` says when λmin may not be the smallest (``lanczos_caution``).
    """
    probe = probe_for(model, split, spec, batch_fn)
    wants_directions = spec.directions.type == "hessian"
    top_k = (2 if two_d else 1) if wants_directions else 0
    result = probe.extremes(top_k=max(top_k, TOP_EIGENVALUES))
    if wants_directions and len(result.top_vectors) < top_k:
        raise UserError(f"directions.type: hessian: the Hessian at model.checkpoint is not finite on the "
                        f"{spec.hessian.split} split; no eigenvectors to use as directions")
    trace = probe.trace()
    density = probe.density()
    tensors = probe.tensor_names()
    every = [n for n, _ in model.named_parameters()]
    summary = {
        "sharpness": result.max_eig, "max_eig": result.max_eig, "min_eig": result.min_eig,
        "top_eigenvalues": list(result.top_values),
        "trace": None if trace is None else trace.trace,
        "trace_stderr": None if trace is None else trace.stderr,
        "trace_samples": spec.hessian.trace_samples,
        "iterations": result.iterations, "converged": result.converged,
        "residual_max": result.residual_max, "residual_min": result.residual_min,
        "split": spec.hessian.split, "samples": len(split.labels), "ignore": spec.hessian.ignore,
        "parameters": probe.operator.dim,
        # Which tensors: biasbn (the default) leaves out every tensor of dim <= 1 (biases, BatchNorm's affine).
        "tensors": tensors, "excluded": [n for n in every if n not in tensors],
        **({} if density is None else {"density": {"nodes": np.where(density.weights > 0, density.nodes, 0.0).tolist(),
                                                   "weights": density.weights.tolist(),
                                                   "steps": spec.hessian.density_steps,
                                                   "probes": spec.hessian.density_probes}}),
        "caution": lanczos_caution(result, spec.hessian, probe.operator.dim),
    }
    summary["hessian_vector_products"] = probe.operator.products  # after the density's products too
    if not wants_directions:
        return None, summary
    names = [n for n, _ in model.named_parameters()]
    x = probe.as_direction(result.top_vectors[0])
    y = probe.as_direction(result.top_vectors[1]) if two_d else None
    return Directions(dir_type="weights", names=names, x=x, y=y), summary
