"""``launcher submit surface.yaml`` (without ``--local``): the cluster's options, and the input check.

    launcher submit surface.yaml [--wait] [--server-dry-run] [-n NS] [--context C]

The cluster backend (``launcher.backends.kubernetes``) checks everything it can before it
makes anything: the spec, the inputs (when they are on this machine), the storage (one
read), then the server itself with a dry-run create of every object (RBAC, validation, a
run id already taken). Only then does it write ``spec.yaml`` to the run's prefix and create
the ConfigMap and, owned by it, the pods' Role and RoleBinding and the Jobs (evaluate and
merge suspended until prepare releases them). The ``submit`` command itself, shared with
``--local``, lives in ``launcher.cli``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from launcher.commands.cluster_run import add_cluster_options


def add_options(submit: argparse.ArgumentParser) -> None:
    """The cluster options of ``launcher submit``."""
    add_cluster_options(submit)
    submit.add_argument("--server-dry-run", action="store_true",
                        help="have the API server check every object; create nothing, write nothing")
    submit.add_argument("--wait", action="store_true", help="follow the run until merge completes or a stage fails")
    submit.add_argument("--interval", type=float, default=5.0, help="seconds between polls with --wait")
    submit.add_argument("--no-preflight", action="store_true",
                        help="skip the checks of the cluster's nodes, claims and Kueue queue (launcher doctor)")


def check_inputs_here(spec: Any) -> str:
    """``check_inputs`` where the model and data files are on this machine; on a cluster they may be pod paths."""
    from landscape_job.inputs.fetch import is_remote
    from landscape_job.spec.localize import check_reachable
    from landscape_job.checks.preflight import check_inputs

    check_reachable(spec)  # one HEAD per s3:// or https:// input: a missing object fails here, not in a pod
    paths = [spec.model.checkpoint, *spec.directions.targets, spec.directions.file, spec.data.root]
    absent = [p for p in paths if p and not is_remote(p) and not os.path.exists(p)]
    if absent:
        return f"inputs not checked here: {absent[0]} is not on this machine (a path inside the pods?)"
    check_inputs(spec)
    return "inputs checked on this machine: the model builds, the checkpoints fit it, the data loads"
