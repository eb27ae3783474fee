"""``launcher list``: the runs, one row each (the module is not ``list``: that is a builtin).

On the cluster: the runs in the namespace (``-A``: in every namespace), narrowed by
``-l key=value`` as kubectl does (the labels of the runs' ConfigMaps and Jobs: those
render sets, and ``kubernetes.labels`` of the spec where given). ``--storage BASE``: the
runs under a storage base, read from storage alone. With neither a kubeconfig nor
``--storage``: the local runs under ``./runs``, and a note on stderr that says so.
"""

from __future__ import annotations

import argparse
import sys

from landscape_job.base.errors import UserError, shown

from launcher.backends.choose import list_backend, local_default_note
from launcher.backends.base import make_backend
from launcher.commands.cluster_run import add_cluster_options
from launcher.commands.views import OUTPUTS, formatted, rows_table

NAME = "list"
_SELECTOR_TERM = r"^!?[A-Za-z0-9./_-]+((==?|!=)[A-Za-z0-9._-]*)?$"


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(NAME, help="the runs in the namespace, in every namespace (-A), or in storage (--storage)")
    runs.add_argument("-A", "--all-namespaces", action="store_true", help="the runs of every namespace")
    runs.add_argument("-l", "--selector", help="label selector, as kubectl's (key=value,key!=value,key)")
    runs.add_argument("--storage", help="list the runs under this storage base (a folder such as ./runs, file:// or "
                                        "s3:// URL), read from storage: no cluster")
    runs.add_argument("--slurm", action="store_true", help="the runs among your Slurm jobs (squeue)")
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
    if args.selector:
        args.selector = check_selector(args.selector)
    backend = make_backend("slurm") if args.slurm else list_backend(args)
    note = local_default_note(args)
    if note:
        print(f"launcher: {note}", file=sys.stderr)
    rows = backend.list()
    if args.output != "text":
        print(formatted([row.to_dict() for row in rows], args.output))
    elif not rows:
        where = f"under {args.storage}" if args.storage else backend.where()
        print(f"no runs {where}" + (f" with labels {args.selector}" if args.selector else ""))
    else:
        print("\n".join(rows_table(rows, namespaces=args.all_namespaces)))
