"""What a series measures at one checkpoint: loss and accuracy, the top of the Hessian's spectrum,
the gradient's components on it, and the gradient noise's tail index.

The Hessian is the convexity maps' (``curvature.CurvatureProbe``: the mean loss over
``hessian.split``, exact Hessian-vector products, Lanczos with full reorthogonalisation);
the gradient and the noise are taken over the same samples and the same tensors, so the
components cᵢ = ⟨∇L, uᵢ⟩ and the predicted loss change of a GD step at η,

    L(θ − η∇L) − L(θ) ≈ Σᵢ cᵢ² (η²λᵢ/2 − η)      (exact for a quadratic, over the full eigenbasis),

refer to one and the same function. Eigenvector signs are fixed (largest entry positive),
so a cᵢ's sign is the same on every machine.

Gradient noise (Şimşekli et al., ICML 2019): the samples are shuffled (``noise_seed``)
into minibatches of ``noise_batch_size``; each minibatch's mean-loss gradient minus the
full gradient is one noise vector. α comes from ``tail_index`` over all noise coordinates,
vector after vector (a block sums neighbouring coordinates of one minibatch's noise, as
in the seed literature), and per parameter tensor on request. Not coordinate by
coordinate across minibatches: the minibatches of one shuffle partition the samples, so
one coordinate's noise summed over a pass is zero, which would read as a tail far
lighter than it is. Coordinates of very different scales in one block pull α̂ below
the truth (a mixture of scales looks heavy-tailed); the per-tensor α shows it.

``series.noise_estimator: reference`` is the seed's code instead (``reference_noise``):
the samples in their order, in batches of ``noise_batch_size`` with the last partial
batch kept, each batch's mean-loss gradient minus the mean of those batch gradients, and
``tail_index_reference`` over it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.surface.curvature import CurvatureProbe, hessian_parameters
from landscape_job.datasets.builtin import Split
from landscape_job.surface.hessian import flatten
from landscape_job.surface.losses import batch_loss_sum
from landscape_job.spec.series_metrics import SeriesMetric, column_name, registered
from landscape_job.spec.sections import HessianSpec
from landscape_job.spec.series import SeriesSpec
from landscape_job.series.tail_index import estimate

Columns = dict[str, float]
#: The summed loss of the samples at the given indices (a 0-d tensor that autograd can differentiate).
BatchLoss = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Spectrum:
    """The top-k eigenpairs (descending; NaN-padded when fewer were found) and λmin."""

    values: np.ndarray
    vectors: torch.Tensor  # (found, dim), unit rows, signs fixed
    min_eig: float
    iterations: int
    converged: bool


def split_metrics(model: nn.Module, split: Split, loss: str, batch_size: int) -> tuple[float, float]:
    """(mean loss, accuracy in %) over the split, exact whatever the batch size."""
    reference = next(model.parameters())
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(split.labels), batch_size):
            inputs = split.inputs[start:start + batch_size].to(reference.device, reference.dtype)
            labels = split.labels[start:start + batch_size].to(reference.device)
            logits = model(inputs)
            total += float(batch_loss_sum(logits, labels, loss))
            correct += int((logits.argmax(dim=1) == labels).sum())
    n = len(split.labels)
    return total / n, 100.0 * correct / n


def fix_sign(vector: torch.Tensor) -> torch.Tensor:
    """The eigenvector with its largest-magnitude entry positive (an eigenvector's sign is arbitrary)."""
    return vector if float(vector[int(torch.argmax(vector.abs()))]) >= 0 else -vector


def top_spectrum(probe: CurvatureProbe, k: int) -> Spectrum:
    result = probe.extremes(top_k=k)
    values = np.full(k, np.nan)
    values[:len(result.top_values)] = result.top_values
    vectors = (torch.stack([fix_sign(v) for v in result.top_vectors]) if result.top_vectors
               else torch.zeros(0, probe.operator.dim, dtype=probe.operator.dtype))
    return Spectrum(values=values, vectors=vectors, min_eig=result.min_eig, iterations=result.iterations,
                    converged=result.converged)


def full_gradient(params: Sequence[torch.Tensor], batch_loss: BatchLoss, n: int, batch_size: int) -> torch.Tensor:
    """∇ of the mean loss over samples 0..n−1, flat, accumulated batch by batch."""
    total = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
    for start in range(0, n, batch_size):
        total += minibatch_gradient(params, batch_loss, torch.arange(start, min(start + batch_size, n))) \
            * (min(start + batch_size, n) - start)
    return total / n


def minibatch_gradient(params: Sequence[torch.Tensor], batch_loss: BatchLoss, indices: torch.Tensor) -> torch.Tensor:
    """∇ of the mean loss over the samples at ``indices``, flat (zeros for tensors the loss does not touch)."""
    with torch.enable_grad():
        grads = torch.autograd.grad(batch_loss(indices), list(params), allow_unused=True)
    return flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]) / len(indices)


