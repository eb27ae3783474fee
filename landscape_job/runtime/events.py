"""Kubernetes Events on the run's Jobs, posted by its pods: what ``kubectl describe job`` and
event-based alerting see of a run's stage transitions.

* ``Released`` (Normal) on evaluate and merge, when prepare (or, under Kueue, the last shard)
  releases them;
* ``ShardsFailed`` (Warning) on evaluate, when the merge pod's watch finds indexes that
  failed for good (a user error fails its index at once);
* ``Merged`` (Normal) on merge, when the merged results are in storage.

One POST each with the pod's own token (the run's Role allows ``create`` on events, which
RBAC cannot narrow by name). An event is a notice, never a step of the run: one that cannot
be posted is logged and the run goes on.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Callable, Mapping

from landscape_job.runtime.kube import ApiError, in_cluster

#: The name of the pod's own Job (the downward API's ``batch.kubernetes.io/job-name`` label).
JOB_NAME_ENV = "LANDSCAPE_JOB_NAME"


def post_event(job: str, reason: str, message: str, log: Callable[[str], None], warning: bool = False,
               environ: Mapping[str, str] = os.environ) -> bool:
    """Records a core/v1 Event about the Job ``job``; whether it was recorded (False outside a cluster)."""
    api, namespace = in_cluster(environ), environ.get("LANDSCAPE_NAMESPACE", "")
    if api is None or not job or not namespace:
        return False
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{job}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": job, "namespace": namespace},
            "reason": reason, "message": message[:1024], "type": "Warning" if warning else "Normal", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "landscape"},
            "reportingComponent": "landscape", "reportingInstance": socket.gethostname()[:128]}
    try:
        api.request("POST", f"/api/v1/namespaces/{namespace}/events", body)
        return True
    except (ApiError, OSError, ValueError) as err:
        log(f"note: event {reason} on job {job} not recorded: {err}")
        return False
