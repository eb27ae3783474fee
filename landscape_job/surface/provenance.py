"""``surface.h5`` of a run's values with its provenance: the one writer both the merge stage and the API use.

The merge stage stores the file; the Python API (``landscape_job.api.compute``) keeps it in
memory, so both give the same file. Here, below the stages, so that the API's first call
imports the file's writer without the merge stage (its shard collection, the series merge).
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np

import landscape_job
from landscape_job.run.manifest import Manifest
from landscape_job.spec.direction_types import direction_type
from landscape_job.spec.sections import Spec
from landscape_job.surface.file import Surface, surface_bytes, surface_from_values


def axis_labels(spec: Spec, pca: dict | None = None) -> tuple[str, str]:
    variance = pca["explained_variance"] if pca is not None else None
    return direction_type(spec.directions.type).axis_labels(spec.directions.norm, variance)


def _surface_trajectory(pca: dict | None) -> dict | None:
    """The manifest's PCA entry in the shape ``surface_bytes`` stores."""
    if pca is None:
        return None
    path = pca["trajectory"]
    return {"x": path["x"], "y": path["y"], "names": path["names"], "explained_variance": pca["explained_variance"]}


def surface_file(spec: Spec, manifest: Manifest, flat: dict[str, np.ndarray]) -> bytes:
    """surface.h5 of a run's values (by flat point index) with its provenance and PCA path.

    The one writer of a run's surface: the merge stage stores it, the Python API
    (``landscape_job.api.compute``) keeps it in memory, so both give the same file.
    """
    return surface_bytes(spec.grid, flat, surface_attrs(spec, manifest), trajectory=_surface_trajectory(manifest.pca))


def surface_in_memory(spec: Spec, manifest: Manifest, flat: dict[str, np.ndarray],
                      name: str) -> tuple[Surface, Callable[[], bytes]]:
    """The Surface that ``surface_file``'s bytes hold, as ``surface_from_bytes`` reads them, and
    the writer of those bytes: the Python API's result, whose file is written only when it is
    saved (h5py is imported then, not on every plane)."""
    attrs, trajectory = surface_attrs(spec, manifest), _surface_trajectory(manifest.pca)
    surface = surface_from_values(spec.grid, flat, attrs, trajectory, name)
    return surface, lambda: surface_bytes(spec.grid, flat, attrs, trajectory=trajectory)


def surface_attrs(spec: Spec, manifest: Manifest) -> dict[str, object]:
    """surface.h5's provenance attributes (the paper's tools ignore them; ours label the plots with them)."""
    xlabel, ylabel = axis_labels(spec, manifest.pca)
    attrs = {"name": spec.name, "spec_hash": spec.hash, "direction_hash": manifest.direction_hash,
             "code_version": landscape_job.__version__, "precision": spec.compute.precision,
             "arch": spec.model.arch, "dataset": spec.data.dataset, "loss": spec.loss,
             "direction_type": spec.directions.type, "dir_type": manifest.dir_type,
             "norm": spec.directions.norm, "ignore": spec.directions.ignore, "seed": spec.directions.seed,
             "xlabel": xlabel, "ylabel": ylabel, "cosine_xy": manifest.cosine_xy, "title": spec.plot.title}
    if spec.directions.params is not None:  # which tensors moved: recorded, and shown in the titles
        attrs.update({"params": spec.directions.params.describe(),
                      "params_include": json.dumps(list(spec.directions.params.include)),
                      "params_exclude": json.dumps(list(spec.directions.params.exclude)),
                      "perturbed": manifest.perturbed})
    if manifest.direction_storage is not None:
        attrs["direction_storage"] = manifest.direction_storage
    hessian = manifest.hessian
    if hessian is not None:
        attrs.update({"sharpness": hessian["sharpness"], "hessian_trace": hessian["trace"],
                      "hessian_split": hessian["split"], "hessian_ignore": hessian["ignore"]})
    return attrs
