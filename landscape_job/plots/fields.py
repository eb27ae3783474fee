"""A field prepared for drawing: values in plot units, colour range, levels, labels.

The loss gets the loss rules (robust top, plot options, log scale); every other field
(accuracy, eigenvalues, a registered or unknown metric) its own finite range. Drawing
functions take a ``PlotField`` and never decide a range themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from matplotlib import ticker

from landscape_job.plots.levels import (contour_levels, formatter, log_contour_levels, log_label_fn, loss_range,
                                        widen)
from landscape_job.spec.metrics import SPLITS
from landscape_job.plots.options import PlotOptions
from landscape_job.surface.file import Surface

__all__ = ["PlotField", "all_losses", "loss_field", "value_field", "log_ticks"]


@dataclass
class PlotField:
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
    #: A loss: its lowest point is marked when it is not θ* (``style.mark_minimum``).
    mark_min: bool = False


def all_losses(surface: Surface) -> np.ndarray:
    """Every split's loss values in one array: ``plot.log: null`` decides once per surface from
    these, so the train and test figures (and the viewer) share a scale."""
    parts = [surface.metrics[f"{split}_loss"].ravel() for split in SPLITS if f"{split}_loss" in surface.metrics]
    return np.concatenate(parts) if parts else np.zeros(0)


def loss_field(surface: Surface, z: np.ndarray, options: PlotOptions) -> PlotField | None:
    log = options.log_for(all_losses(surface) if options.log is None else z)
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
        line = contour_levels(lo, hi, options.vlevel, anchor=anchor, coarsen=options.coarsen)
        fill = contour_levels(lo, hi, options.vlevel, anchor=anchor, fill=True, coarsen=options.coarsen)
    ticks = log_ticks(lo, hi) if log else None
    return PlotField(
        x=surface.x, y=surface.y, values=t, lo=lo, hi=hi, line_levels=line, fill_levels=fill,
        fmt=formatter(line, log), label="loss (log scale)" if log else "loss",
        ticks=ticks, tick_fmt=log_label_fn(ticks) if ticks is not None else None, log=log,
        masked=int(np.isnan(t).sum()), masked_what="non-finite or non-positive" if log else "non-finite",
        mark_min=True,
    )


def value_field(surface: Surface, z: np.ndarray, label: str = "accuracy (%)") -> PlotField | None:
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return None
    lo, hi = widen(float(finite.min()), float(finite.max()))
    line = contour_levels(lo, hi)
    fill = contour_levels(lo, hi, fill=True)
    return PlotField(
        x=surface.x, y=surface.y, values=z.copy(), lo=lo, hi=hi, line_levels=line, fill_levels=fill,
        fmt=formatter(line, False), label=label, ticks=None, tick_fmt=None, log=False,
        masked=int((~np.isfinite(z)).sum()),
    )


def log_ticks(lo: float, hi: float) -> np.ndarray:
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
