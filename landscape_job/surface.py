"""The merged surface file, in the layout the paper's plotting tools read.

``xcoordinates`` (nx,), ``ycoordinates`` (ny,) for 2-D, and one dataset per metric:
shape (nx,) for 1-D, (ny, nx) for 2-D with ``Z[j, i] = f(x[i], y[j])`` (square or not).
Accuracies are in percent. Provenance rides along as attributes. A PCA run adds its projected training path:
``trajectory_x`` (and ``trajectory_y`` for 2-D), one entry per checkpoint in training
order with the final model last, with attributes ``trajectory_names`` and
``explained_variance`` (JSON lists).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from landscape_job.grid import Grid
from landscape_job.storage import h5_bytes

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def surface_bytes(grid: Grid, flat_metrics: Mapping[str, np.ndarray], attrs: Mapping[str, object],
                  trajectory: Mapping[str, Any] | None = None) -> bytes:
    """``flat_metrics`` are indexed by flat point index p = j * nx + i.

    ``trajectory`` holds ``x``, ``y`` (None for 1-D), ``names`` and ``explained_variance``.
    """

    def write(handle) -> None:
        handle.create_dataset("xcoordinates", data=grid.x.values())
        if grid.y is not None:
            handle.create_dataset("ycoordinates", data=grid.y.values())
        for name, values in flat_metrics.items():
            handle.create_dataset(name, data=np.asarray(values, dtype=np.float64).reshape(grid.shape))
        for key, value in attrs.items():
            if value is not None:
                handle.attrs[key] = value
        if trajectory is not None:
            handle.create_dataset("trajectory_x", data=np.asarray(trajectory["x"], dtype=np.float64))
            if trajectory.get("y") is not None:
                handle.create_dataset("trajectory_y", data=np.asarray(trajectory["y"], dtype=np.float64))
            handle.attrs["trajectory_names"] = json.dumps(list(trajectory["names"]))
            handle.attrs["explained_variance"] = json.dumps([float(v) for v in trajectory["explained_variance"]])

    return h5_bytes(write)
