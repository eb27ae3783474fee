"""Whether the run's evaluate Job has given up on some shards, asked of the Kubernetes API.

The merge pod waits for shards in storage; a shard whose index exhausted its retries
will never come, and waiting out the merge deadline for it helps nobody. So the merge pod
reads its evaluate Job's status, with its own service account (the run's Role allows get
on that one Job, ``launcher.kubernetes.gate``), and fails at once naming the failed indexes. A Job
that is gone (404: deleted, the run cancelled) or out of reach for good (403: the run's
Role deleted with it) is as final: no shard will come either. One GET with the mounted
token over the in-cluster TLS endpoint (``landscape_job.runtime.kube``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from landscape_job.runtime.events import post_event
from landscape_job.runtime.kube import ApiError, InCluster, in_cluster, job_path

JobReader = Callable[[], dict]


def job_failure(job: dict) -> str | None:
    """Why the Job's missing shards will never arrive, or None while they still may.

    Only ``Failed`` is terminal for the Job; ``failedIndexes`` lists indexes whose own
    retry budget (backoffLimitPerIndex) is spent, which no later pod will retry.
    """
    status = job.get("status") or {}
    failed = status.get("failedIndexes")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            reason = condition.get("reason") or "Failed"
            detail = f": {condition['message']}" if condition.get("message") else ""
            return f"the evaluate Job failed ({reason}{detail})" + (f"; failed indexes: {failed}" if failed else "")
    if failed:
        return f"evaluate Job indexes {failed} failed and will not be retried; see their pods' logs"
    return None


def job_reader(url: str, token_file: Path, ca_file: Path | None = None, timeout: float = 10.0) -> JobReader:
    """A function that GETs one Job as JSON; the token is re-read each time (it rotates)."""
    api = InCluster(url, token_file, ca_file if ca_file and url.startswith("https") else None, timeout)
    return lambda: api.request("GET", "")


def in_cluster_reader(job_name: str | None, namespace: str | None) -> JobReader | None:
    """The reader for this pod's evaluate Job, or None outside a cluster."""
    api = in_cluster()
    if not (job_name and namespace and api):
        return None
    path = job_path(namespace, job_name)
    return lambda: api.request("GET", path)


def failure_check(reader: JobReader, log: Callable[[str], None], job: str | None = None) -> Callable[[], str | None]:
    """Wraps a reader for the merge stage's wait: API hiccups (unreachable, 5xx, 429) are logged once,
    never fatal; a Job deleted (404) or forbidden (403) is final. A failure found is posted as a
    ``ShardsFailed`` event on the Job ``job`` (the evaluate Job)."""
    warned = False

    def check() -> str | None:
        nonlocal warned
        try:
            failure = job_failure(reader())
            if failure and job:
                post_event(job, "ShardsFailed", failure, log, warning=True)
            return failure
        except ApiError as err:
            if err.code in (403, 404):
                gone = "is gone (deleted; the run cancelled?)" if err.code == 404 else "is out of reach (forbidden)"
                return f"the evaluate Job {gone}: {err.message}"
            trouble: Exception = err
        except (OSError, ValueError) as err:
            trouble = err
        if not warned:
            log(f"merge: cannot read the evaluate Job's status ({trouble}); waiting on storage alone")
            warned = True
        return None

    return check
