"""Plots of a surface file: 1-D curves, 2-D contours / heat maps, 3-D surfaces.

The figures follow Li et al. (NeurIPS 2018). The package keeps its four jobs apart:

* ``options``: ``PlotOptions``, checked once (spec ``plot:`` and ``launcher plot`` alike);
* ``levels``: colour ranges, contour levels, labels: arithmetic, no matplotlib;
* ``fields``, ``style``, ``draw1d``, ``draw2d``: preparing and drawing one figure;
* ``figures``: the table of figures and ``plot_surface``, which walks it.

Reading the file is ``landscape_job.surface.file``'s job (``load_surface``, re-exported here).
"""

from __future__ import annotations

from landscape_job.plots.figures import FIGURES, FigureKind, plot_surface
from landscape_job.plots.levels import (contour_levels, convexity_ratio, curve_top, heatmap_image, log_contour_levels,
                                        loss_range)
from landscape_job.plots.options import SUPPORTED_FORMATS, PlotOptions
from landscape_job.plots.style import FIGSIZE_1D, FIGSIZE_2D, FIGSIZE_3D
from landscape_job.surface.file import Surface, load_surface

__all__ = [
    "PlotOptions",
    "plot_surface",
    "load_surface",
    "Surface",
    "loss_range",
    "curve_top",
    "contour_levels",
    "log_contour_levels",
    "heatmap_image",
    "convexity_ratio",
    "FIGURES",
    "FigureKind",
    "SUPPORTED_FORMATS",
    "FIGSIZE_1D",
    "FIGSIZE_2D",
    "FIGSIZE_3D",
]
