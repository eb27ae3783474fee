"""What the API server's objects say about a run: pure readers of Job, Pod and ConfigMap dicts.

The cluster commands (``launcher.commands``) and ``launcher estimate --cluster`` ask the
same questions of what the server returns: has this Job ended, and how; which shard is this
pod; how did its container exit. The answers live here once, without I/O, so that each is a
function of a dict and the commands differ only in what they do with it.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable

import yaml

#: Where an Indexed Job's pod carries its completion index (a label; an annotation on older servers).
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def indexes(text: str | None) -> list[int]:
    """``"1,3-5"`` (an Indexed Job's completedIndexes / failedIndexes) -> [1, 3, 4, 5]."""
    result: list[int] = []
    for part in (text or "").split(","):
        if part:
            low, _, high = part.partition("-")
            result.extend(range(int(low), int(high or low) + 1))
    return result


def end_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Complete or Failed condition if the Job has ended. FailureTarget, SuccessCriteriaMet and
    the like come earlier, while pods may still be running: they are not an end."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition
    return None


def job_state(job: dict[str, Any]) -> str:
    """One word for a Job: Complete, Failed, Suspended, Running or Pending (no pod active yet)."""
    condition = end_condition(job)
    if condition:
        return condition["type"]
    if (job.get("spec") or {}).get("suspend"):
        return "Suspended"
    return "Running" if (job.get("status") or {}).get("active") else "Pending"


def pod_index(pod: dict[str, Any]) -> int | None:
    """The shard an evaluate pod runs (its completion index); None for a prepare or merge pod."""
    meta = pod["metadata"]
    value = (meta.get("labels") or {}).get(INDEX_KEY) or (meta.get("annotations") or {}).get(INDEX_KEY)
    return int(value) if value is not None else None


def exit_code(pod: dict[str, Any]) -> int | None:
    """The exit code of the pod's container once it has terminated, else None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return terminated.get("exitCode")
    return None


def spec_of(config_map: dict[str, Any]) -> dict[str, Any]:
    """The run's spec as its ConfigMap holds it, parsed but not checked: enough to find storage and shards."""
    return yaml.safe_load((config_map.get("data") or {}).get("spec.yaml") or "{}") or {}


def attempt_order(pod: dict[str, Any]) -> tuple[str, bool, int]:
    """Sorts a shard's pods oldest attempt first. creationTimestamp has one-second resolution, so two
    attempts can tie: the Job controller replaces a failed pod, never a live one, so on a tie the failed
    pod is the older; then the server's resourceVersion (numeric on etcd-backed servers)."""
    meta = pod["metadata"]
    version = str(meta.get("resourceVersion") or "0")
    return (meta.get("creationTimestamp") or "", (pod.get("status") or {}).get("phase") != "Failed",
            int(version) if version.isdigit() else 0)


def newest(pods: Iterable[dict[str, Any]],
           key: Callable[[dict[str, Any]], Hashable | None]) -> dict[Hashable, dict[str, Any]]:
    """The newest pod for each ``key(pod)`` (None: left out). A retried shard leaves its failed pods
    behind; what a user asks about is the latest attempt."""
    latest: dict[Hashable, dict[str, Any]] = {}
    for pod in pods:
        k = key(pod)
        if k is None:
            continue
        if k not in latest or attempt_order(pod) > attempt_order(latest[k]):
            latest[k] = pod
    return latest
