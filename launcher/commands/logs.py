"""``launcher logs <run> [--stage S] [--index I] [--previous] [-f]``: the logs of a run's pods or workers.

Of each stage (and each shard) the newest pod, all of them by default, each line prefixed
with where it comes from (``[prepare]``, ``[shard 3]``, ``[merge]``) when there are
several; ``--previous``: the attempt before the newest (a failed pod that the Job
replaced, or a container's run before a restart), as ``kubectl logs --previous``.

A run read from storage (a local run, a folder, a URL; see ``run_ref``) shows the
workers' logs under ``logs/`` of its prefix: ``logs/prepare.log``, ``logs/evaluate-<i>.log``,
``logs/merge.log``, each of the latest attempt.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Iterable, Iterator

from landscape_job.base.errors import UserError
from landscape_job.storage import NotFound, Storage

from launcher.commands.cluster_run import add_cluster_options, connect
from launcher.commands.run_ref import RunRef, add_run_arguments, resolve_run
from launcher.commands.stored_run import local_record
from launcher.kubernetes.job_state import attempt_order, pod_index
from launcher.local.record import LOGS_PREFIX, alive
from launcher.kubernetes.render import CONTAINER, STAGES
from launcher.kubernetes.names import STAGE_LABEL, run_selector

NAME = "logs"
#: Seconds between reads of a local worker's log with -f.
FOLLOW_INTERVAL = 0.5


def add_parser(sub: argparse._SubParsersAction) -> None:
    logs = sub.add_parser(NAME, help="the logs of a run's pods (or a local run's workers), prefixed by shard")
    add_run_arguments(logs)
    logs.add_argument("--stage", choices=STAGES)
    logs.add_argument("--index", "--shard", dest="shard", type=int, help="the evaluate pod of this shard")
    logs.add_argument("-p", "--previous", action="store_true",
                      help="the attempt before the newest (a replaced pod, or a container before its restart)")
    logs.add_argument("-f", "--follow", action="store_true", help="stream one pod's log")
    logs.add_argument("--tail", type=int, default=None, help="last lines only")
    add_cluster_options(logs)


def prefix(stage: str, index: int | None) -> str:
    """Where a line comes from: ``[shard 3]`` for an evaluate pod, else ``[prepare]`` / ``[merge]``."""
    return f"[shard {index}]" if stage == "evaluate" and index is not None else f"[{stage}]"


def attempts(pods: list[dict[str, Any]], shard: int | None) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """The pods of each stage and shard (of one shard if given), oldest attempt first, keyed in stage then
    shard order."""
    by_key: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for pod in pods:
        index = pod_index(pod)
        if shard is not None and index != shard:
            continue
        key = STAGES.index(pod["metadata"]["labels"].get(STAGE_LABEL, "prepare")), index or 0
        by_key.setdefault(key, []).append(pod)
    return {k: sorted(by_key[k], key=attempt_order) for k in sorted(by_key)}


def latest_pods(pods: list[dict[str, Any]], shard: int | None) -> list[dict[str, Any]]:
    """The newest pod of each stage and shard (of one shard if given), in stage then shard order."""
    return [tries[-1] for tries in attempts(pods, shard).values()]


def previous_attempts(pods: list[dict[str, Any]], shard: int | None) -> list[tuple[dict[str, Any], bool]]:
    """For each stage and shard, the attempt before the newest: (the pod, whether to ask for its container's
    previous run). The pod before the newest if the Job replaced one, else the newest's previous container
    if it restarted; a stage or shard with neither has no previous attempt and is left out."""
    chosen = []
    for tries in attempts(pods, shard).values():
        newest = tries[-1]
        restarts = sum(int(c.get("restartCount") or 0)
                       for c in (newest.get("status") or {}).get("containerStatuses") or [])
        if restarts:
            chosen.append((newest, True))
        elif len(tries) > 1:
            chosen.append((tries[-2], False))
    return chosen


def run(args: argparse.Namespace) -> None:
    stage = args.stage or ("evaluate" if args.shard is not None else None)
    if args.shard is not None and stage != "evaluate":
        raise UserError("--index: only with --stage evaluate (the default with --index)")
    if args.follow and args.previous:
        raise UserError("-f: a previous attempt has ended; nothing to follow")
    ref = resolve_run(args)
    if ref.storage is not None:
        return _stored_logs(ref, stage, args)
    cluster = connect(args)
    try:
        selector = run_selector(ref.run_id) + (f",{STAGE_LABEL}={stage}" if stage else "")
        found = cluster.list_pods(selector)
        chosen = previous_attempts(found, args.shard) if args.previous else \
            [(p, False) for p in latest_pods(found, args.shard)]
        if not chosen:
            what = f" for shard {args.shard}" if args.shard is not None else f" in stage {stage}" if stage else ""
            earlier = "no earlier attempts" if args.previous and found else "no pods"
            raise UserError(f"run {ref.run_id}: {earlier}{what} in namespace {cluster.namespace} (not started yet, "
                            f"or removed with their Job; see launcher status {ref.run_id})")
        if args.follow and len(chosen) > 1:
            raise UserError("-f: follows one pod; give --index I or --stage prepare|merge")
        for pod, previous in chosen:
            labels = pod["metadata"]["labels"]
            tag = prefix(labels.get(STAGE_LABEL, "?"), pod_index(pod)) if len(chosen) > 1 else None
            lines = cluster.pod_log(pod["metadata"]["name"], CONTAINER, tail=args.tail, follow=args.follow,
                                    previous=previous)
            _print(lines, tag, args.follow)
    finally:
        cluster.close()


def _print(lines: Iterable[str], tag: str | None, flush: bool) -> None:
    for line in lines:
        print(f"{tag} {line}" if tag else line, flush=flush)


# -- a run in storage ------------------------------------------------------------------------

def stored_logs(keys: Iterable[str], stage: str | None, shard: int | None) -> list[tuple[str, str, int | None]]:
    """(key, stage, shard) of the worker logs under ``logs/`` that match, in stage then shard order."""
    found = []
    for key in keys:
        if not (key.startswith(LOGS_PREFIX) and key.endswith(".log")):
            continue
        name = key[len(LOGS_PREFIX):-len(".log")]
        base, _, index = name.partition("-")
        if base not in STAGES or (index and not index.isdigit()):
            continue
        found.append((key, base, int(index) if index else None))
    chosen = [f for f in found if (stage is None or f[1] == stage) and (shard is None or f[2] == shard)]
    return sorted(chosen, key=lambda f: (STAGES.index(f[1]), f[2] or 0))


def _stored_logs(ref: RunRef, stage: str | None, args: argparse.Namespace) -> None:
    storage = ref.storage
    assert storage is not None
    if args.previous:
        raise UserError(f"--previous: run {ref.run_id} is read from storage, which keeps each worker's latest log "
                        f"only")
    chosen = stored_logs(storage.list(LOGS_PREFIX), stage, args.shard)
    if not chosen:
        what = f" for shard {args.shard}" if args.shard is not None else f" of stage {stage}" if stage else ""
        raise UserError(f"run {ref.run_id}: no logs{what} in {storage.url}/{LOGS_PREFIX} (not started yet; see "
                        f"launcher status {ref.run_id})")
    if args.follow and len(chosen) > 1:
        raise UserError("-f: follows one worker; give --index I or --stage prepare|merge")
    for key, key_stage, index in chosen:
        tag = prefix(key_stage, index) if len(chosen) > 1 else None
        lines = _follow(storage, key) if args.follow else _read(storage, key, args.tail)
        _print(lines, tag, args.follow)


def _read(storage: Storage, key: str, tail: int | None) -> list[str]:
    try:
        lines = storage.get(key).decode("utf-8", "replace").splitlines()
    except NotFound:
        return []
    return lines[-tail:] if tail else ([] if tail == 0 else lines)


def _follow(storage: Storage, key: str) -> Iterator[str]:
    """A local worker's log as it grows, until its run no longer runs it (or the run ends)."""
    sent = 0
    pending = ""
    while True:
        record = local_record(storage)
        running = record is not None and alive(record) and log_key_name(key) in record.workers
        try:
            text = storage.get(key).decode("utf-8", "replace")
        except NotFound:
            text = ""
        pending += text[sent:]
        sent = len(text)
        *lines, pending = pending.split("\n")
        yield from lines
        if not running:
            if pending:
                yield pending
            return
        sys.stdout.flush()
        time.sleep(FOLLOW_INTERVAL)


def log_key_name(key: str) -> str:
    """``logs/evaluate-3.log`` -> ``evaluate-3``, the worker's name in ``local.json``."""
    return key[len(LOGS_PREFIX):-len(".log")]
