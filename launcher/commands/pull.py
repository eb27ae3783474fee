"""``launcher pull <run|storage-url> [DIR] [--shards] [--wait]``: download a run's surface.h5, plots and report.

Reads storage only; it talks to the cluster just to find the storage in the run's
ConfigMap when neither a storage URL, a folder (``runs/<id>``), a local run in ``./runs``,
``--storage`` nor ``--spec`` says where it is (``launcher.backends.choose``).

Everything or nothing (``launcher.backends.pulling``): only a Complete run is pulled, one
whose merge has written every output, ``report.json`` last. One still merging is refused,
exit 1, naming what is missing; ``--wait`` waits for it to complete first (as ``launcher
wait``, then the pull).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from landscape_job.base.errors import UserError
from landscape_job.storage.location import check_run_id

from launcher.backends.base import Backend
from launcher.backends.choose import check_run, run_backend, stored_backend
from launcher.commands.cluster_run import add_cluster_options, storage_of
from launcher.commands.run_ref import RUN_HELP
from launcher.commands.wait import TIMEOUT_EXIT, check_wait_flags

NAME = "pull"


def add_parser(sub: argparse._SubParsersAction) -> None:
    pull = sub.add_parser(NAME, help="download a run's surface.h5, plots and report (a complete run only)")
    pull.add_argument("run", help=RUN_HELP)
    pull.add_argument("dir", nargs="?", type=Path, help="destination folder (default: ./<run id>)")
    pull.add_argument("--shards", action="store_true", help="the shard files too")
    pull.add_argument("--storage", help="the runs' storage base URL (default: the spec's, or the run's ConfigMap)")
    pull.add_argument("--spec", type=Path, help="take the storage URL and options (endpoint, ...) from this spec")
    pull.add_argument("--wait", action="store_true", help="wait until the run is complete, then pull "
                                                          "(default: refuse a run that is not, exit 1)")
    pull.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds, "
                                                                  "exit 124")
    pull.add_argument("--interval", type=float, default=5.0, help="with --wait: seconds between polls (default 5)")
    add_cluster_options(pull)


def _pull_source(args: argparse.Namespace) -> tuple[Backend, str]:
    """The backend and run id, from a storage URL, --storage, --spec, or the run as other commands name it."""
    spec_location = None
    if args.spec:
        if not args.spec.is_file():
            raise UserError(f"--spec {args.spec}: file not found")
        raw = yaml.safe_load(args.spec.read_text()) or {}
        spec_location = storage_of(raw.get("storage") if isinstance(raw, dict) else None, args.spec.parent.resolve())
    if "://" in args.run and spec_location:
        url = args.run.rstrip("/")
        run_id = check_run_id(url.rsplit("/", 1)[-1], f"run {url}")
        backend = stored_backend()
        from landscape_job.storage import open_storage

        backend.known[run_id] = open_storage(spec_location.moved_to(url))
        return backend, run_id
    if not spec_location:
        return run_backend(args)  # a URL, a folder (runs/<id>), --storage, a local run in ./runs, the cluster
    check_run(args.run)
    base = spec_location.moved_to(args.storage) if args.storage else spec_location
    return stored_backend(base), args.run


def run(args: argparse.Namespace) -> int:
    if args.wait:
        check_wait_flags(args.timeout, args.interval)
    elif args.timeout is not None:
        raise UserError("--timeout: only with --wait")
    backend, run_id = _pull_source(args)
    if args.wait:
        try:
            backend.wait(run_id, args.timeout, args.interval)
        except TimeoutError:
            print(f"launcher: run {args.run} is not complete after {args.timeout:g} s (timed out; nothing pulled)",
                  file=sys.stderr)
            return TIMEOUT_EXIT
    print(backend.pull(run_id, args.dir, shards=args.shards))
    return 0
