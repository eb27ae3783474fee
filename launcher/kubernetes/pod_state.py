"""Why a run's pods are not running: typed records read from the server's Pod, Event and Job objects.

``kubectl describe`` habits, as pure functions: a pod that waits (ImagePullBackOff with
the image, CreateContainerConfigError for a missing Secret, ContainerCreating held by a
FailedMount), a pod the scheduler cannot place (the PodScheduled=False condition and its
message), a Job that cannot create pods at all (a Pod Security or admission rejection:
its FailedCreate events), a Job suspended until Kueue admits it. Without this a Job with
such pods reads ``Running`` while nothing runs, and no one sees why.

``launcher.kubernetes.cluster`` turns Event objects into ``Event`` records; ``launcher status``
turns pods into ``PodView`` records; ``launcher.commands.views`` prints both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from launcher.kubernetes.job_state import exit_code, pod_index
from launcher.kubernetes.names import STAGE_LABEL
from launcher.kubernetes.render import KUEUE_LABEL

#: Container waiting reasons that mean "stuck until someone acts", as opposed to a pod starting.
STUCK_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
                           "CreateContainerError", "CrashLoopBackOff", "RunContainerError"})
#: Events shown under each stage by ``launcher status`` (Warnings first, then the newest).
EVENTS_SHOWN = 5
#: Bound on a message from the server (a scheduler's message can list every node).
MESSAGE_LIMIT = 300


def _cut(text: object, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class PodView:
    """One pod as ``launcher status`` shows it: where it is, and why it waits if it does."""

    name: str
    stage: str
    index: int | None
    phase: str
    reason: str | None = None
    message: str | None = None
    image: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    created: str = ""

    @property
    def stuck(self) -> bool:
        """Waiting for something a person must fix (or a scheduler must find): not merely starting."""
        return self.reason in STUCK_REASONS or self.reason == "Unschedulable"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_api(cls, pod: dict[str, Any]) -> PodView:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        reason, message, image = pod_problem(pod)
        restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
        return cls(name=meta.get("name", "?"), stage=(meta.get("labels") or {}).get(STAGE_LABEL, "?"),
                   index=pod_index(pod), phase=status.get("phase") or "Unknown", reason=reason, message=message,
                   image=image, restarts=restarts, exit_code=exit_code(pod), created=meta.get("creationTimestamp", ""))


def pod_problem(pod: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(reason, message, image) of why a pod is not running: a waiting container, else an unscheduled pod.

    A container's waiting state names the kubelet's reason (``ImagePullBackOff``: ``Back-off
    pulling image "..."``); before a node is chosen there is no container status, and the
    reason is the PodScheduled=False condition with the scheduler's message.
    """
    status = pod.get("status") or {}
    containers = {c.get("name"): c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            image = container.get("image") or containers.get(container.get("name"))
            return waiting["reason"], _cut(waiting.get("message")) or None, image
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return condition.get("reason") or "Unschedulable", _cut(condition.get("message")) or None, None
    return None, None, None


@dataclass(frozen=True)
class Event:
    """One core/v1 Event about an object of the run (a Job, a pod)."""

    kind: str
    name: str
    type: str
    reason: str
    message: str
    count: int = 1
    last_seen: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_api(cls, event: dict[str, Any]) -> Event:
        involved = event.get("involvedObject") or event.get("regarding") or {}
        series = event.get("series") or {}
        last = (event.get("lastTimestamp") or series.get("lastObservedTime") or event.get("eventTime")
                or (event.get("metadata") or {}).get("creationTimestamp") or "")
        return cls(kind=involved.get("kind", "?"), name=involved.get("name", "?"), type=event.get("type") or "Normal",
                   reason=event.get("reason") or "", message=_cut(event.get("message") or event.get("note")),
                   count=int(event.get("count") or series.get("count") or 1), last_seen=last)


def latest_events(events: list[Event], limit: int = EVENTS_SHOWN) -> list[Event]:
    """The newest ``limit`` events, Warnings before Normal ones, newest first within each."""
    ordered = sorted(events, key=lambda e: e.last_seen, reverse=True)
    return sorted(ordered, key=lambda e: e.type != "Warning")[:limit]


def kueue_wait(job: dict[str, Any]) -> str | None:
    """Why a suspended Job waits, if Kueue holds it: the queue it waits in for admission."""
    meta, spec = job.get("metadata") or {}, job.get("spec") or {}
    queue = (meta.get("labels") or {}).get(KUEUE_LABEL)
    if spec.get("suspend") and queue:
        return f"waiting for Kueue admission in queue {queue} (kubectl get workloads -n {meta.get('namespace', '')})"
    return None
