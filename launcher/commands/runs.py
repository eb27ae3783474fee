"""``launcher list``: the runs, one row each (the module is not ``list``: that is a builtin).

On the cluster: the runs in the namespace (``-A``: in every namespace), narrowed by
``-l key=value`` as kubectl does (the labels of the runs' ConfigMaps and Jobs: those
render sets, and ``kubernetes.labels`` of the spec where given). ``--storage BASE``: the
runs under a storage base, read from storage alone. With neither a kubeconfig nor
``--storage``: the local runs under ``./runs``, and a note on stderr that says so. With a
kubeconfig and a ``./runs`` folder, and no flag naming one: both, each under a line saying
where it looked (``-o json``: one list, each row's ``source`` saying which); a source that
fails is one line on stderr and the other still lists.
"""

from __future__ import annotations

import argparse
import sys

from landscape_job.base.errors import StageError, UserError, shown

from launcher.backends.base import Backend, make_backend
from launcher.backends.choose import list_backends, local_default_note
from launcher.commands.cluster_run import add_cluster_options
from launcher.commands.views import OUTPUTS, formatted, rows_table
from launcher.run_status import RunRow

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
    backends = [make_backend("slurm")] if args.slurm else list_backends(args)
    note = local_default_note(args)
    if note:
        print(f"launcher: {note}", file=sys.stderr)
    if len(backends) == 1:
        _print(backends[0], backends[0].list(), args)
        return
    listed = _each(backends)
    if args.output != "text":
        print(formatted([row.to_dict() for _, rows in listed for row in rows], args.output))
        return
    for n, (backend, rows) in enumerate(listed):
        print(("\n" if n else "") + f"{SOURCE_NAMES.get(backend.name, backend.name)}, {backend.where()}:")
        _print(backend, rows, args)


#: How a section of ``list`` names its source when it lists both the cluster and ./runs.
SOURCE_NAMES = {"cluster": "cluster", "local": "local runs"}


def _each(backends: list[Backend]) -> list[tuple[Backend, list[RunRow]]]:
    """Each backend's rows; one that fails (the cluster unreachable, a kubeconfig refused) is one line on
    stderr and the others still list. All failing: the first one's error."""
    listed, errors = [], []
    for backend in backends:
        try:
            listed.append((backend, backend.list()))
        except (UserError, StageError) as err:
            errors.append(err)
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"launcher: warning: {SOURCE_NAMES.get(backend.name, backend.name)} not listed: {first}",
                  file=sys.stderr)
    if not listed:
        raise errors[0]
    return listed


def _print(backend: Backend, rows: list[RunRow], args: argparse.Namespace) -> None:
    if args.output != "text":
        print(formatted([row.to_dict() for row in rows], args.output))
    elif not rows:
        where = f"under {args.storage}" if args.storage else backend.where()
        print(f"no runs {where}" + (f" with labels {args.selector}" if args.selector else ""))
    else:
        print("\n".join(rows_table(rows, namespaces=args.all_namespaces)))
