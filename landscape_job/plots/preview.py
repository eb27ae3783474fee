"""A running run's surface so far: the whole grid at the finest resolution its finished points cover.

Shards compute coarse to fine (``spec.grid.refinement_order``): the corners first, then
lattices twice as fine each level, so the finished points of a run stopped at 25% hold a
complete lower-resolution surface. The preview draws the grid's points of refinement level
<= L (``grid.axis_levels``: a tensor grid of ~2^L + 1 points an axis over the whole range)
for the finest L nearly as complete as the most complete lattice (``COVERAGE`` of its
share); the points of that lattice still missing are drawn grey and marked ×. A run of the older contiguous shard order
previews the same way: it only fills its lattices later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from landscape_job.plots.style import (CMAPS, FIGSIZE_1D, FIGSIZE_2D, MASKED_FACE, RC, mark_centre_1d, mark_centre_2d,
                                       new_figure)
from landscape_job.plots.levels import spans_decades
from landscape_job.run.finished import FinishedPoints
from landscape_job.spec.direction_types import direction_type
from landscape_job.spec.grid import axis_levels
from landscape_job.spec.metrics import describe

#: A lattice is drawn when this share of the best lattice's finished share is finished.
COVERAGE = 0.9
#: Missing points drawn with a × each up to this many (beyond, only their grey cells).
MAX_MARKS = 2500
MISSING_STYLE = {"marker": "x", "color": "#D55E00", "ms": 4.0, "mew": 0.9, "ls": "none"}


@dataclass(frozen=True)
class Preview:
    """What a preview shows: the lattice drawn and how much of the run is finished."""

    metric: str
    finished: int
    total: int
    #: The lattice drawn: points per axis (x, then y on a 2-D grid).
    shown: tuple[int, ...]
    #: Points of the drawn lattice not finished yet (marked ×).
    missing: int

    def line(self) -> str:
        """One line for ``launcher status --preview``."""
        share = 100.0 * self.finished / self.total if self.total else 0.0
        return (f"{self.finished} of {self.total} points finished ({share:.0f}%); {self.metric} shown at "
                f"{' x '.join(map(str, self.shown))}" + (f", {self.missing} missing (x)" if self.missing else ""))


def _lattice_level(levels_x: np.ndarray, levels_y: np.ndarray, done: np.ndarray) -> int:
    """The finest level whose lattice is nearly as finished as the best one (at least COVERAGE of
    its share): a run stopped early has its coarse lattices whole and draws the finest of them; a
    run that lost a shard has every lattice part done and draws the finest, the gaps marked."""
    top = int(max(levels_x.max(), levels_y.max()))
    shares = [done[np.ix_(levels_y <= level, levels_x <= level)].mean() for level in range(top + 1)]
    wanted = COVERAGE * max(shares)
    return max(level for level, share in enumerate(shares) if share >= wanted)


def preview_figure(points: FinishedPoints, metric: str | None = None, dpi: int = 110) -> tuple[Figure, Preview]:
    """The preview of ``points`` for ``metric`` (default: the first split's loss)."""
    name, flat = points.metric(metric)
    grid = points.spec.grid
    field = describe(name)
    with matplotlib.rc_context(RC):
        if grid.ndim == 1:
            return _draw_1d(points, name, flat, field, dpi)
        return _draw_2d(points, name, flat, field, dpi)


def _labels(points: FinishedPoints) -> tuple[str, str]:
    """The axes as the run's figures label them (a series: the checkpoint index)."""
    spec = points.spec
    if spec.series is not None:
        return "checkpoint", ""
    return direction_type(spec.directions.type).axis_labels(spec.directions.norm)


def _caption(fig: Figure, preview: Preview) -> None:
    fig.supxlabel(preview.line(), fontsize=7.5, color="0.35")


def _draw_1d(points: FinishedPoints, name: str, flat: np.ndarray, field, dpi: int) -> tuple[Figure, Preview]:
    x = points.spec.grid.x.values()
    done = points.done
    fig = new_figure(FIGSIZE_1D, dpi)
    ax = fig.add_subplot()
    ax.plot(x[done], flat[done], color="#0072B2", marker="o", ms=3, lw=1.4, label="finished")
    missing = np.flatnonzero(~done)
    if missing.size:
        shown = missing[:: max(1, missing.size // MAX_MARKS)]
        ax.plot(x[shown], np.zeros(shown.size), transform=ax.get_xaxis_transform(), clip_on=False,
                label="not yet", **{**MISSING_STYLE, "ms": 5.0})
    mark_centre_1d(ax, x)
    ax.set_xlim(x.min(), x.max()) if x.size > 1 else None
    ax.set_xlabel(_labels(points)[0])
    ax.set_ylabel(field.metric.with_unit)
    ax.set_title(f"{points.spec.name}: {field.title} (preview)")
    ax.legend(loc="best")
    preview = Preview(name, int(done.sum()), done.size, (x.size,), int(missing.size))
    _caption(fig, preview)
    return fig, preview


def _draw_2d(points: FinishedPoints, name: str, flat: np.ndarray, field, dpi: int) -> tuple[Figure, Preview]:
    grid = points.spec.grid
    assert grid.y is not None
    lx, ly = axis_levels(grid.nx), axis_levels(grid.ny)
    done = points.done.reshape(grid.shape)
    level = _lattice_level(lx, ly, done)
    cols, rows = np.flatnonzero(lx <= level), np.flatnonzero(ly <= level)
    x, y = grid.x.values()[cols], grid.y.values()[rows]
    lattice_done = done[np.ix_(rows, cols)]
    values = np.where(lattice_done, flat.reshape(grid.shape)[np.ix_(rows, cols)], np.nan)
    fig = new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    ax.set_facecolor(MASKED_FACE)
    cmap = matplotlib.colormaps[CMAPS.get(field.metric.colours, CMAPS["plain"])]
    masked = np.ma.masked_invalid(values)
    # A loss over two decades or more in log10, as the run's own figures draw it (plot.log: null).
    norm = mcolors.LogNorm() if field.metric.colours == "loss" and spans_decades(values) else None
    if len(x) > 1 and len(y) > 1:
        mesh = ax.pcolormesh(x, y, masked, shading="nearest", cmap=cmap, norm=norm)
        if lattice_done.all() and len(x) >= 3 and len(y) >= 3 and np.isfinite(values).all() \
                and np.ptp(values) > 0:
            lines = np.log10(values) if norm is not None else values
            ax.contour(x, y, lines, levels=10, colors="white", linewidths=0.6, alpha=0.7, negative_linestyles="solid")
    else:
        yy, xx = np.meshgrid(y, x, indexing="ij")
        mesh = ax.scatter(xx[lattice_done], yy[lattice_done], c=values[lattice_done], cmap=cmap, s=30, norm=norm)
    fig.colorbar(mesh, ax=ax, label=field.metric.with_unit)
    missing_rows, missing_cols = np.nonzero(~lattice_done)
    if missing_rows.size:
        step = max(1, missing_rows.size // MAX_MARKS)
        ax.plot(x[missing_cols[::step]], y[missing_rows[::step]], label="not yet", **MISSING_STYLE)
    mark_centre_2d(ax, grid.x.values(), grid.y.values())
    ax.set_xlim(grid.x.lo, grid.x.hi) if grid.nx > 1 else None
    ax.set_ylim(grid.y.lo, grid.y.hi) if grid.ny > 1 else None
    xlabel, ylabel = _labels(points)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{points.spec.name}: {field.title} (preview)")
    preview = Preview(name, int(points.done.sum()), points.done.size, (len(x), len(y)), int(missing_rows.size))
    _caption(fig, preview)
    return fig, preview


def write_preview(points: FinishedPoints, target: Path, metric: str | None = None, dpi: int = 110) -> Preview:
    """Draws the preview and saves it as PNG at ``target``."""
    fig, preview = preview_figure(points, metric, dpi)
    fig.savefig(target, format="png", dpi=dpi, metadata={"Software": "landscape"}, facecolor="white")
    fig.clear()
    return preview
