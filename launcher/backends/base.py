"""What every backend of the launcher does, and the plan it is given: one interface, local and cluster alike.

A backend is where a run's stages execute (processes on this machine, Jobs on Kubernetes,
an array job under Slurm). Every command that acts on a run goes through this interface
(``launcher.commands``, ``launcher.api``), so adding a backend is one class and one line
in ``BACKENDS``: no command branches on a backend's name.

    spec = backend.checked_spec(path, storage)   # read and check; read-only I/O, nothing written
    plan = backend.plan(spec, run_id)   # pure: what submit will create, printed by --dry-run
    backend.submit(plan)                # creates it (local: runs it, and returns when it ends)
    backend.status(run_id)              # a launcher.run_status.RunStatus
    backend.wait(run_id, timeout)       # the final RunStatus once Complete; StageError if it failed
    backend.logs(run_id, ...)           # the log lines, prefixed by stage and shard when several
    backend.list()                      # launcher.run_status.RunRow, oldest first
    backend.cancel(run_id)              # stops it; its storage stays (submit again resumes)
    backend.pull(run_id, dest)          # everything a Complete run wrote, or nothing

A backend class is built by ``from_args(args)`` from the CLI's parsed flags (each reads the
flags it knows, ``getattr(args, name, None)``), or directly with keywords from Python.
Where a run's outputs are and when it is done is the same for all: the run's storage
prefix, and ``launcher.backends.done`` (``report.json`` written last by merge, and every
output it lists present).
"""

from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

from landscape_job.base.errors import StageError, UserError

if TYPE_CHECKING:
    from landscape_job.spec.sections import Spec

    from launcher.run_status import RunRow, RunStatus


@dataclass(frozen=True)
class StagePlan:
    """One stage as a backend will start it: the command each of its ``count`` workers runs, and where."""

    name: str
    command: tuple[str, ...]
    count: int = 1
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "command": list(self.command), "count": self.count, "where": self.where}


@dataclass(frozen=True)
class Plan:
    """What ``submit`` will create, computed once and without I/O (compare TorchX's dry-run ``AppDryRunInfo``).

    ``launcher render`` and ``submit --dry-run`` print it; ``submit`` creates exactly it.
    ``objects``: the backend's own rendering (Kubernetes manifests, batch scripts), in
    creation order; ``options``: the backend's settings that shaped it (namespace, workers).
    """

    backend: str
    run_id: str
    storage: str
    spec_hash: str
    stages: tuple[StagePlan, ...]
    spec: Spec = field(repr=False, compare=False)
    objects: tuple[Any, ...] = field(default=(), repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``submit --dry-run -o json`` prints it (the objects as rendered)."""
        return {"backend": self.backend, "run": self.run_id, "storage": self.storage, "spec_hash": self.spec_hash,
                "options": dict(self.options), "stages": [s.to_dict() for s in self.stages],
                "objects": list(self.objects)}

    def lines(self) -> list[str]:
        """The plan in words: the run, where it writes, each stage's command."""
        head = [f"run {self.run_id} ({self.backend}): spec hash {self.spec_hash[:12]}, storage {self.storage}"]
        head += [f"  {k}: {v}" for k, v in self.options.items() if v is not None]
        return head + [f"  {s.name:<9} x{s.count:<5} {' '.join(s.command)}" + (f"  [{s.where}]" if s.where else "")
                       for s in self.stages]


class Backend(Protocol):
    """Where a run's stages execute. ``run`` is a run id; the backend knows where its runs live
    (a storage base, a cluster and namespace) from how it was built."""

    #: The key of the backend in ``BACKENDS`` (``Plan.backend``).
    name: str

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Backend: ...

    def where(self) -> str:
        """Where it looks for runs, in words (``under /home/u/runs``, ``in namespace ml``), for messages."""
        ...

    def checked_spec(self, path: Path, storage: str | None = None) -> Spec:
        """The spec file read and checked for this backend (its own section, the inputs and the storage
        as far as they can be checked from here): a ``UserError`` before anything is written."""
        ...

    def plan(self, spec: Spec, run_id: str) -> Plan:
        """What submitting ``spec`` as ``run_id`` creates. Pure; a ``UserError`` for what cannot run here."""
        ...

    def submit(self, plan: Plan) -> str:
        """Creates the plan's run (local: runs it to its end); returns the lines to tell the user last
        (where the results are, how to follow it). Progress on the way goes to stderr."""
        ...

    def status(self, run: str) -> RunStatus: ...

    def wait(self, run: str, timeout: float | None = None, interval: float = 5.0) -> RunStatus:
        """Until the run is Complete (returned); ``StageError`` if it fails, ``TimeoutError`` after ``timeout`` s."""
        ...

    def logs(self, run: str, stage: str | None = None, shard: int | None = None, tail: int | None = None,
             follow: bool = False, previous: bool = False) -> Iterator[str]:
        """The workers' log lines, each prefixed ``[prepare]``/``[shard 3]``/``[merge]`` when several are shown."""
        ...

    def list(self) -> list[RunRow]: ...

    def cancel(self, run: str) -> str:
        """Stops the run's workers (its storage stays); returns what was done, in words."""
        ...

    def pull(self, run: str, dest: Path | None = None, shards: bool = False) -> Path:
        """Copies a Complete run's outputs into ``dest`` (default ``./<run>``), all or nothing; returns the
        result file's path. An incomplete run: ``StageError`` naming what is missing."""
        ...


#: Backends by the name ``launcher.api.submit(backend=...)`` and ``Plan.backend`` use: ``"module:Class"``,
#: imported on first use (a local run never imports the Kubernetes client). Adding one: its class
#: and one line here (or :func:`register_backend`).
BACKENDS: dict[str, str | type] = {
    "local": "launcher.backends.local:LocalBackend",
    "cluster": "launcher.backends.kubernetes:KubernetesBackend",
    "slurm": "launcher.slurm.backend:SlurmBackend",
}


def register_backend(name: str, backend: str | type) -> None:
    """Makes ``name`` a backend, built by ``backend`` (``"module:Class"`` or a class)."""
    BACKENDS[name] = backend


def backend_class(name: str, what: str = "backend") -> type:
    """The class registered as ``name``; a ``UserError`` naming the choices for any other name."""
    if name not in BACKENDS:
        raise UserError(f"{what}: expected one of {', '.join(BACKENDS)}, got {name!r}")
    backend = BACKENDS[name]
    if isinstance(backend, str):
        module, _, attr = backend.partition(":")
        backend = getattr(importlib.import_module(module), attr)
    return backend


def make_backend(name: str, args: argparse.Namespace | None = None, **options: Any) -> Backend:
    """The backend ``name``, built from CLI flags (``args``) or keyword options."""
    return backend_class(name).from_args(args if args is not None else argparse.Namespace(**options))


def poll_until_ended(read: Callable[[], RunStatus], run: str, timeout: float | None, interval: float) -> RunStatus:
    """Reads the run's status every ``interval`` s until it is Complete (returned) or ended without its
    result (``StageError`` with its error); ``TimeoutError`` once ``timeout`` s have passed. Every
    backend's ``wait``: only ``read`` differs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = read()
        if status.complete:
            return status
        if status.ended:
            raise StageError(status.error or f"run {run}: {status.state.lower()}")
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"run {run} has not ended after {timeout:g} s")
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
