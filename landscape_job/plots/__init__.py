"""Plots of a surface file: 1-D curves, 2-D contours / heat maps, 3-D surfaces.

The figures follow Li et al. (NeurIPS 2018). The package keeps its four jobs apart:

* ``options``: ``PlotOptions``, checked once (spec ``plot:`` and ``launcher plot`` alike);
* ``levels``: colour ranges, contour levels, labels: arithmetic, no matplotlib;
* ``fields``, ``style``, ``draw1d``, ``draw2d``: preparing and drawing one figure;
* ``figures``: the table of figures and ``plot_surface``, which walks it.

Reading the file is ``landscape_job.surface.file``'s job (``load_surface``, re-exported here).

The face imports each name on first use: ``options`` and ``levels`` need no matplotlib, so a
merge that draws no figure (``plot.formats: [vtp]``) never loads it (0.5 s of CPU).
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names
from landscape_job.surface.file import Surface, load_surface  # h5py and numpy: no matplotlib

_LAZY = {
    **{name: "figures" for name in ("FIGURES", "FigureKind", "plot_surface")},
    **{name: "levels" for name in ("contour_levels", "convexity_ratio", "curve_top", "heatmap_image",
                                   "log_contour_levels", "loss_range")},
    **{name: "options" for name in ("SUPPORTED_FORMATS", "PlotOptions")},
    **{name: "style" for name in ("FIGSIZE_1D", "FIGSIZE_2D", "FIGSIZE_3D")},
}

if TYPE_CHECKING:  # pragma: no cover
    from landscape_job.plots.figures import FIGURES, FigureKind, plot_surface
    from landscape_job.plots.levels import (contour_levels, convexity_ratio, curve_top, heatmap_image,
                                            log_contour_levels, loss_range)
    from landscape_job.plots.options import SUPPORTED_FORMATS, PlotOptions
    from landscape_job.plots.style import FIGSIZE_1D, FIGSIZE_2D, FIGSIZE_3D

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = sorted([*_LAZY, "Surface", "load_surface"])
