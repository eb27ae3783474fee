"""Several runs in one figure: the comparison figures of the papers (seeds, optimisers, SAM vs SGD).

* 1-D: every run's curve on one axis (one colour per run; with ``metric="loss"`` the
  train split solid and the test split dashed), θ* marked;
* 2-D: one filled-contour panel per run, side by side, on ONE colour scale and one set
  of levels computed over all of them (the loss rules of a single figure: robust top,
  ``vmin``/``vmax``/``log`` of ``PlotOptions``), with one colour bar.

Labels come from the runs (``plot.title``, else the run's name) unless given; repeated
names get the file's folder or a number. ``launcher plot a.h5 b.h5 --overlay`` and
``ls.compare`` draw these, and ``outputs.viewer.compare_html`` is the same in a page.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from landscape_job.base.errors import UserError
from landscape_job.plots.draw2d import setup_2d_axes
from landscape_job.plots.fields import PlotField, loss_field, value_field
from landscape_job.plots.options import PlotOptions
from landscape_job.plots.style import (FIGSIZE_1D, LOSS_CMAP, MASKED_FACE, mark_centre_1d,
                                       mark_centre_2d, new_figure)
from landscape_job.spec import metrics as registry
from landscape_job.surface.file import Surface

__all__ = ["run_labels", "default_metric", "compare_check", "shared_fields", "compare_figure", "RUN_COLOURS"]

#: Okabe-Ito, one per run (colour-blind safe), then matplotlib's cycle.
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: The most panels a row holds before the next row starts.
PANELS_PER_ROW = 4


def run_labels(surfaces: Sequence[Surface], given: Sequence[str] | None = None) -> list[str]:
    """A label per run: ``given``, else each run's title or name; repeated ones made distinct."""
    if given is not None:
        if len(given) != len(surfaces):
            raise UserError(f"labels: {len(given)} labels for {len(surfaces)} runs")
        return [str(g) for g in given]
    names = [str(s.attrs.get("title") or s.attrs.get("name") or Path(str(s.path)).stem) for s in surfaces]
    if len(set(names)) == len(names):
        return names
    folders = [Path(str(s.path)).parent.name or Path(str(s.path)).stem for s in surfaces]
    if len(set(folders)) == len(folders) and all(folders):
        return [f"{n} ({f})" if names.count(n) > 1 else n for n, f in zip(names, folders)]
    return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def default_metric(surfaces: Sequence[Surface]) -> str:
    return "loss" if not surfaces[0].is_2d else "train_loss"


def compare_check(surfaces: Sequence[Surface], metric: str) -> None:
    if len(surfaces) < 2:
        raise UserError("compare: give at least two runs")
    if len({s.is_2d for s in surfaces}) != 1:
        raise UserError("compare: the runs mix 1-D curves and 2-D surfaces; compare like with like")
    wanted = [f"{split}_loss" for split in registry.SPLITS] if metric == "loss" else [metric]
    for i, s in enumerate(surfaces):
        if not any(w in s.metrics for w in wanted):
            raise UserError(f"compare: run {i + 1} ({s.path}) has no {metric} (it has {', '.join(s.metrics)})")


def shared_fields(surfaces: Sequence[Surface], metric: str, options: PlotOptions) -> list[PlotField]:
    """One ``PlotField`` per surface, all with the range, levels and scale taken over all of them."""
    stacked = np.concatenate([s.metrics[metric].ravel() for s in surfaces])
    union = dataclasses.replace(surfaces[0], x=np.arange(stacked.size, dtype=np.float64), y=np.zeros(1),
                                metrics={metric: stacked[None, :]})
    described = registry.describe(metric)
    if described.metric.key == "loss":
        field = loss_field(union, stacked[None, :], options)
    else:
        field = value_field(union, stacked[None, :], label=described.metric.with_unit)
    if field is None:
        raise UserError(f"compare: no finite values of {metric} in any run")
    out = []
    for s in surfaces:
        z = s.metrics[metric].astype(np.float64)
        if field.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan)
        z = np.where(np.isfinite(z), z, np.nan)
        out.append(dataclasses.replace(field, x=s.x, y=s.y, values=z, masked=int(np.isnan(z).sum())))
    return out


