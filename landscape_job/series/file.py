"""The series file, ``series.h5``: its format, its writer and its reader, in one place.

One row per checkpoint, in step order. Datasets (any HDF5 reader opens them; see the
"Series runs" in docs/science.md for the table):

* ``step`` (n,) int64, the training steps; ``checkpoint`` (n,) the checkpoints' URLs;
* every metric the run measured (``series_metrics``): ``train_loss``/``test_loss``,
  ``train_acc``/``test_acc`` (%), ``min_eig``, ``grad_norm``, ``top_k_share``,
  ``tail_index``, ``noise_norm``, ``lanczos_iterations``, ``lanczos_converged`` of
  shape (n,); ``top_eigenvalues``, ``grad_components``, ``predicted_delta`` of shape
  (n, k), column i the i-th largest eigenvalue's; ``tail_index_layers`` (n, L).

Attributes: ``lr``, ``momentum``, ``threshold`` = (2 + 2β)/η, ``top_k``, ``layer_names``
(JSON list, the columns of ``tail_index_layers``), and the run's provenance (``name``,
``spec_hash``, ``series_hash``, ``code_version``, ``arch``, ``dataset``, ``loss``,
``precision``, ``hessian_split``, ``hessian_ignore``).

Shards hold a row's vectors as flat columns (``key[i]``, ``series_metrics.column_name``);
``series_bytes`` stacks them back, so this module is the only one that knows both forms.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from landscape_job.base.errors import UserError
from landscape_job.run.files import SERIES_KEY
from landscape_job.spec.series_metrics import split_column
from landscape_job.storage import h5_bytes

__all__ = ["SERIES_KEY", "STEP", "CHECKPOINT", "LAYER_NAMES", "series_bytes", "stack_columns", "Series", "load_series",
           "is_series_file"]

STEP = "step"
CHECKPOINT = "checkpoint"
#: Attribute (JSON list): the parameter tensors of ``tail_index_layers``'s columns.
LAYER_NAMES = "layer_names"


def stack_columns(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Shard columns (``key`` and ``key[i]``, each (n,)) as datasets: (n,) and (n, width)."""
    scalars: dict[str, np.ndarray] = {}
    vectors: dict[str, dict[int, np.ndarray]] = {}
    for name, values in flat.items():
        key, index = split_column(name)
        if index is None:
            scalars[key] = np.asarray(values, dtype=np.float64)
        else:
            vectors.setdefault(key, {})[index] = np.asarray(values, dtype=np.float64)
    for key, columns in vectors.items():
        scalars[key] = np.stack([columns[i] for i in sorted(columns)], axis=1)
    return scalars


def series_bytes(steps: np.ndarray, checkpoints: list[str], flat: Mapping[str, np.ndarray],
                 attrs: Mapping[str, object], layer_names: list[str] | None = None) -> bytes:
    """``flat``: shard columns indexed by row (checkpoint index, the steps' order)."""
    datasets = stack_columns(flat)

    def write(handle) -> None:
        handle.create_dataset(STEP, data=np.asarray(steps, dtype=np.int64))
        handle.create_dataset(CHECKPOINT, data=np.array(checkpoints, dtype=h5py.string_dtype()))
        for name, values in datasets.items():
            handle.create_dataset(name, data=values)
        for key, value in attrs.items():
            if value is not None:
                handle.attrs[key] = value
        handle.attrs[LAYER_NAMES] = json.dumps(list(layer_names or []))

    return h5_bytes(write)


@dataclass(frozen=True)
class Series:
    """A series file, read: steps, checkpoint names, datasets by name, attributes."""

    steps: np.ndarray
    checkpoints: list[str]
    data: dict[str, np.ndarray]
    attrs: dict[str, object]

    @property
    def threshold(self) -> float:
        return float(self.attrs.get("threshold", np.nan))

    @property
    def layer_names(self) -> list[str]:
        return list(json.loads(str(self.attrs.get(LAYER_NAMES, "[]"))))

    def has(self, name: str) -> bool:
        return name in self.data

    @property
    def sharpness(self) -> np.ndarray:
        """λmax per row (NaN without hessian)."""
        top = self.data.get("top_eigenvalues")
        return top[:, 0] if top is not None and top.shape[1] else np.full(len(self.steps), np.nan)


def is_series_file(path: str | Path) -> bool:
    """Whether an HDF5 file is a series (it has ``step``), not a surface; False for anything unreadable."""
    try:
        with h5py.File(path, "r") as handle:
            return STEP in handle
    except OSError:
        return False


def load_series(path: str | Path) -> Series:
    """Reads a series file; a file that is not one is one line naming it."""
    return _read_series(path, str(path))


def series_from_bytes(data: bytes, name: str = "series.h5") -> Series:
    """A series file's bytes as read from a run's storage (``name``: what an error calls it)."""
    return _read_series(io.BytesIO(data), name)


def _read_series(source: str | Path | io.BytesIO, path: str) -> Series:
    try:
        with h5py.File(source, "r") as handle:
            if STEP not in handle:
                raise UserError(f"{path}: not a series file (no '{STEP}' dataset)")
            steps = np.asarray(handle[STEP][()], dtype=np.int64)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in handle[CHECKPOINT][()]] \
                if CHECKPOINT in handle else [str(s) for s in steps]
            data = {k: np.asarray(handle[k][()], dtype=np.float64) for k in handle if k not in (STEP, CHECKPOINT)}
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in handle.attrs.items()}
    except OSError as err:
        raise UserError(f"{path}: cannot read the series file ({str(err)[:200]})") from None
    for name, values in data.items():
        if values.shape[0] != len(steps):
            raise UserError(f"{path}: dataset {name} has {values.shape[0]} rows for {len(steps)} steps")
    return Series(steps=steps, checkpoints=names, data=data, attrs=attrs)
