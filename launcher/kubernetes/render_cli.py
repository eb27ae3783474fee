"""``launcher render surface.yaml``: print the Kubernetes objects of a run, create nothing.

The objects of the cluster backend's ``Plan`` (``launcher.backends``): what ``submit`` creates.

    launcher render surface.yaml                       # YAML, for kubectl apply -f -
    launcher render surface.yaml -o json --run-id r1   # a v1 List
    launcher render surface.yaml --storage s3://bucket/runs

Touches neither storage nor a cluster, and reads no credential: the S3 Secret is named
(``kubernetes.s3_secret``), never read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from launcher.kubernetes.names import default_run_id


def add_render_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("render", help="print the Kubernetes objects of a run (creates nothing)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml",
                        help="multi-document YAML (default) or a JSON v1 List")
    parser.add_argument("--run-id", help="name the run (default: <name>-<UTC time>)")
    parser.add_argument("--storage", help="override the spec's storage (an s3:// URL the pods can reach)")
    parser.add_argument("--slurm", action="store_true",
                        help="print the run's Slurm batch scripts and the sbatch commands instead (docs/slurm.md)")
    return parser


def run_render(args: argparse.Namespace) -> None:
    """Prints the manifests; raises ``UserError`` (one line at the CLI edge) for any mistake."""
    from landscape_job.spec.parse import load_spec
    from launcher.backends.base import make_backend
    from launcher.kubernetes.render import to_json, to_yaml

    spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
    plan = make_backend("cluster").plan(spec, args.run_id or default_run_id(spec.name))
    sys.stdout.write(to_json(plan.objects) if args.output == "json" else to_yaml(plan.objects))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m launcher.kubernetes.render_cli render surface.yaml``: the subcommand on its own."""
    from landscape_job.cli import run_guarded

    parser = argparse.ArgumentParser(prog="launcher")
    add_render_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_guarded(lambda: run_render(args), "launcher")


if __name__ == "__main__":
    sys.exit(main())
