"""``launcher list``: the runs in the namespace, one row each (the module is not ``list``: that is a builtin)."""

from __future__ import annotations

import argparse

from launcher.commands.cluster_run import add_cluster_options, connect
from launcher.commands.views import runs_table

NAME = "list"


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(NAME, help="the runs in the namespace")
    add_cluster_options(runs)


def run(args: argparse.Namespace) -> None:
    cluster = connect(args)
    try:
        config_maps = cluster.list_runs()
        jobs = cluster.list_jobs("app.kubernetes.io/part-of=landscape")
        if not config_maps:
            print(f"no runs in namespace {cluster.namespace}")
            return
        print("\n".join(runs_table(config_maps, jobs)))
    finally:
        cluster.close()
