"""The records one stage writes and another reads: the run manifest, a shard's attributes, a shard's progress.

They cross process (and machine) boundaries through storage, and outlive the code that
wrote them: a run started by an older version must still resume and merge. So each
record is a typed dataclass here, written key for key as before (same names, same
order, same optional keys left out) and read tolerantly: a key an older writer did not
know reads as its default, a key a newer writer added is ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


def _known(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def _plain(value: object) -> object:
    """A numpy scalar read from HDF5 attributes as the Python value it was written from."""
    return value.item() if hasattr(value, "item") else value


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
        return cls(**_known(cls, json.loads(raw)))

    def provenance(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PROVENANCE}


@dataclass(frozen=True)
class ShardRecord:
    """The attributes of a shard file (and of its in-progress checkpoint): what it was computed
    against (merge refuses foreign shards), where, and, once complete, how long it took."""

    spec_hash: str | None = None
    direction_hash: str | None = None
    shard: int | None = None
    num_shards: int | None = None
    precision: str | None = None
    device: str | None = None
    host: str | None = None
    code_version: str | None = None
    #: This attempt's number: 1 for the first worker on the shard, +1 for each restart.
    attempts: int | None = None
    points_per_forward: int | None = None
    compile_seconds: float | None = None
    data_on_device: bool | None = None
    channels_last: bool | None = None
    # Set when the shard is complete (None in a checkpoint):
    elapsed_s: float | None = None
    points_computed: int | None = None
    points_resumed: int | None = None
    seconds_per_point: float | None = None
    #: Of the points this attempt computed, those whose Lanczos run did not converge (metrics with hessian).
    hessian_unconverged: int | None = None
    # Added with fp16 and memory planning (issue 18); absent (None) in older shards:
    #: Why ``precision`` (the one in use) was chosen: ``auto: ...`` or ``as the spec says``.
    precision_reason: str | None = None
    #: The batch size in use at the end: ``batch_size: auto``'s choice, halved by each OOM.
    batch_size: int | None = None
    #: Times an out-of-memory error halved the batch during this attempt's points.
    oom_halvings: int | None = None
    #: Peak device memory (bytes) the allocator handed out during the points; None on a CPU.
    peak_device_bytes: int | None = None
    #: Peak resident host memory (bytes) of the worker process.
    peak_host_rss_bytes: int | None = None
    #: Of the points this attempt computed, those whose fp16 logits overflowed (their values are NaN).
    nonfinite_points: int | None = None

    #: The report's per-shard entry, in this order.
    REPORT_FIELDS = ("shard", "device", "host", "elapsed_s", "points_computed", "points_resumed",
                     "seconds_per_point", "attempts", "points_per_forward", "compile_seconds",
                     "precision", "batch_size", "oom_halvings", "peak_device_bytes", "peak_host_rss_bytes",
                     "nonfinite_points")

    def to_attrs(self) -> dict[str, object]:
        """HDF5 attributes in the order they were always written; unset keys are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object]) -> ShardRecord:
        return cls(**{k: _plain(v) for k, v in _known(cls, attrs).items()})

    def report_entry(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.REPORT_FIELDS}


@dataclass(frozen=True)
class ProgressRecord:
    """``shards/shard-<i>-of-<n>.progress.json``: a running shard's state, rewritten every few seconds.

    ``launcher status`` and the local backend's progress bar read it; the next attempt of
    the shard reads ``attempt`` to number itself. The defaults are what a reader shows for
    a key an older writer did not write.
    """

    shard: int | None = None
    num_shards: int | None = None
    done: int = 0
    total: int | None = None
    #: Points per second computed by this attempt (resumed points not counted).
    rate: float = 0.0
    eta_s: float | None = None
    host: str = "?"
    device: str = "?"
    #: ``running`` or ``done``.
    state: str = "?"
    updated: float | None = None
    attempt: int = 1
    points_per_forward: int = 1
    compile_seconds: float = 0.0
    #: Why the attempt was stopped, where its disk or memory was full at SIGTERM (``runtime.disk``).
    stopped_for: str | None = None
    #: The UID of the Job whose pod wrote it (a verdict counts only within that Job).
    job: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProgressRecord:
        """Raises ValueError (or TypeError) for a damaged object, which every reader skips."""
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("progress record is not a JSON object")
        known = _known(cls, parsed)
        if known.get("rate") is None:
            known.pop("rate", None)
        return cls(**known)
