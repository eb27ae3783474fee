"""``submit`` from Python: send a spec to this machine or the cluster, follow it, pull the surface.

    from launcher.api import submit
    run = submit("surface.yaml", backend="cluster")   # returns once the Jobs exist
    run.status()                                       # RunStatus(state='running', points_done=812, ...)
    landscape = run.wait().pull("out/")                # a landscape_job.api.result.Landscape

A thin layer over the commands, not beside them: ``backend="local"`` runs
``launcher.local.runner.submit_local`` (the stages as local processes, as ``submit --local``) in a
background thread, so a notebook stays usable; ``backend="cluster"`` is ``launcher submit``
itself. Progress and the result are read from the run's storage, the one place both
backends write (spec, progress records, shards, ``surface.h5``, ``report.json``).

It lives in ``launcher`` because submitting is the launcher's job and ``landscape_job``
never imports ``launcher``; the in-memory API (``landscape_job.api.compute``) needs neither.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape_job.api.result import Landscape
from landscape_job.base.errors import StageError, UserError
from landscape_job.storage.location import check_run_id
from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import progress_key, shard_key
from landscape_job.spec.sections import Spec
from landscape_job.spec.parse import load_spec, parse_spec
from landscape_job.stages import REPORT_KEY, SURFACE_KEY
from landscape_job.storage import NotFound, Storage, run_storage

from launcher.cli import checked_spec
from launcher.cli import main as launcher_main
from launcher.local.runner import new_run_id, submit_local

__all__ = ["BACKENDS", "Run", "RunStatus", "submit"]

BACKENDS = ("local", "cluster")


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands: ``running``, ``succeeded`` or ``failed``. Points and success come from
    its storage; a failure from the local thread, or, for a cluster run, from its Jobs (asked as
    ``launcher status`` asks them: a failed stage or Jobs gone)."""

    state: str
    points_done: int
    points: int
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


