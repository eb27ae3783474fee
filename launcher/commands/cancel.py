"""``launcher cancel <run>``: delete the run's ConfigMap; its Jobs and pods go with it, its storage stays."""

from __future__ import annotations

import argparse

from launcher.commands.cluster_run import add_cluster_options, check_run, connect
from launcher.render import object_names

NAME = "cancel"


def add_parser(sub: argparse._SubParsersAction) -> None:
    cancel = sub.add_parser(NAME, help="delete a run's objects (its storage is kept)")
    cancel.add_argument("run")
    cancel.add_argument("--cascade", choices=["background", "foreground"], default="background",
                        help="foreground: the ConfigMap goes only after its Jobs and pods")
    add_cluster_options(cancel)


def run(args: argparse.Namespace) -> None:
    check_run(args.run)
    cluster = connect(args)
    try:
        name = object_names(args.run, 1)["spec"]
        cluster.delete_config_map(name, propagation=args.cascade.capitalize(),
                                  on_404=f"run {args.run}: no configmap {name} in namespace {cluster.namespace} "
                                         f"(launcher list shows the runs there)")
        print(f"run {args.run} cancelled: deleted configmap {name}; its Jobs and pods are garbage-collected. "
              f"Its storage is kept: submit again with --run-id {args.run} to resume")
    finally:
        cluster.close()
