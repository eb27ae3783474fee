"""Plots of a surface file: 1-D curves, 2-D contours / heat maps, 3-D surfaces.

The figures follow Li et al. (NeurIPS 2018): a 1-D plot has loss (solid) and accuracy
(dashed, second y axis) of the train and test splits against the step size; a 2-D
surface gets contour lines with inline labels, a filled contour, a heat map and a 3-D
surface for each split's loss, and a filled contour of its accuracy.

Everything is drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas: no
pyplot, no display, no global figure registry, so this is safe in a pod and in a
long-lived process. Style settings live in an ``rc_context`` and are restored after.

Defaults for the loss colour range (per plot, from that plot's finite values):

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

The accuracy plot's range is its own finite min..max, with the same level rule.

Values that are NaN or infinite (divergent points) are masked: gaps in 1-D curves,
blank (light grey) cells in 2-D plots, holes in the 3-D surface; the figure says how
many points were masked. Values above ``vmax`` take the top colour (the colour bar
shows an arrow) and the 3-D surface is clipped to [vmin, vmax] (drawn on at most
120 x 120 cells). A 2-D surface with a single row or column is plotted as 1-D.
"""

from __future__ import annotations

import json
import math
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import h5py
import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the "3d" projection)

from landscape_job.errors import UserError
from landscape_job.interpolation import curve_summary

__all__ = [
    "PlotOptions",
    "plot_surface",
    "load_surface",
    "Surface",
    "loss_range",
    "contour_levels",
    "log_contour_levels",
    "heatmap_image",
    "SUPPORTED_FORMATS",
    "FIGSIZE_1D",
    "FIGSIZE_2D",
    "FIGSIZE_3D",
]

#: Output formats accepted in ``PlotOptions.formats`` (all vector or lossless).
SUPPORTED_FORMATS = ("png", "pdf", "svg", "eps", "ps")

#: Figure sizes in inches; a PNG is ``round(dpi * size)`` pixels.
FIGSIZE_1D = (6.0, 4.2)
FIGSIZE_2D = (5.4, 4.5)
FIGSIZE_3D = (6.4, 5.2)

#: Metric datasets of a surface file, in the order the plots are made.
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
SPLITS = ("train", "test")
#: Extreme Hessian eigenvalues per point (``metrics: [.., hessian]``), read when present.
CURVATURE = ("max_eig", "min_eig")

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
#: The 3-D surface is drawn on at most this many rows/columns (a 4096^2 grid is legal).
MAX_3D_CELLS = 120

_LOSS_CMAP = "viridis"
_ACC_CMAP = "magma"
#: Okabe-Ito blue / vermillion: distinguishable in colour-blind vision and in greyscale.
_SPLIT_COLOURS = {"train": "#0072B2", "test": "#D55E00"}
_MASKED_FACE = "0.88"

