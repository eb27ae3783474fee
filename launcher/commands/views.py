"""What the cluster commands print, as pure functions of the server's objects and the shards' progress.

The commands fetch (``cluster_run``), these turn what was fetched into lines, and the
commands print them: the text can be read and tested without a cluster, as
``launcher.kubernetes.render`` turns a spec into objects without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from landscape_job.base.errors import USER_ERROR_EXIT
from landscape_job.run.records import ProgressRecord

from launcher.kubernetes.job_state import end_condition, exit_code, indexes
from launcher.kubernetes.pod_state import Event, PodView, latest_events
from launcher.kubernetes.render import STAGES
from launcher.run_status import RunRow, RunStatus, StageStatus, cluster_rows, cluster_stage

#: Shards listed one per line by ``launcher status``; more are counted, not listed.
SHARDS_SHOWN = 50
#: ``-o`` of ``status`` and ``list``.
OUTPUTS = ("text", "json", "yaml")


def formatted(record: object, output: str) -> str:
    """A command's record as ``-o json`` (indented, keys sorted) or ``-o yaml`` (block style) prints it."""
    if output == "json":
        return json.dumps(record, indent=2, sort_keys=True)
    return yaml.safe_dump(record, sort_keys=True, default_flow_style=False).rstrip()


def format_seconds(seconds: float | None) -> str:
    """``0m04s``, ``2h05m``; ``--`` when unknown (no rate yet)."""
    if seconds is None:
        return "--"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def format_size(n: float) -> str:
    """Bytes in decimal units, one decimal above bytes: ``512 B``, ``1.5 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


# -- launcher status ----------------------------------------------------------------------

def job_line(stage: str, job: dict[str, Any] | None) -> str:
    """One stage's Job: its state, why it ended, and for evaluate how many shards are done."""
    return stage_line(cluster_stage(stage, job))


def stage_line(s: StageStatus) -> str:
    """One stage: its state, for evaluate how many shards are done, and why (a Job's end, a wait)."""
    if s.state == "Gone":
        return f"  {s.stage:<9} (gone: {s.message})"
    waiting = s.state == "Waiting" and bool(s.pods)  # the pods below say why, each with its message
    details = [s.reason or ""] if waiting else [f"{s.reason or ''}: {s.message or ''}"] if s.reason or s.message else []
    if s.shards_total is not None:
        details.insert(0, f"{s.shards_complete}/{s.shards_total} shards complete"
                       + (f", {s.active} active" if s.active else "")
                       + (f", failed: {', '.join(map(str, s.shards_failed))}" if s.shards_failed else ""))
    return f"  {s.stage:<9} {s.state:<9}  {'; '.join(details)}".rstrip()


def pod_line(pod: PodView) -> str:
    """A pod that waits or failed, under its stage: why, and the image when pulling it is the problem."""
    where = f" (shard {pod.index})" if pod.index is not None else ""
    why = pod.reason or (f"exit code {pod.exit_code}" if pod.exit_code is not None else pod.phase)
    image = f" [image {pod.image}]" if pod.image and "Image" in (pod.reason or "") else ""
    return f"      pod {pod.name}{where}: {pod.phase}, {why}" + (f": {pod.message}" if pod.message else "") + image


def event_line(event: Event) -> str:
    """An event about a Job or pod of the run, as kubectl describe lists them."""
    times = f" (x{event.count})" if event.count > 1 else ""
    return f"      {event.last_seen or '-':<20} {event.type:<7} {event.reason:<16} " \
           f"{event.kind.lower()}/{event.name}: {event.message}{times}"


def status_lines(status: RunStatus) -> list[str]:
    """``launcher status``'s text: the run, each stage with its waiting or failed pods and latest events,
    then the shards' progress."""
    where = f"namespace {status.namespace}" if status.namespace else f"from storage ({status.state})"
    lines = [f"run {status.run}  {where}  storage {status.storage}"]
    if status.local is not None:
        record = status.local
        lines.append(f"  local run: {'running' if status.local_alive else record.state}, launcher pid {record.pid} "
                     f"on {record.host}" + (f"; {len(record.workers)} workers" if status.local_alive else "")
                     + (f"; {record.error}" if record.error and not status.local_alive else ""))
    for stage in status.stages:
        lines.append(stage_line(stage))
        lines += [pod_line(p) for p in stage.pods]
        said = {(p.name, p.message) for p in stage.pods}  # an event that repeats a pod line is left out
        events = latest_events([e for e in stage.events if (e.name, e.message) not in said])
        if events:
            lines.append("      events:")
            lines += [event_line(e) for e in events]
    return lines + progress_lines(status.progress, status.shards) + list(status.failure_logs)


