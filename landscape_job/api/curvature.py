"""What ``ls.hessian`` returns: the Hessian at θ*, which tensors it covers, and its eigenvalue density.

The numbers are the prepare stage's centre analysis (``surface.curvature.centre_analysis``),
so they equal a run's manifest. ``tensors`` and ``excluded`` say what the Hessian is
over: ``hessian.ignore: biasbn`` (the default, the paper's choice) leaves out every tensor
of dim <= 1 (biases, BatchNorm's affine parameters), so λmax can differ from a tool
that takes them all (PyHessian); ``ignore="none"`` takes every tensor.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import numpy as np

__all__ = ["Curvature", "Density"]


@dataclasses.dataclass(frozen=True)
class Density:
    """The SLQ density (``hessian.density_steps`` > 0): per probe, Gauss nodes and weights (rows)."""

    nodes: np.ndarray
    weights: np.ndarray
    parameters: int

    @property
    def trace(self) -> float:
        """n times the density's mean: the probes' Hutchinson estimate of tr(H)."""
        rows = self.weights.sum(axis=1) > 0
        return float(self.parameters * np.mean((self.weights * self.nodes).sum(axis=1)[rows])) if rows.any() \
            else float("nan")

    def moment(self, k: int) -> float:
        """The estimate of tr(Hᵏ)/n."""
        rows = self.weights.sum(axis=1) > 0
        return float(np.mean((self.weights * self.nodes ** k).sum(axis=1)[rows])) if rows.any() else float("nan")

    def evaluate(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """φ(λ) on ``grid``, each node a Gaussian of width ``sigma`` (default: 1% of the spectrum's width)."""
        from landscape_job.plots.spectrum import default_sigma, smoothed_density

        used = self.nodes[self.weights > 0]
        sigma = sigma or default_sigma(float(used.min()), float(used.max()))
        return smoothed_density(self.nodes, self.weights, grid, sigma)


@dataclasses.dataclass(frozen=True)
class Curvature:
    """The Hessian of the mean loss at θ* (the prepare stage's centre analysis)."""

    max_eig: float
    min_eig: float
    trace: float | None
    trace_stderr: float | None
    top_eigenvalues: tuple[float, ...]
    iterations: int
    converged: bool
    samples: int
    parameters: int
    #: ``hessian.ignore``: biasbn (tensors of dim > 1 only, the default) or none.
    ignore: str = "biasbn"
    #: The tensors the Hessian is over, and those left out (by name, ``named_parameters()`` order).
    tensors: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    density: Density | None = None

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Curvature:
        known = {f.name for f in dataclasses.fields(cls)} - {"density"}
        values = {k: (tuple(v) if k in ("top_eigenvalues", "tensors", "excluded") else v)
                  for k, v in summary.items() if k in known}
        found = summary.get("density")
        density = None if found is None else Density(np.asarray(found["nodes"], dtype=np.float64),
                                                     np.asarray(found["weights"], dtype=np.float64),
                                                     int(summary["parameters"]))
        return cls(**values, density=density)

    @property
    def sharpness(self) -> float:
        return self.max_eig

    def describe(self) -> str:
        """Which tensors, in a sentence (what a report says too)."""
        left = (f"; left out by ignore={self.ignore}: {', '.join(self.excluded)} (use ignore='none' to include them)"
                if self.excluded else "")
        return f"over {len(self.tensors)} tensors, {self.parameters:,} parameters{left}"

    def plot(self, sigma: float | None = None):
        """The density figure (log axis), when ``density_steps`` was set."""
        if self.density is None:
            raise ValueError("no density: call ls.hessian(..., density_steps=80) to compute one")
        from landscape_job.plots.spectrum import density_figure

        return density_figure(self.density.nodes, self.density.weights,
                              f"Hessian eigenvalue density at θ* ({self.parameters:,} parameters)", sigma=sigma)

    def _repr_html_(self) -> str:
        rows = [("λmax (sharpness)", f"{self.max_eig:.6g}"), ("λmin", f"{self.min_eig:.6g}"),
                ("trace", "—" if self.trace is None else f"{self.trace:.6g} ± {self.trace_stderr or 0:.2g}"),
                ("Lanczos", f"{self.iterations} steps, {'converged' if self.converged else 'NOT converged'}"),
                ("tensors", html.escape(self.describe())), ("samples", f"{self.samples:,}")]
        table = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                        for k, v in rows)
        figure = ""
        if self.density is not None:
            from landscape_job.api.display import figure_img

            figure = figure_img(self.plot())
        return f"<div><b>Curvature at θ*</b><table>{table}</table>{figure}</div>"