_RC = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.8,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable in a paper's figure
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "image.interpolation": "nearest",
}


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PlotOptions:
    """How to draw the plots; see the module docstring for the defaults.

    With ``log`` the loss is drawn as log10(loss): ``vmin`` and ``vmax`` stay in loss
    units (and must be positive), ``vlevel`` is then a spacing in decades.
    """

    vmin: float | None = None
    vmax: float | None = None
    vlevel: float | None = None
    log: bool = False
    formats: tuple[str, ...] = ("png", "pdf")
    dpi: int = 150

    def __post_init__(self) -> None:
        for key in ("vmin", "vmax", "vlevel"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise UserError(f"plot.{key}: expected a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise UserError(f"plot.{key}: must be a finite number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if self.vmin is not None and self.vmax is not None and self.vmin >= self.vmax:
            raise UserError(f"plot.vmin: must be below plot.vmax ({self.vmin:g} >= {self.vmax:g})")
        if self.vlevel is not None and self.vlevel <= 0:
            raise UserError(f"plot.vlevel: must be positive, got {self.vlevel:g}")
        if not isinstance(self.log, (bool, np.bool_)):
            raise UserError(f"plot.log: expected true or false, got {self.log!r}")
        object.__setattr__(self, "log", bool(self.log))
        if self.log:
            for key in ("vmin", "vmax"):
                value = getattr(self, key)
                if value is not None and value <= 0:
                    raise UserError(
                        f"plot.{key}: must be positive with plot.log (log10 of the loss), got {value:g}"
                    )
        if isinstance(self.dpi, bool) or not isinstance(self.dpi, (int, np.integer)):
            raise UserError(f"plot.dpi: expected an integer, got {self.dpi!r}")
        if not 10 <= int(self.dpi) <= 1200:
            raise UserError(f"plot.dpi: must be between 10 and 1200, got {self.dpi}")
        object.__setattr__(self, "dpi", int(self.dpi))
        formats: Iterable[object] = (self.formats,) if isinstance(self.formats, str) else self.formats
        try:
            formats = tuple(formats)
        except TypeError:
            raise UserError(f"plot.formats: expected a list of formats, got {self.formats!r}") from None
        normalised: list[str] = []
        for fmt in formats:
            if not isinstance(fmt, str):
                raise UserError(f"plot.formats: expected format names, got {fmt!r}")
            name = fmt.strip().lower().lstrip(".")
            if name not in SUPPORTED_FORMATS:
                raise UserError(
                    f"plot.formats: unknown format {fmt!r}; choose from {', '.join(SUPPORTED_FORMATS)}"
                )
            if name not in normalised:
                normalised.append(name)
        if not normalised:
            raise UserError(f"plot.formats: name at least one of {', '.join(SUPPORTED_FORMATS)}")
        object.__setattr__(self, "formats", tuple(normalised))


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Surface:
    """A surface file's contents, checked: ``metrics[k]`` is (ny, nx) for 2-D, (nx,) for 1-D."""

    path: Path
    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    attrs: dict[str, str]
    xlabel: str
    ylabel: str | None
    #: A PCA run's projected training path: (k, 2) for 2-D, (k,) for 1-D, the final model last.
    trajectory: np.ndarray | None = None
    trajectory_names: tuple[str, ...] = ()
    #: PC1 and PC2's fractions of the trajectory's variance.
    explained_variance: tuple[float, ...] | None = None

    @property
    def is_2d(self) -> bool:
        return self.y is not None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(()).item())
    return str(value)


def _read_vector(f: h5py.File, key: str, path: Path) -> np.ndarray:
    item = f[key]
    if not isinstance(item, h5py.Dataset):
        raise UserError(f"{path}: '{key}' is not a dataset; not a surface file")
    try:
        values = np.asarray(item[()], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: '{key}' is not numeric") from None
    values = np.atleast_1d(values)
    if values.ndim != 1 or values.size == 0:
        raise UserError(f"{path}: '{key}' must be a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise UserError(f"{path}: '{key}' holds NaN or infinite coordinates")
    return values


def load_surface(surface_path: str | Path) -> Surface:
    """Reads and checks a surface file; a file that is not one is a ``UserError``.

    A 2-D surface with a single row (or column) is returned as the 1-D surface it is.
    """
    path = Path(surface_path)
    if not path.is_file():
        raise UserError(f"{path}: no such surface file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path}: not an HDF5 file; expected a surface file with 'xcoordinates'") from None
    with f:
        if "xcoordinates" not in f:
            raise UserError(f"{path}: not a surface file (no 'xcoordinates' dataset)")
        x = _read_vector(f, "xcoordinates", path)
        y = _read_vector(f, "ycoordinates", path) if "ycoordinates" in f else None
        attrs = {str(k): _text(v) for k, v in f.attrs.items()}
        expected = (len(y), len(x)) if y is not None else (len(x),)
        metrics: dict[str, np.ndarray] = {}
        for name in METRICS + CURVATURE:
            if name not in f:
                continue
            item = f[name]
            if not isinstance(item, h5py.Dataset):
                raise UserError(f"{path}: '{name}' is not a dataset")
            try:
                values = np.asarray(item[()], dtype=np.float64)
            except (TypeError, ValueError):
                raise UserError(f"{path}: '{name}' is not numeric") from None
            if y is None and values.shape == (len(x), 1):
                values = values[:, 0]
            if values.shape != expected:
                hint = ""
                if y is not None and values.shape == expected[::-1]:
                    hint = " (it looks transposed: surfaces store Z[j, i] = f(x[i], y[j]))"
                raise UserError(
                    f"{path}: '{name}' has shape {values.shape}, expected {expected} "
                    f"from the coordinates{hint}"
                )
            values = values.copy()
            values[~np.isfinite(values)] = np.nan
            metrics[name] = values
        trajectory = _read_trajectory(f, path)
    if not metrics:
        raise UserError(f"{path}: no metric datasets ({', '.join(METRICS + CURVATURE)}); nothing to plot")

    xlabel = attrs.get("xlabel") or None
    ylabel = attrs.get("ylabel") or None
    if y is not None and len(y) == 1:  # one row: a 1-D surface along x
        y, ylabel = None, None
        metrics = {k: v[0, :] for k, v in metrics.items()}
    elif y is not None and len(x) == 1:  # one column: a 1-D surface along y
        x, y, xlabel, ylabel = y, None, (ylabel or "y"), None
        metrics = {k: v[:, 0] for k, v in metrics.items()}
    if y is None:
        xlabel = xlabel or "α"
    else:
        xlabel, ylabel = xlabel or "x", ylabel or "y"
    points = trajectory[0] if trajectory is not None else None
    if points is not None and (points.ndim == 2) != (y is not None):
        points = None  # a collapsed grid (one row or column): the path's plane is not drawn
    return Surface(path=path, x=x, y=y, metrics=metrics, attrs=attrs, xlabel=xlabel, ylabel=ylabel,
                   trajectory=points, trajectory_names=trajectory[1] if points is not None else (),
                   explained_variance=_json_floats(attrs.get("explained_variance"), path, "explained_variance"))


def _json_floats(text: str | None, path: Path, key: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in json.loads(text))
    except (ValueError, TypeError):
        raise UserError(f"{path}: attribute '{key}' is not a JSON list of numbers") from None


def _read_trajectory(f: h5py.File, path: Path) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """``trajectory_x`` (and ``trajectory_y``) as one array, with the checkpoints' names."""
    if "trajectory_x" not in f:
        return None
    tx = np.atleast_1d(np.asarray(f["trajectory_x"][()], dtype=np.float64))
    ty = np.atleast_1d(np.asarray(f["trajectory_y"][()], dtype=np.float64)) if "trajectory_y" in f else None
    if tx.ndim != 1 or (ty is not None and ty.shape != tx.shape):
        raise UserError(f"{path}: 'trajectory_x' and 'trajectory_y' must be 1-D arrays of one length")
    raw_names = f.attrs.get("trajectory_names")
    names: tuple[str, ...] = ()
    if raw_names is not None:
        try:
            names = tuple(str(n) for n in json.loads(_text(raw_names)))
        except (ValueError, TypeError):
            raise UserError(f"{path}: attribute 'trajectory_names' is not a JSON list of strings") from None
    return (np.stack([tx, ty], axis=1) if ty is not None else tx), names


# --------------------------------------------------------------------------- ranges, levels


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= raw."""
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    exponent = math.floor(math.log10(raw))
    for mantissa in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = mantissa * 10.0**exponent
        if step >= raw * (1 - 1e-9):
            return step
    return 10.0 ** (exponent + 1)  # pragma: no cover


def _widen(lo: float, hi: float) -> tuple[float, float]:
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
                f"({_untr(dmin, log):g}); raise plot.vmax or set plot.vmin"
            )
        return lo, hi
    # The robust bound is taken in loss units even with ``log``: in log10 units a spike
    # of 1e6 sits only a few "medians" above the minimum and would not be clipped.
    raw = _untr(finite, log)
    rmin = float(raw.min())
    robust = rmin + VMAX_MEDIAN_FACTOR * (float(np.median(raw)) - rmin)
    hi = min(dmax, tr(robust)) if robust > rmin else dmax
    if hi <= lo:
        hi = dmax
    if hi <= lo:
        if vmin is not None and lo > dmin:
            raise UserError(
                f"plot.vmin: {vmin:g} is not below the largest loss in the surface "
                f"({_untr(dmax, log):g}); lower plot.vmin or set plot.vmax"
            )
        lo, hi = _widen(lo, hi)
    return lo, hi


def curve_top(values: np.ndarray) -> float:
    """Top of a 1-D curve's loss axis: its maximum, unless that is a divergence (see CURVE_P90_FACTOR)."""
    finite = values[np.isfinite(values)]
    p90 = float(np.percentile(finite, 90))
    return float(finite.max()) if p90 <= 0 else min(float(finite.max()), CURVE_P90_FACTOR * p90)


def _untr(value, log: bool):
    return 10.0**value if log else value


def contour_levels(
    lo: float, hi: float, vlevel: float | None = None, *, anchor: float | None = None, fill: bool = False
) -> np.ndarray:
    """Contour levels on [lo, hi] (plot units), ``vlevel`` apart.

    Levels are ``anchor + k * step``: the user's vmin when given (the paper's
    ``arange(vmin, vmax, vlevel)``), else multiples of the step. Line levels lie inside
    [lo, hi]; fill levels (``fill``) cover it, one step beyond at either end if needed.
    """
    if not hi > lo:
        raise ValueError(f"empty level range [{lo}, {hi}]")
    step = float(vlevel) if vlevel is not None else _nice_step((hi - lo) / TARGET_LEVELS)
    base = 0.0 if anchor is None else float(anchor)
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


def _level_decimals(levels: np.ndarray) -> int:
    """Decimals needed to tell adjacent levels apart (at most 4)."""
    if levels.size < 2:
        return 2
    step = float(np.min(np.diff(levels)))
    for d in range(0, 5):
        if np.allclose(np.round(levels, d), levels, rtol=0, atol=step * 1e-3):
            return d
    return 4


def _loss_label(log10_value: float, sig: int = 3) -> str:
    """A loss value given in log10 units, as a short label: 0.05, 1.5, 300, 10^6."""
    value = 10.0**log10_value
    exponent = math.floor(math.log10(value) + 1e-9)
    if not -3 <= exponent <= 3:
        mantissa = value / 10.0**exponent
        if abs(mantissa - 1.0) < 1e-6:
            return f"$10^{{{exponent}}}$"
        return f"${mantissa:.{max(1, sig - 1)}g}\\times10^{{{exponent}}}$"
    return f"{value:.{sig}g}"


def _log_label_fn(log10_values: np.ndarray) -> Callable[[float], str]:
    """A label function with just enough significant digits to tell ``values`` apart."""
    values = np.unique(np.round(np.asarray(log10_values, dtype=np.float64), 12))
    for sig in range(3, 8):
        labels = [_loss_label(v, sig) for v in values]
        if len(set(labels)) == len(labels):
            break
    return lambda v: _loss_label(v, sig)


def _formatter(levels: np.ndarray, log: bool) -> Callable[[float], str]:
    if log:
        return _log_label_fn(levels)
    decimals = _level_decimals(levels)
    return lambda v: f"{v:.{decimals}f}"


def _log_ticks(lo: float, hi: float) -> np.ndarray:
    """Colour-bar ticks for a log plot (log10 units): 1, 2, 5 x 10^k within [lo, hi], or
    round linear values when the range is too narrow for that."""
    eps = 1e-9
    ticks = [
        math.log10(m) + k
        for k in range(math.floor(lo) - 1, math.ceil(hi) + 1)
        for m in (1, 2, 5)
        if lo - eps <= math.log10(m) + k <= hi + eps
    ]
    if len(ticks) > 9:  # keep whole decades only
        ticks = [t for t in ticks if abs(t - round(t)) < eps]
        if len(ticks) > 9:
            stride = math.ceil(len(ticks) / 8)
            ticks = ticks[::stride]
    if len(ticks) >= 3:
        return np.array(ticks)
    linear = ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(10.0**lo, 10.0**hi)
    linear = linear[(linear > 0) & (linear >= 10.0**lo * (1 - eps)) & (linear <= 10.0**hi * (1 + eps))]
    return np.log10(linear) if linear.size >= 2 else np.array([lo, hi])


def _extend(values: np.ndarray, lo: float, hi: float) -> str:
    finite = values[np.isfinite(values)]
    below = finite.size and finite.min() < lo - 1e-12 * max(1.0, abs(lo))
    above = finite.size and finite.max() > hi + 1e-12 * max(1.0, abs(hi))
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool(below), bool(above))
    ]


# --------------------------------------------------------------------------- helpers


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


def _wrap(label: str | None, width: int = 24) -> str:
    """Wraps a long label at its parenthesis or at word breaks, onto two lines at most."""
    if not label or len(label) <= width:
        return label or ""
    head, sep, tail = label.partition(" (")
    if sep and len(head) <= width:
        return f"{head}\n({tail}"
    lines = textwrap.wrap(label, width=max(width, (len(label) + 1) // 2 + 2))
    return "\n".join(lines[:2]) + (" …" if len(lines) > 2 else "")


def _is_uniform(v: np.ndarray) -> bool:
    if len(v) < 3:
        return True
    d = np.diff(v)
    return bool(np.allclose(d, d[0], rtol=1e-6, atol=1e-12 * max(1.0, float(np.max(np.abs(v))))))


def _equal_ranges(x: np.ndarray, y: np.ndarray) -> bool:
    rx, ry = float(np.ptp(x)), float(np.ptp(y))
    return rx > 0 and ry > 0 and math.isclose(rx, ry, rel_tol=1e-6)


def _subject(attrs: dict[str, str]) -> str:
    arch, dataset, name = attrs.get("arch"), attrs.get("dataset"), attrs.get("name")
    if arch and dataset:
        return f"{arch} on {dataset}"
    return arch or dataset or name or ""


def _title(what: str, attrs: dict[str, str]) -> str:
    subject = _subject(attrs)
    return f"{what} — {subject}" if subject else what


def _new_figure(size: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _note_masked(fig: Figure, count: int, total: int, what: str = "non-finite") -> None:
    if count:
        fig.supxlabel(
            f"{count} of {total} points {what} (masked)", fontsize=7.5, color="0.35", ha="right", x=0.99
        )


def _save(fig: Figure, out_dir: Path, stem: str, options: PlotOptions) -> list[Path]:
    written = []
    for fmt in options.formats:
        target = out_dir / f"{stem}.{fmt}"
        metadata: dict[str, object] | None = None
        if fmt == "pdf":
            metadata = {"Creator": "landscape", "CreationDate": None}
        elif fmt == "png":
            metadata = {"Software": "landscape"}
        fig.savefig(target, format=fmt, dpi=options.dpi, metadata=metadata, facecolor="white")
        written.append(target)
    fig.clear()
    return written


def _placeholder(fig: Figure, ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------- 1-D


def _mark_barrier(ax, split: str, x: np.ndarray, values: np.ndarray) -> None:
    """A triangle at an interpolation's loss barrier, labelled with its height (see interpolation.py)."""
    summary = curve_summary(x, values)
    if summary is None or summary["barrier_alpha"] is None:
        return
    alpha, top = float(summary["barrier_alpha"]), float(summary["max_loss"])
    ax.plot([alpha], [top], "v", color=_SPLIT_COLOURS[split], mec="black", mew=0.6, ms=8, zorder=5,
            label=f"{split} barrier")
    # Beside the marker, not above it: a barrier is usually the curve's top, where a label
    # above would leave the axes. Stacked per split, since the two barriers often coincide.
    left = alpha <= (float(np.min(x)) + float(np.max(x))) / 2  # the label goes toward the middle
    ax.annotate(f"{split} barrier {float(summary['barrier_height']):.3g}", (alpha, top), textcoords="offset points",
                xytext=(9 if left else -9, -4 - 11 * SPLITS.index(split)), ha="left" if left else "right",
                va="top", fontsize=7.5, color=_SPLIT_COLOURS[split])


def _plot_1d(surface: Surface, options: PlotOptions, log: bool) -> Figure:
    fig = _new_figure(FIGSIZE_1D, options.dpi)
    ax = fig.add_subplot()
    x = surface.x
    marker = "o" if len(x) <= 25 else None
    handles = []
    masked = 0
    total = 0
    loss_values = []
    for split in SPLITS:
        values = surface.metrics.get(f"{split}_loss")
        if values is None:
            continue
        values = values.copy()
        bad = ~np.isfinite(values)
        if log:
            bad |= ~(values > 0)
        values[bad] = np.nan
        masked += int(bad.sum())
        total += values.size
        loss_values.append(values[~bad])
        (line,) = ax.plot(x, values, "-", color=_SPLIT_COLOURS[split], marker=marker, ms=3.5,
                          label=f"{split} loss")
        handles.append(line)
        if surface.attrs.get("direction_type") == "interpolate":
            _mark_barrier(ax, split, x, values)
    ax.set_xlabel(surface.xlabel)
    if loss_values:
        ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _loss_label(math.log10(v))))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    if loss_values:
        finite = np.concatenate(loss_values)
        if finite.size:
            bottom, top = ax.get_ylim()
            clip = curve_top(finite)
            if not log and clip < float(finite.max()):
                top = clip + 0.05 * (clip - min(bottom, float(finite.min())))
            if not log and options.vmin is None and float(finite.min()) >= 0 and bottom < 0:
                bottom = 0.0
            if options.vmin is not None and (not log or options.vmin > 0):
                bottom = options.vmin
            if options.vmax is not None and (not log or options.vmax > 0):
                top = options.vmax
            if top > bottom:
                ax.set_ylim(bottom, top)
    else:
        ax.set_yticks([])

    acc_splits = [s for s in SPLITS if f"{s}_acc" in surface.metrics]
    if acc_splits:
        ax2 = ax.twinx()
        for split in acc_splits:
            values = surface.metrics[f"{split}_acc"]
            bad = ~np.isfinite(values)
            masked += int(bad.sum())
            total += values.size
            (line,) = ax2.plot(x, values, "--", color=_SPLIT_COLOURS[split], marker=marker, ms=3.5,
                               mfc="white", label=f"{split} accuracy")
            handles.append(line)
        ax2.set_ylabel("accuracy (%)")
        ax2.set_ylim(0, 100)
        ax2.yaxis.set_major_locator(ticker.MultipleLocator(20))
    if len(x) > 1:
        ax.set_xlim(float(x.min()), float(x.max()))
    what = "loss and accuracy" if acc_splits and loss_values else "loss" if loss_values else "accuracy"
    ax.set_title(_title(what, surface.attrs))
    legend = fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), handlelength=2.6,
                        columnspacing=1.4)
    if masked:  # said in the legend's title: a supxlabel would sit on top of the legend
        legend.set_title(f"{masked} of {total} points {'non-finite or non-positive' if log else 'non-finite'}"
                         " (gaps)", prop={"size": 7.5})
        legend.get_title().set_color("0.35")
    return fig


# --------------------------------------------------------------------------- 2-D


@dataclass
class _Field:
    """A 2-D metric prepared for drawing: values in plot units, colour range, levels."""

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray  # plot units, NaN where masked
    lo: float
    hi: float
    line_levels: np.ndarray
    fill_levels: np.ndarray
    fmt: Callable[[float], str]  # contour labels
    label: str  # colour bar / z axis label
    ticks: np.ndarray | None  # colour bar / z ticks (log plots)
    tick_fmt: Callable[[float], str] | None  # their labels
    log: bool
    masked: int
    masked_what: str = "non-finite"


def _loss_field(surface: Surface, z: np.ndarray, options: PlotOptions) -> _Field | None:
    log = options.log
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan)
    else:
        t = z.copy()
    t[~np.isfinite(t)] = np.nan
    rng = loss_range(z, options.vmin, options.vmax, log=log)
    if rng is None:
        return None
    lo, hi = rng
    anchor = None
    if options.vmin is not None:
        anchor = math.log10(options.vmin) if log else options.vmin
    if log and options.vlevel is None:
        line = log_contour_levels(lo, hi)
        fill = log_contour_levels(lo, hi, fill=True)
    else:
        line = contour_levels(lo, hi, options.vlevel, anchor=anchor)
        fill = contour_levels(lo, hi, options.vlevel, anchor=anchor, fill=True)
    ticks = _log_ticks(lo, hi) if log else None
    return _Field(
        x=surface.x, y=surface.y, values=t, lo=lo, hi=hi, line_levels=line, fill_levels=fill,
        fmt=_formatter(line, log), label="loss (log scale)" if log else "loss",
        ticks=ticks, tick_fmt=_log_label_fn(ticks) if ticks is not None else None, log=log,
        masked=int(np.isnan(t).sum()), masked_what="non-finite or non-positive" if log else "non-finite",
    )


