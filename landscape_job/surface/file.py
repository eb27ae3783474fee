"""The surface file: its format, its writer and its reader, in one place.

The layout is the paper's, so its plotting tools read our files: ``xcoordinates`` (nx,),
``ycoordinates`` (ny,) for 2-D, and one dataset per metric (``train_loss``,
``train_acc``, ``test_loss``, ``test_acc``, ``max_eig``, ... see ``metrics``): shape
(nx,) for 1-D, (ny, nx) for 2-D with ``Z[j, i] = f(x[i], y[j])`` (square or not; the
paper's non-square layout was a bug). Accuracies are in percent. Provenance rides along
as attributes. A PCA run adds its projected training path: ``trajectory_x`` (and
``trajectory_y`` for 2-D), one entry per checkpoint in training order with the final
model last, with attributes ``trajectory_names`` and ``explained_variance`` (JSON lists).

Everything else (merge, plots, exports, viewer, VTK) reads a file through
``load_surface``, so the checks on shapes and the 1-D/2-D rules live here only. Every
dataset of the grid's shape is read as a metric, declared in the registry or not: a
field another tool added is kept (and drawn generically), never silently dropped.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from landscape_job.base.errors import UserError
from landscape_job.spec import metrics as registry
from landscape_job.spec.grid import Grid

if TYPE_CHECKING:  # h5py (~25 ms to import) where a file is written or read: surface_from_values needs none
    import h5py

__all__ = ["X_COORDINATES", "Y_COORDINATES", "TRAJECTORY_X", "TRAJECTORY_Y", "TRAJECTORY_NAMES",
           "EXPLAINED_VARIANCE", "COORDINATES", "surface_bytes", "Surface", "load_surface",
           "surface_from_bytes", "surface_from_values"]

X_COORDINATES = "xcoordinates"
Y_COORDINATES = "ycoordinates"
TRAJECTORY_X = "trajectory_x"
TRAJECTORY_Y = "trajectory_y"
#: Attributes (JSON lists) of a PCA run's trajectory.
TRAJECTORY_NAMES = "trajectory_names"
EXPLAINED_VARIANCE = "explained_variance"
#: Datasets that are not per-point fields.
COORDINATES = (X_COORDINATES, Y_COORDINATES, TRAJECTORY_X, TRAJECTORY_Y)


# --------------------------------------------------------------------------- writer


#: Above this many points the per-point arrays are written chunked, byte-shuffled and gzip
#: level 1: at 10^6 points 32.1 MB became 18.0 MB for 0.5 s more of a merge (and 0.1 s more
#: to read; ``benchmarks/scale.py --outputs 1001``, docs/performance.md). Below it a file is
#: a few MB and stays contiguous, as it always was. Names, shapes and dtypes are the same
#: either way: h5py (and the paper's code, which reads with it) sees no difference.
COMPRESS_ABOVE_POINTS = 100_000


def _contents(grid: Grid, flat_metrics: Mapping[str, np.ndarray], attrs: Mapping[str, object],
              trajectory: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """What a surface file holds: its datasets (in the order written) and its attributes (None left out)."""
    datasets = {X_COORDINATES: np.asarray(grid.x.values())}
    if grid.y is not None:
        datasets[Y_COORDINATES] = np.asarray(grid.y.values())
    for name, values in flat_metrics.items():
        datasets[name] = np.asarray(values, dtype=np.float64).reshape(grid.shape)
    stored = {key: value for key, value in attrs.items() if value is not None}
    if trajectory is not None:
        datasets[TRAJECTORY_X] = np.asarray(trajectory["x"], dtype=np.float64)
        if trajectory.get("y") is not None:
            datasets[TRAJECTORY_Y] = np.asarray(trajectory["y"], dtype=np.float64)
        stored[TRAJECTORY_NAMES] = json.dumps(list(trajectory["names"]))
        stored[EXPLAINED_VARIANCE] = json.dumps([float(v) for v in trajectory["explained_variance"]])
    return datasets, stored


def surface_bytes(grid: Grid, flat_metrics: Mapping[str, np.ndarray], attrs: Mapping[str, object],
                  trajectory: Mapping[str, Any] | None = None) -> bytes:
    """``flat_metrics`` are indexed by flat point index p = j * nx + i.

    ``trajectory`` holds ``x``, ``y`` (None for 1-D), ``names`` and ``explained_variance``.
    """
    from landscape_job.storage import h5_bytes

    datasets, stored = _contents(grid, flat_metrics, attrs, trajectory)
    packed = (dict(chunks=True, shuffle=True, compression="gzip", compression_opts=1)
              if grid.size > COMPRESS_ABOVE_POINTS else {})
    path = (TRAJECTORY_X, TRAJECTORY_Y, TRAJECTORY_NAMES, EXPLAINED_VARIANCE) if trajectory is not None else ()

    def write(handle) -> None:  # in the order it always was: coordinates, fields, attributes, then the PCA path
        for name, values in datasets.items():
            if name not in path:
                handle.create_dataset(name, data=values, **(packed if name not in COORDINATES else {}))
        for key, value in stored.items():
            if key not in path:
                handle.attrs[key] = value
        for name in path:
            if name in datasets:
                handle.create_dataset(name, data=datasets[name])
            elif name in stored:
                handle.attrs[name] = stored[name]

    return h5_bytes(write)


class _Stored:
    """A surface file's contents as h5py hands them back, without HDF5: datasets and attributes
    listed by name (HDF5's order for a file written without ``track_order``), each attribute as
    h5py reads it (a string as ``str``, a number or flag as a NumPy scalar). ``_read`` takes it
    for an open file, so a surface made in memory passes the very checks a file does."""

    def __init__(self, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, object]):
        self._datasets = {name: np.array(values) for name, values in sorted(datasets.items())}
        self.attrs = {key: value if isinstance(value, str) else np.asarray(value)[()]
                      for key, value in sorted(attrs.items())}

    def __contains__(self, name: str) -> bool:
        return name in self._datasets

    def __getitem__(self, name: str) -> np.ndarray:
        return self._datasets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._datasets)


def surface_from_values(grid: Grid, flat_metrics: Mapping[str, np.ndarray], attrs: Mapping[str, object],
                        trajectory: Mapping[str, Any] | None = None, name: str = "surface.h5") -> Surface:
    """``surface_from_bytes(surface_bytes(grid, flat_metrics, attrs, trajectory), name)``, without
    writing the file: the Python API's result, which imports h5py only to save it
    (``tests/surface/test_surface_in_memory.py`` holds the two equal, array for array, bit for bit)."""
    return _read(_Stored(*_contents(grid, flat_metrics, attrs, trajectory)), Path(name))


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class Surface:
    """A surface file's contents, checked: ``metrics[k]`` is (ny, nx) for 2-D, (nx,) for 1-D."""

    path: Path
    x: np.ndarray
    y: np.ndarray | None
    #: Every per-point field of the file, registered metric or not, in the file's order.
    metrics: dict[str, np.ndarray]
    attrs: dict[str, str]
    xlabel: str
    ylabel: str | None
    #: A PCA run's projected training path: (k, 2) for 2-D, (k,) for 1-D, the final model last.
    trajectory: np.ndarray | None = None
    trajectory_names: tuple[str, ...] = ()
    #: PC1 and PC2's fractions of the trajectory's variance.
    explained_variance: tuple[float, ...] | None = None
    #: Datasets that are not per-point fields (another shape, not numeric, a group): left unread.
    unread: tuple[str, ...] = ()

    @property
    def is_2d(self) -> bool:
        return self.y is not None

    def fields(self) -> list[registry.Field]:
        """The metrics, described by the registry (generic where no metric declares them)."""
        return [registry.describe(name) for name in self.metrics]

    def generic_fields(self) -> list[registry.Field]:
        """The fields no registered metric declares: drawn by the generic figures."""
        return [f for f in self.fields() if not f.known]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(()).item())
    return str(value)


