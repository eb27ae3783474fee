"""Under Kueue the evaluate pod that finishes the last shard releases merge (``launcher.kubernetes.gate``).

Merge then neither holds a pod nor Kueue quota while the shards run, and its deadline
counts from the end of evaluate. "Last" is read from the progress tally (one listing,
``landscape_job.run.tally``): each worker writes its shard's ``done`` before it looks, so of
two shards finishing together at least the later one sees all done (both may release:
the patch is idempotent). A release that fails is this pod's failure (exit 1): its retry
finds the shard complete and releases again.
"""

from __future__ import annotations

import os

from landscape_job.run.files import Log
from landscape_job.run.tally import read_tallies
from landscape_job.runtime.release import MERGE_RELEASE_ENV, release_next_stages
from landscape_job.storage import Storage


def release_merge_if_last(run: Storage, num_shards: int, log: Log) -> bool:
    """Releases merge if this pod was told to and every shard is done; whether it did."""
    if not os.environ.get(MERGE_RELEASE_ENV):
        return False
    tallies = read_tallies(run, num_shards)
    if len(tallies) < num_shards or any(t.state != "done" for t in tallies.values()):
        return False
    release_next_stages(log, env_name=MERGE_RELEASE_ENV)
    return True
