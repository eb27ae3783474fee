"""The 1-D figures: curves against the step (an interpolation, a 1-D direction).

As in Li et al. (NeurIPS 2018): loss (solid) and accuracy (dashed, second y axis) of the
train and test splits in one figure, with an interpolation's barrier marked; the
Hessian's extremes with their ratio; and any other field as plain curves, one per split.
Non-finite values leave gaps; the legend says how many.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from landscape_job.surface.interpolation import curve_summary
from landscape_job.spec.metrics import SPLITS, Field
from landscape_job.plots.levels import convexity_ratio, curve_top, loss_label
from landscape_job.plots.options import PlotOptions
from landscape_job.plots.style import FIGSIZE_1D, SPLIT_COLOURS, mark_centre_1d, mark_target_1d, new_figure
from landscape_job.surface.file import Surface
from landscape_job.spec.titles import figure_title

__all__ = ["plot_1d", "plot_1d_curvature", "plot_1d_fields"]


def mark_barrier(ax, split: str, x: np.ndarray, values: np.ndarray):
    """A triangle at an interpolation's loss barrier (see interpolation.py); its height is said in
    the legend, not beside it, where the label sat on the accuracy curve. Returns the marker (or None)."""
    summary = curve_summary(x, values)
    if summary is None or summary["barrier_alpha"] is None:
        return None
    alpha, top = float(summary["barrier_alpha"]), float(summary["max_loss"])
    (marker,) = ax.plot([alpha], [top], "v", color=SPLIT_COLOURS[split], mec="black", mew=0.6, ms=8, zorder=5,
                        label=f"{split} barrier {float(summary['barrier_height']):.3g}")
    return marker


def plot_1d(surface: Surface, options: PlotOptions, log: bool) -> Figure:
    fig = new_figure(FIGSIZE_1D, options.dpi)
    ax = fig.add_subplot()
    x = surface.x
    marker = "o" if len(x) <= 25 else None
    handles = []
    masked = 0
    total = 0
    loss_values = []
    barriers = []
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
        (line,) = ax.plot(x, values, "-", color=SPLIT_COLOURS[split], marker=marker, ms=3.5,
                          label=f"{split} loss")
        handles.append(line)
        if surface.attrs.get("direction_type") == "interpolate":
            barriers.append(mark_barrier(ax, split, x, values))
    ax.set_xlabel(surface.xlabel)
    if loss_values:
        ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: loss_label(math.log10(v))))
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
            (line,) = ax2.plot(x, values, "--", color=SPLIT_COLOURS[split], marker=marker, ms=3.5,
                               mfc="white", label=f"{split} accuracy")
            handles.append(line)
        ax2.set_ylabel("accuracy (%)")
        ax2.set_ylim(0, 100)
        ax2.yaxis.set_major_locator(ticker.MultipleLocator(20))
    if len(x) > 1:
        ax.set_xlim(float(x.min()), float(x.max()))
    mark_centre_1d(ax, x)
    if surface.attrs.get("direction_type") == "interpolate":
        mark_target_1d(ax, x)
    handles += [b for b in barriers if b is not None]
    what = "loss and accuracy" if acc_splits and loss_values else "loss" if loss_values else "accuracy"
    ax.set_title(figure_title(what, surface.attrs))
    legend = fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), handlelength=2.6,
                        columnspacing=1.4)
    if masked:  # said in the legend's title: a supxlabel would sit on top of the legend
        legend.set_title(f"{masked} of {total} points {'non-finite or non-positive' if log else 'non-finite'}"
                         " (gaps)", prop={"size": 7.5})
        legend.get_title().set_color("0.35")
    return fig


def plot_1d_curvature(surface: Surface, options: PlotOptions) -> Figure:
    """λmax and λmin against the step, with |λmin/λmax| on a second axis."""
    fig = new_figure(FIGSIZE_1D, options.dpi)
    ax = fig.add_subplot()
    x = surface.x
    marker = "o" if len(x) <= 25 else None
    hi, lo = surface.metrics["max_eig"], surface.metrics["min_eig"]
    handles = [ax.plot(x, hi, "-", color=SPLIT_COLOURS["train"], marker=marker, ms=3.5, label="λmax")[0],
               ax.plot(x, lo, "-", color=SPLIT_COLOURS["test"], marker=marker, ms=3.5, label="λmin")[0]]
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
    mark_centre_1d(ax, x)
    ax.set_title(figure_title("Hessian extremes", surface.attrs))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, handlelength=2.6, columnspacing=1.4)
    return fig


def plot_1d_fields(surface: Surface, options: PlotOptions, fields: list[Field]) -> Figure:
    """Fields of one quantity (a metric's splits, or one undeclared dataset) as plain curves."""
    fig = new_figure(FIGSIZE_1D, options.dpi)
    ax = fig.add_subplot()
    x = surface.x
    marker = "o" if len(x) <= 25 else None
    handles = []
    masked = total = 0
    for field in fields:
        values = surface.metrics[field.name]
        masked += int((~np.isfinite(values)).sum())
        total += values.size
        colour = SPLIT_COLOURS.get(field.split or "", "0.2")
        (line,) = ax.plot(x, values, "-", color=colour, marker=marker, ms=3.5, label=field.title)
        handles.append(line)
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(fields[0].metric.with_unit)
    if len(x) > 1:
        ax.set_xlim(float(x.min()), float(x.max()))
    mark_centre_1d(ax, x)
    ax.set_title(figure_title(fields[0].metric.label, surface.attrs))
    legend = fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), handlelength=2.6,
                        columnspacing=1.4)
    if masked:
        legend.set_title(f"{masked} of {total} points non-finite (gaps)", prop={"size": 7.5})
        legend.get_title().set_color("0.35")
    return fig
