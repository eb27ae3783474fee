"""Colour ranges, contour levels and their labels: the numbers behind every figure, no drawing.

The plots and the viewer (``surface.html``) take their ranges and levels from here, so
the PNGs and the page agree. Defaults for the loss colour range (per plot, from that
plot's finite values):

* ``vmin``: the data minimum.
* ``vmax``: ``min(max, min + 5 * (median - min))``, in loss units (also with ``log``).
  A bowl-shaped landscape keeps its whole range (its median sits well inside it), while
  divergent points far out in the grid (loss 1e3 .. 1e30) are clipped instead of
  squashing every contour into the minimum.
* ``vlevel``: the "nice" step (1, 2, 2.5 or 5 x 10^k) just above ``(vmax - vmin) / 30``,
  so there are at most about 30 levels, at round values. A user's ``vmin`` anchors the
  levels (``vmin + k * vlevel``, as the paper's ``arange``). With ``log`` a given
  ``vlevel`` is in decades; the default levels are then round loss values (1, 1.5, 2,
  3, 5, 7 x 10^k, denser or sparser to stay near 30 levels).

Log or linear: ``plot.log`` true or false decides; left unset (null), the loss is drawn
on a log scale when its colour range spans ``AUTO_LOG_DECADES`` decades or more and no
``vlevel`` (a linear spacing, as the paper's) is given (``spans_decades``), decided once
for the surface from every split's loss, so train and test share a scale. A loss from
0.01 to 20 on linear levels 1, 2, .. 20 leaves the basin around θ* one blank ring; its
log levels (0.015, 0.02, 0.03, 0.05, ..) draw closed contours down into the minimum.

Any other field's range (accuracy, eigenvalues, a generic field) is its own finite
min..max, with the same level rule. No matplotlib here: this is arithmetic, testable
and reusable without a figure.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np

from landscape_job.base.errors import UserError

_log = logging.getLogger(__name__)

__all__ = ["MAX_LEVELS", "TARGET_LEVELS", "AUTO_LOG_DECADES", "spans_decades", "VMAX_MEDIAN_FACTOR", "CURVE_P90_FACTOR", "loss_range", "curve_top",
           "contour_levels", "log_contour_levels", "heatmap_image", "convexity_ratio"]

#: Refuse more contour levels than this (a vlevel typo such as 0.0001 on a 0..10 range).
MAX_LEVELS = 500
#: The default vlevel aims at about this many levels between vmin and vmax.
TARGET_LEVELS = 30
#: vmax default: min(max, min + VMAX_MEDIAN_FACTOR * (median - min)).
VMAX_MEDIAN_FACTOR = 5.0
#: 1-D curves: the top of the loss axis is the largest loss unless it exceeds this factor
#: times the 90th percentile. A curve's peaks (an interpolation's barrier) are what it is
#: drawn for and must stay in view; only true divergence (say 1e6) is clipped.
CURVE_P90_FACTOR = 10.0
#: With ``plot.log`` unset, a loss whose colour range spans this many decades is drawn in log10:
#: linear levels ~1/30 of the range apart would then start some 3x the minimum above it.
AUTO_LOG_DECADES = 2.0


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= raw."""
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    exponent = math.floor(math.log10(raw))
    for mantissa in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = mantissa * 10.0**exponent
        if step >= raw * (1 - 1e-9):
            return step
    return 10.0 ** (exponent + 1)  # pragma: no cover


def widen(lo: float, hi: float) -> tuple[float, float]:
    """A usable range around a constant surface."""
    if hi > lo:
        return lo, hi
    pad = max(abs(lo) * 0.05, 1e-3)
    return lo - pad, hi + pad


def loss_range(
    values: np.ndarray, vmin: float | None = None, vmax: float | None = None, *, log: bool = False
) -> tuple[float, float] | None:
    """The (lo, hi) colour range of a loss array in plot units (log10 units with ``log``).

    ``vmin``/``vmax`` are in loss units. Returns None when no value is finite (or, with
    ``log``, positive). Raises ``UserError`` when the user's bound leaves no data range.
    """
    finite = values[np.isfinite(values)]
    if log:
        finite = np.log10(finite[finite > 0])
    if finite.size == 0:
        return None
    dmin, dmax = float(finite.min()), float(finite.max())
    tr: Callable[[float], float] = math.log10 if log else float
    lo = tr(vmin) if vmin is not None else dmin
    if vmax is not None:
        hi = tr(vmax)
        if hi <= lo:  # only possible when vmin came from the data
            raise UserError(
                f"plot.vmax: {vmax:g} is not above the smallest loss in the surface "
                f"({untr(dmin, log):g}); raise plot.vmax or set plot.vmin"
            )
        return lo, hi
    # The robust bound is taken in loss units even with ``log``: in log10 units a spike
    # of 1e6 sits only a few "medians" above the minimum and would not be clipped.
    raw = untr(finite, log)
    rmin = float(raw.min())
    robust = rmin + VMAX_MEDIAN_FACTOR * (float(np.median(raw)) - rmin)
    hi = min(dmax, tr(robust)) if robust > rmin else dmax
    if hi <= lo:
        hi = dmax
    if hi <= lo:
        if vmin is not None and lo > dmin:
            raise UserError(
                f"plot.vmin: {vmin:g} is not below the largest loss in the surface "
                f"({untr(dmax, log):g}); lower plot.vmin or set plot.vmax"
            )
        lo, hi = widen(lo, hi)
    return lo, hi


