"""The interactive exports of a surface file: ``surface.vtp`` (ParaView) and ``surface.html``.

They sit beside the matplotlib figures in ``plots/`` and take the same ``PlotOptions``
(``vmax`` clips the VTK height, ``log`` makes it log10; the viewer starts in log scale
with ``log``). The optional datasets other stages add to a surface file (Hessian
eigenvalues ``max_eig``/``min_eig``, a PCA trajectory ``trajectory_x``/``trajectory_y``)
come with the loaded surface, so the exports show them whenever a file has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from landscape_job.errors import UserError
from landscape_job.plots import PlotOptions, Surface, load_surface

__all__ = ["EXPORT_FORMATS", "Trajectory", "Extras", "read_extras", "write_exports", "height_metric"]

#: The export formats, written by ``write_exports`` (the matplotlib ones are plots.SUPPORTED_FORMATS).
EXPORT_FORMATS = ("vtp", "html")
HESSIAN = ("max_eig", "min_eig")


@dataclass(frozen=True)
class Trajectory:
    """Checkpoints of a training run projected on the surface's plane (in trajectory order)."""

    x: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    explained_variance: tuple[float, ...] = ()


@dataclass(frozen=True)
class Extras:
    """Optional surface data: Hessian eigenvalue fields (surface shape) and a trajectory."""

    hessian: dict[str, np.ndarray] = field(default_factory=dict)
    trajectory: Trajectory | None = None


def read_extras(surface: Surface) -> Extras:
    """The Hessian fields and the trajectory of a loaded surface, in the form the viewer draws.

    ``load_surface`` has already read and checked them (shapes, non-finite values, the
    trajectory's arrays and attributes); this only pairs them up for the exports.
    """
    hessian = {name: surface.metrics[name] for name in HESSIAN if name in surface.metrics}
    if len(hessian) == 1:
        raise UserError(f"{surface.path}: has '{next(iter(hessian))}' without its partner; "
                        f"expected both max_eig and min_eig")
    trajectory = None
    if surface.is_2d and surface.trajectory is not None:
        points = surface.trajectory
        names = surface.trajectory_names or tuple(str(k) for k in range(len(points)))
        if len(names) != len(points):
            raise UserError(f"{surface.path}: attribute 'trajectory_names' has {len(names)} names "
                            f"for {len(points)} trajectory points")
        trajectory = Trajectory(x=points[:, 0], y=points[:, 1], names=names,
                                explained_variance=surface.explained_variance or ())
    return Extras(hessian=hessian, trajectory=trajectory)


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
    from landscape_job.viewer import write_viewer
    from landscape_job.vtk import write_vtp

    chosen = []
    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise UserError(f"plot.formats: unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
        chosen.append(fmt)
    surface = load_surface(surface_path)
    extras = read_extras(surface)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "vtp" in chosen and surface.is_2d:
        assert surface.y is not None
        written.append(write_vtp(out / "surface.vtp", surface.x, surface.y, surface.metrics,
                                 height_metric(surface), zmax=options.vmax, log=options.log))
    if "html" in chosen:
        written.append(write_viewer(out / "surface.html", surface, extras, options))
    return written
