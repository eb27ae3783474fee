"""Copying a run's outputs out of its storage: every backend's ``pull``, all or nothing.

A run is pulled only when it is Complete (``launcher.backends.done``: ``report.json``,
written last by merge, and every output it lists): a run still merging is refused,
naming what is missing, rather than copied half. Every key is checked
(``location.check_key``) before anything is written; the objects go to a hidden
temporary folder beside ``dest``, and only once all have arrived are they renamed into
``dest``; a failure removes the temporary folder. No path is ever written outside ``dest``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from landscape_job.base.errors import StageError, UserError
from landscape_job.stages import REPORT_KEY, SERIES_KEY, SPEC_KEY, SURFACE_KEY
from landscape_job.storage import Storage
from landscape_job.storage.location import check_key

from launcher.backends.done import describe_missing, missing_outputs, read_report
from launcher.commands.views import pull_line


def pulled_keys(available: set[str], shards: bool) -> list[str]:
    """What a pull fetches, in order: the surface, report and spec first, then the plots (and shards)."""
    keys = [k for k in (SURFACE_KEY, SERIES_KEY, REPORT_KEY, SPEC_KEY) if k in available]
    return keys + sorted(k for k in available if k.startswith("plots/") or (shards and k.startswith("shards/")))


def pull_run(storage: Storage, run_id: str, dest: Path | None = None, shards: bool = False,
             state: Callable[[], str] | None = None) -> Path:
    """Copies the Complete run at ``storage`` into ``dest`` (default ``./<run_id>``); returns the result's path.

    No result at all: a ``UserError`` (nothing to pull; exit 2). A result whose run is not
    Complete yet: a ``StageError`` naming what is missing (exit 1: waiting heals it;
    ``launcher pull --wait`` does). ``state``: the run's state in a word, for the message.
    """
    available = set(storage.list())
    result = SERIES_KEY if SERIES_KEY in available else SURFACE_KEY  # a series run merges into series.h5
    if result not in available:
        raise UserError(f"{storage.url}: no {SURFACE_KEY} (yet): the run has not merged; see launcher status {run_id}")
    missing = missing_outputs(available, read_report(storage, available))
    if missing:
        now = f" ({state()})" if state is not None else ""
        raise StageError(f"run {run_id} is not complete{now}: missing {describe_missing(missing)}; nothing pulled "
                         f"(launcher pull --wait waits for it)")
    keys = pulled_keys(available, shards)
    for key in keys:  # before anything is written
        try:
            check_key(key)
        except UserError as err:
            raise UserError(f"{storage.url}: {err}; nothing pulled") from None
    shown = dest or Path(run_id)
    target = shown.absolute()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tty, size = sys.stderr.isatty(), 0
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.pull-", dir=target.parent))
    try:
        for n, key in enumerate(keys, 1):
            size += _download(storage, key, _inside(staging, key))
            line = pull_line(n, len(keys), size, storage.url, shown)
            if tty:
                print("\r" + line, end="\n" if n == len(keys) else "", file=sys.stderr, flush=True)
            elif n == len(keys):
                print(line, file=sys.stderr)
        _move_in(staging, target, keys)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return shown / result


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
