"""The interactive exports of a surface file: ``surface.vtp`` (ParaView) and ``surface.html``.

They sit beside the matplotlib figures in ``plots/`` and take the same ``PlotOptions``
(``vmax`` clips the VTK height, ``log`` makes it log10; the viewer starts in log scale
with ``log``). The optional datasets other stages add to a surface file (Hessian
eigenvalues ``max_eig``/``min_eig``, a PCA trajectory ``trajectory_x``/``trajectory_y``)
are read here, so the exports show them whenever a file has them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import h5py
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


def _json_list(value: object, path: Path, key: str) -> list:
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        parsed = json.loads(text)
    except ValueError:
        raise UserError(f"{path}: attribute '{key}' is not a JSON list") from None
    if not isinstance(parsed, list):
        raise UserError(f"{path}: attribute '{key}' is not a JSON list")
    return parsed


def _as_surface_shape(values: np.ndarray, surface: Surface) -> np.ndarray:
    """Collapses a one-row/one-column 2-D array as ``load_surface`` collapses the metrics."""
    if surface.is_2d or values.ndim != 2:
        return values
    return values[0, :] if values.shape[0] == 1 else values[:, 0] if values.shape[1] == 1 else values


def read_extras(surface: Surface) -> Extras:
    """Reads ``max_eig``/``min_eig`` and the trajectory of a loaded surface's file, if present."""
    path = surface.path
    expected = surface.metrics[next(iter(surface.metrics))].shape
    hessian: dict[str, np.ndarray] = {}
    trajectory = None
    with h5py.File(path, "r") as f:
        for name in HESSIAN:
            if name not in f:
                continue
            values = _as_surface_shape(np.asarray(f[name][()], dtype=np.float64), surface)
            if values.shape != expected:
                raise UserError(f"{path}: '{name}' has shape {values.shape}, expected {expected} like the metrics")
            values = values.copy()
            values[~np.isfinite(values)] = np.nan
            hessian[name] = values
        if surface.is_2d and "trajectory_x" in f and "trajectory_y" in f:
            tx = np.asarray(f["trajectory_x"][()], dtype=np.float64).ravel()
            ty = np.asarray(f["trajectory_y"][()], dtype=np.float64).ravel()
            if tx.shape != ty.shape:
                raise UserError(f"{path}: 'trajectory_x' and 'trajectory_y' differ in length "
                                f"({tx.size} and {ty.size})")
            names = _json_list(f.attrs["trajectory_names"], path, "trajectory_names") \
                if "trajectory_names" in f.attrs else [str(k) for k in range(tx.size)]
            if len(names) != tx.size:
                raise UserError(f"{path}: attribute 'trajectory_names' has {len(names)} names "
                                f"for {tx.size} trajectory points")
            variance = _json_list(f.attrs["explained_variance"], path, "explained_variance") \
                if "explained_variance" in f.attrs else []
            trajectory = Trajectory(x=tx, y=ty, names=tuple(str(n) for n in names),
                                    explained_variance=tuple(float(v) for v in variance))
    if len(hessian) == 1:
        raise UserError(f"{path}: has '{next(iter(hessian))}' without its partner; expected both max_eig and min_eig")
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
        written.append(write_vtp(out / "surface.vtp", surface.x, surface.y, {**surface.metrics, **extras.hessian},
                                 height_metric(surface), zmax=options.vmax, log=options.log))
    if "html" in chosen:
        written.append(write_viewer(out / "surface.html", surface, extras, options))
    return written