def shard_line(shard: int, progress: ProgressRecord) -> str:
    """One shard's ``.progress.json``: points done, rate, ETA, where it runs."""
    p = progress
    return (f"  shard {shard:>4}  {p.done}/{'?' if p.total is None else p.total} points  {p.rate:.2f}"
            f" points/s  ETA {format_seconds(p.eta_s) if p.state != 'done' else '-'}  "
            f"{p.state} on {p.host} ({p.device})")


def status_head(run_id: str, namespace: str, url: str, jobs: dict[str, dict[str, Any]]) -> list[str]:
    """``launcher status``'s first lines: the run, and its Jobs by stage."""
    return [f"run {run_id}  namespace {namespace}  storage {url}"] + [job_line(stage, jobs.get(stage)) for stage in STAGES]


def progress_lines(progress: dict[int, ProgressRecord], shards: int) -> list[str]:
    """``launcher status``'s shards: points done and the rate over all, then the first shards one by one."""
    done = sum(p.done for p in progress.values())
    rate = sum(p.rate for p in progress.values() if p.state == "running")
    lines = [f"shards: {len(progress)} of {shards} started, {done} points done"
             + (f", {rate:.2f} points/s" if rate else "")]
    lines += [shard_line(shard, progress[shard]) for shard in sorted(progress)[:SHARDS_SHOWN]]
    if len(progress) > SHARDS_SHOWN:
        lines.append(f"  ... {len(progress) - SHARDS_SHOWN} more shards")
    return lines


def failed_parts(stages: Iterable[StageStatus]) -> dict[tuple[str, int | None], str]:
    """What has failed, keyed as pods are (stage, shard index): each failed shard, a failed prepare or merge."""
    wanted: dict[tuple[str, int | None], str] = {}
    for stage in stages:
        if stage.stage == "evaluate":
            for index in stage.shards_failed:
                wanted[(stage.stage, index)] = f"shard {index}"
        elif stage.state == "Failed":
            wanted[(stage.stage, None)] = stage.stage
    return wanted


def failed_pod_heading(what: str, pod: dict[str, Any]) -> str:
    """The line above a failed pod's last log lines; ``pod`` empty when it is gone (with its log)."""
    if not pod:
        return f"{what} failed; its pod is gone, and its log with it"
    code = exit_code(pod)
    why = " (a mistake in the spec or its inputs: not retried)" if code == USER_ERROR_EXIT else ""
    return f"{what} failed: pod {pod['metadata']['name']}, exit code {code}{why}; last lines of its log:"


# -- launcher list ------------------------------------------------------------------------

def runs_table(config_maps: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> list[str]:
    """``launcher list``: one row per run (its ConfigMap), oldest first, its state from its Jobs."""
    return rows_table(cluster_rows(config_maps, jobs))


def rows_table(rows: list[RunRow], namespaces: bool = False) -> list[str]:
    """``launcher list``'s table; ``namespaces`` (``-A``): a NAMESPACE column first."""
    head = f"{'NAMESPACE':<20} " if namespaces else ""
    lines = [f"{head}{'RUN':<40} {'STATUS':<10} {'SHARDS':<9} {'CREATED':<21} STORAGE"]
    for row in rows:
        shards = f"{row.shards_complete}/{row.shards_total}" if row.shards_total is not None else "-"
        ns = f"{row.namespace or '-':<20} " if namespaces else ""
        lines.append(f"{ns}{row.run:<40} {row.state:<10} {shards:<9} {row.created or '-':<21} {row.storage}")
    return lines


# -- launcher submit --wait ---------------------------------------------------------------

def job_failure(job: dict[str, Any], stage: str) -> str:
    """Why a stage's Job failed, with its failed shards: the middle of ``submit --wait``'s error."""
    condition = end_condition(job) or {}
    failed = indexes((job.get("status") or {}).get("failedIndexes"))
    shards = f"; failed shards: {', '.join(map(str, failed))}" if failed else ""
    return f"the {stage} Job failed ({condition.get('reason', '?')}: {condition.get('message', '')}){shards}"


def done_lines(url: str, series: bool = False) -> str:
    """Where a merged run's results are: ``surface.h5``, or ``series.h5`` for a series run."""
    from landscape_job.stages import REPORT_KEY, SERIES_KEY, SURFACE_KEY

    result = SERIES_KEY if series else SURFACE_KEY
    return f"done: {url}/{result}\n      {url}/plots/\n      {url}/{REPORT_KEY}"


# -- launcher pull ------------------------------------------------------------------------

def pull_line(n: int, total: int, size: int, url: str, dest: Path) -> str:
    """How far a pull is: objects and bytes so far."""
    return f"pull: {n}/{total} objects, {format_size(size)} from {url} -> {dest}"
