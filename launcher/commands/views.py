"""What the cluster commands print, as pure functions of the server's objects and the shards' progress.

The commands fetch (``cluster_run``), these turn what was fetched into lines, and the
commands print them: the text can be read and tested without a cluster, as
``launcher.render`` turns a spec into objects without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landscape_job.errors import USER_ERROR_EXIT
from landscape_job.records import ProgressRecord

from launcher.job_state import end_condition, exit_code, indexes, job_state, spec_of
from launcher.render import RUN_LABEL, STAGE_LABEL, STAGES

#: Shards listed one per line by ``launcher status``; more are counted, not listed.
SHARDS_SHOWN = 50


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
    if job is None:
        return f"  {stage:<9} (gone: deleted, or removed after ttlSecondsAfterFinished)"
    status = job.get("status") or {}
    state = job_state(job)
    condition = end_condition(job)
    details = [f"{condition.get('reason', '')}: {condition.get('message', '')}"] if condition else []
    if stage == "evaluate":
        total = (job.get("spec") or {}).get("completions") or 0
        done = len(indexes(status.get("completedIndexes")))
        failed = indexes(status.get("failedIndexes"))
        active = status.get("active") or 0
        details.insert(0, f"{done}/{total} shards complete" + (f", {active} running" if active else "")
                       + (f", failed: {', '.join(map(str, failed))}" if failed else ""))
    return f"  {stage:<9} {state:<9}  {'; '.join(details)}".rstrip()


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


def failed_parts(jobs: dict[str, dict[str, Any]]) -> dict[tuple[str, int | None], str]:
    """What has failed, keyed as pods are (stage, shard index): each failed shard, a failed prepare or merge."""
    wanted: dict[tuple[str, int | None], str] = {}
    for stage, job in jobs.items():
        if stage == "evaluate":
            for index in indexes((job.get("status") or {}).get("failedIndexes")):
                wanted[(stage, index)] = f"shard {index}"
        elif job_state(job) == "Failed":
            wanted[(stage, None)] = stage
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
    by_run: dict[str, dict[str, dict[str, Any]]] = {}
    for job in jobs:
        labels = job["metadata"]["labels"]
        by_run.setdefault(labels.get(RUN_LABEL, "?"), {})[labels.get(STAGE_LABEL, "?")] = job
    lines = [f"{'RUN':<40} {'STATUS':<10} {'SHARDS':<9} {'CREATED':<21} STORAGE"]
    for cm in sorted(config_maps, key=lambda c: c["metadata"].get("creationTimestamp", "")):
        run_id = cm["metadata"]["labels"].get(RUN_LABEL, "?")
        stages = by_run.get(run_id, {})
        states = {s: job_state(j) for s, j in stages.items()}
        state = ("Failed" if "Failed" in states.values() else states.get("merge") if stages else "(no jobs)")
        evaluate = stages.get("evaluate")
        shards = (f"{len(indexes((evaluate.get('status') or {}).get('completedIndexes')))}/"
                  f"{evaluate['spec'].get('completions')}" if evaluate else "-")
        raw = spec_of(cm)
        url = raw.get("storage", {}).get("url") if isinstance(raw.get("storage"), dict) else raw.get("storage")
        lines.append(f"{run_id:<40} {state:<10} {shards:<9} {cm['metadata'].get('creationTimestamp', ''):<21} "
                     f"{str(url).rstrip('/')}/{run_id}")
    return lines


# -- launcher submit --wait ---------------------------------------------------------------

def job_failure(job: dict[str, Any], stage: str) -> str:
    """Why a stage's Job failed, with its failed shards: the middle of ``submit --wait``'s error."""
    condition = end_condition(job) or {}
    failed = indexes((job.get("status") or {}).get("failedIndexes"))
    shards = f"; failed shards: {', '.join(map(str, failed))}" if failed else ""
    return f"the {stage} Job failed ({condition.get('reason', '?')}: {condition.get('message', '')}){shards}"


def done_lines(url: str) -> str:
    """Where a merged run's results are."""
    from landscape_job.stages import REPORT_KEY, SURFACE_KEY

    return f"done: {url}/{SURFACE_KEY}\n      {url}/plots/\n      {url}/{REPORT_KEY}"


# -- launcher pull ------------------------------------------------------------------------

def pull_line(n: int, total: int, size: int, url: str, dest: Path) -> str:
    """How far a pull is: objects and bytes so far."""
    return f"pull: {n}/{total} objects, {format_size(size)} from {url} -> {dest}"
