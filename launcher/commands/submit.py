"""``launcher submit surface.yaml`` (without ``--local``): create the run's Jobs on the cluster.

    launcher submit surface.yaml [--wait] [--server-dry-run] [-n NS] [--context C]

It checks everything it can before it makes anything: the spec, the inputs (when they are
on this machine), the storage (one read), then the server itself with a dry-run create of
every object (RBAC, validation, a run id already taken). Only then does it write
``spec.yaml`` to the run's prefix and create the ConfigMap and, owned by it, the pods'
Role and RoleBinding and the Jobs (evaluate and merge suspended until prepare releases them).
The ``submit`` parser itself, shared with ``--local``, lives in ``launcher.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from landscape_job.base.errors import StageError, UserError

from launcher.commands.cluster_run import add_cluster_options, connect
from launcher.kubernetes.names import object_names, run_selector


def add_options(submit: argparse.ArgumentParser) -> None:
    """The cluster options of ``launcher submit``."""
    add_cluster_options(submit)
    submit.add_argument("--server-dry-run", action="store_true",
                        help="have the API server check every object; create nothing, write nothing")
    submit.add_argument("--wait", action="store_true", help="follow the run until merge completes or a stage fails")
    submit.add_argument("--interval", type=float, default=5.0, help="seconds between polls with --wait")


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


def run(args: argparse.Namespace) -> None:
    from landscape_job.spec.parse import load_spec

    from launcher.commands.follow import follow
    from launcher.kubernetes.section import parse_kubernetes
    from launcher.local.runner import check_storage, new_run_id, open_run
    from launcher.kubernetes.render import render_run, with_owner
    from launcher.kubernetes.render_cli import default_run_id

    if args.workers is not None:
        raise UserError("--workers: only with --local")
    # Checkpoint and data paths of a cluster spec are pod paths: checked here only if present
    # (check_inputs_here), else by the pods themselves (exit 2, the index fails at once).
    spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
    k8s = parse_kubernetes(spec.kubernetes)
    if args.namespace:
        k8s = dataclasses.replace(k8s, namespace=args.namespace)
    render_run(spec, args.run_id or default_run_id(spec.name), k8s)  # every render mistake before any I/O
    print(check_inputs_here(spec), file=sys.stderr)
    check_storage(spec)
    cluster = connect(args, k8s.namespace)
    try:
        run_id = args.run_id or new_run_id(spec.name, spec.storage)
        objects = render_run(spec, run_id, k8s)
        names = object_names(run_id, spec.compute.shards)
        taken = f"run {run_id} already exists in namespace {k8s.namespace}; choose another --run-id"
        # The server checks every object (RBAC, validation, names) before anything exists or is written.
        checked = cluster.create(objects[0], dry_run=True, on_409=taken)
        dry_uid = checked["metadata"].get("uid") or "00000000-0000-0000-0000-000000000000"
        for obj in objects[1:]:
            # A RoleBinding's dry run would need its Role to exist (RBAC's escalation check reads it).
            if obj["kind"] != "RoleBinding":
                cluster.create(with_owner(obj, "ConfigMap", names["spec"], dry_uid), dry_run=True, on_409=taken)
        if args.server_dry_run:
            jobs = sum(o["kind"] == "Job" for o in objects)
            print(f"server dry run: the API server at {cluster.host} accepts the ConfigMap, the pods' Role and "
                  f"{jobs} Jobs of run {run_id} in namespace {k8s.namespace}; nothing was created or written")
            return
        run = open_run(spec, run_id)
        uid = cluster.create(objects[0], on_409=taken)["metadata"]["uid"]
        try:
            for obj in objects[1:]:  # the Role and RoleBinding first: prepare releases the rest through them
                cluster.create(with_owner(obj, "ConfigMap", names["spec"], uid), on_409=taken)
        except (UserError, StageError) as err:
            try:
                cluster.delete_config_map(names["spec"])
                undone = "the objects already created were deleted again"
            except (UserError, StageError):
                undone = f"delete what was created with: kubectl delete configmap {names['spec']} -n {k8s.namespace}"
            raise type(err)(f"{err} ({undone})") from None
        ns = k8s.namespace
        print(f"run {run_id}: {spec.grid.size} points in {spec.compute.shards} shards, namespace {ns}, "
              f"storage {run.url}\n"
              f"  kubectl get jobs,pods -n {ns} -l {run_selector(run_id)}\n"
              f"  launcher status {run_id} -n {ns}\n"
              f"  launcher pull {run_id} -n {ns}", flush=True)
        if args.wait:
            follow(cluster, run, run_id, spec.compute.shards, spec.grid.size, args.interval)
    finally:
        cluster.close()