def _acc_field(surface: Surface, z: np.ndarray, label: str = "accuracy (%)") -> _Field | None:
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return None
    lo, hi = _widen(float(finite.min()), float(finite.max()))
    line = contour_levels(lo, hi)
    fill = contour_levels(lo, hi, fill=True)
    return _Field(
        x=surface.x, y=surface.y, values=z.copy(), lo=lo, hi=hi, line_levels=line, fill_levels=fill,
        fmt=_formatter(line, False), label=label, ticks=None, tick_fmt=None, log=False,
        masked=int((~np.isfinite(z)).sum()),
    )


def _setup_2d_axes(ax, surface: Surface, title: str) -> None:
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(surface.ylabel)
    ax.set_title(title)
    ax.set_xlim(float(surface.x.min()), float(surface.x.max()))
    ax.set_ylim(float(surface.y.min()), float(surface.y.max()))
    if _equal_ranges(surface.x, surface.y):
        ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))


def _colorbar(fig: Figure, mappable, ax, field: _Field, extend: str | None = None):
    kwargs = {"ax": ax, "shrink": 0.92, "pad": 0.02, "aspect": 28}
    if extend is not None:
        kwargs["extend"] = extend
    cbar = fig.colorbar(mappable, **kwargs)
    cbar.set_label(field.label)
    if field.log:
        if field.ticks is not None:
            cbar.set_ticks(field.ticks)
        cbar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: field.tick_fmt(v)))
        cbar.ax.yaxis.set_minor_locator(ticker.NullLocator())
    else:
        cbar.locator = ticker.MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10])
    cbar.outline.set_linewidth(0.6)
    return cbar


