"""``launcher status <run>``: a run's stages, the pods that wait and why, events, progress, failed shards.

On the cluster: each stage's Job, the newest pod of each shard that waits (ImagePullBackOff
with the image, Unschedulable with the scheduler's message, a missing Secret) or failed,
the latest events about the Jobs and those pods (a Pod Security rejection is a Job's
FailedCreate event), Kueue's hold on a suspended Job, then the shards' progress from
storage and the last log lines of failed pods. From storage alone (a local run, a folder,
a URL; see ``launcher.backends.choose``): what the prefix holds. ``-o json|yaml``: the same
as a record. The run is Complete only once merge has written every output
(``launcher.backends.done``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape_job.storage import Storage, open_storage

from launcher.backends.choose import run_backend
from launcher.commands.cluster_run import add_cluster_options
from launcher.commands.run_ref import add_run_arguments
from launcher.commands.views import OUTPUTS, formatted, status_lines

NAME = "status"


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(NAME, help="a run's stages, waiting pods and why, events, per-shard progress")
    add_run_arguments(status)
    status.add_argument("-o", "--output", choices=OUTPUTS, default="text",
                        help="json or yaml: the status as a record (keys in the README)")
    status.add_argument("--preview", nargs="?", const="", default=None, metavar="PNG",
                        help="also draw the surface so far from the finished points (the whole grid at the "
                             "resolution they cover, missing points marked) to PNG (default: RUN-preview.png)")
    add_cluster_options(status)


def _write_preview(storage: Storage, run_id: str, target: str, output: str) -> None:
    """``--preview``: the finished points drawn to a PNG, one line saying what it shows (on stderr
    under ``-o json|yaml``, so the record stays the whole of stdout)."""
    from landscape_job.plots.preview import write_preview
    from landscape_job.run.finished import finished_points

    path = Path(target or f"{run_id}-preview.png")
    preview = write_preview(finished_points(storage), path)
    print(f"preview: {preview.line()} -> {path}", file=sys.stdout if output == "text" else sys.stderr)


def run(args: argparse.Namespace) -> None:
    backend, run_id = run_backend(args)
    status = backend.status(run_id)
    print(formatted(status.to_dict(), args.output) if args.output != "text" else "\n".join(status_lines(status)))
    if args.preview is not None:
        storage = backend.storage(run_id) if hasattr(backend, "storage") else open_storage(status.storage)
        _write_preview(storage, run_id, args.preview, args.output)
