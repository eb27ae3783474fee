"""The 2-D figures: contour lines, filled contours, heat maps and 3-D surfaces of one field.

As in Li et al. (NeurIPS 2018). Values that are NaN or infinite (divergent points) are
masked: blank (light grey) cells, holes in the 3-D surface; the figure says how many
points were masked. Values above the range's top take the top colour (the colour bar
shows an arrow); the 3-D surface is cut off above hi (drawn on at most
``MAX_3D_CELLS`` cells a side). A PCA run's training path is drawn over the flat figures.
"""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the "3d" projection)

from landscape_job.plots.fields import PlotField
from landscape_job.plots.levels import equal_ranges, extend_arrows, heatmap_image, is_uniform
from landscape_job.plots.style import (FIGSIZE_2D, FIGSIZE_3D, LOSS_CMAP, MARK_COLOURS, MASKED_FACE, MAX_3D_CELLS,
                                       PATH_STYLE, labels_inside, line_cmap, mark_centre_2d, mark_minimum,
                                       masked_invalid, new_figure, note_masked, outside_figure, wrap)
from landscape_job.surface.file import Surface

__all__ = ["fig_contour", "fig_contourf", "fig_heat", "fig_3d"]


def setup_2d_axes(ax, surface: Surface, title: str) -> None:
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(surface.ylabel)
    ax.set_title(title)
    ax.set_xlim(float(surface.x.min()), float(surface.x.max()))
    ax.set_ylim(float(surface.y.min()), float(surface.y.max()))
    if equal_ranges(surface.x, surface.y):
        ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))


def colorbar(fig: Figure, mappable, ax, field: PlotField, extend: str | None = None):
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




def draw_trajectory(ax, surface: Surface) -> None:
    """The projected training path, its start (square) and end (star, the final model).

    Points outside the grid are drawn too (clipped by the axes), and the figure says how
    many there are: a path leaving the plot is a reason to widen the grid.
    """
    path = surface.trajectory
    if path is None or path.ndim != 2 or len(path) == 0:
        return
    tx, ty = path[:, 0], path[:, 1]
    # A white-edged dark path reads on viridis, magma and white alike.
    ax.plot(tx, ty, label="trajectory", zorder=4, clip_on=True, **PATH_STYLE)
    ax.plot(tx[:1], ty[:1], "s", color=MARK_COLOURS["start"], mec="white", ms=7, label="trajectory start", zorder=5)
    ax.plot(tx[-1:], ty[-1:], "*", color=MARK_COLOURS["end"], mec="white", ms=11, label="trajectory end", zorder=5)
    outside = int(np.sum((tx < surface.x.min()) | (tx > surface.x.max()) |
                         (ty < surface.y.min()) | (ty > surface.y.max())))
    if outside:
        ax.text(0.01, 0.01, f"{outside} of {len(tx)} trajectory points outside the grid",
                transform=ax.transAxes, fontsize=7, color="0.25", ha="left", va="bottom")


def labelled_levels(cs, surface: Surface, most: int = 10, smallest: float = 0.25) -> list[float]:
    """About ``most`` of the levels to label, leaving out the lines smaller than ``smallest`` of
    the plot a side: the tight rings around θ* have no room for a number (their colour and
    the colour bar say it)."""
    xspan, yspan = float(np.ptp(surface.x)) or 1.0, float(np.ptp(surface.y)) or 1.0
    roomy = [level for level, segments in zip(cs.levels, cs.allsegs)
             if any(len(seg) and (np.ptp(seg[:, 0]) >= smallest * xspan or np.ptp(seg[:, 1]) >= smallest * yspan)
                    for seg in segments)]
    return roomy[::max(1, math.ceil(len(cs.levels) / most))]


def fig_contour(surface: Surface, field: PlotField, title: str, dpi: int) -> Figure:
    fig = new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    setup_2d_axes(ax, surface, title)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No contour levels were found" on flat data
        cs = ax.contour(field.x, field.y, masked_invalid(field.values), levels=field.line_levels,
                        cmap=line_cmap(), norm=mcolors.Normalize(field.lo, field.hi), linewidths=1.0)
        labelled = labelled_levels(cs, surface)
        texts = ax.clabel(cs, levels=labelled, inline=True, inline_spacing=3, fontsize=7.5, fmt=field.fmt) \
            if len(labelled) else []
    if len(cs.levels):
        colorbar(fig, cs, ax, field)
    draw_trajectory(ax, surface)
    mark_centre_2d(ax, surface.x, surface.y, surface.trajectory)
    _mark_min(ax, surface, field)
    finite = field.values[np.isfinite(field.values)]
    if finite.size and float(np.ptp(finite)) == 0.0:
        value = field.fmt(float(finite[0])) if field.log else f"{float(finite[0]):.6g}"
        ax.text(0.5, 0.5, f"constant: {value}", transform=ax.transAxes, ha="center", va="center",
                color="0.3")
    note_masked(fig, field.masked, field.values.size, field.masked_what)
    if len(texts):
        labels_inside(fig, ax, texts)  # after everything that moves the frame (colour bar, notes)
    return fig


def _mark_min(ax, surface: Surface, field: PlotField) -> None:
    """A loss's lowest point when off-centre (the flat figures; not over a training path's own marks)."""
    if field.mark_min and surface.trajectory is None:
        mark_minimum(ax, field.x, field.y, field.values)