def spans_decades(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> bool:
    """Whether the loss's linear colour range (``loss_range``) is positive and spans
    ``AUTO_LOG_DECADES`` decades or more: the rule of ``plot.log: null``."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or float(finite.min()) <= 0 or (vmin is not None and vmin <= 0):
        return False
    try:
        rng = loss_range(values, vmin, vmax)
    except UserError:
        return False  # the linear path names the bad bound
    return rng is not None and rng[0] > 0 and math.log10(rng[1] / rng[0]) >= AUTO_LOG_DECADES - 1e-9


def curve_top(values: np.ndarray) -> float:
    """Top of a 1-D curve's loss axis: its maximum, unless that is a divergence (see CURVE_P90_FACTOR)."""
    finite = values[np.isfinite(values)]
    p90 = float(np.percentile(finite, 90))
    return float(finite.max()) if p90 <= 0 else min(float(finite.max()), CURVE_P90_FACTOR * p90)


def untr(value, log: bool):
    return 10.0**value if log else value


def contour_levels(
    lo: float, hi: float, vlevel: float | None = None, *, anchor: float | None = None, fill: bool = False,
    coarsen: bool = False,
) -> np.ndarray:
    """Contour levels on [lo, hi] (plot units), ``vlevel`` apart.

    Levels are ``anchor + k * step``: the user's vmin when given (the paper's
    ``arange(vmin, vmax, vlevel)``), else multiples of the step. Line levels lie inside
    [lo, hi]; fill levels (``fill``) cover it, one step beyond at either end if needed.
    """
    if not hi > lo:
        raise ValueError(f"empty level range [{lo}, {hi}]")
    step = float(vlevel) if vlevel is not None else nice_step((hi - lo) / TARGET_LEVELS)
    base = 0.0 if anchor is None else float(anchor)
    count = (hi - lo) / step
    if count > MAX_LEVELS and coarsen:  # merge: the spec's spacing, widened to a multiple that fits
        step = step * math.ceil(count / (MAX_LEVELS - 1)) if math.isfinite(count) else (hi - lo) / (MAX_LEVELS - 1)
        _log.warning("plot.vlevel: %g would draw %d contour levels between %g and %g; drawn every %g "
                     "(at most %d levels)", vlevel, int(min(count, 1e18)), lo, hi, step, MAX_LEVELS)
        count = (hi - lo) / step
    if count > MAX_LEVELS:
        raise UserError(
            f"plot.vlevel: {step:g} would draw {int(count)} contour levels between "
            f"{lo:g} and {hi:g} (at most {MAX_LEVELS}); use a larger plot.vlevel"
        )
    eps = 1e-9
    if fill:
        k0 = math.floor((lo - base) / step + eps)
        k1 = math.ceil((hi - base) / step - eps)
    else:
        k0 = math.ceil((lo - base) / step - eps)
        k1 = math.floor((hi - base) / step + eps)
    levels = base + step * np.arange(k0, k1 + 1, dtype=np.float64)
    # Round away float noise (0.30000000000000004) so labels and levels are clean.
    decimals = max(0, 12 - int(math.floor(math.log10(step))))
    levels = np.round(levels, min(decimals, 15))
    if levels.size < 2:  # vlevel larger than the range
        levels = np.array([lo, hi]) if fill else np.linspace(lo, hi, 3)
    return levels


#: Level mantissas per decade for log plots, densest first: round loss values (0.2, 1.5,
#: 3) as levels, never 10**0.1 = 1.2589.
_LOG_MANTISSAS = (
    (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9),
    (1, 1.5, 2, 3, 5, 7),
    (1, 2, 5),
    (1, 3),
    (1,),
)


def log_contour_levels(lo: float, hi: float, *, fill: bool = False) -> np.ndarray:
    """Default levels for a log plot, in log10 units, at round loss values.

    Takes the densest mantissa set of ``_LOG_MANTISSAS`` that gives at most
    ``TARGET_LEVELS`` levels in [lo, hi]. A range under a few levels wide (a nearly flat
    surface) gets linear "nice" loss values instead; a huge one whole decades.
    """
    if not hi > lo:
        raise ValueError(f"empty level range [{lo}, {hi}]")
    eps = 1e-9
    for subs in _LOG_MANTISSAS:
        candidates = np.array(sorted(
            math.log10(m) + k for k in range(math.floor(lo) - 1, math.ceil(hi) + 2) for m in subs
        ))
        inside = candidates[(candidates >= lo - eps) & (candidates <= hi + eps)]
        if inside.size <= TARGET_LEVELS:
            break
    else:
        step = float(math.ceil((hi - lo) / TARGET_LEVELS))
        candidates = step * np.arange(math.floor(lo / step) - 1, math.ceil(hi / step) + 2)
        inside = candidates[(candidates >= lo - eps) & (candidates <= hi + eps)]
    if inside.size < 6:  # under about one decade: linear steps in loss units read better
        linear = contour_levels(10.0**lo, 10.0**hi, fill=fill)
        linear = linear[linear > 0]
        levels = np.log10(linear)
        if fill and (levels.size == 0 or levels[0] > lo):
            levels = np.concatenate([[lo], levels])
        return levels if levels.size >= 2 else np.array([lo, hi])
    if fill:
        below = candidates[candidates < inside[0] - eps]
        above = candidates[candidates > inside[-1] + eps]
        if inside[0] > lo + eps and below.size:
            inside = np.concatenate([below[-1:], inside])
        if inside[-1] < hi - eps and above.size:
            inside = np.concatenate([inside, above[:1]])
    return inside


def level_decimals(levels: np.ndarray) -> int:
    """Decimals needed to tell adjacent levels apart (at most 4)."""
    if levels.size < 2:
        return 2
    step = float(np.min(np.diff(levels)))
    for d in range(0, 5):
        if np.allclose(np.round(levels, d), levels, rtol=0, atol=step * 1e-3):
            return d
    return 4


def loss_label(log10_value: float, sig: int = 3) -> str:
    """A loss value given in log10 units, as a short label: 0.05, 1.5, 300, 10^6."""
    value = 10.0**log10_value
    exponent = math.floor(math.log10(value) + 1e-9)
    if not -3 <= exponent <= 3:
        mantissa = value / 10.0**exponent
        if abs(mantissa - 1.0) < 1e-6:
            return f"$10^{{{exponent}}}$"
        return f"${mantissa:.{max(1, sig - 1)}g}\\times10^{{{exponent}}}$"
    # Every integer digit (1500, not "1.5e+03", which ``g`` gives once the exponent reaches ``sig``).
    return f"{value:.{max(sig, exponent + 1)}g}"


def log_label_fn(log10_values: np.ndarray) -> Callable[[float], str]:
    """A label function with just enough significant digits to tell ``values`` apart."""
    values = np.unique(np.round(np.asarray(log10_values, dtype=np.float64), 12))
    for sig in range(3, 8):
        labels = [loss_label(v, sig) for v in values]
        if len(set(labels)) == len(labels):
            break
    return lambda v: loss_label(v, sig)


def formatter(levels: np.ndarray, log: bool) -> Callable[[float], str]:
    if log:
        return log_label_fn(levels)
    decimals = level_decimals(levels)
    return lambda v: f"{v:.{decimals}f}"


def extend_arrows(values: np.ndarray, lo: float, hi: float) -> str:
    finite = values[np.isfinite(values)]
    below = finite.size and finite.min() < lo - 1e-12 * max(1.0, abs(lo))
    above = finite.size and finite.max() > hi + 1e-12 * max(1.0, abs(hi))
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool(below), bool(above))
    ]


