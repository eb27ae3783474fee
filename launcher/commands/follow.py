"""``launcher submit --wait``: follow a run until merge completes or a Job fails.

Polls the run's Jobs and its shards' progress every ``--interval`` seconds, draws the
points on a progress bar (``launcher.progress``), and ends as the run does: the results'
URLs once merge completes, one error line that says how to resume when a Job fails.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from landscape_job.base.errors import StageError
from landscape_job.stages import SERIES_KEY
from landscape_job.storage import Storage

from launcher.commands.cluster_run import jobs_by_stage, read_progress
from launcher.commands.views import done_lines, job_failure
from launcher.kubernetes.job_state import job_state
from launcher.progress import advance_to, points_bar
from launcher.kubernetes.render import STAGES

if TYPE_CHECKING:
    from tqdm import tqdm

    from launcher.kubernetes.cluster import Cluster


def follow(cluster: Cluster, run: Storage, run_id: str, shards: int, points: int, interval: float) -> None:
    """Polls until merge completes (prints where the results are) or a Job fails (StageError).

    Ctrl-C stops the following, not the run: the Jobs go on in the cluster.
    """
    try:
        with points_bar(points, sys.stderr) as bar:
            _until_merged(cluster, run, run_id, shards, points, interval, bar)
    except KeyboardInterrupt:
        print(f"stopped following; run {run_id} goes on in the cluster (launcher status {run_id})", file=sys.stderr)
        raise
    print(done_lines(run.url, series=run.exists(SERIES_KEY)))


def stop_error(run_id: str, jobs: dict[str, dict[str, Any]]) -> str | None:
    """Why following must stop with an error (the Jobs gone, a stage failed), or None to go on."""
    if not jobs:
        return f"run {run_id}: its Jobs are gone (cancelled?)"
    for stage in STAGES:
        if stage in jobs and job_state(jobs[stage]) == "Failed":
            return (f"run {run_id}: {job_failure(jobs[stage], stage)}; see launcher status {run_id}. "
                    f"To resume: launcher cancel {run_id}, then submit again with --run-id {run_id}")
    return None


def merged(jobs: dict[str, dict[str, Any]]) -> bool:
    """The run is done: its merge Job completed."""
    return "merge" in jobs and job_state(jobs["merge"]) == "Complete"


def _until_merged(cluster: Cluster, run: Storage, run_id: str, shards: int, points: int, interval: float,
                  bar: tqdm) -> None:
    while True:
        jobs = jobs_by_stage(cluster, run_id)
        advance_to(bar, sum(p.done for p in read_progress(run, shards).values()))
        error = stop_error(run_id, jobs)
        if error:
            raise StageError(error)
        if merged(jobs):
            advance_to(bar, points)
            return
        time.sleep(interval)
