"""What ``launcher status`` knows of a Slurm run, as typed records built by pure functions.

In: the run's ``slurm.json``, what ``scontrol show job`` says of its three jobs (the
evaluate array task by task), the keys and progress records of its storage, and the last
line of a failed task's log. Out: one ``SlurmRunStatus``: the run's word (the same words as
the other backends': Complete, Failed, Running, Waiting, Pending, Cancelled, Gone), each
stage's, each shard's Slurm state and pending reason (Resources, Priority, Dependency,
JobArrayTaskLimit, BeginTime after a requeue, ...), and for a failure the reason in words:
a user error (exit 2, not retried), a time limit (Slurm's TIMEOUT, or the stage stopped
by the ``--signal`` warning with its finished points saved), out of memory, a node failure.

A job the controller has forgotten (``MinJobAge`` after it ended) is read from storage: a
prepare with a manifest, a shard with its file, a merge with the surface are Complete.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import shard_key
from landscape_job.stages import MANIFEST_KEY, REPORT_KEY, SERIES_KEY, SURFACE_KEY

from launcher.slurm.record import SlurmRunRecord
from launcher.slurm.scheduler import SlurmJob
from launcher.slurm.section import format_time

#: Slurm's job states that end a task without success.
FAILED_STATES = ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED")
RUNNING_STATES = ("RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED")
#: Exit codes the stages give (landscape_job/cli.py): a user's mistake, a SIGTERM after saving.
USER_ERROR_EXIT, TERMINATED_EXIT = 2, 143
#: How late Slurm may act on a time limit or its ``--signal`` warning: it checks them about every
#: 30 s, so a warning "N s before the limit" can come up to that much earlier (or a kill later).
SLURM_CHECK_SLACK = 60
#: Storage-only ends of a forgotten job.
STORED = "COMPLETED"
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class TaskView:
    """A stage's job, or one evaluate task: Slurm's state and reason, and why it failed, in words."""

    shard: int | None
    job: str
    state: str
    reason: str
    restarts: int = 0
    why: str | None = None


@dataclass(frozen=True)
class SlurmStageStatus:
    stage: str
    state: str
    reason: str | None = None
    message: str | None = None
    tasks: tuple[TaskView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "state": self.state, "reason": self.reason, "message": self.message,
                "tasks": [asdict(t) for t in self.tasks]}


@dataclass(frozen=True)
class SlurmRunStatus:
    run: str
    storage: str
    state: str
    stages: tuple[SlurmStageStatus, ...]
    shards: int
    jobs: dict[str, str]
    progress: dict[int, ProgressRecord] = field(default_factory=dict)
    error: str | None = None

    def stage(self, name: str) -> SlurmStageStatus:
        return next(s for s in self.stages if s.stage == name)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "source": "slurm", "storage": self.storage, "state": self.state,
                "error": self.error, "jobs": self.jobs, "stages": [s.to_dict() for s in self.stages],
                "progress": {"shards": self.shards, "started": len(self.progress),
                             "points_done": sum(p.done for p in self.progress.values())}}


def failure(job: SlurmJob, signal_seconds: int) -> str | None:
    """Why a task ended without success, in words; None when it did not fail."""
    limit = format_time(job.limit_seconds) if job.limit_seconds else "its"
    if job.state == "TIMEOUT":
        return f"TIMEOUT: over its time limit ({limit}); raise slurm.evaluate_time (or point_seconds)"
    if job.state == "OUT_OF_MEMORY":
        return "OUT_OF_MEMORY: over its --mem; raise slurm.memory"
    if job.state == "FAILED" and job.exit_code == USER_ERROR_EXIT:
        return "exit 2: a user error, not retried"
    if job.state == "FAILED" and job.exit_code == TERMINATED_EXIT:
        near = job.limit_seconds is not None and \
            job.run_seconds >= job.limit_seconds - signal_seconds - SLURM_CHECK_SLACK
        if near:
            return (f"time limit: stopped by the --signal=B:TERM@{signal_seconds} warning after "
                    f"{job.run_seconds} s of its {limit} limit, finished points saved; raise slurm.evaluate_time "
                    f"and submit again with the same --run-id to resume")
        return "exit 143: stopped by SIGTERM, finished points saved"
    if job.state == "FAILED":
        return f"exit {job.exit_code}" + (f" (signal {job.signal})" if job.signal else "")
    if job.state in FAILED_STATES:
        return f"{job.state}: {job.reason}" if job.reason not in ("None", "") else job.state
    return None


def _tasks(stage: str, jobs: Sequence[SlurmJob], shards: int, keys: set[str], signal_seconds: int) -> list[TaskView]:
    """One view per task: an array's records expanded to their shards, a forgotten shard read from storage."""
    views: dict[int | None, TaskView] = {}
    for job in jobs:
        for shard in (job.tasks if stage == "evaluate" else (None,)):
            if stage == "evaluate" and shard is not None and shard >= shards:
                continue
            views[shard] = TaskView(shard, f"{job.job_id}" if job.array_job_id is None or len(job.tasks) != 1
                                    else job.label, job.state, job.reason, job.restarts, failure(job, signal_seconds))
    if stage == "evaluate":
        for shard in range(shards):
            if shard not in views:
                done = shard_key(shard, shards) in keys
                views[shard] = TaskView(shard, "", STORED if done else UNKNOWN, "stored" if done else "forgotten")
        return [views[s] for s in range(shards)]
    if not views:
        done = MANIFEST_KEY in keys if stage == "prepare" else _merged(keys)
        return [TaskView(None, "", STORED if done else UNKNOWN, "stored" if done else "forgotten")]
    return list(views.values())


