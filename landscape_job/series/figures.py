"""The figures of a series file: sharpness flow, tail index, gradient share, eigenvalue spectra.

* ``series_sharpness_flow``: the loss over the steps above; below, the top-k Hessian
  eigenvalues over the steps (λ1 bold) and the stability threshold (2 + 2β)/η dashed,
  the picture of Cohen et al. (ICLR 2021): progressive sharpening up to the line, then
  the edge of stability along it.
* ``series_tail_index``: the gradient noise's α over the steps (2 is Gaussian), per
  tensor too when measured.
* ``series_gradient_share``: the share of ‖∇L‖² in the top-k eigen-subspace.
* ``series_spectrum``: the top-k eigenvalues by rank at chosen steps (``series.plot_steps``;
  default the first, middle and last), with the threshold.
* ``series_density`` (``series.metrics: density``): the eigenvalue density by stochastic
  Lanczos quadrature over the steps, log φ(λ) as a heat map, λ1 and 2/η on it: the
  outliers leave the bulk; ``series_density_steps``: φ at the chosen steps on a log axis;
  ``series_trace``: tr(H) over the steps.

A figure whose datasets the file lacks is not drawn. Each is saved in ``plot.formats``' figure
formats by the surface's saver (``plots.style.save``: reproducible bytes).
Matplotlib's object API (no pyplot): merge runs this in a pod without a display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from landscape_job.plots.options import PlotOptions
from landscape_job.plots.style import NotebookFigure, save
from landscape_job.series.file import Series

def threshold_label(series: Series) -> str:
    momentum = float(series.attrs.get("momentum", 0.0) or 0.0)
    return ("2/η" if momentum == 0 else "(2 + 2β)/η") + f" = {series.threshold:.4g}"


def _title(series: Series, what: str) -> str:
    name = series.attrs.get("name", "")
    return f"{name}: {what}" if name else what


def sharpness_flow(series: Series) -> Figure:
    fig = NotebookFigure(figsize=(7.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.4))
    steps = series.steps
    for split, style in (("train", "-"), ("test", "--")):
        if series.has(f"{split}_loss"):
            top.plot(steps, series.data[f"{split}_loss"], style, color="tab:blue", label=f"{split} loss")
    top.set_ylabel("loss")
    if top.lines:
        top.legend(loc="upper right", frameon=False)
    top.set_title(_title(series, "sharpness flow"))
    eigenvalues = series.data["top_eigenvalues"]
    k = eigenvalues.shape[1]
    for i in range(k - 1, -1, -1):
        bottom.plot(steps, eigenvalues[:, i], color="tab:orange" if i == 0 else "0.6",
                    lw=2.0 if i == 0 else 0.8, label="λ1 (sharpness)" if i == 0 else ("λ2..λk" if i == 1 else None))
    bottom.axhline(series.threshold, color="k", ls="--", lw=1.2, label=threshold_label(series))
    bottom.set_xlabel("step")
    bottom.set_ylabel(f"top-{k} Hessian eigenvalues")
    finite = eigenvalues[np.isfinite(eigenvalues)]
    upper = max(series.threshold, float(finite.max()) if finite.size else series.threshold) * 1.1
    bottom.set_ylim(min(0.0, float(finite.min()) if finite.size else 0.0), upper)
    bottom.legend(loc="lower right", frameon=False)
    return fig


def tail_index_figure(series: Series) -> Figure:
    fig = NotebookFigure(figsize=(7.0, 3.5), layout="constrained")
    ax = fig.subplots()
    layers = series.data.get("tail_index_layers")
    if layers is not None:
        names = series.layer_names
        for j in range(layers.shape[1]):
            ax.plot(series.steps, layers[:, j], lw=0.8, alpha=0.7,
                    label=names[j] if j < len(names) and layers.shape[1] <= 8 else None)
    ax.plot(series.steps, series.data["tail_index"], color="k", lw=2.0, label="all coordinates")
    ax.axhline(2.0, color="0.5", ls=":", lw=1.0, label="α = 2: Gaussian (the stable laws' upper limit)")
    finite = series.data["tail_index"][np.isfinite(series.data["tail_index"])]
    ax.set_ylim(0.0, max(2.1, float(finite.max()) + 0.1 if finite.size else 2.1))
    ax.set_xlabel("step")
    ax.set_ylabel("tail index α")
    batch = series.attrs.get("noise_batch_size")
    ax.set_title(_title(series, "gradient-noise tail index" + (f" (batch {batch})" if batch else "")))
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return fig


def gradient_share_figure(series: Series) -> Figure:
    fig = NotebookFigure(figsize=(7.0, 3.5), layout="constrained")
    ax = fig.subplots()
    k = series.data["grad_components"].shape[1] if series.has("grad_components") else "k"
    share = series.data["top_k_share"]
    ax.plot(series.steps, share, color="tab:green", lw=2.0)
    positive = share[np.isfinite(share) & (share > 0)]
    if positive.size and positive.min() < 1e-2:  # stable GD drives it to ~0: only a log scale shows how far
        ax.set_yscale("log")
        ax.set_ylim(max(float(positive.min()) / 2, 1e-16), 2.0)
    else:
        ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel(f"share of ‖∇L‖² in the top-{k} subspace")
    ax.set_title(_title(series, "gradient in the top eigen-directions"))
    return fig


def chosen_rows(series: Series, plot_steps: Sequence[int]) -> list[int]:
    """Rows of the asked steps (the nearest present), else the first, middle and last."""
    steps = series.steps
    if not len(steps):
        return []
    if plot_steps:
        return sorted({int(np.argmin(np.abs(steps - s))) for s in plot_steps})
    return sorted({0, len(steps) // 2, len(steps) - 1})


def spectrum_figure(series: Series, plot_steps: Sequence[int]) -> Figure:
    fig = NotebookFigure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    eigenvalues = series.data["top_eigenvalues"]
    ranks = np.arange(1, eigenvalues.shape[1] + 1)
    for row in chosen_rows(series, plot_steps):
        ax.plot(ranks, eigenvalues[row], "o-", ms=3, label=f"step {int(series.steps[row])}")
    ax.axhline(series.threshold, color="k", ls="--", lw=1.0, label=threshold_label(series))
    ax.set_xlabel("rank i")
    ax.set_ylabel("λi")
    ax.set_title(_title(series, "top of the Hessian spectrum"))
    ax.legend(frameon=False, fontsize="small")
    return fig


def _density_rows(series: Series, row: int) -> tuple[np.ndarray, np.ndarray]:
    probes = int(series.attrs.get("density_probes", 1) or 1)
    nodes, weights = series.data["density_nodes"][row], series.data["density_weights"][row]
    return nodes.reshape(probes, -1), weights.reshape(probes, -1)


def density_flow(series: Series) -> Figure:
    from landscape_job.plots.spectrum import density_flow_figure

    return density_flow_figure(series.steps, series.data["density_nodes"], series.data["density_weights"],
                               int(series.attrs.get("density_probes", 1) or 1),
                               _title(series, "Hessian eigenvalue density over training"),
                               top=series.sharpness if series.has("top_eigenvalues") else None,
                               threshold=series.threshold)


def density_steps_figure(series: Series, plot_steps: Sequence[int]) -> Figure:
    """φ(λ) at the chosen steps, one curve each, on a log axis (the bulk and the outliers apart)."""
    from landscape_job.plots.spectrum import FLOOR, default_sigma, density_grid, smoothed_density

    rows = chosen_rows(series, plot_steps)
    nodes, weights = series.data["density_nodes"], series.data["density_weights"]
    used = nodes[(weights > 0) & np.isfinite(nodes)]
    lo, hi = (float(used.min()), float(used.max())) if used.size else (-1.0, 1.0)
    sigma = default_sigma(lo, hi)
    grid = density_grid(lo, hi, sigma)
    fig = NotebookFigure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for row in rows:
        phi = smoothed_density(*_density_rows(series, row), grid, sigma)
        ax.semilogy(grid, np.maximum(phi, FLOOR), lw=1.3, label=f"step {int(series.steps[row])}")
    ax.axvline(series.threshold, color="k", ls="--", lw=1.0, label=threshold_label(series))
    ax.set_ylim(bottom=FLOOR)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density φ(λ) (log)")
    ax.set_title(_title(series, "Hessian eigenvalue density (SLQ)"))
    ax.legend(frameon=False, fontsize="small")
    return fig


def trace_figure(series: Series) -> Figure:
    fig = NotebookFigure(figsize=(7.0, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(series.steps, series.data["trace"], color="tab:purple", lw=2.0)
    ax.set_xlabel("step")
    ax.set_ylabel("tr(H)")
    ax.set_title(_title(series, "trace of the Hessian (SLQ probes)"))
    return fig


def plot_series(series: Series, out_dir: Path, plot_steps: Sequence[int] = (),
                options: PlotOptions = PlotOptions()) -> list[Path]:
    """Every figure the file's datasets allow, in ``options.formats``; returns the files written.

    ``plot_steps``: the spectrum's steps (default: the file's ``plot_steps`` attribute, the spec's)."""
    plot_steps = list(plot_steps) or list(json.loads(str(series.attrs.get("plot_steps", "[]"))))
    written: list[Path] = []
    if series.has("top_eigenvalues"):
        written += save(sharpness_flow(series), out_dir, "series_sharpness_flow", options)
        written += save(spectrum_figure(series, plot_steps), out_dir, "series_spectrum", options)
    if series.has("tail_index"):
        written += save(tail_index_figure(series), out_dir, "series_tail_index", options)
    if series.has("top_k_share"):
        written += save(gradient_share_figure(series), out_dir, "series_gradient_share", options)
    if series.has("density_nodes"):
        written += save(density_flow(series), out_dir, "series_density", options)
        written += save(density_steps_figure(series, plot_steps), out_dir, "series_density_steps", options)
    if series.has("trace"):
        written += save(trace_figure(series), out_dir, "series_trace", options)
    return written
