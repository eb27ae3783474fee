"""``manifest.json``, the run manifest: written by prepare, read by evaluate and merge (``run.records``
re-exports it with the shard records).

In a module of its own so that the Python API, which builds one for its surface's provenance,
does not define the shard and progress records (a frozen dataclass costs about a millisecond
to define; docs/performance.md). Read tolerantly, as every record is: a key an older writer
did not know reads as its default, a key a newer writer added is ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


def known_keys(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``raw`` that ``cls`` (a dataclass) has fields for."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: written by prepare; evaluate checks its direction hash, merge takes its provenance."""

    run: str | None = None
    spec_hash: str | None = None
    direction_hash: str | None = None
    dir_type: str | None = None
    tensors: int | None = None
    parameters: int | None = None
    cosine_xy: float | None = None
    #: Checkpoint URL (as the spec names it) -> sha256 of the file the directions came from.
    checkpoints: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    code_version: str | None = None
    torch_version: str | None = None
    created: str | None = None
    prepare_seconds: float | None = None
    #: The Hessian at θ* (``curvature.centre_analysis``'s summary); only when the run uses it.
    hessian: dict[str, Any] | None = None
    #: type pca: ``explained_variance`` and ``trajectory`` (``pca.Trajectory.to_dict``), so merge
    #: draws the path without the trajectory's checkpoints.
    pca: dict[str, Any] | None = None
    #: ``data.root`` file (as the spec names it) -> sha256, where the data files are few
    #: (an archive, a ``tensors`` folder); None in manifests from before, and where none are pinned.
    data_files: dict[str, str] | None = None
    #: A series run: ``checkpoints`` and ``steps`` as prepare listed them, ``layer_names`` (the
    #: tensors the Hessian, gradient and noise are taken over), ``threshold`` (2 + 2β)/η.
    series: dict[str, Any] | None = None
    #: ``seeded`` when directions.h5 holds a recipe (each pod regenerates the values); None: the values.
    direction_storage: str | None = None
    #: ``directions.params``: how many of ``parameters`` the directions move (None: all of them).
    perturbed: int | None = None
    #: Which points each shard owns and in which order (``grid.SHARD_ORDERS``): ``coarse-to-fine``
    #: for surfaces prepared since it; None (left out) reads as ``contiguous``, as every run before.
    shard_order: str | None = None

    #: Left out of the JSON when None, as they always were.
    _OPTIONAL = ("hessian", "pca", "data_files", "series", "direction_storage", "perturbed", "shard_order")
    #: The keys report.json's provenance copies.
    PROVENANCE = ("direction_hash", "dir_type", "seed", "checkpoints", "cosine_xy", "code_version", "torch_version")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (k in self._OPTIONAL and v is None)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        return cls(**known_keys(cls, json.loads(raw)))

    def provenance(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PROVENANCE}
