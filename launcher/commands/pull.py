"""``launcher pull <run|storage-url> [DIR] [--shards]``: download a run's surface.h5, plots and report.

Reads storage only; it talks to the cluster just to find the storage in the run's
ConfigMap when neither a storage URL, a folder (``runs/<id>``), a local run in ``./runs``,
``--storage`` nor ``--spec`` says where it is (see ``run_ref``).

Whole or nothing: every key is checked (``location.check_key``) before anything is written,
the objects go to a hidden temporary folder beside ``DIR``, and only once all have arrived
are they renamed into ``DIR``; a failure removes the temporary folder. No path is ever
written outside ``DIR``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from landscape_job.base.errors import UserError
from landscape_job.storage.location import StorageLocation, check_key, check_run_id
from landscape_job.storage import Storage, open_storage, run_storage

from launcher.commands.cluster_run import add_cluster_options, check_run, connect, run_config_map, storage_of
from launcher.commands.run_ref import RUN_HELP, resolve_run
from launcher.commands.views import pull_line
from launcher.kubernetes.job_state import spec_of

NAME = "pull"


def add_parser(sub: argparse._SubParsersAction) -> None:
    pull = sub.add_parser(NAME, help="download a run's surface.h5, plots and report")
    pull.add_argument("run", help=RUN_HELP)
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
    if "://" in args.run and spec_location:
        url = args.run.rstrip("/")
        return open_storage(spec_location.moved_to(url)), check_run_id(url.rsplit("/", 1)[-1], f"run {url}")
    if not spec_location and not args.storage:
        ref = resolve_run(args)  # a URL, a folder (runs/<id>), or an id of a local run in ./runs
        if ref.storage is not None:
            return ref.storage, ref.run_id
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
    from landscape_job.stages import REPORT_KEY, SERIES_KEY, SPEC_KEY, SURFACE_KEY

    keys = [k for k in (SURFACE_KEY, SERIES_KEY, REPORT_KEY, SPEC_KEY) if k in available]
    return keys + sorted(k for k in available if k.startswith("plots/") or (shards and k.startswith("shards/")))


def run(args: argparse.Namespace) -> None:
    from landscape_job.stages import SERIES_KEY, SURFACE_KEY

    storage, run_id = _pull_source(args)
    available = set(storage.list())
    result = SERIES_KEY if SERIES_KEY in available else SURFACE_KEY  # a series run merges into series.h5
    if result not in available:
        raise UserError(f"{storage.url}: no {SURFACE_KEY} (yet): the run has not merged; see launcher status {run_id}")
    keys = pulled_keys(available, args.shards)
    for key in keys:  # before anything is written
        try:
            check_key(key)
        except UserError as err:
            raise UserError(f"{storage.url}: {err}; nothing pulled") from None
    shown = args.dir or Path(run_id)
    dest = shown.absolute()
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: exists and is not a folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tty, size = sys.stderr.isatty(), 0
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pull-", dir=dest.parent))
    try:
        for n, key in enumerate(keys, 1):
            size += _download(storage, key, _inside(staging, key))
            line = pull_line(n, len(keys), size, storage.url, shown)
            if tty:
                print("\r" + line, end="\n" if n == len(keys) else "", file=sys.stderr, flush=True)
            elif n == len(keys):
                print(line, file=sys.stderr)
        _move_in(staging, dest, keys)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(shown / result)


def _inside(root: Path, key: str) -> Path:
    """``root / key``, which must stay under ``root`` (a checked key does; this is the last guard)."""
    path = root.joinpath(*check_key(key).split("/"))
    if not path.resolve().is_relative_to(root.resolve()):
        raise UserError(f"storage key {key!r}: would be written outside {root}")
    return path


def _download(storage: Storage, key: str, path: Path) -> int:
    """One object to ``path`` in the staging folder; its size."""
    data = storage.get(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def _move_in(staging: Path, dest: Path, keys: list[str]) -> None:
    """Everything downloaded into ``dest``: the staging folder renamed, or (``dest`` exists) file by file."""
    if not dest.exists():
        os.replace(staging, dest)
        staging.mkdir()  # for the caller's cleanup
        return
    for key in keys:
        target = _inside(dest, key)
        if target.is_dir():
            raise UserError(f"{target}: a folder is in the way of {key}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(_inside(staging, key), target)
