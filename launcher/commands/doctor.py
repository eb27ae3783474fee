"""``launcher doctor [spec.yaml]``: is the cluster ready for a run, one line a check.

    launcher doctor                     # Kubernetes: API, version, RBAC, GPU nodes, Kueue
    launcher doctor surface.yaml        # and that spec's run: pod shapes, claims, runtime class, queue
    launcher doctor surface.yaml -o json
    launcher doctor --slurm [spec.yaml] # this login node's Slurm cluster

This module only parses and dispatches: the Kubernetes checks are ``launcher.kubernetes.doctor``,
the Slurm ones ``launcher.slurm.doctor``. Exit 1 when a check is not ready (a setting or the
cluster to fix, then run it again), 2 for a wrong spec or flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from landscape_job.base.errors import StageError

from launcher.commands.cluster_run import add_cluster_options, connect

NAME = "doctor"


def add_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(NAME, help="check that the cluster (and a spec's run) is ready: Kubernetes API, RBAC, "
                                       "GPU nodes, pod shapes, claims, Kueue; --slurm: partitions, GPUs, "
                                       "container runtime, shared paths")
    doctor.add_argument("spec", nargs="?", type=Path, help="also check this spec's run (default: the cluster only)")
    doctor.add_argument("--slurm", action="store_true", help="check the Slurm cluster of this login node")
    doctor.add_argument("--storage", help="override the spec's storage (folder, file:// or s3:// URL)")
    add_cluster_options(doctor)
    doctor.add_argument("-o", "--output", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    return _slurm(args) if args.slurm else _kubernetes(args)


def _kubernetes(args: argparse.Namespace) -> int:
    from launcher.kubernetes import doctor

    spec = k8s = None
    if args.spec:
        from landscape_job.spec.parse import load_spec
        from launcher.kubernetes.section import parse_kubernetes

        spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
        k8s = parse_kubernetes(spec.kubernetes)
        if args.namespace:
            k8s = dataclasses.replace(k8s, namespace=args.namespace)
    cluster = connect(args, k8s.namespace if k8s else None)
    try:
        checks = doctor.doctor(cluster, spec, k8s)
    finally:
        cluster.close()
    print(doctor.to_json(checks) if args.output == "json" else "\n".join(doctor.lines(checks)))
    ready = not any(c.state == doctor.NOT_READY for c in checks)
    if not ready and args.output == "text":
        print("not ready: see the lines above", file=sys.stderr)
    return 0 if ready else 1


def _slurm(args: argparse.Namespace) -> int:
    from launcher.slurm.backend import slurm_settings
    from launcher.slurm.doctor import FAIL, Check, run_checks, shared_paths
    from launcher.slurm.section import parse_slurm, with_defaults

    shards, storage_path, problems = None, None, []
    if args.spec is not None:
        from landscape_job.spec.parse import load_spec

        spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
        settings = slurm_settings(spec)
        shards = spec.compute.shards
        if spec.storage.scheme == "file":
            storage_path = str(spec.storage.path)
        elif settings.log_dir is None:
            problems.append(Check("slurm.log_dir", FAIL, f"unset; required with {spec.storage.scheme}:// storage "
                                                        f"(the jobs' logs go to a shared folder)"))
    else:
        settings = with_defaults(parse_slurm({}), sys.prefix)
    checks = run_checks(settings, shards, shared_paths(storage_path, settings.log_dir)) + problems
    print("\n".join(c.line() for c in checks))
    failed = [c for c in checks if c.result == FAIL]
    if failed:
        raise StageError(f"doctor: {len(failed)} check{'s' if len(failed) > 1 else ''} failed: "
                         f"{', '.join(c.name for c in failed)}")
    return 0
