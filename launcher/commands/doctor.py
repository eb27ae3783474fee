"""``launcher doctor --slurm [spec.yaml]``: check this machine and its cluster before a first run.

One line a check (``[  ok]``, ``[warn]``, ``[fail]``) and what to do; exit 1 when one
fails (a setting or the cluster to fix, then run it again), 2 for a wrong spec or flag.
The Slurm checks live in ``launcher.slurm.doctor``; a Kubernetes mode joins them here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landscape_job.base.errors import StageError, UserError

NAME = "doctor"


def add_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(NAME, help="check that this machine can submit runs (--slurm: partitions, GPUs, "
                                       "container runtime, shared paths)")
    doctor.add_argument("spec", nargs="?", type=Path, help="check for this spec's settings (default: the defaults)")
    doctor.add_argument("--slurm", action="store_true", help="check the Slurm cluster of this login node")
    doctor.add_argument("--storage", help="override the spec's storage (folder, file:// or s3:// URL)")


def run(args: argparse.Namespace) -> int:
    if not args.slurm:
        raise UserError("doctor: give --slurm (the Slurm checks; the Kubernetes ones are not written yet)")
    import sys

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
