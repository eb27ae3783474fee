"""``launcher logs <run> [--shard I] [--stage prepare|evaluate|merge] [-f]``: the logs of a run's pods.

Of each stage (and each shard) only the newest pod: a retried shard's earlier attempts are
in ``launcher status``, which shows the failed ones.
"""

from __future__ import annotations

import argparse
from typing import Any

from landscape_job.errors import UserError

from launcher.commands.cluster_run import add_cluster_options, check_run, connect
from launcher.job_state import newest, pod_index
from launcher.render import CONTAINER, STAGE_LABEL, STAGES, run_selector

NAME = "logs"


def add_parser(sub: argparse._SubParsersAction) -> None:
    logs = sub.add_parser(NAME, help="the logs of a run's pods")
    logs.add_argument("run")
    logs.add_argument("--stage", choices=STAGES)
    logs.add_argument("--shard", type=int, help="the evaluate pod of this shard")
    logs.add_argument("-f", "--follow", action="store_true", help="stream one pod's log")
    logs.add_argument("--tail", type=int, default=None, help="last lines only")
    add_cluster_options(logs)


def latest_pods(pods: list[dict[str, Any]], shard: int | None) -> list[dict[str, Any]]:
    """The newest pod of each stage and shard (of one shard if given), in stage then shard order."""
    def key(pod: dict[str, Any]) -> tuple[int, int] | None:
        index = pod_index(pod)
        if shard is not None and index != shard:
            return None
        return STAGES.index(pod["metadata"]["labels"].get(STAGE_LABEL, "prepare")), index or 0

    latest = newest(pods, key)
    return [latest[k] for k in sorted(latest)]


def run(args: argparse.Namespace) -> None:
    stage = args.stage or ("evaluate" if args.shard is not None else None)
    if args.shard is not None and stage != "evaluate":
        raise UserError("--shard: only with --stage evaluate (the default with --shard)")
    check_run(args.run)
    cluster = connect(args)
    try:
        selector = run_selector(args.run) + (f",{STAGE_LABEL}={stage}" if stage else "")
        pods = latest_pods(cluster.list_pods(selector), args.shard)
        if not pods:
            what = f" for shard {args.shard}" if args.shard is not None else f" in stage {stage}" if stage else ""
            raise UserError(f"run {args.run}: no pods{what} in namespace {cluster.namespace} (not started yet, "
                            f"or removed with their Job; see launcher status {args.run})")
        if args.follow and len(pods) > 1:
            raise UserError("-f: follows one pod; give --shard I or --stage prepare|merge")
        for pod in pods:
            name = pod["metadata"]["name"]
            if len(pods) > 1:
                print(f"==> {name} <==", flush=True)
            for line in cluster.pod_log(name, CONTAINER, tail=args.tail, follow=args.follow):
                print(line, flush=args.follow)
    finally:
        cluster.close()