def _compare_1d(surfaces: Sequence[Surface], labels: list[str], metric: str, options: PlotOptions,
                dpi: int) -> Figure:
    fig = new_figure(FIGSIZE_1D, dpi)
    ax = fig.add_subplot()
    names = [(f"{split}_loss", "-" if split == "train" else "--") for split in registry.SPLITS] \
        if metric == "loss" else [(metric, "-")]
    everything = np.concatenate([s.metrics[n].ravel() for s in surfaces for n, _ in names if n in s.metrics])
    log = options.log_for(everything) if metric == "loss" or metric.endswith("_loss") else bool(options.log)
    for i, (s, label) in enumerate(zip(surfaces, labels)):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        for name, style in names:
            if name in s.metrics:
                split = name.split("_")[0]
                ax.plot(s.x, s.metrics[name], style, color=colour,
                        label=label if len(names) == 1 else f"{label}, {split}")
    if log:
        ax.set_yscale("log")
    if options.vmin is not None or options.vmax is not None:
        ax.set_ylim(options.vmin, options.vmax)
    mark_centre_1d(ax, np.concatenate([s.x for s in surfaces]))
    ax.set_xlabel(surfaces[0].xlabel)
    ax.set_ylabel("loss" if metric == "loss" else metric.replace("_", " "))
    ax.set_title(options.title or f"{metric.replace('_', ' ')}: {len(surfaces)} runs")
    ax.legend(fontsize=8, loc="best")
    return fig


def _compare_2d(surfaces: Sequence[Surface], labels: list[str], metric: str, options: PlotOptions,
                dpi: int) -> Figure:
    fields = shared_fields(surfaces, metric, options)
    n = len(surfaces)
    cols = min(n, PANELS_PER_ROW)
    rows = -(-n // cols)
    fig = new_figure((3.3 * cols + 1.0, 3.3 * rows + 0.5), dpi)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    norm = mcolors.Normalize(fields[0].fill_levels[0], fields[0].fill_levels[-1])
    mappable = None
    for ax, s, field, label in zip(axes, surfaces, fields, labels):
        ax.set_facecolor(MASKED_FACE)
        setup_2d_axes(ax, s, label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mappable = ax.contourf(field.x, field.y, np.ma.masked_invalid(field.values), levels=field.fill_levels,
                                   cmap=LOSS_CMAP if field.label.startswith("loss") else "magma", norm=norm,
                                   extend="both")
            ax.contour(mappable, colors="k", linewidths=0.25, alpha=0.35)
        mark_centre_2d(ax, s.x, s.y, s.trajectory)
    for ax in axes[n:]:
        ax.set_visible(False)
    bar = fig.colorbar(mappable, ax=list(axes[:n]), shrink=0.9, pad=0.02, aspect=30)
    bar.set_label(fields[0].label + " (one scale for every panel)")
    if fields[0].log and fields[0].ticks is not None:
        bar.set_ticks(fields[0].ticks)
        bar.ax.set_yticklabels([fields[0].tick_fmt(t) for t in fields[0].ticks])
    fig.suptitle(options.title or f"{metric.replace('_', ' ')}: {n} runs")
    return fig


def compare_figure(surfaces: Sequence[Surface], labels: Sequence[str] | None = None, metric: str | None = None,
                   options: PlotOptions = PlotOptions(), dpi: int | None = None) -> Figure:
    """The comparison figure of the runs (all 1-D or all 2-D), labelled from the runs unless ``labels``."""
    metric = metric or default_metric(surfaces)
    compare_check(surfaces, metric)
    names = run_labels(surfaces, labels)
    dpi = dpi or options.dpi
    if surfaces[0].is_2d:
        if metric == "loss":
            metric = "train_loss"
        return _compare_2d(surfaces, names, metric, options, dpi)
    return _compare_1d(surfaces, names, metric, options, dpi)

