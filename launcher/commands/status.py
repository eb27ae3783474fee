"""``launcher status <run>``: a run's stages, the pods that wait and why, events, progress, failed shards.

On the cluster: each stage's Job, the newest pod of each shard that waits (ImagePullBackOff
with the image, Unschedulable with the scheduler's message, a missing Secret) or failed,
the latest events about the Jobs and those pods (a Pod Security rejection is a Job's
FailedCreate event), Kueue's hold on a suspended Job, then the shards' progress from
storage and the last log lines of failed pods. From storage alone (a local run, a folder,
a URL; see ``run_ref``): what the prefix holds. ``-o json|yaml``: the same as a record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape_job.base.errors import UserError
from landscape_job.storage import run_storage

from launcher.commands.cluster_run import (add_cluster_options, connect, jobs_by_stage, read_progress,
                                           run_config_map, storage_of)
from launcher.commands.run_ref import add_run_arguments, resolve_run
from launcher.commands.stored_run import read_stored_status
from launcher.commands.views import OUTPUTS, failed_parts, failed_pod_heading, formatted, status_lines
from launcher.kubernetes.job_state import newest, pod_index, spec_of
from launcher.kubernetes.pod_state import Event, PodView
from launcher.kubernetes.render import CONTAINER
from launcher.kubernetes.names import STAGE_LABEL, run_selector
from launcher.run_status import RunStatus, cluster_status

if TYPE_CHECKING:
    from launcher.kubernetes.cluster import Cluster

NAME = "status"
#: Lines of a failed pod's log shown under it.
LOG_LINES = 10
#: Pods per stage whose events are fetched (one request each), besides the stage's Job.
EVENT_PODS = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(NAME, help="a run's stages, waiting pods and why, events, per-shard progress")
    add_run_arguments(status)
    status.add_argument("-o", "--output", choices=OUTPUTS, default="text",
                        help="json or yaml: the status as a record (keys in the README)")
    add_cluster_options(status)


def run(args: argparse.Namespace) -> None:
    ref = resolve_run(args)
    if ref.storage is not None:
        status = read_stored_status(ref.run_id, ref.storage)
        print(formatted(status.to_dict(), args.output) if args.output != "text" else "\n".join(status_lines(status)))
        return
    cluster = connect(args)
    try:
        status, pods = cluster_run_status(cluster, ref.run_id)
        if args.output != "text":
            print(formatted(status.to_dict(), args.output))
            return
        print("\n".join(status_lines(status)))
        for what, pod in _failed_pods(ref.run_id, status, pods):
            print(failed_pod_heading(what, pod))
            if pod:
                _print_log_tail(cluster, pod["metadata"]["name"])
    finally:
        cluster.close()


def cluster_run_status(cluster: Cluster, run_id: str) -> tuple[RunStatus, list[dict[str, Any]]]:
    """The run's status from its ConfigMap, Jobs, pods, events and storage; and its pods as the server sent them."""
    raw = spec_of(run_config_map(cluster, run_id))
    location = storage_of(raw.get("storage"), Path.cwd())
    shards = int((raw.get("compute") or {}).get("shards", 1))
    storage = run_storage(location, run_id)
    jobs = jobs_by_stage(cluster, run_id)
    pods = cluster.list_pods(run_selector(run_id))
    latest = newest(pods, lambda p: (p["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(p)))
    views = [PodView.from_api(p) for p in latest.values()]
    events: dict[str, list[Event]] = {}
    try:
        for stage, job in jobs.items():
            found = cluster.list_events(job["metadata"]["name"])
            for pod in [p for p in views if p.stage == stage and p.reason][:EVENT_PODS]:
                found += cluster.list_events(pod.name)
            events[stage] = found
    except UserError as err:  # a Role without events (an older k8s/base): the rest still helps
        print(f"note: events not shown: {err}", file=sys.stderr)
        events = {}
    status = cluster_status(run_id, cluster.namespace, storage.url, jobs, views, events,
                            read_progress(storage, shards), shards)
    return status, pods


def _failed_pods(run_id: str, status: RunStatus, pods: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The latest failed pod of each failed shard, and of a failed prepare or merge Job ({} if it is gone)."""
    wanted = failed_parts(status.stages)
    if not wanted:
        return []

    def key(pod: dict[str, Any]) -> tuple[str, int | None] | None:
        k = (pod["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(pod))
        return k if k in wanted and (pod.get("status") or {}).get("phase") == "Failed" else None

    latest = newest(pods, key)
    return [(what, latest.get(k, {})) for k, what in wanted.items()]


def _print_log_tail(cluster: Cluster, name: str) -> None:
    """The pod's last log lines, indented; a log the server no longer has is said so in their place."""
    try:
        for line in cluster.pod_log(name, CONTAINER, tail=LOG_LINES):
            print(f"    {line}")
    except UserError as err:
        print(f"    ({err})")
