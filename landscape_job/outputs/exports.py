"""The interactive exports of a surface file: ``surface.vtp`` (ParaView) and ``surface.html``.

They sit beside the matplotlib figures in ``plots/`` and take the same ``PlotOptions``
(``vmax`` clips the VTK height, ``log`` makes it log10; the viewer starts in log scale
with ``log``). The optional datasets other stages add to a surface file (Hessian
eigenvalues ``max_eig``/``min_eig``, a PCA trajectory ``trajectory_x``/``trajectory_y``)
come with the loaded surface, so the exports show them whenever a file has them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable

import h5py

from landscape_job.base.errors import UserError
from landscape_job.spec.outputs import EXPORT_FORMATS, split_outputs
from landscape_job.plots.options import PlotOptions, PlotSettings
from landscape_job.surface.file import X_COORDINATES, Y_COORDINATES, Surface, load_surface
from landscape_job.outputs.vtk import write_vtp

__all__ = ["EXPORT_FORMATS", "write_exports", "write_outputs", "height_metric"]


def height_metric(surface: Surface) -> str:
    """The metric the VTK surface is lifted by: the train loss, as the paper's h52vtp."""
    for name in ("train_loss", "test_loss"):
        if name in surface.metrics:
            return name
    return next(iter(surface.metrics))


def write_exports(surface_path: str | Path, out_dir: str | Path, formats: Iterable[str] = EXPORT_FORMATS,
                  options: PlotOptions = PlotOptions()) -> list[Path]:
    """Writes ``surface.vtp`` (2-D only: ParaView needs a surface) and ``surface.html``.

    Returns the paths written. An unknown format is a ``UserError`` naming it.
    """
    chosen = []
    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise UserError(f"plot.formats: unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
        chosen.append(fmt)
    surface = load_surface(surface_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "vtp" in chosen and surface.is_2d:
        assert surface.y is not None
        written.append(write_vtp(out / "surface.vtp", surface.x, surface.y, surface.metrics,
                                 height_metric(surface), zmax=options.vmax, log=options.log is True))
    if "html" in chosen:
        from landscape_job.outputs.viewer import read_extras, write_viewer  # its colour maps are matplotlib's

        written.append(write_viewer(out / "surface.html", surface, read_extras(surface), options))
    return written


def write_outputs(surface_path: str | Path, out_dir: str | Path, plot: PlotSettings) -> list[Path]:
    """merge's outputs as the spec's ``plot`` section asks: the figures in ``plot.formats``'
    figure formats, then its exports (unset: png, pdf, vtp and html, without pdf above
    ``outputs.PDF_DEFAULT_MAX_LINES`` lines an axis). Returns the paths written."""
    with h5py.File(surface_path, "r") as f:  # a 2-D grid's size decides the default (1-D curves are never thinned)
        lines = max(f[X_COORDINATES].shape[0], f[Y_COORDINATES].shape[0]) if Y_COORDINATES in f else 0
    figures, exports = split_outputs(getattr(plot, "formats", None), lines)
    options = replace(PlotOptions.from_spec(plot, formats=figures or None), coarsen=True)
    written = []
    if figures:
        from landscape_job.plots import plot_surface  # matplotlib: loaded only where figures are drawn

        written = plot_surface(surface_path, out_dir, options)
    return written + (write_exports(surface_path, out_dir, exports, options) if exports else [])
