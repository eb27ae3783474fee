"""``launcher cancel <run>``: stop a run; its storage stays, so submitting again with ``--run-id`` resumes it.

On the cluster it finds the run by its label (``landscape.run=<run>``), not only by its
ConfigMap: a run started with ``launcher render | kubectl apply`` has no owner references.
It deletes the run's own Roles and RoleBindings if it was rendered any, its ConfigMap, then
each of its Jobs (their pods go with them, by ``--cascade``); the garbage collector would
take the rest with the Jobs (``launcher.kubernetes.ownership``), but each delete being the
command's own, it says what it removed. A local run (by id in ./runs, folder or URL): its launcher process and
workers are stopped if they still run (their pids are in the run's ``local.json``).
"""

from __future__ import annotations

import argparse

from launcher.backends.choose import run_backend
from launcher.commands.cluster_run import add_cluster_options
from launcher.commands.run_ref import add_run_arguments

NAME = "cancel"


def add_parser(sub: argparse._SubParsersAction) -> None:
    cancel = sub.add_parser(NAME, help="stop a run: delete its Jobs and ConfigMap, or stop a local run's processes "
                                       "(its storage is kept)")
    add_run_arguments(cancel)
    cancel.add_argument("--cascade", choices=["background", "foreground"], default="background",
                        help="foreground: each Job goes only after its pods")
    add_cluster_options(cancel)


def run(args: argparse.Namespace) -> None:
    backend, run_id = run_backend(args)
    print(backend.cancel(run_id))