def _merged(keys: set[str]) -> bool:
    """Merge's last object (the report) is in storage, after the surface or series."""
    return (SURFACE_KEY in keys or SERIES_KEY in keys) and REPORT_KEY in keys


def stage_status(stage: str, tasks: Sequence[TaskView], log_line: Callable[[str, int | None], str | None]
                 ) -> SlurmStageStatus:
    """The stage's word from its tasks: any failed, all complete, any running, waiting (why), pending."""
    states = [t.state for t in tasks]
    failed = [t for t in tasks if t.why is not None]
    if failed:
        first = failed[0]
        where = f"{stage} task {first.shard}" if first.shard is not None else stage
        last = log_line(stage, first.shard)
        message = f"{where} (job {first.job}): {first.why}" + (f"; its log ends: {last}" if last else "")
        return SlurmStageStatus(stage, "Failed", first.state, message, tuple(tasks))
    if all(s in ("COMPLETED", STORED) for s in states):
        return SlurmStageStatus(stage, "Complete", tasks=tuple(tasks))
    if any(s in RUNNING_STATES for s in states):
        return SlurmStageStatus(stage, "Running", tasks=tuple(tasks))
    pending = [t for t in tasks if t.state == "PENDING"]
    if pending:
        reasons = sorted({t.reason for t in pending})
        word = "Pending" if reasons == ["Dependency"] else "Waiting"
        return SlurmStageStatus(stage, word, ", ".join(reasons), tasks=tuple(tasks))
    if any(s == "CANCELLED" for s in states):
        reason = next(t.reason for t in tasks if t.state == "CANCELLED")
        return SlurmStageStatus(stage, "Cancelled", reason, tasks=tuple(tasks))
    # Tasks neither Slurm nor storage knows (forgotten after MinJobAge, never finished): none will come.
    return SlurmStageStatus(stage, "Gone", "no longer known to Slurm", tasks=tuple(tasks))


def run_status(record: SlurmRunRecord, url: str, jobs: Mapping[str, Sequence[SlurmJob]], keys: set[str],
               progress: dict[int, ProgressRecord], log_line: Callable[[str, int | None], str | None]
               ) -> SlurmRunStatus:
    """The run's status; ``log_line(stage, shard)``: the last line of that task's log, or None."""
    stages = tuple(stage_status(stage, _tasks(stage, jobs.get(stage, ()), record.shards, keys,
                                              record.signal_seconds), log_line)
                   for stage in ("prepare", "evaluate", "merge"))
    words = [s.state for s in stages]
    error = None
    if words[-1] == "Complete" and _merged(keys):
        state = "Complete"
    elif "Failed" in words:
        state = "Failed"
        error = next(s.message for s in stages if s.state == "Failed")
    elif record.cancelled or "Cancelled" in words:
        state = "Cancelled"
        error = "cancelled" + (" (launcher cancel)" if record.cancelled else
                               f": {next(s.stage for s in stages if s.state == 'Cancelled')} was cancelled in Slurm")
    elif words[-1] == "Complete":
        state, error = "Failed", "merge completed without a surface and report in storage"
    elif "Gone" in words and not any(w in ("Running", "Waiting") for w in words):
        state, error = "Gone", "its jobs are no longer known to Slurm and storage holds no surface"
    else:
        state = next((w for w in ("Running", "Waiting", "Pending") if w in words), "Pending")
    return SlurmRunStatus(record.run_id, url, state, stages, record.shards, record.job_ids, progress, error)


def status_lines(status: SlurmRunStatus) -> list[str]:
    """``launcher status`` of a Slurm run: the run, each stage, each shard that is not simply done."""
    lines = [f"run {status.run}: {status.state} (Slurm jobs: prepare {status.jobs['prepare']}, evaluate "
             f"{status.jobs['evaluate']}, merge {status.jobs['merge']})", f"  storage: {status.storage}"]
    if status.error:
        lines.append(f"  error: {status.error}")
    for stage in status.stages:
        why = f" ({stage.reason})" if stage.reason and stage.state != "Failed" else ""
        if stage.stage == "evaluate":
            done = sum(t.state in ("COMPLETED", STORED) for t in stage.tasks)
            lines.append(f"  evaluate: {stage.state}{why}, {done}/{status.shards} shards complete")
            for task in stage.tasks:
                if task.state in ("COMPLETED", STORED):
                    continue
                progress = status.progress.get(task.shard) if task.shard is not None else None
                points = f", {progress.done}/{progress.total} points" if progress else ""
                again = f", requeued {task.restarts}x" if task.restarts else ""
                lines.append(f"    shard {task.shard}: {task.state} ({task.why or task.reason}){points}{again}")
        else:
            lines.append(f"  {stage.stage}: {stage.state}{why}")
        if stage.message:
            lines.append(f"    {stage.message}")
    return lines
