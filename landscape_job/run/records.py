"""The records one stage writes and another reads: the run manifest (``run.manifest``, re-exported
here), a shard's attributes, a shard's progress.

They cross process (and machine) boundaries through storage, and outlive the code that
wrote them: a run started by an older version must still resume and merge. So each
record is a typed dataclass here, written key for key as before (same names, same
order, same optional keys left out) and read tolerantly: a key an older writer did not
know reads as its default, a key a newer writer added is ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Mapping

from landscape_job.run.manifest import Manifest, known_keys

__all__ = ["Manifest", "ProgressRecord", "ShardRecord"]


def _plain(value: object) -> object:
    """A numpy scalar read from HDF5 attributes as the Python value it was written from."""
    return value.item() if hasattr(value, "item") else value


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
        return cls(**{k: _plain(v) for k, v in known_keys(cls, attrs).items()})

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
        known = known_keys(cls, parsed)
        if known.get("rate") is None:
            known.pop("rate", None)
        return cls(**known)
