"""Summary of a 1-D interpolation between two models: monotonicity and the loss barrier.

α = 0 is ``model.checkpoint`` and α = 1 the target. Along the grid points from the one
nearest α = 0 to the one nearest α = 1 (the grid need not hold 0 and 1 exactly; the
summary says which α it used and whether they are exact):

* ``monotonic_decreasing``: the loss never rises from α = 0 to α = 1 (L(α_{k+1}) ≤ L(α_k)).
  This is the monotonic-linear-interpolation property of Goodfellow et al. (2015) and
  Lucas et al. (2021) when model.checkpoint is the initial model and the target the
  trained one. ``monotonic_increasing`` is the mirror (L never falls), the same property
  when the spec runs from the trained model to the initial one.
  Both allow evaluation noise of ``MONOTONIC_RTOL`` times the largest loss on the segment;
  a constant curve is both.
* ``barrier_height``: max L on the segment minus the larger endpoint loss. The maximum is
  taken over the endpoints too, so the height is ≥ 0 by construction (no clipping needed):
  0 means no barrier. ``barrier_alpha`` is where the maximum sits, or null when the height
  is within the noise tolerance (the maximum is an endpoint).

A segment holding a non-finite loss has every judgement null and says how many points
were non-finite: a divergent point is no evidence either way.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from landscape_job.spec.metrics import SPLITS

#: Loss rises smaller than this fraction of the segment's largest |loss| count as flat.
MONOTONIC_RTOL = 1e-6


def endpoints(alphas: np.ndarray) -> tuple[int, int, bool]:
    """Indices of the grid points nearest α = 0 and α = 1, and whether both are exact."""
    alphas = np.asarray(alphas, dtype=np.float64)
    i0, i1 = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(alphas - 1.0)))
    scale = 1e-9 * max(1.0, float(np.max(np.abs(alphas))))
    return i0, i1, bool(abs(alphas[i0]) <= scale and abs(alphas[i1] - 1.0) <= scale)


def curve_summary(alphas: np.ndarray, loss: np.ndarray) -> dict[str, object] | None:
    """Monotonicity and barrier of one loss curve over ascending ``alphas``; None if the grid
    has one point nearest to both α = 0 and α = 1 (no segment to judge)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    i0, i1, _ = endpoints(alphas)
    if i0 >= i1:
        return None
    seg, at = loss[i0:i1 + 1], alphas[i0:i1 + 1]
    bad = int((~np.isfinite(seg)).sum())
    out: dict[str, object] = {"loss_at_0": _num(seg[0]), "loss_at_1": _num(seg[-1]), "non_finite_points": bad}
    if bad:
        out.update(monotonic_decreasing=None, monotonic_increasing=None, barrier_height=None,
                   barrier_alpha=None, max_loss=None)
        return out
    tol = MONOTONIC_RTOL * float(np.max(np.abs(seg)))
    steps = np.diff(seg)
    top = int(np.argmax(seg))
    height = float(seg[top] - max(seg[0], seg[-1]))
    out.update(monotonic_decreasing=bool(np.all(steps <= tol)), monotonic_increasing=bool(np.all(steps >= -tol)),
               barrier_height=height, barrier_alpha=float(at[top]) if height > tol else None,
               max_loss=float(seg[top]))
    return out


def interpolation_summary(alphas: np.ndarray, metrics: Mapping[str, np.ndarray]) -> dict[str, object]:
    """The report's ``interpolation`` entry: the endpoints used and one summary per split's loss."""
    alphas = np.asarray(alphas, dtype=np.float64)
    i0, i1, exact = endpoints(alphas)
    out: dict[str, object] = {"alpha_0": float(alphas[i0]), "alpha_1": float(alphas[i1]), "endpoints_exact": exact}
    if i0 >= i1:
        out["note"] = "the grid has no points between α = 0 and α = 1; widen grid.x"
        return out
    if not exact:
        out["note"] = (f"the grid does not hold α = 0 and α = 1 exactly; the nearest grid points "
                       f"{alphas[i0]:g} and {alphas[i1]:g} stand in for them")
    for split in SPLITS:
        loss = metrics.get(f"{split}_loss")
        if loss is not None:
            out[split] = curve_summary(alphas, loss)
    return out


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
