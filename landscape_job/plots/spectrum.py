"""The Hessian's eigenvalue density: the figures of Ghorbani, Krishnan and Xiao (ICML 2019).

Stochastic Lanczos quadrature (``surface.hessian.spectral_density``) gives, per probe,
Gauss nodes θ_j and weights w_j; the density is drawn as the papers draw it: each node a
Gaussian of width σ, averaged over the probes, on a log density axis (the bulk near 0
is orders of magnitude denser than the few outliers a network's loss has).

* ``density_figure``: one density (θ* of a surface, the API's ``Curvature.density``);
* ``density_flow_figure``: a series' densities over the training steps, a heat map of
  log φ(λ) per step with the outliers (the top eigenvalue) and the threshold 2/η on it:
  the outliers leave the bulk as training goes on.

Plain numpy and matplotlib (no torch): a merge draws these from ``series.h5``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from landscape_job.plots.style import FIGSIZE_1D, new_figure

__all__ = ["smoothed_density", "default_sigma", "density_grid", "density_figure", "density_flow_figure"]

#: The density's floor on the log axis: below it φ is numerical nothing.
FLOOR = 1e-8


def smoothed_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """φ(λ) on ``grid``: Σ_j w_j N(λ; θ_j, σ²) per probe (a row), the mean over probes with any weight."""
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    grid = np.asarray(grid, dtype=np.float64)
    out = np.zeros_like(grid)
    rows = 0
    for theta, w in zip(nodes, weights):
        keep = (w > 0) & np.isfinite(theta)
        if not keep.any():
            continue
        rows += 1
        diff = grid[:, None] - theta[keep][None, :]
        out += (w[keep] * np.exp(-0.5 * (diff / sigma) ** 2)).sum(axis=1)
    return out / (max(rows, 1) * sigma * math.sqrt(2 * math.pi)) if rows else np.full_like(grid, np.nan)


def _span(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    used = np.asarray(nodes)[(np.asarray(weights) > 0) & np.isfinite(nodes)]
    return (float(used.min()), float(used.max())) if used.size else (-1.0, 1.0)


def default_sigma(lo: float, hi: float) -> float:
    """σ = 1% of the spectrum's width (Ghorbani et al. smooth with a width small against it)."""
    return max((hi - lo) * 0.01, 1e-12)


def density_grid(lo: float, hi: float, sigma: float, points: int = 1200) -> np.ndarray:
    return np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)


def density_figure(nodes: np.ndarray, weights: np.ndarray, title: str, *, sigma: float | None = None,
                   dpi: int = 150, threshold: float | None = None) -> Figure:
    """φ(λ) on a log axis with the largest node marked; ``threshold`` (2/η) dashed when given."""
    lo, hi = _span(nodes, weights)
    sigma = sigma or default_sigma(lo, hi)
    grid = density_grid(lo, hi, sigma)
    phi = smoothed_density(nodes, weights, grid, sigma)
    fig = new_figure(FIGSIZE_1D, dpi)
    ax = fig.add_subplot()
    ax.semilogy(grid, np.maximum(phi, FLOOR), color="#0072B2", lw=1.6)
    ax.fill_between(grid, FLOOR, np.maximum(phi, FLOOR), color="#0072B2", alpha=0.15)
    ax.axvline(hi, color="#D55E00", lw=1.0, ls=":", label=f"largest node {hi:.4g} (≈ λmax)")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="k", lw=1.0, ls="--", label=f"2/η = {threshold:.4g}")
    ax.set_ylim(FLOOR, max(float(np.nanmax(phi)) * 3, FLOOR * 10) if np.isfinite(phi).any() else 1.0)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density φ(λ) (log)")
    probes, steps = np.atleast_2d(nodes).shape
    ax.set_title(title)
    ax.legend(loc="upper center", fontsize=8)
    fig.supxlabel(f"stochastic Lanczos quadrature: {probes} probes × {steps} steps, σ = {sigma:.3g}",
                  fontsize=7.5, color="0.35", ha="right", x=0.99)
    return fig


def density_flow_figure(steps: Sequence[int], nodes: np.ndarray, weights: np.ndarray, probes: int, title: str, *,
                        top: np.ndarray | None = None, threshold: float | None = None, dpi: int = 150) -> Figure:
    """log10 φ(λ) at each step (rows of ``nodes``/``weights``: (n, probes·m), probe after probe) as a heat
    map over (step, λ); the top eigenvalue (``top``, when measured) and the threshold on it."""
    steps = np.asarray(steps)
    nodes, weights = np.asarray(nodes, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    lo, hi = _span(nodes, weights)
    sigma = default_sigma(lo, hi)
    grid = density_grid(lo, hi, sigma, points=400)
    m = nodes.shape[1] // max(probes, 1)
    image = np.stack([smoothed_density(row_n.reshape(probes, m), row_w.reshape(probes, m), grid, sigma)
                      for row_n, row_w in zip(nodes, weights)])
    fig = new_figure((7.0, 4.4), dpi)
    ax = fig.add_subplot()
    shown = np.log10(np.maximum(image, FLOOR)).T
    mesh = ax.pcolormesh(steps, grid, shown, cmap="magma", shading="nearest", vmin=math.log10(FLOOR))
    fig.colorbar(mesh, ax=ax, label="log₁₀ φ(λ)")
    if top is not None:
        ax.plot(steps, top, color="#56B4E9", lw=1.4, label="λ1 (Lanczos)")
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="white", ls="--", lw=1.0, label=f"2/η = {threshold:.4g}")
    ax.set_xlabel("step")
    ax.set_ylabel("eigenvalue λ")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8, facecolor="0.2", labelcolor="white", framealpha=0.6)
    return fig