def heatmap_image(
    x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The array and extent to pass to ``imshow(..., origin="lower")``.

    ``z`` is (ny, nx) with ``z[j, i] = f(x[i], y[j])``: row j is drawn at height y[j] and
    column i at x[i], each cell centred on its grid point.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z)
    if z.shape != (len(y), len(x)):
        raise ValueError(f"z has shape {z.shape}, expected (ny, nx) = {(len(y), len(x))}")
    dx = (x[-1] - x[0]) / (len(x) - 1) if len(x) > 1 else 1.0
    dy = (y[-1] - y[0]) / (len(y) - 1) if len(y) > 1 else 1.0
    extent = (x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2)
    return z, tuple(float(e) for e in extent)  # type: ignore[return-value]


def is_uniform(v: np.ndarray) -> bool:
    if len(v) < 3:
        return True
    d = np.diff(v)
    return bool(np.allclose(d, d[0], rtol=1e-6, atol=1e-12 * max(1.0, float(np.max(np.abs(v))))))


def equal_ranges(x: np.ndarray, y: np.ndarray) -> bool:
    rx, ry = float(np.ptp(x)), float(np.ptp(y))
    return rx > 0 and ry > 0 and math.isclose(rx, ry, rel_tol=1e-6)


def convexity_ratio(max_eig: np.ndarray, min_eig: np.ndarray) -> np.ndarray:
    """|λmin / λmax| per point (Li et al., Fig. 7): near 0 where the surface is locally convex,
    large where the negative curvature is as strong as the positive. NaN where λmax is 0 or
    either value is not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(min_eig / max_eig)
    ratio[~np.isfinite(ratio)] = np.nan
    return ratio