def fig_contourf(surface: Surface, field: PlotField, title: str, dpi: int, cmap: str) -> Figure:
    fig = new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    ax.set_facecolor(MASKED_FACE)
    setup_2d_axes(ax, surface, title)
    extend = extend_arrows(field.values, field.fill_levels[0], field.fill_levels[-1])
    norm = mcolors.Normalize(field.fill_levels[0], field.fill_levels[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf = ax.contourf(field.x, field.y, masked_invalid(field.values), levels=field.fill_levels,
                         cmap=cmap, norm=norm, extend=extend)
        # Thin lines on the level boundaries keep the figure readable in greyscale.
        ax.contour(cf, colors="k", linewidths=0.25, alpha=0.35)
    draw_trajectory(ax, surface)
    mark_centre_2d(ax, surface.x, surface.y, surface.trajectory)
    _mark_min(ax, surface, field)
    colorbar(fig, cf, ax, field)
    note_masked(fig, field.masked, field.values.size, field.masked_what)
    return fig


def fig_heat(surface: Surface, field: PlotField, title: str, dpi: int) -> Figure:
    fig = new_figure(FIGSIZE_2D, dpi)
    ax = fig.add_subplot()
    ax.set_facecolor(MASKED_FACE)
    norm = mcolors.Normalize(field.lo, field.hi)
    cmap = matplotlib.colormaps[LOSS_CMAP].with_extremes(bad=MASKED_FACE)
    values = masked_invalid(field.values)
    if is_uniform(surface.x) and is_uniform(surface.y):
        array, extent = heatmap_image(surface.x, surface.y, values)
        im = ax.imshow(array, origin="lower", extent=extent, cmap=cmap, norm=norm,
                       interpolation="nearest", aspect="auto")
        xlim, ylim = extent[:2], extent[2:]
    else:  # non-uniform coordinates: cells centred on their points
        im = ax.pcolormesh(surface.x, surface.y, values, cmap=cmap, norm=norm, shading="nearest")
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
    setup_2d_axes(ax, surface, title)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    draw_trajectory(ax, surface)
    mark_centre_2d(ax, surface.x, surface.y, surface.trajectory)
    _mark_min(ax, surface, field)
    colorbar(fig, im, ax, field, extend=extend_arrows(field.values, field.lo, field.hi))
    note_masked(fig, field.masked, field.values.size, field.masked_what)
    return fig


#: Where the 3-D axes and their colour bar sit (figure fractions): placed by hand, since a
#: layout engine sizes a 3-D axes by its box and cuts the slanted axis labels off.
_AXES_3D = (0.0, 0.04, 0.80, 0.88)
_CBAR_3D = (0.85, 0.22, 0.025, 0.52)


def fit_3d(fig: Figure, ax, aspect: tuple[float, float, float], zoom: float = 0.94) -> None:
    """Shrinks the 3-D box until every label lies inside the figure (a few draws at most)."""
    for _ in range(8):
        ax.set_box_aspect(aspect, zoom=zoom)
        fig.canvas.draw()
        if not outside_figure(fig):
            return
        zoom *= 0.93


def fig_3d(surface: Surface, field: PlotField, title: str, dpi: int) -> Figure:
    fig = new_figure(FIGSIZE_3D, dpi, layout=None)
    ax = fig.add_axes(_AXES_3D, projection="3d")
    X, Y = np.meshgrid(surface.x, surface.y)
    # Above the range's top is cut away (a hole), not clipped flat onto the box's lid, where it
    # read as the surface rising out of its box; below the bottom (a vmin) is the floor. NaN: a hole.
    above = field.values > field.hi
    Z = np.where(above, np.nan, np.maximum(field.values, field.lo))
    norm = mcolors.Normalize(field.lo, field.hi)
    ny, nx = Z.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        surf = ax.plot_surface(X, Y, Z, cmap=LOSS_CMAP, norm=norm, rcount=min(ny, MAX_3D_CELLS),
                               ccount=min(nx, MAX_3D_CELLS), linewidth=0.15, edgecolor=(0, 0, 0, 0.12),
                               antialiased=True, shade=False)
    ax.set_xlim(float(surface.x.min()), float(surface.x.max()))
    ax.set_ylim(float(surface.y.min()), float(surface.y.max()))
    ax.set_zlim(field.lo, field.hi)
    # Axis labels run along the slanted box edges: long ones are wrapped onto two lines.
    ax.set_xlabel(wrap(surface.xlabel), labelpad=8, fontsize=9, linespacing=1.1)
    ax.set_ylabel(wrap(surface.ylabel), labelpad=8, fontsize=9, linespacing=1.1)
    ax.set_zlabel(field.label, labelpad=6)
    if field.log:
        if field.ticks is not None:
            ax.set_zticks(field.ticks)
        ax.zaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: field.tick_fmt(v)))
    rx, ry = float(np.ptp(surface.x)), float(np.ptp(surface.y))
    ratio = min(3.0, max(1 / 3, ry / rx)) if rx > 0 and ry > 0 else 1.0
    aspect = (1.0, ratio, 0.75 * max(1.0, ratio))
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
    fig.suptitle(title, fontsize=matplotlib.rcParams["axes.titlesize"], y=0.985)
    cbar = fig.colorbar(surf, cax=fig.add_axes(_CBAR_3D), extend=extend_arrows(field.values, field.lo, field.hi))
    cbar.set_label(field.label)
    if field.log:
        if field.ticks is not None:
            cbar.set_ticks(field.ticks)
        cbar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: field.tick_fmt(v)))
    else:
        cbar.locator = ticker.MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10])
    cut = int(np.sum(above))
    note_masked(fig, field.masked + cut, field.values.size,
                f"{field.masked_what} or above the top" if cut else field.masked_what)
    fit_3d(fig, ax, aspect)
    return fig
