"""``launcher logs <run> [--stage S] [--index I] [--previous] [-f]``: the logs of a run's pods or workers.

Of each stage (and each shard) the newest pod, all of them by default (``--stage evaluate``:
every shard's), each line prefixed with where it comes from (``[prepare]``, ``[shard 3]``,
``[merge]``) when there are several, as ``kubectl logs -l ... --prefix``; ``--tail N``: the
last N lines of each; ``-f`` follows all of them at once, their lines interleaved as they
come (``interleaved``), the pods that exist when it starts (as ``kubectl logs -f -l``: a
shard's pod started later is not picked up; run it again); ``--previous``: the attempt
before the newest (a failed pod that the Job replaced, or a container's run before a
restart), as ``kubectl logs --previous``.

A run read from storage (a local run, a folder, a URL; see ``run_ref``) shows the
workers' logs under ``logs/`` of its prefix: ``logs/prepare.log``, ``logs/evaluate-<i>.log``,
``logs/merge.log``, each of the latest attempt.
"""

from __future__ import annotations

import argparse
import queue
import threading
from typing import Any, Callable, Iterable, Iterator

from landscape_job.base.errors import StageError, UserError

from launcher.backends.choose import run_backend
from launcher.commands.cluster_run import add_cluster_options
from launcher.commands.run_ref import add_run_arguments
from launcher.kubernetes.job_state import attempt_order, pod_index
from launcher.kubernetes.names import STAGE_LABEL
from launcher.kubernetes.render import STAGES

NAME = "logs"


def add_parser(sub: argparse._SubParsersAction) -> None:
    logs = sub.add_parser(NAME, help="the logs of a run's pods (or a local run's workers), prefixed by shard")
    add_run_arguments(logs)
    logs.add_argument("--stage", choices=STAGES)
    logs.add_argument("--index", "--shard", dest="shard", type=int, help="the evaluate pod of this shard")
    logs.add_argument("-p", "--previous", action="store_true",
                      help="the attempt before the newest (a replaced pod, or a container before its restart)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="stream the logs as they grow (of every pod or worker selected, at most "
                           f"{MAX_FOLLOWED}, as they are when it starts)")
    logs.add_argument("--tail", type=int, default=None, help="last lines only, of each pod or worker")
    add_cluster_options(logs)


#: The most logs ``-f`` follows at once: one stream (a connection, or a poll loop) each, as kubectl's
#: ``--max-log-requests`` bounds it.
MAX_FOLLOWED = 64
#: Lines read ahead of the terminal, in all, before the streams wait for it.
_AHEAD = 1000
_END = object()


def check_followed(count: int) -> None:
    """``-f`` over more logs than ``MAX_FOLLOWED`` is refused before any stream opens."""
    if count > MAX_FOLLOWED:
        raise UserError(f"-f: follows at most {MAX_FOLLOWED} logs at once, this selects {count}; narrow it with "
                        f"--index I or --stage prepare|merge")


def interleaved(streams: list[tuple[str, Callable[[], Iterable[str]]]]) -> Iterator[str]:
    """The lines of several growing logs as they arrive, each as ``<tag> <line>`` (``kubectl logs -f --prefix``).

    Each stream is opened by its callable on a thread of its own (the log's lines keep their
    order; lines of different logs interleave as they come). It ends when every log has
    ended; the first error of a stream is raised then, after the others' lines. Closing the
    iterator (Ctrl-C, a consumer that stops) tells the threads to stop at their next line.
    """
    lines: queue.Queue = queue.Queue(_AHEAD)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                lines.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump(tag: str, open_stream: Callable[[], Iterable[str]]) -> None:
        try:
            for line in open_stream():
                if not put(f"{tag} {line}"):
                    return
        except (UserError, StageError) as err:
            put(err)
        finally:
            put(_END)

    for tag, open_stream in streams:
        threading.Thread(target=pump, args=(tag, open_stream), daemon=True, name=f"logs {tag}").start()
    first_error: Exception | None = None
    try:
        for _ in streams:
            while (item := lines.get()) is not _END:
                if isinstance(item, Exception):
                    first_error = first_error or item
                else:
                    yield item
    finally:
        stop.set()
    if first_error is not None:
        raise first_error


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
    backend, run_id = run_backend(args)
    try:
        for line in backend.logs(run_id, stage, args.shard, tail=args.tail, follow=args.follow, previous=args.previous):
            print(line, flush=args.follow)
    except UserError as err:
        if args.shard is not None:  # no logs for that shard: is it a shard of this run at all?
            try:
                shards = backend.status(run_id).shards
            except (UserError, StageError):
                raise err from None  # the run's status says nothing more: the first answer stands
            _check_index(args.shard, shards, run_id)
        raise


def _check_index(index: int, shards: int | None, run_id: str) -> None:
    """``--index`` past the run's shards is the user's slip, not a shard that has not started."""
    if shards is not None and not 0 <= index < shards:
        raise UserError(f"--index: {index} is out of range: run {run_id} has {shards} shard{'s' if shards != 1 else ''} "
                        f"(0..{shards - 1})")