def gradient_columns(gradient: torch.Tensor, spectrum: Spectrum | None, lr: float, k: int) -> Columns:
    """‖∇L‖, and with the spectrum: cᵢ, the top-k share of ‖∇L‖² and each cᵢ²(η²λᵢ/2 − η)."""
    norm = float(gradient.norm())
    out: Columns = {"grad_norm": norm}
    if spectrum is None:
        return out
    found = spectrum.vectors.shape[0]
    c = np.full(k, np.nan)
    c[:found] = (spectrum.vectors.to(gradient.dtype) @ gradient).double().cpu().numpy()
    predicted = c ** 2 * (lr ** 2 * spectrum.values / 2 - lr)
    out["top_k_share"] = float(np.nansum(c ** 2) / norm ** 2) if norm > 0 else float("nan")
    for i in range(k):
        out[column_name("grad_components", i)] = float(c[i])
        out[column_name("predicted_delta", i)] = float(predicted[i])
    return out


def minibatches(n: int, batch_size: int, count: int | None, seed: int) -> list[torch.Tensor]:
    """``count`` minibatches (default: n // batch_size) from seeded shuffles, a fresh shuffle per pass."""
    count = count if count is not None else max(n // batch_size, 2)
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.int64)
    while len(order) < count * batch_size:
        order = torch.cat([order, torch.randperm(n, generator=generator)[: n - n % batch_size or n]])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(count)]


def default_noise(params: Sequence[torch.Tensor], batch_loss: BatchLoss, gradient: torch.Tensor, n: int,
                  series: SeriesSpec) -> np.ndarray:
    """(minibatches, parameters): seeded shuffled minibatches' gradients minus the full gradient."""
    batch = min(series.noise_batch_size, n)
    batches = minibatches(n, batch, series.noise_batches, series.noise_seed)
    noise = np.empty((len(batches), gradient.numel()), dtype=np.float64)
    for row, indices in enumerate(batches):
        noise[row] = (minibatch_gradient(params, batch_loss, indices) - gradient).double().cpu().numpy()
    return noise


def reference_noise(params: Sequence[torch.Tensor], batch_loss: BatchLoss, n: int, batch_size: int) -> np.ndarray:
    """(batches, parameters) as the seed's code forms it: samples 0..n−1 in order (an unshuffled loader),
    the last partial batch kept, each batch's mean-loss gradient minus the mean of the batch gradients
    (their sum over the number of batches, not the full gradient: the partial batch weighs as much as a full one)."""
    rows = [minibatch_gradient(params, batch_loss, torch.arange(start, min(start + batch_size, n))).double()
            for start in range(0, n, batch_size)]
    grads = torch.stack(rows).cpu().numpy()
    return grads - grads.sum(axis=0) / len(rows)


def noise_columns(params: Sequence[torch.Tensor], batch_loss: BatchLoss, gradient: torch.Tensor, n: int,
                  series: SeriesSpec) -> Columns:
    """α of the minibatch gradient noise (all coordinates, and per tensor on request) and its mean norm."""
    estimator = series.noise_estimator
    noise = (reference_noise(params, batch_loss, n, min(series.noise_batch_size, n)) if estimator == "reference"
             else default_noise(params, batch_loss, gradient, n, series))
    out: Columns = {"tail_index": estimate(noise, estimator),
                    "noise_norm": float(np.linalg.norm(noise, axis=1).mean())}
    if series.noise_per_layer:
        start = 0
        for i, p in enumerate(params):
            out[column_name("tail_index_layers", i)] = estimate(noise[:, start:start + p.numel()], estimator)
            start += p.numel()
    return out


def density_columns(probe: CurvatureProbe) -> Columns:
    """The SLQ density's nodes and weights (probe after probe, padded to ``density_steps`` each: node 0,
    weight 0, where the operator is smaller or Lanczos stopped early) and the trace it gives."""
    density = probe.density()
    assert density is not None, "series.metrics density needs hessian.density_steps > 0 (parse_spec checks it)"
    steps = probe.options.density_steps
    nodes = np.zeros((len(density.nodes), steps))
    weights = np.zeros_like(nodes)
    found = density.nodes.shape[1]
    weights[:, :found] = density.weights
    nodes[:, :found] = np.where(density.weights > 0, density.nodes, 0.0)
    out: Columns = {"trace": density.trace}
    out.update({column_name("density_nodes", i): float(v) for i, v in enumerate(nodes.reshape(-1))})
    out.update({column_name("density_weights", i): float(v) for i, v in enumerate(weights.reshape(-1))})
    return out


def model_batch_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss: str) -> BatchLoss:
    """The run's summed loss over the samples at some indices."""
    return lambda indices: batch_loss_sum(model(inputs[indices]), labels[indices], loss)


