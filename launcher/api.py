"""``submit`` from Python: send a spec to this machine or the cluster, follow it, pull the surface.

    from launcher.api import submit
    run = submit("surface.yaml", backend="cluster")   # returns once the Jobs exist
    run.status()                                       # RunStatus(state='running', points_done=812, ...)
    landscape = run.wait().pull("out/")                # a landscape_job.api.result.Landscape (series: Series)

A thin layer over the backends (``launcher.backends``), as the commands are: the same
``checked_spec``, ``plan`` and ``submit`` as ``launcher submit``; a backend that runs the
stages in this process (``local``: as ``submit --local``) does so in a background thread, so a
notebook stays usable. ``status`` is the backend's (``launcher status``'s state); progress
and the result are read from the run's storage, the one place every backend writes (spec,
progress records, shards, ``surface.h5``, ``report.json``), and the run has succeeded only
once merge has written every output (``launcher.backends.done``).

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

from landscape_job.api.result import Landscape, Series
from landscape_job.base.errors import StageError, UserError
from landscape_job.run.tally import read_tallies
from landscape_job.spec.parse import parse_spec
from landscape_job.spec.sections import Spec
from landscape_job.stages import SERIES_KEY, SURFACE_KEY
from landscape_job.storage import Storage, run_storage
from landscape_job.storage.location import check_run_id

from launcher.backends.base import BACKENDS, Backend, make_backend
from launcher.backends.done import describe_missing, run_missing
from launcher.local.runner import new_run_id

__all__ = ["BACKENDS", "Run", "RunStatus", "submit"]


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands: ``running``, ``succeeded`` or ``failed``. Points come from its storage;
    success and failure from its backend, as ``launcher status`` reads them (succeeded: Complete,
    every output written), and from the thread of a run that runs here."""

    state: str
    points_done: int
    points: int
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


class Run:
    """A submitted run: ``status()``, ``wait()``, ``preview()`` and ``pull()``, through the backend that submitted it."""

    def __init__(self, spec: Spec, run_id: str, backend: Backend, thread: threading.Thread | None = None,
                 log: io.StringIO | None = None):
        self.spec, self.run_id, self._backend = spec, run_id, backend
        self.backend: str = backend.name
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
        """Points done over all shards, from one listing of the progress tally (O(1) in the shards)."""
        return sum(p.done for p in read_tallies(self.storage, self.spec.compute.shards).values())

    def status(self) -> RunStatus:
        total = self.spec.grid.size
        try:
            current = self._backend.status(self.run_id)
        except UserError:  # its spec.yaml not written yet: only a run starting in this process's thread
            if self._thread is None or not self._thread.is_alive():
                raise
            return RunStatus("running", 0, total)
        if current.complete:
            return RunStatus("succeeded", total, total)
        if self._error is not None:
            return RunStatus("failed", self._points_done(), total, str(self._error).splitlines()[0])
        if self._thread is not None:  # the run's own process is this one: its thread is the truth
            if not self._thread.is_alive():
                return RunStatus("failed", self._points_done(), total, "the local run stopped without its outputs")
            return RunStatus("running", self._points_done(), total)
        if current.ended:
            return RunStatus("failed", self._points_done(), total, current.error or current.state.lower())
        return RunStatus("running", self._points_done(), total)

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

    def preview(self, path: str | Path | None = None, metric: str | None = None):
        """The surface so far, drawn from the finished points (finished shards and checkpoint segments).

        Shards compute coarse to fine, so a run a quarter done shows the whole grid at a
        lower resolution; the lattice's points not finished yet are marked (``plots.preview``).
        Returns the matplotlib Figure; with ``path``, also saves it there as PNG.
        """
        from landscape_job.plots.preview import preview_figure
        from landscape_job.run.finished import finished_points

        figure, _ = preview_figure(finished_points(self.storage), metric)
        if path is not None:
            figure.savefig(Path(path), format="png", facecolor="white")
        return figure

    def pull(self, dest: str | Path | None = None) -> Landscape | Series:
        """The merged result of a Complete run: a ``Landscape`` (``surface.h5``), or for a series run a
        ``Series`` (``series.h5``). With ``dest``, also everything it wrote (the result, ``report.json``,
        ``plots/``), copied there whole or not at all (``launcher pull``)."""
        result = SERIES_KEY if self.spec.series is not None else SURFACE_KEY
        if dest is not None:
            path = self._backend.pull(self.run_id, Path(dest))
            return _result(path.read_bytes(), f"{self.url}/{path.name}", path.name == SERIES_KEY)
        missing = run_missing(self.storage)
        if missing and not self.storage.exists(result):
            raise UserError(f"run {self.run_id}: no {result} yet ({self.status().state}); wait() first")
        if missing:
            raise StageError(f"run {self.run_id} is not complete: missing {describe_missing(missing)}; wait() first")
        return _result(self.storage.get(result), f"{self.url}/{result}", result == SERIES_KEY)


def _result(data: bytes, name: str, series: bool) -> Landscape | Series:
    """A run's merged file as the in-memory API returns it: ``Series`` for ``series.h5``, else ``Landscape``."""
    return Series.from_bytes(data, name) if series else Landscape.from_bytes(data, name)


def _spec_file(spec: str | Path | Mapping[str, Any], folder: Path, storage: str | None) -> tuple[Path, str | None]:
    """The spec as a file the backends read, and the storage override still to apply.

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

    ``backend``: a name of ``launcher.backends.BACKENDS``. ``"local"``: this machine, the
    stages as processes (``workers`` evaluate processes at once). ``"cluster"``: Jobs on the
    cluster of the current kubeconfig context, as ``launcher submit`` (the spec's
    ``kubernetes:`` section applies). A mistake in the spec raises ``UserError`` before
    anything starts.
    """
    log = io.StringIO()
    options = {"stream": log, **({"workers": workers} if workers is not None else {})}
    chosen = make_backend(backend, **options)
    if run_id is not None:
        check_run_id(run_id, "run_id")
    with tempfile.TemporaryDirectory(prefix="landscape-submit-") as tmp:
        checked = chosen.checked_spec(*_spec_file(spec, Path(tmp), storage))  # as launcher submit checks it
    plan = chosen.plan(checked, run_id or new_run_id(checked.name, checked.storage))
    if not getattr(chosen, "runs_here", False):
        chosen.submit(plan)  # returns once the run exists where it runs
        return Run(checked, plan.run_id, chosen)
    holder: dict[str, Run] = {}

    def body() -> None:
        try:
            chosen.submit(plan)
        except BaseException as err:  # noqa: BLE001 - kept for status(); the thread must not die loudly
            holder["run"]._error = err

    thread = threading.Thread(target=body, name=f"landscape-{plan.run_id}", daemon=True)
    holder["run"] = run = Run(checked, plan.run_id, chosen, thread, log)
    thread.start()
    return run
