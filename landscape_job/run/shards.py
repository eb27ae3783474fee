"""Shard files: the flat point indices a worker evaluated and the values it got.

A shard (and its in-progress checkpoint, same format) carries the spec and direction
hashes it was computed against, so merge can refuse anything foreign, and a content
checksum of its arrays, so a truncated or altered object is named rather than merged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from landscape_job.base.errors import StageError
from landscape_job.storage import h5_attrs, h5_bytes, open_h5


def shard_key(shard: int, num_shards: int) -> str:
    return f"shards/shard-{shard}-of-{num_shards}.h5"


def partial_key(shard: int, num_shards: int) -> str:
    return f"shards/shard-{shard}-of-{num_shards}.partial.h5"


def memory_snapshot_key(shard: int, num_shards: int) -> str:
    """``compute.memory_snapshot``'s pickle (CUDA allocation history) of a shard."""
    return f"shards/shard-{shard}-of-{num_shards}.memory.pickle"


#: Where a damaged or foreign shard (or partial) is moved, kept for inspection, before it is recomputed.
QUARANTINE_PREFIX = "shards/quarantine/"


def quarantine_key(key: str, stamp: str) -> str:
    """``shards/shard-1-of-4.h5`` -> ``shards/quarantine/shard-1-of-4.h5.<stamp>``."""
    return f"{QUARANTINE_PREFIX}{key.rpartition('/')[2]}.{stamp}"


def segment_prefix(shard: int, num_shards: int) -> str:
    """The keys of a worker's checkpoint segments start with this.

    A checkpoint writes only the points finished since the previous one, as a new
    object (storage is whole objects: appending to one would mean rewriting it, which
    made checkpointing quadratic in the shard's size). Resuming reads them all back.
    """
    return f"shards/shard-{shard}-of-{num_shards}.partial-"


def segment_key(shard: int, num_shards: int, first: int) -> str:
    """One checkpoint segment, named by its first point (unique: a point is saved once per attempt)."""
    return f"{segment_prefix(shard, num_shards)}{first:012d}.h5"


def progress_key(shard: int, num_shards: int) -> str:
    return f"shards/shard-{shard}-of-{num_shards}.progress.json"


@dataclass
class ShardData:
    indices: np.ndarray
    metrics: dict[str, np.ndarray]
    attrs: dict[str, object] = field(default_factory=dict)

    def checksum(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.indices, dtype=np.int64).tobytes())
        for name in sorted(self.metrics):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.metrics[name], dtype=np.float64).tobytes())
        return digest.hexdigest()


def shard_bytes(data: ShardData) -> bytes:
    def write(handle) -> None:
        handle.create_dataset("indices", data=np.asarray(data.indices, dtype=np.int64))
        for name, values in data.metrics.items():
            handle.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        for key, value in data.attrs.items():
            handle.attrs[key] = value
        handle.attrs["checksum"] = data.checksum()

    return h5_bytes(write)


def read_shard(raw: bytes, source: str) -> ShardData:
    """Parses and verifies a shard; a damaged one raises StageError naming ``source``."""
    try:
        with open_h5(raw) as handle:
            indices = np.asarray(handle["indices"][()], dtype=np.int64)
            metrics = {k: np.asarray(handle[k][()], dtype=np.float64) for k in handle if k != "indices"}
            attrs = h5_attrs(handle)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as err:  # h5py's words for a damaged file
        raise StageError(f"{source}: unreadable or truncated shard ({str(err)[:200]})") from None
    data = ShardData(indices=indices, metrics=metrics, attrs=attrs)
    expected = attrs.pop("checksum", None)
    if expected != data.checksum():
        raise StageError(f"{source}: checksum mismatch; the shard is corrupted")
    return data