def _is_dataset(item: object) -> bool:
    """A dataset of an open file, or an array of a surface made in memory (``_Stored``)."""
    if isinstance(item, np.ndarray):
        return True
    import h5py

    return isinstance(item, h5py.Dataset)


def _read_vector(f: h5py.File | _Stored, key: str, path: Path) -> np.ndarray:
    item = f[key]
    if not _is_dataset(item):
        raise UserError(f"{path}: '{key}' is not a dataset; not a surface file")
    try:
        values = np.asarray(item[()], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: '{key}' is not numeric") from None
    values = np.atleast_1d(values)
    if values.ndim != 1 or values.size == 0:
        raise UserError(f"{path}: '{key}' must be a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise UserError(f"{path}: '{key}' holds NaN or infinite coordinates")
    return values


def _read_field(f: h5py.File | _Stored, name: str, expected: tuple[int, ...], path: Path) -> np.ndarray | None:
    """One metric dataset, NaN where not finite; None for a dataset that is no per-point field.

    A registered metric of the wrong shape is an error (with a hint when transposed); an
    undeclared dataset of another shape or type is someone else's data, left unread.
    """
    known = registry.describe(name).known
    item = f[name]
    if not _is_dataset(item):
        if known:
            raise UserError(f"{path}: '{name}' is not a dataset")
        return None
    try:
        values = np.asarray(item[()], dtype=np.float64)
    except (TypeError, ValueError):
        if known:
            raise UserError(f"{path}: '{name}' is not numeric") from None
        return None
    if len(expected) == 1 and values.shape == (expected[0], 1):
        values = values[:, 0]
    if values.shape != expected:
        if not known:
            return None
        hint = ""
        if len(expected) == 2 and values.shape == expected[::-1]:
            hint = " (it looks transposed: surfaces store Z[j, i] = f(x[i], y[j]))"
        raise UserError(f"{path}: '{name}' has shape {values.shape}, expected {expected} from the coordinates{hint}")
    values = values.copy()
    values[~np.isfinite(values)] = np.nan
    return values


def _field_order(f: h5py.File | _Stored) -> list[str]:
    """Registered metrics in the registry's order (the order the plots and exports always
    had), then any other dataset in the file's order."""
    known = [n for n in registry.dataset_order() if n in f]
    return known + [n for n in f if n not in known]


def load_surface(surface_path: str | Path) -> Surface:
    """Reads and checks a surface file; a file that is not one is a ``UserError``.

    A 2-D surface with a single row (or column) is returned as the 1-D surface it is.
    """
    import h5py

    path = Path(surface_path)
    if not path.is_file():
        raise UserError(f"{path}: no such surface file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path}: not an HDF5 file; expected a surface file with '{X_COORDINATES}'") from None
    with f:
        return _read(f, path)


def surface_from_bytes(data: bytes, name: str = "surface.h5") -> Surface:
    """A surface file's bytes (from storage, or made in memory by the Python API), read and checked
    as ``load_surface`` reads a file; ``name`` stands for the path in messages."""
    import h5py

    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError:
        raise UserError(f"{name}: not an HDF5 file; expected a surface file with '{X_COORDINATES}'") from None
    with f:
        return _read(f, Path(name))


def _read(f: h5py.File | _Stored, path: Path) -> Surface:
    if X_COORDINATES not in f:
        raise UserError(f"{path}: not a surface file (no '{X_COORDINATES}' dataset)")
    x = _read_vector(f, X_COORDINATES, path)
    y = _read_vector(f, Y_COORDINATES, path) if Y_COORDINATES in f else None
    attrs = {str(k): _text(v) for k, v in f.attrs.items()}
    expected = (len(y), len(x)) if y is not None else (len(x),)
    metrics: dict[str, np.ndarray] = {}
    unread: list[str] = []
    for name in _field_order(f):
        if name in COORDINATES:
            continue
        values = _read_field(f, name, expected, path)
        if values is None:
            unread.append(name)
        else:
            metrics[name] = values
    trajectory = _read_trajectory(f, path)
    if not metrics:
        known = ", ".join(n for m in registry.registered() for n in m.dataset_names())
        raise UserError(f"{path}: no metric datasets ({known}, or any other of the grid's shape); nothing to plot")
    return _collapsed(path, x, y, metrics, attrs, trajectory, tuple(unread))


def _collapsed(path: Path, x: np.ndarray, y: np.ndarray | None, metrics: dict[str, np.ndarray],
               attrs: dict[str, str], trajectory: tuple[np.ndarray, tuple[str, ...]] | None,
               unread: tuple[str, ...]) -> Surface:
    """The Surface, with a one-row or one-column 2-D grid turned into the 1-D curve it is."""
    xlabel = attrs.get("xlabel") or None
    ylabel = attrs.get("ylabel") or None
    if y is not None and len(y) == 1:  # one row: a 1-D surface along x
        y, ylabel = None, None
        metrics = {k: v[0, :] for k, v in metrics.items()}
    elif y is not None and len(x) == 1:  # one column: a 1-D surface along y
        x, y, xlabel, ylabel = y, None, (ylabel or "y"), None
        metrics = {k: v[:, 0] for k, v in metrics.items()}
    if y is None:
        xlabel = xlabel or "α"
    else:
        xlabel, ylabel = xlabel or "x", ylabel or "y"
    points = trajectory[0] if trajectory is not None else None
    if points is not None and (points.ndim == 2) != (y is not None):
        points = None  # a collapsed grid (one row or column): the path's plane is not drawn
    return Surface(path=path, x=x, y=y, metrics=metrics, attrs=attrs, xlabel=xlabel, ylabel=ylabel,
                   trajectory=points, trajectory_names=trajectory[1] if points is not None else (),
                   explained_variance=_json_floats(attrs.get(EXPLAINED_VARIANCE), path, EXPLAINED_VARIANCE),
                   unread=unread)


def _json_floats(text: str | None, path: Path, key: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in json.loads(text))
    except (ValueError, TypeError):
        raise UserError(f"{path}: attribute '{key}' is not a JSON list of numbers") from None


def _read_trajectory(f: h5py.File | _Stored, path: Path) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """``trajectory_x`` (and ``trajectory_y``) as one array, with the checkpoints' names."""
    if TRAJECTORY_X not in f:
        return None
    tx = np.atleast_1d(np.asarray(f[TRAJECTORY_X][()], dtype=np.float64))
    ty = np.atleast_1d(np.asarray(f[TRAJECTORY_Y][()], dtype=np.float64)) if TRAJECTORY_Y in f else None
    if tx.ndim != 1 or (ty is not None and ty.shape != tx.shape):
        raise UserError(f"{path}: '{TRAJECTORY_X}' and '{TRAJECTORY_Y}' must be 1-D arrays of one length")
    raw_names = f.attrs.get(TRAJECTORY_NAMES)
    names: tuple[str, ...] = ()
    if raw_names is not None:
        try:
            names = tuple(str(n) for n in json.loads(_text(raw_names)))
        except (ValueError, TypeError):
            raise UserError(f"{path}: attribute '{TRAJECTORY_NAMES}' is not a JSON list of strings") from None
    return (np.stack([tx, ty], axis=1) if ty is not None else tx), names
