"""A shard stopped because its disk or memory was full is not retried into the same wall.

On SIGTERM an evaluate worker asks ``landscape_job.runtime.disk.stop_verdict`` whether its
pod's disk or memory was full, and writes the answer into the shard's progress record
(``record_stop``). The next attempt of the shard in the same Job reads it first
(``refuse_after_full_stop``) and exits 2 with it: the pod failure policy fails the index at
once, saying why, instead of retrying an eviction until the stage's deadline with a GPU
held and the inputs downloaded again each time. A preempted or drained pod leaves no
verdict and is resumed as before; a new Job (the run resubmitted) starts afresh.
"""

from __future__ import annotations

import os
from dataclasses import replace

from landscape_job.base.errors import UserError
from landscape_job.run.files import Log
from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import progress_key
from landscape_job.runtime.disk import stop_verdict
from landscape_job.storage import NotFound, Storage

#: The UID of the pod's Job (the downward API's ``batch.kubernetes.io/controller-uid`` label).
JOB_UID_ENV = "LANDSCAPE_JOB_UID"


def _record(run: Storage, shard: int, num_shards: int) -> ProgressRecord | None:
    try:
        return ProgressRecord.from_json(run.get(progress_key(shard, num_shards)))
    except (NotFound, ValueError, TypeError):
        return None


def refuse_after_full_stop(run: Storage, shard: int, num_shards: int) -> None:
    """A UserError (exit 2, the index fails) where this Job's previous attempt of the shard was stopped full."""
    job = os.environ.get(JOB_UID_ENV)
    record = _record(run, shard, num_shards)
    if record is not None and record.stopped_for and job and record.job == job:
        raise UserError(f"shard {shard}: the previous attempt was stopped for {record.stopped_for}; retrying "
                        "would fill it again")


def record_stop(run: Storage, shard: int, num_shards: int, log: Log) -> None:
    """On SIGTERM: the verdict, if the pod was full, into the shard's progress record."""
    verdict = stop_verdict()
    if verdict is None:
        return
    record = _record(run, shard, num_shards) or ProgressRecord(shard=shard, num_shards=num_shards)
    run.put(progress_key(shard, num_shards),
            replace(record, state="terminated", stopped_for=verdict, job=os.environ.get(JOB_UID_ENV)).to_json())
    log(f"evaluate: stopped for {verdict}")