def _line_cmap() -> mcolors.Colormap:
    """viridis without its palest yellow, so the highest lines stay visible on white."""
    base = matplotlib.colormaps[_LOSS_CMAP]
    return mcolors.ListedColormap(base(np.linspace(0.0, 0.85, 256)), name="viridis_lines")


def _masked(values: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.masked_invalid(values)


#: Trajectory overlay: a white-edged dark path reads on viridis, magma and white alike.
_PATH_STYLE = {"color": "#222222", "lw": 1.3, "marker": "o", "ms": 3.2, "mfc": "white", "mec": "#222222", "mew": 0.8}


def _draw_trajectory(ax, surface: Surface) -> None:
    """The projected training path, its start (square) and end (star, the final model).

    Points outside the grid are drawn too (clipped by the axes), and the figure says how
    many there are: a path leaving the plot is a reason to widen the grid.
    """
    path = surface.trajectory
    if path is None or path.ndim != 2 or len(path) == 0:
        return
    tx, ty = path[:, 0], path[:, 1]
    ax.plot(tx, ty, label="trajectory", zorder=4, clip_on=True, **_PATH_STYLE)
    ax.plot(tx[:1], ty[:1], "s", color="#009E73", mec="white", ms=7, label="trajectory start", zorder=5)
    ax.plot(tx[-1:], ty[-1:], "*", color="#D55E00", mec="white", ms=11, label="trajectory end", zorder=5)
    outside = int(np.sum((tx < surface.x.min()) | (tx > surface.x.max()) |
                         (ty < surface.y.min()) | (ty > surface.y.max())))
    if outside:
        ax.text(0.01, 0.01, f"{outside} of {len(tx)} trajectory points outside the grid",
                transform=ax.transAxes, fontsize=7, color="0.25", ha="left", va="bottom")


def _fig_contour(surface: Surface, field: _Field, title: str, dpi: int) -> Figure:
    fig = _new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    _setup_2d_axes(ax, surface, title)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No contour levels were found" on flat data
        cs = ax.contour(field.x, field.y, _masked(field.values), levels=field.line_levels,
                        cmap=_line_cmap(), norm=mcolors.Normalize(field.lo, field.hi), linewidths=1.0)
        n = len(cs.levels)
        every = max(1, math.ceil(n / 10))
        labelled = cs.levels[::every]
        if len(labelled):
            ax.clabel(cs, levels=labelled, inline=True, inline_spacing=3, fontsize=7.5, fmt=field.fmt)
    if len(cs.levels):
        _colorbar(fig, cs, ax, field)
    _draw_trajectory(ax, surface)
    finite = field.values[np.isfinite(field.values)]
    if finite.size and float(np.ptp(finite)) == 0.0:
        value = field.fmt(float(finite[0])) if field.log else f"{float(finite[0]):.6g}"
        ax.text(0.5, 0.5, f"constant: {value}", transform=ax.transAxes, ha="center", va="center",
                color="0.3")
    _note_masked(fig, field.masked, field.values.size, field.masked_what)
    return fig


def _fig_contourf(surface: Surface, field: _Field, title: str, dpi: int, cmap: str) -> Figure:
    fig = _new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    ax.set_facecolor(_MASKED_FACE)
    _setup_2d_axes(ax, surface, title)
    extend = _extend(field.values, field.fill_levels[0], field.fill_levels[-1])
    norm = mcolors.Normalize(field.fill_levels[0], field.fill_levels[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf = ax.contourf(field.x, field.y, _masked(field.values), levels=field.fill_levels,
                         cmap=cmap, norm=norm, extend=extend)
        # Thin lines on the level boundaries keep the figure readable in greyscale.
        ax.contour(cf, colors="k", linewidths=0.25, alpha=0.35)
    _draw_trajectory(ax, surface)
    _colorbar(fig, cf, ax, field)
    _note_masked(fig, field.masked, field.values.size, field.masked_what)
    return fig


def _fig_heat(surface: Surface, field: _Field, title: str, dpi: int) -> Figure:
    fig = _new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    ax.set_facecolor(_MASKED_FACE)
    norm = mcolors.Normalize(field.lo, field.hi)
    cmap = matplotlib.colormaps[_LOSS_CMAP].with_extremes(bad=_MASKED_FACE)
    values = _masked(field.values)
    if _is_uniform(surface.x) and _is_uniform(surface.y):
        array, extent = heatmap_image(surface.x, surface.y, values)
        im = ax.imshow(array, origin="lower", extent=extent, cmap=cmap, norm=norm,
                       interpolation="nearest", aspect="auto")
        xlim, ylim = extent[:2], extent[2:]
    else:  # non-uniform coordinates: cells centred on their points
        im = ax.pcolormesh(surface.x, surface.y, values, cmap=cmap, norm=norm, shading="nearest")
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
    _setup_2d_axes(ax, surface, title)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    _draw_trajectory(ax, surface)
    _colorbar(fig, im, ax, field, extend=_extend(field.values, field.lo, field.hi))
    _note_masked(fig, field.masked, field.values.size, field.masked_what)
    return fig


def _fig_3d(surface: Surface, field: _Field, title: str, dpi: int) -> Figure:
    fig = _new_figure(FIGSIZE_3D, dpi)
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(surface.x, surface.y)
    Z = np.clip(field.values, field.lo, field.hi)  # NaN stays NaN: a hole
    norm = mcolors.Normalize(field.lo, field.hi)
    ny, nx = Z.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        surf = ax.plot_surface(X, Y, Z, cmap=_LOSS_CMAP, norm=norm, rcount=min(ny, MAX_3D_CELLS),
                               ccount=min(nx, MAX_3D_CELLS), linewidth=0.15, edgecolor=(0, 0, 0, 0.12),
                               antialiased=True, shade=False)
    ax.set_xlim(float(surface.x.min()), float(surface.x.max()))
    ax.set_ylim(float(surface.y.min()), float(surface.y.max()))
    ax.set_zlim(field.lo, field.hi)
    # Axis labels run along the slanted box edges: long ones are wrapped onto two lines.
    ax.set_xlabel(_wrap(surface.xlabel), labelpad=8, fontsize=9, linespacing=1.1)
    ax.set_ylabel(_wrap(surface.ylabel), labelpad=8, fontsize=9, linespacing=1.1)
    ax.set_zlabel(field.label, labelpad=6)
    if field.log:
        if field.ticks is not None:
            ax.set_zticks(field.ticks)
        ax.zaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: field.tick_fmt(v)))
    rx, ry = float(np.ptp(surface.x)), float(np.ptp(surface.y))
    ratio = min(3.0, max(1 / 3, ry / rx)) if rx > 0 and ry > 0 else 1.0
    ax.set_box_aspect((1.0, ratio, 0.75 * max(1.0, ratio)), zoom=0.94)
    locator = ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    ax.set_xticks(locator.tick_values(*ax.get_xlim()))
    # The x and y axes meet at the front corner (x max, y min) in this view: leave out a
    # y tick there so its label does not run into the last x label.
    y0, y1 = ax.get_ylim()
    yticks = [t for t in locator.tick_values(y0, y1) if y0 + 0.05 * (y1 - y0) < t <= y1 + 1e-9 * abs(y1 - y0)]
    ax.set_yticks(yticks)
    ax.set_xlim(float(surface.x.min()), float(surface.x.max()))
    ax.set_ylim(y0, y1)
    if not field.log:
        ax.zaxis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.view_init(elev=32, azim=-58)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.pane.set_facecolor((1, 1, 1, 0))
        axis.pane.set_edgecolor("0.75")
        axis._axinfo["grid"]["linewidth"] = 0.4
        axis._axinfo["grid"]["color"] = (0.6, 0.6, 0.6, 0.5)
    ax.set_title(title, pad=0)
    cbar = fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.08, aspect=22,
                        extend=_extend(field.values, field.lo, field.hi))
    cbar.set_label(field.label)
    if field.log:
        if field.ticks is not None:
            cbar.set_ticks(field.ticks)
        cbar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: field.tick_fmt(v)))
    else:
        cbar.locator = ticker.MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10])
    _note_masked(fig, field.masked, field.values.size, field.masked_what)
    return fig


