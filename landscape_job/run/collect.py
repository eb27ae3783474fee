"""Collecting a run's shards for merge: every point present exactly once, from shards of this run.

Both merges (a surface's and a series') read their shards through here, so the checks a
shard must pass are written once: this run's spec and direction hashes, only its own
points, each once, an intact file; together the shards cover the grid. A damaged or
foreign shard is moved aside (``shards/quarantine/``) so that a resume recomputes it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from landscape_job.base.errors import StageError
from landscape_job.run.files import MANIFEST_KEY, Log, quarantine, stderr_log, wait_for
from landscape_job.run.records import ShardRecord
from landscape_job.run.shards import read_shard, shard_key
from landscape_job.spec.sections import Spec
from landscape_job.storage import Storage


def wait_for_shards(run: Storage, spec: Spec, seconds: float, log: Log,
                    abort: Callable[[], str | None] | None = None) -> None:
    """Waits up to ``seconds`` for the manifest and every shard (a merge pod started with evaluate's)."""
    shards = [shard_key(i, spec.compute.shards) for i in range(spec.compute.shards)]
    wait_for(run, [MANIFEST_KEY, *shards], seconds, "the evaluate stage's shards", log, abort=abort)


def collect_shards(run: Storage, spec: Spec, direction_hash: str, log: Log = stderr_log,
                   shard_order: str | None = None) -> tuple[dict[str, np.ndarray], list[ShardRecord]]:
    """All shards' values as flat arrays; refuses missing, foreign, damaged or overlapping shards.

    A damaged or foreign shard is moved aside (``shards/quarantine/``, kept for inspection)
    before the refusal, so the next evaluate of that shard (a resume) recomputes it
    instead of the run refusing until someone deletes it by hand. ``shard_order`` is the
    manifest's: which points each shard owns (their order in the file does not matter:
    values are placed by flat index).
    """
    num_shards = spec.compute.shards
    present = set(run.list("shards/"))  # one listing, not a request per shard
    missing = [i for i in range(num_shards) if shard_key(i, num_shards) not in present]
    if missing:
        listed = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise StageError(f"merge: {len(missing)} of {num_shards} shards missing: {listed} "
                         f"(expected {run.url}/{shard_key(missing[0], num_shards)})")
    flat: dict[str, np.ndarray] = {}
    seen = np.zeros(spec.grid.size, dtype=np.int64)
    stats = []
    keys = [shard_key(i, num_shards) for i in range(num_shards)]
    # Fetched a few at a time (on S3 each is a round trip), checked in order as they come.
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        raws = pool.map(run.get, keys)
        for i, (key, raw) in enumerate(zip(keys, raws)):
            try:
                data = read_shard(raw, f"{run.url}/{key}")
            except StageError as err:
                _set_aside(run, key, f"merge: {err}", log)
            _check_shard(run, spec, direction_hash, i, key, data, flat, seen, stats, log, shard_order)
    absent = np.flatnonzero(seen == 0)
    if absent.size:
        owners = sorted(set(spec.grid.shard_of(absent[:100], num_shards, shard_order).tolist()))
        raise StageError(f"merge: {absent.size} grid points missing, e.g. flat index {absent[0]}; "
                         f"incomplete shards: {owners}")
    return flat, stats


def _set_aside(run: Storage, key: str, why: str, log: Log) -> None:
    """Moves a bad shard aside and stops the merge with one line saying where it went and what to do."""
    moved = quarantine(run, key, why, log)
    raise StageError(f"{why}; moved aside to {run.url}/{moved}; resume the run (evaluate recomputes the shard), "
                     "then merge")


#: Shards fetched at once by merge.
FETCH_THREADS = 8


def _check_shard(run: Storage, spec: Spec, direction_hash: str, i: int, key: str, data, flat: dict[str, np.ndarray],
                 seen: np.ndarray, stats: list[ShardRecord], log: Log, shard_order: str | None = None) -> None:
    """Adds shard ``i``'s values to ``flat``; a foreign shard is set aside, one out of place refused."""
    source = f"{run.url}/{key}"
    record = ShardRecord.from_attrs(data.attrs)
    if record.spec_hash != spec.hash:
        _set_aside(run, key, f"merge: {source} was computed for another spec (spec hash "
                             f"{str(record.spec_hash)[:12]} != {spec.hash[:12]})", log)
    if record.direction_hash != direction_hash:
        _set_aside(run, key, f"merge: {source} was computed with other directions", log)
    inside = (data.indices >= 0) & (data.indices < spec.grid.size)
    owner = np.full(len(data.indices), -1, dtype=np.int64)
    owner[inside] = spec.grid.shard_of(data.indices[inside], spec.compute.shards, shard_order)
    stray = data.indices[owner != i]
    if stray.size:
        raise StageError(f"merge: {source} holds points outside its range: {stray[:5].tolist()}")
    if len(np.unique(data.indices)) != len(data.indices):
        raise StageError(f"merge: {source} holds a point more than once")
    for name, values in data.metrics.items():
        flat.setdefault(name, np.full(spec.grid.size, np.nan))[data.indices] = values
    seen[data.indices] += 1
    stats.append(record)
