"""``launcher status <run>``: a run's Jobs, per-shard progress, failed shards with their last log lines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape_job.errors import UserError
from landscape_job.storage import run_storage

from launcher.commands.cluster_run import (add_cluster_options, check_run, connect, jobs_by_stage, read_progress,
                                           run_config_map, storage_of)
from launcher.commands.views import failed_parts, failed_pod_heading, progress_lines, status_head
from launcher.job_state import newest, pod_index, spec_of
from launcher.render import CONTAINER, STAGE_LABEL, run_selector

if TYPE_CHECKING:
    from launcher.cluster import Cluster

NAME = "status"
#: Lines of a failed pod's log shown under it.
LOG_LINES = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(NAME, help="a run's Jobs, per-shard progress and failed shards")
    status.add_argument("run")
    status.add_argument("--storage", help="the runs' storage base URL (default: the one in the run's ConfigMap)")
    add_cluster_options(status)


def run(args: argparse.Namespace) -> None:
    check_run(args.run)
    cluster = connect(args)
    try:
        raw = spec_of(run_config_map(cluster, args.run))
        location = storage_of(raw.get("storage"), Path.cwd())
        shards = int((raw.get("compute") or {}).get("shards", 1))
        if args.storage:
            location = location.moved_to(args.storage)
        storage = run_storage(location, args.run)
        jobs = jobs_by_stage(cluster, args.run)
        print("\n".join(status_head(args.run, cluster.namespace, storage.url, jobs)))
        print("\n".join(progress_lines(read_progress(storage, shards), shards)))
        for what, pod in _failed_pods(cluster, args.run, jobs):
            print(failed_pod_heading(what, pod))
            if pod:
                _print_log_tail(cluster, pod["metadata"]["name"])
    finally:
        cluster.close()


def _failed_pods(cluster: Cluster, run_id: str, jobs: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The latest failed pod of each failed shard, and of a failed prepare or merge Job ({} if it is gone)."""
    wanted = failed_parts(jobs)
    if not wanted:
        return []

    def key(pod: dict[str, Any]) -> tuple[str, int | None] | None:
        k = (pod["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(pod))
        return k if k in wanted and (pod.get("status") or {}).get("phase") == "Failed" else None

    latest = newest(cluster.list_pods(run_selector(run_id)), key)
    return [(what, latest.get(k, {})) for k, what in wanted.items()]


def _print_log_tail(cluster: Cluster, name: str) -> None:
    """The pod's last log lines, indented; a log the server no longer has is said so in their place."""
    try:
        for line in cluster.pod_log(name, CONTAINER, tail=LOG_LINES):
            print(f"    {line}")
    except UserError as err:
        print(f"    ({err})")