@dataclass(frozen=True)
class Checkpoint:
    """What a metric of its own (``SeriesMetric(source="own", compute=...)``) is given at one checkpoint.

    ``model`` holds the checkpoint's weights (eval mode, the run's device and dtype);
    ``splits`` are the data splits and ``samples`` the Hessian's (``hessian.split``,
    ``hessian.subset``), as loaded (move them to the model's device); ``split`` is the one
    split a ``split`` metric is computed on, None for the other shapes.
    """

    model: nn.Module
    splits: Sequence[Split]
    samples: Split
    series: SeriesSpec
    hessian: HessianSpec
    loss: str
    batch_size: int
    split: Split | None = None


def row_width(shape: str, series: SeriesSpec, hessian: HessianSpec, layers: int) -> int:
    """The columns of one checkpoint's row of a vector-shaped metric (``top_k``, ``density``, ``layers``;
    ``layers``: the tensors the Hessian is taken over)."""
    return {"top_k": series.top_k, "density": hessian.density_steps * hessian.density_probes,
            "layers": layers}[shape]


def own_columns(metric: SeriesMetric, at: Checkpoint) -> Columns:
    """A metric's own ``compute`` at one checkpoint, as its shard columns; a row of the wrong width is the
    metric's code's mistake (every checkpoint's row must have the columns the evaluator announced), so a
    ``UserError``: one line and exit 2, where a ValueError was a traceback, exit 1 and retried to no end."""
    assert metric.compute is not None
    if metric.shape == "split":
        return {f"{split.name}_{metric.key}": float(metric.compute(replace(at, split=split)))  # type: ignore[arg-type]
                for split in at.splits}
    if metric.shape == "scalar":
        return {metric.key: float(metric.compute(at))}  # type: ignore[arg-type]
    values = np.asarray(metric.compute(at), dtype=np.float64).reshape(-1)
    width = row_width(metric.shape, at.series, at.hessian, len(hessian_parameters(at.model, at.hessian.ignore)))
    if len(values) != width:
        raise UserError(f"series metric {metric.key}: compute gave {len(values)} values; a {metric.shape} row "
                        f"has {width}: return one value per column")
    return {column_name(metric.key, i): float(v) for i, v in enumerate(values)}


def measure(model: nn.Module, splits: Sequence[Split], samples: Split, series: SeriesSpec, hessian: HessianSpec,
            loss: str, batch_size: int, metric_keys: set[str]) -> Columns:
    """All chosen columns at the model's current weights (``metric_keys``: the registry's keys on):
    the shared probes' first, then each metric's own, in registry order."""
    out = probe_columns(model, splits, samples, series, hessian, loss, batch_size, metric_keys)
    own = [m for m in registered() if m.key in metric_keys and m.compute is not None]
    if own:
        at = Checkpoint(model, splits, samples, series, hessian, loss, batch_size)
        for metric in own:
            out.update(own_columns(metric, at))
    return out


def probe_columns(model: nn.Module, splits: Sequence[Split], samples: Split, series: SeriesSpec,
                  hessian: HessianSpec, loss: str, batch_size: int, metric_keys: set[str]) -> Columns:
    """The columns of the shared probes (``source`` other than ``own``), each run at most once."""
    out: Columns = {}
    if metric_keys & {"loss", "acc"}:
        for split in splits:
            mean_loss, accuracy = split_metrics(model, split, loss, batch_size)
            if "loss" in metric_keys:
                out[f"{split.name}_loss"] = mean_loss
            if "acc" in metric_keys:
                out[f"{split.name}_acc"] = accuracy
    if not metric_keys & {"top_eigenvalues", "grad_norm", "tail_index", "density_nodes"}:
        return out
    reference = next(model.parameters())
    probe = CurvatureProbe(model=model, inputs=samples.inputs.to(reference.device, reference.dtype),
                           labels=samples.labels.to(reference.device), options=hessian, loss=loss,
                           batch_size=batch_size)
    spectrum = None
    if "top_eigenvalues" in metric_keys:
        spectrum = top_spectrum(probe, series.top_k)
        out.update({column_name("top_eigenvalues", i): float(v) for i, v in enumerate(spectrum.values)})
        out.update({"min_eig": spectrum.min_eig, "lanczos_iterations": float(spectrum.iterations),
                    "lanczos_converged": float(spectrum.converged)})
    if "density_nodes" in metric_keys:
        out.update(density_columns(probe))
    if not metric_keys & {"grad_norm", "tail_index"}:
        return out
    batch_loss = model_batch_loss(model, probe.inputs, probe.labels, loss)
    n = len(probe.labels)
    gradient = full_gradient(probe.params, batch_loss, n, batch_size)
    if "grad_norm" in metric_keys:
        out.update(gradient_columns(gradient, spectrum if "grad_components" in metric_keys else None,
                                    series.lr, series.top_k))
    if "tail_index" in metric_keys:
        out.update(noise_columns(probe.params, batch_loss, gradient, n, series))
    return out
