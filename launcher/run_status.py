"""What ``launcher status`` knows of a run, as one typed record: built by pure functions, printed two ways.

From the cluster (its Jobs, the pods that wait or failed, their events, the shards'
progress in storage) or from storage alone (a local run, or any run's prefix: spec,
manifest, shard and progress records, ``local.json``), the same ``RunStatus`` comes out;
``launcher.commands.views`` prints it as lines, ``to_dict`` is ``-o json|yaml`` (keys
documented in the README, stable: new keys may come, none goes or changes meaning).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import shard_key
from landscape_job.stages import MANIFEST_KEY, SERIES_KEY, SURFACE_KEY

from launcher.backends.done import missing_outputs
from launcher.kubernetes.job_state import end_condition, indexes, job_state, spec_of
from launcher.local.record import CANCELLED, FAILED, RUNNING, LocalRunRecord
from launcher.kubernetes.pod_state import Event, PodView, kueue_wait
from launcher.kubernetes.render import STAGES
from launcher.kubernetes.names import RUN_LABEL, STAGE_LABEL

#: Pods listed under a stage; more are counted.
PODS_SHOWN = 10
#: A run's states that are an end without a result.
FAILED_STATES = ("Failed", "Cancelled", "Stopped", "Gone")


@dataclass(frozen=True)
class StageStatus:
    """One stage: its state (Complete, Failed, Running, Waiting, Pending, Suspended, Gone), why, its pods."""

    stage: str
    state: str
    reason: str | None = None
    message: str | None = None
    shards_total: int | None = None
    shards_complete: int | None = None
    shards_failed: tuple[int, ...] = ()
    active: int = 0
    pods: tuple[PodView, ...] = ()
    events: tuple[Event, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        shards = None if self.shards_total is None else {
            "total": self.shards_total, "complete": self.shards_complete, "failed": list(self.shards_failed),
            "active": self.active}
        return {"stage": self.stage, "state": self.state, "reason": self.reason, "message": self.message,
                "shards": shards, "pods": [p.to_dict() for p in self.pods],
                "events": [e.to_dict() for e in self.events]}


@dataclass(frozen=True)
class RunStatus:
    """A run: where it was read from (``cluster`` or ``storage``), its state, its stages and shards."""

    run: str
    source: str
    storage: str
    state: str
    stages: tuple[StageStatus, ...]
    shards: int
    progress: dict[int, ProgressRecord] = field(default_factory=dict)
    namespace: str | None = None
    local: LocalRunRecord | None = None
    local_alive: bool = False
    #: Why the run failed, in one line (``wait``'s and the Python handle's error); not in ``to_dict``.
    error: str | None = field(default=None, compare=False)
    #: A series run (its result is ``series.h5``); not in ``to_dict``.
    series: bool = field(default=False, compare=False)
    #: What the run lacks to be Complete (``launcher.backends.done``); not in ``to_dict``.
    missing: tuple[str, ...] = field(default=(), compare=False)
    #: Lines printed after the status text: the last log lines of failed pods; not in ``to_dict``.
    failure_logs: tuple[str, ...] = field(default=(), compare=False)

    @property
    def complete(self) -> bool:
        return self.state == "Complete"

    @property
    def ended(self) -> bool:
        """Complete, or ended without its result (failed, cancelled, its processes or Jobs gone)."""
        return self.state in ("Complete", *FAILED_STATES)

    def to_dict(self) -> dict[str, Any]:
        progress = self.progress.values()
        local = None if self.local is None else {**asdict(self.local), "alive": self.local_alive}
        return {"run": self.run, "source": self.source, "namespace": self.namespace, "storage": self.storage,
                "state": self.state, "stages": [s.to_dict() for s in self.stages],
                "progress": {"shards": self.shards, "started": len(self.progress),
                             "points_done": sum(p.done for p in progress),
                             "points_per_second": sum(p.rate for p in progress if p.state == "running")},
                "shards": [{"shard": shard, **{k: v for k, v in asdict(p).items()
                                               if k in ("done", "total", "rate", "eta_s", "state", "host", "device")}}
                           for shard, p in sorted(self.progress.items())],
                "local": local}


# -- from the cluster -----------------------------------------------------------------------

def cluster_stage(stage: str, job: dict[str, Any] | None, pods: Sequence[PodView] = (),
                  events: Sequence[Event] = ()) -> StageStatus:
    """A stage from its Job, the newest pods of its shards and the events about the Job and those pods.

    The Job's own word (``job_state``) reads ``Running`` as soon as a pod exists, scheduled
    or not; a stage whose pods all wait on something (an image, a node, a Secret) and none
    runs reads ``Waiting``, as does a Job whose pods the API server refused (FailedCreate).
    """
    if job is None:
        return StageStatus(stage, "Gone", message="deleted, or removed after ttlSecondsAfterFinished")
    status = job.get("status") or {}
    state = job_state(job)
    condition = end_condition(job)
    reason, message = (condition.get("reason"), condition.get("message")) if condition else (None, None)
    waiting = [p for p in pods if p.reason]
    refused = [e for e in events if e.kind == "Job" and e.reason == "FailedCreate" and e.type == "Warning"]
    if state in ("Running", "Pending"):
        if waiting and not any(p.phase == "Running" and not p.reason for p in pods):
            reasons = sorted({p.reason or "" for p in waiting})
            state, reason = "Waiting", ", ".join(reasons)
            message = f"{len(waiting)} pod{'s' if len(waiting) > 1 else ''} waiting" if len(reasons) > 1 or \
                len(waiting) > 1 or not waiting[0].message else waiting[0].message
        elif refused and not status.get("active"):
            state, reason, message = "Waiting", "FailedCreate", refused[0].message
    elif state == "Suspended" and kueue_wait(job):
        reason, message = "Kueue", kueue_wait(job)
    shown = tuple(sorted((p for p in pods if p.reason or p.phase == "Failed"),
                         key=lambda p: (p.index or 0, p.created))[:PODS_SHOWN])
    extra: dict[str, Any] = {}
    if stage == "evaluate":
        extra = dict(shards_total=(job.get("spec") or {}).get("completions") or 0,
                     shards_complete=len(indexes(status.get("completedIndexes"))),
                     shards_failed=tuple(indexes(status.get("failedIndexes"))), active=status.get("active") or 0)
    return StageStatus(stage, state, reason, message, pods=shown, events=tuple(events), **extra)


def overall_state(stages: tuple[StageStatus, ...]) -> str:
    """The run's one word: Failed, Complete, Waiting, Running, Suspended, Pending, or Gone (no Jobs)."""
    states = {s.stage: s.state for s in stages}
    if all(s == "Gone" for s in states.values()):
        return "Gone"
    if "Failed" in states.values():
        return "Failed"
    if states.get("merge") == "Complete":
        return "Complete"
    for word in ("Waiting", "Running"):
        if word in states.values():
            return word
    return "Suspended" if "Suspended" in states.values() else "Pending"


