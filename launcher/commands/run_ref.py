"""Which run a command names, and where it lives: on the cluster, or only in storage.

``status``, ``logs``, ``cancel`` and ``pull`` take a run as

- a run id (``digits-20261130-014500``): a run on the cluster, found through its ConfigMap;
  or, when no cluster flag (``-n``, ``--context``, ``--kubeconfig``) is given and
  ``./runs/<id>`` holds a run (the default storage of ``submit --local``), that local run;
- a folder (``runs/<id>``, ``./x/<id>``, ``/abs/<id>``): the run in that folder;
- a URL (``file:///.../<id>``, ``s3://bucket/prefix/<id>``): the run at that prefix
  (S3 options such as ``endpoint_url`` from ``$LANDSCAPE_STORAGE_OPTIONS``, as for a pod);
- a run id with ``--storage BASE``: the run ``BASE/<id>``.

A run found in storage needs no kubeconfig: what the commands know of it is what its
prefix holds (spec, manifest, progress and shard records, logs, and for a local run its
``local.json``, see ``launcher.local.record``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from landscape_job.base.errors import UserError, shown
from landscape_job.storage.location import StorageLocation, check_run_id, file_url, storage_options_from_env
from landscape_job.stages import SPEC_KEY
from landscape_job.storage import Storage, open_storage, run_storage

from launcher.commands.cluster_run import check_run

#: Where ``submit --local`` puts runs when the spec names no storage (``landscape_job.storage.location``).
DEFAULT_LOCAL_STORAGE = Path("runs")
RUN_HELP = ("a run id (on the cluster; a local run when ./runs/<id> holds one and no -n, --context or --kubeconfig "
            "is given), the run's folder (runs/<id>) or its storage URL (file:///.../<id>, s3://bucket/prefix/<id>)")


@dataclass(frozen=True)
class RunRef:
    """A run named on the command line: its id, and its storage when it is read from storage alone."""

    run_id: str
    storage: Storage | None = None

    @property
    def on_cluster(self) -> bool:
        return self.storage is None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run argument and ``--storage``, the same for every command that names one run."""
    parser.add_argument("run", help=RUN_HELP)
    parser.add_argument("--storage", help="read the run from this storage base (folder, file:// or s3:// URL) "
                                          "instead of the cluster: BASE/<run id>")


def _cluster_flags(args: argparse.Namespace) -> bool:
    return any(getattr(args, flag, None) for flag in ("namespace", "context", "kubeconfig"))


def _is_path(text: str) -> bool:
    return "/" in text or text.startswith((".", "~")) or (os.sep != "/" and os.sep in text)


def resolve_run(args: argparse.Namespace) -> RunRef:
    """The run that ``args.run`` (and ``args.storage``) name; a UserError, before any I/O on a cluster, if none."""
    text = args.run
    if "://" in text:
        url = text.rstrip("/")
        run_id = check_run_id(url.rsplit("/", 1)[-1], f"run {shown(url)}")
        return RunRef(run_id, _open(StorageLocation.parse(url, _env_options(url))))
    if _is_path(text):
        folder = Path(text).expanduser().absolute()
        if not folder.is_dir():
            raise UserError(f"{shown(text)}: no such run folder")
        return RunRef(check_run_id(folder.name, f"run folder {shown(text)}"), _open(StorageLocation.parse(
            file_url(folder.resolve()))))
    check_run(text)
    if getattr(args, "storage", None):
        base = StorageLocation.parse(args.storage, _env_options(args.storage))
        return RunRef(text, run_storage(base, text))
    local = DEFAULT_LOCAL_STORAGE / text
    if not _cluster_flags(args) and (local / SPEC_KEY).is_file():
        return RunRef(text, _open(StorageLocation.parse(file_url(local.resolve()))))
    return RunRef(text)


def _env_options(url: str) -> dict[str, str] | None:
    return storage_options_from_env() if url.startswith("s3://") else None


def _open(location: StorageLocation) -> Storage:
    return open_storage(location)


def require_spec(run: RunRef) -> None:
    """A run read from storage must have been submitted there: its ``spec.yaml`` exists."""
    assert run.storage is not None
    if not run.storage.exists(SPEC_KEY):
        raise UserError(f"{run.storage.url}: no {SPEC_KEY}: not a run's folder (submit a spec first)")
