"""``launcher pull <run|storage-url> [DIR] [--shards]``: download a run's surface.h5, plots and report.

Reads storage only; it talks to the cluster just to find the storage in the run's
ConfigMap when neither a storage URL, ``--storage`` nor ``--spec`` says where it is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from landscape_job.errors import UserError
from landscape_job.location import StorageLocation
from landscape_job.storage import Storage, open_storage, run_storage

from launcher.commands.cluster_run import add_cluster_options, check_run, connect, run_config_map, storage_of
from launcher.commands.views import pull_line
from launcher.job_state import spec_of

NAME = "pull"


def add_parser(sub: argparse._SubParsersAction) -> None:
    pull = sub.add_parser(NAME, help="download a run's surface.h5, plots and report")
    pull.add_argument("run", help="a run id, or the run's storage URL (s3://bucket/runs/<run>, file:///...)")
    pull.add_argument("dir", nargs="?", type=Path, help="destination folder (default: ./<run id>)")
    pull.add_argument("--shards", action="store_true", help="the shard files too")
    pull.add_argument("--storage", help="the runs' storage base URL (default: the spec's, or the run's ConfigMap)")
    pull.add_argument("--spec", type=Path, help="take the storage URL and options (endpoint, ...) from this spec")
    add_cluster_options(pull)


def _pull_source(args: argparse.Namespace) -> tuple[Storage, str]:
    """The run's storage and id, from a storage URL, --storage, --spec, or the run's ConfigMap."""
    spec_location = None
    if args.spec:
        if not args.spec.is_file():
            raise UserError(f"--spec {args.spec}: file not found")
        raw = yaml.safe_load(args.spec.read_text()) or {}
        spec_location = storage_of(raw.get("storage") if isinstance(raw, dict) else None, args.spec.parent.resolve())
    if "://" in args.run:
        url = args.run.rstrip("/")
        where = spec_location.moved_to(url) if spec_location else StorageLocation.parse(url)
        return open_storage(where), url.rsplit("/", 1)[-1]
    check_run(args.run)
    if args.storage:
        base = spec_location.moved_to(args.storage) if spec_location else StorageLocation.parse(args.storage)
    elif spec_location:
        base = spec_location
    else:
        cluster = connect(args)
        try:
            base = storage_of(spec_of(run_config_map(cluster, args.run)).get("storage"), Path.cwd())
        finally:
            cluster.close()
    return run_storage(base, args.run), args.run


def pulled_keys(available: set[str], shards: bool) -> list[str]:
    """What a pull fetches, in order: the surface, report and spec first, then the plots (and shards)."""
    from landscape_job.stages import REPORT_KEY, SPEC_KEY, SURFACE_KEY

    keys = [k for k in (SURFACE_KEY, REPORT_KEY, SPEC_KEY) if k in available]
    return keys + sorted(k for k in available if k.startswith("plots/") or (shards and k.startswith("shards/")))


def run(args: argparse.Namespace) -> None:
    from landscape_job.stages import SURFACE_KEY

    storage, run_id = _pull_source(args)
    available = set(storage.list())
    if SURFACE_KEY not in available:
        raise UserError(f"{storage.url}: no {SURFACE_KEY} (yet): the run has not merged; see launcher status {run_id}")
    keys = pulled_keys(available, args.shards)
    dest = args.dir or Path(run_id)
    tty, size = sys.stderr.isatty(), 0
    for n, key in enumerate(keys, 1):
        size += _download(storage, key, dest / key)
        line = pull_line(n, len(keys), size, storage.url, dest)
        if tty:
            print("\r" + line, end="\n" if n == len(keys) else "", file=sys.stderr, flush=True)
        elif n == len(keys):
            print(line, file=sys.stderr)
    print(dest / SURFACE_KEY)


def _download(storage: Storage, key: str, path: Path) -> int:
    """One object to ``path``, whole or not at all (a partial file never has the final name); its size."""
    data = storage.get(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)