def _placeholder_fig(size: tuple[float, float], dpi: int, title: str, message: str) -> Figure:
    fig = _new_figure(size, dpi)
    ax = fig.add_subplot()
    ax.set_title(title)
    _placeholder(fig, ax, message)
    return fig


# --------------------------------------------------------------------------- curvature


def convexity_ratio(max_eig: np.ndarray, min_eig: np.ndarray) -> np.ndarray:
    """|λmin / λmax| per point (Li et al., Fig. 7): near 0 where the surface is locally convex,
    large where the negative curvature is as strong as the positive. NaN where λmax is 0 or
    either value is not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(min_eig / max_eig)
    ratio[~np.isfinite(ratio)] = np.nan
    return ratio


def _plot_1d_curvature(surface: Surface, options: PlotOptions) -> Figure:
    """λmax and λmin against the step, with |λmin/λmax| on a second axis."""
    fig = _new_figure(FIGSIZE_1D, options.dpi)
    ax = fig.add_subplot()
    x = surface.x
    marker = "o" if len(x) <= 25 else None
    hi, lo = surface.metrics["max_eig"], surface.metrics["min_eig"]
    handles = [ax.plot(x, hi, "-", color=_SPLIT_COLOURS["train"], marker=marker, ms=3.5, label="λmax")[0],
               ax.plot(x, lo, "-", color=_SPLIT_COLOURS["test"], marker=marker, ms=3.5, label="λmin")[0]]
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel("Hessian eigenvalue")
    ax2 = ax.twinx()
    handles.append(ax2.plot(x, convexity_ratio(hi, lo), "--", color="0.3", marker=marker, ms=3.5,
                            mfc="white", label="|λmin/λmax|")[0])
    ax2.set_ylabel("|λmin / λmax|")
    ax2.set_ylim(bottom=0)
    if len(x) > 1:
        ax.set_xlim(float(x.min()), float(x.max()))
    ax.set_title(_title("Hessian extremes", surface.attrs))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, handlelength=2.6, columnspacing=1.4)
    return fig


def _curvature_2d(surface: Surface, options: PlotOptions) -> dict[str, Figure]:
    """The convexity map (heat map of |λmin/λmax|) and a filled contour of each eigenvalue."""
    figs: dict[str, Figure] = {}
    ratio = convexity_ratio(surface.metrics["max_eig"], surface.metrics["min_eig"])
    field = _acc_field(surface, ratio, label="|λmin / λmax|")
    title = _title("convexity |λmin/λmax|", surface.attrs)
    if field is None:
        figs["convexity_2d_heat"] = _placeholder_fig(FIGSIZE_2D, options.dpi, title, "no finite eigenvalues")
    else:
        # Colours from 0 (convex) to 1 (negative curvature as strong as the positive);
        # a larger ratio takes the top colour, as the paper's maps do.
        field.lo, field.hi = 0.0, max(min(field.hi, 1.0), 1e-6)
        figs["convexity_2d_heat"] = _fig_heat(surface, field, title, options.dpi)
    for name, what in (("max_eig", "λmax"), ("min_eig", "λmin")):
        efield = _acc_field(surface, surface.metrics[name], label=f"Hessian {what}")
        etitle = _title(f"Hessian {what}", surface.attrs)
        figs[f"{name}_2d_contourf"] = (
            _placeholder_fig(FIGSIZE_2D, options.dpi, etitle, "no finite eigenvalues") if efield is None
            else _fig_contourf(surface, efield, etitle, options.dpi, _LOSS_CMAP))
    return figs


# --------------------------------------------------------------------------- entry point


def plot_surface(
    surface_path: str | Path, out_dir: str | Path, options: PlotOptions = PlotOptions()
) -> list[Path]:
    """Writes all plots for the file, returns the paths written (sorted).

    1-D: ``1d_loss`` and ``1d_loss_log``. 2-D, per split with a loss:
    ``<split>_loss_2d_contour``, ``_2d_contourf``, ``_2d_heat``, ``_3d_surface``; per
    split with an accuracy: ``<split>_acc_2d_contourf``. With ``max_eig``/``min_eig``
    datasets: ``1d_hessian`` (1-D), or ``convexity_2d_heat``, ``max_eig_2d_contourf`` and
    ``min_eig_2d_contourf`` (2-D). Each in every ``options.formats``.
    """
    if not isinstance(options, PlotOptions):
        raise TypeError(f"options must be PlotOptions, got {type(options).__name__}")
    surface = load_surface(surface_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with matplotlib.rc_context(_RC):
        curvature = all(name in surface.metrics for name in CURVATURE)
        if not surface.is_2d:
            if any(name in surface.metrics for name in METRICS):
                written += _save(_plot_1d(surface, options, log=False), out, "1d_loss", options)
                written += _save(_plot_1d(surface, options, log=True), out, "1d_loss_log", options)
            if curvature:
                written += _save(_plot_1d_curvature(surface, options), out, "1d_hessian", options)
            return sorted(written)
        if curvature:
            for stem, fig in _curvature_2d(surface, options).items():
                written += _save(fig, out, stem, options)

        for split in SPLITS:
            loss = surface.metrics.get(f"{split}_loss")
            if loss is not None:
                title = _title(f"{split} loss", surface.attrs)
                field = _loss_field(surface, loss, options)
                stems = ("contour", "contourf", "heat")
                if field is None:
                    note = "no finite, positive loss values" if options.log else "no finite loss values"
                    for kind in stems:
                        fig = _placeholder_fig(FIGSIZE_2D, options.dpi, title, note)
                        written += _save(fig, out, f"{split}_loss_2d_{kind}", options)
                    fig = _placeholder_fig(FIGSIZE_3D, options.dpi, title, note)
                    written += _save(fig, out, f"{split}_loss_3d_surface", options)
                else:
                    figs = {
                        "2d_contour": _fig_contour(surface, field, title, options.dpi),
                        "2d_contourf": _fig_contourf(surface, field, title, options.dpi, _LOSS_CMAP),
                        "2d_heat": _fig_heat(surface, field, title, options.dpi),
                        "3d_surface": _fig_3d(surface, field, title, options.dpi),
                    }
                    for kind, fig in figs.items():
                        written += _save(fig, out, f"{split}_loss_{kind}", options)
            acc = surface.metrics.get(f"{split}_acc")
            if acc is not None:
                title = _title(f"{split} accuracy", surface.attrs)
                afield = _acc_field(surface, acc)
                if afield is None:
                    fig = _placeholder_fig(FIGSIZE_2D, options.dpi, title, "no finite accuracy values")
                else:
                    fig = _fig_contourf(surface, afield, title, options.dpi, _ACC_CMAP)
                written += _save(fig, out, f"{split}_acc_2d_contourf", options)
    return sorted(written)
