"""``launcher list``: the runs, one row each (the module is not ``list``: that is a builtin).

On the cluster: the runs in the namespace (``-A``: in every namespace), narrowed by
``-l key=value`` as kubectl does (the labels of the runs' ConfigMaps and Jobs: those
render sets, and ``kubernetes.labels`` of the spec where given). ``--storage BASE``: the
runs under a storage base, read from storage alone (``./runs`` for local runs).
"""

from __future__ import annotations

import argparse

from landscape_job.base.errors import UserError, shown
from landscape_job.storage.location import StorageLocation, storage_options_from_env
from landscape_job.storage import open_storage, run_storage

from launcher.commands.cluster_run import add_cluster_options, connect
from launcher.commands.stored_run import read_stored_status
from launcher.commands.views import OUTPUTS, formatted, rows_table
from launcher.run_status import RunRow, cluster_rows, stored_row

NAME = "list"
_SELECTOR_TERM = r"^!?[A-Za-z0-9./_-]+((==?|!=)[A-Za-z0-9._-]*)?$"


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(NAME, help="the runs in the namespace, in every namespace (-A), or in storage (--storage)")
    runs.add_argument("-A", "--all-namespaces", action="store_true", help="the runs of every namespace")
    runs.add_argument("-l", "--selector", help="label selector, as kubectl's (key=value,key!=value,key)")
    runs.add_argument("--storage", help="list the runs under this storage base (a folder such as ./runs, file:// or "
                                        "s3:// URL), read from storage: no cluster")
    runs.add_argument("-o", "--output", choices=OUTPUTS, default="text",
                      help="json or yaml: a list of records (keys in the README)")
    add_cluster_options(runs)


def check_selector(selector: str) -> str:
    """A label selector of plain terms; a malformed one is one line here, not a 400 from the server."""
    import re

    terms = [t.strip() for t in selector.split(",")]
    bad = next((t for t in terms if not re.match(_SELECTOR_TERM, t)), None)
    if bad is not None:
        raise UserError(f"-l: expected key=value, key!=value or key terms separated by commas; got {shown(bad)}")
    return ",".join(terms)


def run(args: argparse.Namespace) -> None:
    if args.storage:
        for flag, given in (("-A", args.all_namespaces), ("-l", args.selector)):
            if given:
                raise UserError(f"{flag}: only for runs on the cluster, not with --storage")
        rows = stored_rows(args.storage)
        where = f"under {args.storage}"
    else:
        selector = check_selector(args.selector) if args.selector else ""
        cluster = connect(args)
        try:
            try:
                config_maps = cluster.list_runs(selector, all_namespaces=args.all_namespaces)
                jobs = cluster.list_jobs("app.kubernetes.io/part-of=landscape", all_namespaces=args.all_namespaces)
            except UserError as err:
                if args.all_namespaces and str(err).startswith("forbidden"):
                    raise UserError("-A: forbidden: listing every namespace needs list on configmaps and jobs "
                                    "cluster-wide (a ClusterRole); the landscape-launcher Role of k8s/base grants it "
                                    "in one namespace: use -n") from None
                raise
            where = "in any namespace" if args.all_namespaces else f"in namespace {cluster.namespace}"
        finally:
            cluster.close()
        rows = cluster_rows(config_maps, jobs)
    if args.output != "text":
        print(formatted([row.to_dict() for row in rows], args.output))
    elif not rows:
        print(f"no runs {where}" + (f" with labels {args.selector}" if args.selector else ""))
    else:
        print("\n".join(rows_table(rows, namespaces=args.all_namespaces)))


def stored_rows(base: str) -> list[RunRow]:
    """The runs under a storage base: each prefix that holds a ``spec.yaml``, oldest first."""
    location = StorageLocation.parse(base, storage_options_from_env() if base.startswith("s3://") else None)
    storage = open_storage(location)
    run_ids = sorted({key.split("/")[0] for key in storage.list() if key.count("/") == 1
                      and key.endswith("/spec.yaml")})
    rows = []
    for run_id in run_ids:
        try:
            rows.append(stored_row(read_stored_status(run_id, run_storage(location, run_id))))
        except UserError:
            continue  # a folder that is no run id of ours (a name the launcher would not choose)
    return sorted(rows, key=lambda r: (r.created, r.run))