class Run:
    """A submitted run: ``status()``, ``wait()`` and ``pull()``."""

    def __init__(self, spec: Spec, run_id: str, backend: str, thread: threading.Thread | None = None,
                 log: io.StringIO | None = None):
        self.spec, self.run_id, self.backend = spec, run_id, backend
        self.storage: Storage = run_storage(spec.storage, run_id)
        self._thread, self._log = thread, log
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.storage.url

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, {self.backend}, {self.url})"

    @property
    def log(self) -> str:
        """What the local stages printed so far (empty for a cluster run: ``launcher logs``)."""
        return self._log.getvalue() if self._log is not None else ""

    def _points_done(self) -> int:
        shards = self.spec.compute.shards
        done = 0
        for i in range(shards):
            if self.storage.exists(shard_key(i, shards)):
                done += len(self.spec.grid.shard_range(i, shards))
                continue
            try:
                done += ProgressRecord.from_json(self.storage.get(progress_key(i, shards))).done
            except (NotFound, ValueError, TypeError):
                pass
        return done

    def status(self) -> RunStatus:
        total = self.spec.grid.size
        if self.storage.exists(SURFACE_KEY) and self.storage.exists(REPORT_KEY):
            return RunStatus("succeeded", total, total)
        if self._error is not None:
            return RunStatus("failed", self._points_done(), total, str(self._error).splitlines()[0])
        if self._thread is not None and not self._thread.is_alive():
            return RunStatus("failed", self._points_done(), total, "the local run stopped without a surface")
        if self.backend == "cluster":
            error = self._cluster_error()
            if error is not None:
                return RunStatus("failed", self._points_done(), total, error)
        return RunStatus("running", self._points_done(), total)

    def _cluster_error(self) -> str | None:
        """Why the run's Jobs say it failed (``launcher wait``'s reading), or None while it goes on."""
        from launcher.kubernetes.cluster import Cluster
        from launcher.commands.cluster_run import jobs_by_stage
        from launcher.commands.follow import stop_error
        from launcher.kubernetes.section import parse_kubernetes

        cluster = Cluster.connect(namespace=parse_kubernetes(self.spec.kubernetes).namespace)
        try:
            return stop_error(self.run_id, jobs_by_stage(cluster, self.run_id))
        finally:
            cluster.close()

    def wait(self, timeout: float | None = None, interval: float = 2.0) -> Run:
        """Blocks until the run succeeded; a failure raises (``StageError``) and so does ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.status()
            if state.state == "succeeded":
                return self
            if state.state == "failed":
                raise StageError(f"run {self.run_id} failed: {state.detail}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.run_id}: {state.points_done}/{state.points} points after {timeout} s")
            if self._thread is not None:
                self._thread.join(interval)
            else:
                time.sleep(interval)

    def pull(self, dest: str | Path | None = None) -> Landscape:
        """The merged surface; with ``dest``, also ``surface.h5``, ``report.json`` and ``plots/`` written there."""
        if not self.storage.exists(SURFACE_KEY):
            raise UserError(f"run {self.run_id}: no {SURFACE_KEY} yet ({self.status().state}); wait() first")
        data = self.storage.get(SURFACE_KEY)
        if dest is not None:
            folder = Path(dest)
            for key in [SURFACE_KEY, REPORT_KEY, *self.storage.list("plots/")]:
                target = folder / key
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data if key == SURFACE_KEY else self.storage.get(key))
        return Landscape.from_bytes(data, f"{self.url}/{SURFACE_KEY}")


def _spec_file(spec: str | Path | Mapping[str, Any], folder: Path, storage: str | None) -> tuple[Path, str | None]:
    """The spec as a file the commands read, and the storage override still to apply.

    A mapping is parsed against the current folder (relative paths are the notebook's) and
    written normalised (absolute paths, storage included) into ``folder``.
    """
    if not isinstance(spec, Mapping):
        return Path(spec), storage
    path = folder / "surface.yaml"
    path.write_text(parse_spec(dict(spec), base_dir=Path.cwd(), storage_override=storage, check_files=False).to_yaml())
    return path, None


def submit(spec: str | Path | Mapping[str, Any], backend: str = "local", *, run_id: str | None = None,
           storage: str | None = None, workers: int | None = None) -> Run:
    """Starts a run of ``spec`` (a file, or its contents as a dict) and returns at once.

    ``backend="local"``: this machine, the stages as processes (``workers`` evaluate
    processes at once). ``backend="cluster"``: Jobs on the cluster of the current
    kubeconfig context, as ``launcher submit`` (the spec's ``kubernetes:`` section applies).
    A mistake in the spec raises ``UserError`` before anything starts.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if run_id is not None:
        check_run_id(run_id, "run_id")
    if backend == "cluster":
        return _submit_cluster(spec, run_id, storage)
    with tempfile.TemporaryDirectory(prefix="landscape-submit-") as tmp:
        checked = checked_spec(*_spec_file(spec, Path(tmp), storage))[0]  # as validate and submit --local check
    chosen = run_id or new_run_id(checked.name, checked.storage)
    log = io.StringIO()
    holder: dict[str, Run] = {}

    def body() -> None:
        try:
            submit_local(checked, run_id=chosen, workers=workers, stream=log)
        except BaseException as err:  # noqa: BLE001 - kept for status(); the thread must not die loudly
            holder["run"]._error = err

    thread = threading.Thread(target=body, name=f"landscape-{chosen}", daemon=True)
    holder["run"] = run = Run(checked, chosen, "local", thread, log)
    thread.start()
    return run


def _submit_cluster(spec: str | Path | Mapping[str, Any], run_id: str | None, storage: str | None) -> Run:
    """``launcher submit`` itself, with a run id chosen here so the handle knows it."""
    with tempfile.TemporaryDirectory(prefix="landscape-submit-") as tmp:
        path, storage = _spec_file(spec, Path(tmp), storage)
        checked = load_spec(path, storage_override=storage, check_files=False)
        chosen = run_id or new_run_id(checked.name, checked.storage)
        argv = ["submit", str(path), "--run-id", chosen, *(["--storage", storage] if storage else [])]
        if launcher_main(argv) != 0:
            raise UserError(f"launcher submit {path.name} failed; its message is above")
    return Run(checked, chosen, "cluster")