def cluster_status(run_id: str, namespace: str, url: str, jobs: dict[str, dict[str, Any]],
                   pods: list[PodView], events: dict[str, list[Event]], progress: dict[int, ProgressRecord],
                   shards: int, missing: Sequence[str] | None = None, series: bool = False,
                   error: str | None = None) -> RunStatus:
    """The run as the cluster shows it; ``events`` by stage (its Job's and its shown pods').

    The merge Job's Complete condition is the run's completion marker here: its pod exits 0 only
    after writing every output, ``report.json`` last (``launcher.backends.done``). ``missing``:
    what storage lacks of the outputs, when read (None: not read); it decides only for a run
    whose Jobs are all gone (``ttlSecondsAfterFinished``): Complete if nothing is missing.
    """
    stages = gated(tuple(cluster_stage(stage, jobs.get(stage), [p for p in pods if p.stage == stage],
                                       events.get(stage, [])) for stage in STAGES))
    state = overall_state(stages)
    if state == "Gone" and missing is not None and not missing:
        state = "Complete"
    return RunStatus(run_id, "cluster", url, state, stages, shards, progress, namespace=namespace,
                     error=error if state in FAILED_STATES else None, series=series, missing=tuple(missing or ()))


def gated(stages: tuple[StageStatus, ...]) -> tuple[StageStatus, ...]:
    """Says why evaluate and merge are suspended when nothing else does: they wait for prepare
    to release them (``launcher.kubernetes.gate``), or never will, prepare having failed."""
    prepare = next((s for s in stages if s.stage == "prepare"), None)
    failed = prepare is not None and prepare.state == "Failed"
    why = ("NotStarted", "prepare failed: never released") if failed else \
        ("Gated", "released by prepare once its output is written")
    return tuple(replace(s, reason=why[0], message=why[1])
                 if s.stage != "prepare" and s.state == "Suspended" and not s.reason else s for s in stages)


# -- from storage alone ---------------------------------------------------------------------

