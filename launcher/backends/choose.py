"""Which backend a command talks to, and which run it names: the one place that decides.

A command names a run as

- a URL (``file:///.../<id>``, ``s3://bucket/prefix/<id>``) or a folder (``runs/<id>``,
  ``/abs/<id>``): that prefix, read from storage (``local``; S3 options from
  ``$LANDSCAPE_STORAGE_OPTIONS``, as for a pod);
- a run id with ``--storage BASE``: the run ``BASE/<id>``, read from storage;
- a run submitted with ``--slurm`` is named in the same ways: its prefix holds ``slurm.json``,
  and the Slurm backend asks the scheduler about the jobs it names;
- a run id alone: ``./runs/<id>`` when it holds a run and no cluster flag (``-n``,
  ``--context``, ``--kubeconfig``) is given; else the cluster when there is a kubeconfig
  (a flag, ``$KUBECONFIG``, ``~/.kube/config``, or in a pod); else it is not found, and the
  error says where it was looked for.

``list`` without ``--storage`` lists both the cluster (when there is a kubeconfig) and ``./runs``
(when it exists), each under a line saying where it looked; a cluster flag lists the cluster alone.
Local first: a laptop with no cluster never meets a kubeconfig error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from landscape_job.base.errors import UserError, shown
from landscape_job.stages import SPEC_KEY
from landscape_job.storage import Storage, open_storage, run_storage
from landscape_job.storage.location import StorageLocation, check_run_id, file_url, storage_options_from_env

from launcher.backends.base import Backend, backend_class

#: Where ``submit --local`` puts runs when the spec names no storage (``landscape_job.storage.location``).
DEFAULT_LOCAL_STORAGE = Path("runs")
#: The backend of a run found in storage, and of a cluster run; ``submit`` picks by ``--local``.
STORED, CLUSTER, SLURM = "local", "cluster", "slurm"
_CLUSTER_FLAGS = ("namespace", "context", "kubeconfig")


def cluster_flags(args: argparse.Namespace) -> bool:
    """A flag that names a cluster was given (``-n``, ``--context``, ``--kubeconfig``)."""
    return any(getattr(args, flag, None) for flag in _CLUSTER_FLAGS)


def kubeconfig_paths() -> list[Path]:
    """Where the Kubernetes client looks for a kubeconfig: each file of ``$KUBECONFIG``, else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def has_kubeconfig(args: argparse.Namespace) -> bool:
    """A cluster is configured: a cluster flag, an existing kubeconfig file, or a pod's service account."""
    return cluster_flags(args) or any(p.is_file() for p in kubeconfig_paths()) \
        or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _no_kubeconfig() -> str:
    return f"no kubeconfig ({', '.join(str(p) for p in kubeconfig_paths())} not found)"


def _env_options(url: str) -> dict[str, str] | None:
    return storage_options_from_env() if url.startswith("s3://") else None


def _is_path(text: str) -> bool:
    return "/" in text or text.startswith((".", "~")) or (os.sep != "/" and os.sep in text)


def stored_backend(base: StorageLocation | str | None = None) -> Backend:
    """The backend that reads runs from storage alone, under ``base`` (default ``./runs``)."""
    return backend_class(STORED)(base=base)


def _in_storage(storage: Storage, run_id: str) -> Backend:
    """The backend of the run at ``storage``: Slurm's when the prefix holds its ``slurm.json`` (the run's
    jobs are then asked about), else the one that reads storage alone."""
    from launcher.slurm.record import SLURM_KEY

    backend = backend_class(SLURM)() if storage.exists(SLURM_KEY) else stored_backend()
    backend.known[run_id] = storage  # type: ignore[attr-defined]
    return backend


def check_run(run_id: str) -> None:
    """A run id given on the command line, checked as render checks ``--run-id`` but named as what it is here."""
    from launcher.kubernetes.names import check_run_id as check_k8s_run_id

    try:
        check_k8s_run_id(run_id)
    except UserError as err:
        raise UserError(str(err).replace("--run-id: expected", f"run id {run_id!r}: expected", 1)) from None


def run_backend(args: argparse.Namespace) -> tuple[Backend, str]:
    """The backend and run id that ``args.run`` (with ``args.storage`` and the cluster flags) name.

    A ``UserError`` before any I/O on a cluster when it names none, saying where it looked.
    """
    text = args.run
    if "://" in text:
        url = text.rstrip("/")
        run_id = check_run_id(url.rsplit("/", 1)[-1], f"run {shown(url)}")
        return _at(StorageLocation.parse(url, _env_options(url)), run_id), run_id
    if _is_path(text):
        folder = Path(text).expanduser().absolute()
        if not folder.is_dir():
            raise UserError(f"{shown(text)}: no such run folder")
        run_id = check_run_id(folder.name, f"run folder {shown(text)}")
        return _at(StorageLocation.parse(file_url(folder.resolve())), run_id), run_id
    check_run(text)
    if getattr(args, "storage", None):
        base = StorageLocation.parse(args.storage, _env_options(args.storage))
        return _in_storage(run_storage(base, text), text), text
    local = DEFAULT_LOCAL_STORAGE / text
    if not cluster_flags(args) and (local / SPEC_KEY).is_file():
        return _in_storage(open_storage(StorageLocation.parse(file_url(local.resolve()))), text), text
    if has_kubeconfig(args):
        return backend_class(CLUSTER).from_args(args), text
    raise UserError(f"run {text}: not in {local.absolute()} (local runs), and {_no_kubeconfig()} for the cluster; "
                    f"give the run's folder, --storage BASE, or --kubeconfig")


def _at(location: StorageLocation, run_id: str) -> Backend:
    """The backend that knows ``run_id`` to be at ``location`` (a URL or folder given whole)."""
    return _in_storage(open_storage(location), run_id)


def list_backends(args: argparse.Namespace) -> list[Backend]:
    """``launcher list``'s backends: ``--storage``; the cluster alone when a cluster flag (``-n``,
    ``--context``, ``--kubeconfig``, ``-A``, ``-l``) names it; both the cluster and ``./runs`` when there
    is a kubeconfig and a ``./runs`` folder; else whichever of the two there is (``./runs`` by default)."""
    if getattr(args, "storage", None):
        return [stored_backend(StorageLocation.parse(args.storage, _env_options(args.storage)))]
    local = stored_backend(StorageLocation.parse(file_url(DEFAULT_LOCAL_STORAGE.absolute())))
    if not has_kubeconfig(args):
        return [local]
    cluster = backend_class(CLUSTER).from_args(args)
    named = cluster_flags(args) or getattr(args, "all_namespaces", False) or getattr(args, "selector", None)
    return [cluster] if named or not DEFAULT_LOCAL_STORAGE.is_dir() else [cluster, local]


def local_default_note(args: argparse.Namespace) -> str | None:
    """The note ``list`` prints when it fell back to ``./runs``: where it looked, and why not the cluster."""
    if getattr(args, "storage", None) or has_kubeconfig(args):
        return None
    return f"local runs under {DEFAULT_LOCAL_STORAGE.absolute()} ({_no_kubeconfig()}; --storage picks another base)"


def submit_backend(args: argparse.Namespace) -> str:
    """The backend ``launcher submit`` uses: this machine with ``--local``, Slurm with ``--slurm``, else the
    cluster (both flags: the Slurm backend names the mistake)."""
    if getattr(args, "slurm", False):
        return SLURM
    return STORED if getattr(args, "local", False) else CLUSTER
