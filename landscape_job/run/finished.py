"""The points a run has finished so far, from its storage: finished shards and checkpoint segments.

A preview of a running (or stopped) run draws these (``plots.preview``). Nothing is
merged or written: every object is read, checked (checksum, this run's spec and
direction hashes) and its values placed by flat index; a damaged or foreign object is
skipped, never quarantined (that is the stages' business), and a segment that vanishes
between the listing and the read (its shard finished meanwhile) is simply not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape_job.base.errors import StageError
from landscape_job.run.files import read_manifest, read_run_spec
from landscape_job.run.records import ShardRecord
from landscape_job.run.shards import read_shard
from landscape_job.spec.sections import Spec
from landscape_job.storage import NotFound, Storage


@dataclass
class FinishedPoints:
    """A run's values so far, by flat grid index (NaN where not finished)."""

    spec: Spec
    #: Metric name -> values over the whole grid, flat (row-major), NaN where ``done`` is False.
    values: dict[str, np.ndarray]
    #: Which flat points are finished.
    done: np.ndarray
    #: The manifest's shard order (None: contiguous, a run from before shard orders).
    shard_order: str | None
    #: Objects read, and those skipped (damaged or of another spec or directions).
    objects: int = 0
    skipped: int = 0

    @property
    def count(self) -> int:
        return int(self.done.sum())

    def metric(self, name: str | None = None) -> tuple[str, np.ndarray]:
        """One metric's flat values: ``name``, or the first of the run's (the first split's loss)."""
        if not self.values:
            raise StageError("preview: no finished points yet")
        if name is None:
            losses = [f"{split}_loss" for split in self.spec.data.splits if f"{split}_loss" in self.values]
            name = losses[0] if losses else next(iter(self.values))
        if name not in self.values:
            raise StageError(f"preview: no metric {name!r}; the run has {', '.join(self.values)}")
        return name, self.values[name]


def _is_shard_object(key: str) -> bool:
    """A finished shard, a checkpoint segment or a pre-segment ``.partial.h5`` (not quarantine, progress, memory)."""
    return key.startswith("shards/shard-") and key.endswith(".h5")


def finished_points(run: Storage) -> FinishedPoints:
    """Every finished point of the run in ``run``, read from its shards and checkpoint segments."""
    spec = read_run_spec(run)
    manifest = read_manifest(run)
    size = spec.grid.size
    values: dict[str, np.ndarray] = {}
    done = np.zeros(size, dtype=bool)
    objects = skipped = 0
    for key in sorted(k for k in run.list("shards/") if _is_shard_object(k)):
        try:
            data = read_shard(run.get(key), f"{run.url}/{key}")
        except NotFound:
            continue  # a segment deleted as its shard finished; the shard file holds its points
        except StageError:
            skipped += 1
            continue
        record = ShardRecord.from_attrs(data.attrs)
        if record.spec_hash != spec.hash or record.direction_hash != manifest.direction_hash:
            skipped += 1
            continue
        objects += 1
        inside = (data.indices >= 0) & (data.indices < size)
        indices = data.indices[inside]
        for name, column in data.metrics.items():
            values.setdefault(name, np.full(size, np.nan))[indices] = column[inside]
        done[indices] = True
    return FinishedPoints(spec=spec, values=values, done=done, shard_order=manifest.shard_order,
                          objects=objects, skipped=skipped)