def stored_status(run_id: str, url: str, keys: set[str], shards: int, progress: dict[int, ProgressRecord],
                  record: LocalRunRecord | None, alive: bool, report: Mapping[str, Any] | None = None) -> RunStatus:
    """The run as its storage prefix shows it: ``keys`` are the prefix's keys, ``report`` its parsed
    ``report.json`` if read (then every output it lists must exist too).

    A stage is Complete when its output exists (manifest, every shard file; for merge every
    output, ``report.json`` last: ``launcher.backends.done``);
    Running when the run's launcher process is alive and a worker of the stage runs; the
    stage a failed local run names is Failed. A run whose record says ``running`` but whose
    process is gone was killed: ``Stopped``.
    """
    complete = sum(1 for shard in range(shards) if shard_key(shard, shards) in keys)
    workers = record.workers if record and alive else {}
    failed_stage = _failed_stage(record)
    missing = missing_outputs(keys, report)
    outputs = {"prepare": MANIFEST_KEY in keys, "evaluate": complete == shards, "merge": not missing}
    stages = []
    for stage in STAGES:
        if outputs[stage]:
            state = "Complete"
        elif any(name == stage or name.startswith(f"{stage}-") for name in workers):
            state = "Running"
        elif stage == failed_stage:
            state = "Failed"
        else:
            state = "Pending"
        extra: dict[str, Any] = {}
        if stage == "evaluate":
            active = sum(1 for name in workers if name.startswith("evaluate-"))
            extra = dict(shards_total=shards, shards_complete=complete, active=active)
        message = record.error if record and state == "Failed" else None
        if stage == "merge" and state != "Complete" and (SURFACE_KEY in keys or SERIES_KEY in keys):
            message = f"not yet written: {', '.join(missing)}"
        stages.append(StageStatus(stage, state, message=message, **extra))
    if outputs["merge"]:
        state = "Complete"
    elif record is None:
        state = "Incomplete"  # a prefix with no local record (a cluster run's storage): no one to ask
    elif alive:
        state = "Running"
    elif record.state == FAILED:
        state = "Failed"
    elif record.state == CANCELLED:
        state = "Cancelled"
    elif record.state == RUNNING:
        state = "Stopped"
    else:  # succeeded by its record, yet an output is missing (removed since?)
        state = "Incomplete"
    error = None
    if state in FAILED_STATES:
        error = f"run {run_id}: {state.lower()}: " + (record.error if record and record.error else
                                                       "its processes are gone")
    return RunStatus(run_id, "storage", url, state, tuple(stages), shards, progress, local=record, local_alive=alive,
                     error=error, series=SERIES_KEY in keys, missing=tuple(missing))


def _failed_stage(record: LocalRunRecord | None) -> str | None:
    """The stage a failed local run's error names (``evaluate (shard 1) stage failed ...``)."""
    if record is None or record.state != FAILED or not record.error:
        return None
    return next((stage for stage in STAGES if record.error.startswith(stage)), None)


# -- launcher list --------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRow:
    """One row of ``launcher list``: a run, its one-word state, its shards, when it began, where it lives."""

    run: str
    state: str
    shards_complete: int | None
    shards_total: int | None
    created: str
    storage: str
    namespace: str | None = None
    #: Where the row was read, as ``status``'s ``source``: ``cluster``, ``storage`` or ``slurm``.
    source: str = "storage"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cluster_rows(config_maps: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> list[RunRow]:
    """One row per run (its ConfigMap), oldest first, its state from its Jobs (matched by namespace and run)."""
    by_run: dict[tuple[str | None, str], dict[str, dict[str, Any]]] = {}
    for job in jobs:
        meta = job["metadata"]
        key = (meta.get("namespace"), (meta.get("labels") or {}).get(RUN_LABEL, "?"))
        by_run.setdefault(key, {})[(meta.get("labels") or {}).get(STAGE_LABEL, "?")] = job
    rows = []
    for cm in sorted(config_maps, key=lambda c: c["metadata"].get("creationTimestamp", "")):
        meta = cm["metadata"]
        run_id = (meta.get("labels") or {}).get(RUN_LABEL, "?")
        stages = by_run.get((meta.get("namespace"), run_id), {})
        state = overall_state(tuple(cluster_stage(s, stages.get(s)) for s in STAGES)) if stages else "(no jobs)"
        evaluate = stages.get("evaluate")
        complete = len(indexes((evaluate.get("status") or {}).get("completedIndexes"))) if evaluate else None
        total = (evaluate.get("spec") or {}).get("completions") if evaluate else None
        raw = spec_of(cm)
        url = raw.get("storage", {}).get("url") if isinstance(raw.get("storage"), dict) else raw.get("storage")
        rows.append(RunRow(run_id, state, complete, total, meta.get("creationTimestamp", ""),
                           f"{str(url).rstrip('/')}/{run_id}", meta.get("namespace"), source="cluster"))
    return rows


def stored_row(status: RunStatus) -> RunRow:
    """A run read from storage, as a row; its start time from its local record when it has one."""
    evaluate = next(s for s in status.stages if s.stage == "evaluate")
    created = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.local.started))
               if status.local is not None else "")
    return RunRow(status.run, status.state, evaluate.shards_complete, evaluate.shards_total, created, status.storage)
