"""The local backend: the run's three stages as local processes, through the pod entrypoint.

Each stage is ``python -m landscape_job.cli <stage>`` with the run's URL in its environment and
``JOB_COMPLETION_INDEX`` set for evaluate, exactly as in an Indexed Job, so every local
run exercises the pod contract. The processes are forked from one interpreter that has
imported torch (``landscape_job.forkserver``), which saves each ~2 s of start-up. Workers
split the machine's cores between them: ``local_workers`` and ``worker_threads`` are the
one rule for how many start, which ``launcher estimate`` projects with too.

The run keeps its own record in its storage (``local.json``: this process, its workers,
how it ended; ``launcher.local.record``) and each worker's log under ``logs/``, so that
``launcher status|logs|cancel runs/<id>`` manage a local run as the cluster commands do a
cluster's, with no kubeconfig.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

from landscape_job.base import verbosity
from landscape_job.base.diskspace import NoSpace
from landscape_job.base.errors import StageError, UserError
from landscape_job.storage.location import StorageLocation
from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import progress_key
from landscape_job.spec.sections import Spec
from landscape_job.spec.localize import localize
from landscape_job.stages import MANIFEST_KEY, SPEC_KEY, read_manifest, read_run_spec
from landscape_job.run.lease import CANCELLED as CANCEL_REASON, Lease
from landscape_job.run.pinned import verify_inputs
from landscape_job.base.termination import PARENT_ENV
from landscape_job.cli import PROG
from landscape_job.storage import Storage, open_storage, run_storage
from landscape_job.forkserver import StageProcess, command, shared
from launcher.backends.done import run_missing
from launcher.local.record import CANCELLED, FAILED, LOCAL_KEY, SUCCEEDED, LocalRunRecord, log_key
from launcher.progress import advance_to, points_bar
from launcher.kubernetes.names import default_run_id


def available_cores() -> int:
    """The cores this process may run on: its affinity mask where the OS has one (a container's
    cpuset), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def local_workers(shards: int, requested: int | None = None) -> int:
    """Evaluate processes a local run keeps going at once: ``requested`` (``--workers``) or
    the cores, never more than the shards."""
    return max(1, min(requested or available_cores(), shards))


def stage_env() -> dict[str, str]:
    """What every stage's environment has, and its stage server's: this launcher's, with its pid for their
    parent watch (``base.termination``); each stage adds its run's storage and its threads (``LocalRunner``)."""
    return dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", **{PARENT_ENV: str(os.getpid())})


def worker_threads(workers: int) -> int:
    """Each worker's share of the cores (its torch threads)."""
    return max(1, available_cores() // workers)


def stage_command(stage: str) -> list[str]:
    """What a local worker of ``stage`` runs: the pod entrypoint (the run's URL comes in its environment)."""
    return command([stage])


class RunInterrupted(KeyboardInterrupt):
    """A local run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) or by ``cancel``: what is stored so far
    stays, and ``run_id`` resumes it. ``signum`` is the signal (the launcher exits 128 + it)."""

    def __init__(self, run_id: str, signum: int = signal.SIGINT, reason: str | None = None):
        super().__init__(run_id)
        self.run_id, self.signum = run_id, signum
        self.reason = reason or ("interrupted" if signum == signal.SIGINT else
                                 f"stopped by {signal.Signals(signum).name}")


class _Stopped(BaseException):
    """A stop signal arrived at the launcher (raised in its main thread by :func:`_stop_signals`)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


#: The signals that stop a local run in order: Ctrl-C, what timeout/systemd/a CI runner send, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds the workers get to save their finished points after SIGTERM, before SIGKILL.
STOP_GRACE = 20.0


@contextlib.contextmanager
def _stop_signals():
    """Within the block, each of STOP_SIGNALS raises :class:`_Stopped` once; a second one while the
    workers are being stopped is noted, not raised, so the stopping is never cut short (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def handler(signum: int, frame: object) -> None:
        if not raised:
            raised.append(signum)
            raise _Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def check_storage(spec: Spec) -> None:
    """Fails with one line, before anything is written, when the storage cannot be used."""
    storage = open_storage(spec.storage)
    check = getattr(storage, "check_access", None)
    if check is not None:
        check()


def new_run_id(name: str, location: StorageLocation) -> str:
    """``<name>-<UTC time>``, with a ``-<n>`` suffix if that run exists already under ``location``."""
    base = default_run_id(name)
    run_id, n = base, 1
    while run_storage(location, run_id).exists(SPEC_KEY):
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def open_run(spec: Spec, run_id: str) -> Storage:
    """Creates the run's prefix with its spec, or reopens it to resume if the spec is the same."""
    run = run_storage(spec.storage, run_id)
    if run.exists(SPEC_KEY):
        existing = read_run_spec(run)
        if existing.hash != spec.hash:
            raise UserError(f"--run-id {run_id}: that run exists with a different spec; choose another run id")
        if run.exists(MANIFEST_KEY):  # a resume: the inputs must be the files the run began with
            verify_inputs(spec, localize(spec), read_manifest(run), "resume")
    else:
        run.put(SPEC_KEY, spec.to_yaml().encode())
    return run


@dataclass
class _Worker:
    shard: int
    process: subprocess.Popen | StageProcess
    log_path: Path
    log_file: TextIO = field(repr=False)


class LocalRunner:
    """Runs the stages of one run as subprocesses and keeps their logs in the run's storage."""

    def __init__(self, run: Storage, spec: Spec, workers: int, log_dir: Path, stream: TextIO,
                 live_logs: bool = False):
        """``live_logs``: ``log_dir`` is the run's own ``logs/`` folder (folder storage), nothing to upload."""
        self.run, self.spec, self.workers = run, spec, workers
        self.log_dir, self.stream, self.live_logs = log_dir, stream, live_logs
        self.record = LocalRunRecord.start()
        self.live: dict[str, int] = {}
        self._write_record()
        # This process's stage server (the inputs' check may have started it): it outlives the run
        self.server = shared(stage_env())

    def _write_record(self) -> None:
        self.run.put(LOCAL_KEY, self.record.to_json())

    def _workers_changed(self) -> None:
        self.record = self.record.with_workers(self.live)
        self._write_record()

    def end(self, state: str, error: str | None = None) -> None:
        """Records how the run ended (``launcher status`` reads it)."""
        self.record = self.record.ended(state, error)
        self._write_record()

    def _env(self, threads: int | None = None, shard: int | None = None) -> dict[str, str]:
        """A stage's environment: ``stage_env``, the run's storage, and its threads and shard where given."""
        # The stages find the run as a pod does: its URL and the storage's options.
        location = StorageLocation.parse(self.run.url, self.spec.storage.options)
        env = dict(stage_env(), **location.env())
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if shard is not None:
            env["JOB_COMPLETION_INDEX"] = str(shard)
        return env

    def _start(self, stage: str, threads: int, shard: int | None = None) -> _Worker:
        log_path = self.log_dir / log_key(stage, shard).rsplit("/", 1)[-1]
        log_file = open(log_path, "w")
        # A process group of its own: a terminal's Ctrl-C reaches only the launcher, which stops the
        # workers in order (SIGTERM, their points saved) and the worker's own children with them.
        process = self.server.start([stage], self._env(threads, shard), stdout=log_file.fileno(),
                                    new_session=True)
        self.live[log_path.stem] = process.pid
        self._workers_changed()
        return _Worker(shard if shard is not None else -1, process, log_path, log_file)

    def _finish(self, worker: _Worker, stage: str) -> None:
        worker.log_file.close()
        self.live.pop(worker.log_path.stem, None)
        self._workers_changed()
        text = worker.log_path.read_text()
        if not self.live_logs:
            self.run.put(f"logs/{worker.log_path.name}", text.encode())
        if verbosity.level() >= verbosity.VERBOSE and worker.shard >= 0:
            print("".join(f"  [shard {worker.shard}] {line}\n" for line in text.strip().splitlines()),
                  end="", file=self.stream)
        if worker.process.returncode != 0:
            _check_full(self.run, stage, text)
            where = f"log: {self.run.url}/logs/{worker.log_path.name}"
            why = own_error(text)
            if why:  # the worker said what went wrong in one line: that line, and where its log is
                raise StageError(f"{stage} stage failed (exit {worker.process.returncode}): {why}; {where}")
            tail = "\n".join("    " + line for line in text.strip().splitlines()[-15:])
            raise StageError(f"{stage} stage failed (exit {worker.process.returncode}); {where}\n{tail}")

    def run_stage(self, stage: str) -> None:
        worker = self._start(stage, threads=available_cores())
        try:
            worker.process.wait()
        except BaseException:  # a stop signal: the stage must not outlive the launcher
            stop_workers([worker])
            raise
        self._finish(worker, stage)
        for line in worker.log_path.read_text().strip().splitlines():
            print(f"  {line}", file=self.stream)

    def _shard_points(self, shard: int) -> int:
        return len(self.spec.grid.shard_range(shard, self.spec.compute.shards))

    def _running_points(self, running: list[_Worker]) -> int:
        """Points done by the running workers, from their progress objects: one read per worker,
        so a poll costs the same for 10 shards or 10,000 (finished shards are counted whole). A progress
        object that is missing, unreadable or (after the storage's retries) unreachable counts nothing
        this time: the workers' own exits decide."""
        total = 0
        for worker in running:
            try:
                key = progress_key(worker.shard, self.spec.compute.shards)
                total += ProgressRecord.from_json(self.run.get(key)).done
            except (KeyError, ValueError, TypeError, OSError, StageError):
                pass
        return total

    def run_evaluate(self) -> None:
        """Runs every shard, at most ``workers`` at a time, with a progress bar over all of them."""
        shards = list(range(self.spec.compute.shards))
        threads = worker_threads(self.workers)
        running: list[_Worker] = []
        finished = 0
        with points_bar(self.spec.grid.size, self.stream) as bar:
            try:
                while shards or running:
                    while shards and len(running) < self.workers:
                        running.append(self._start("evaluate", threads, shards.pop(0)))
                    time.sleep(0.25)
                    for worker in [w for w in running if w.process.poll() is not None]:
                        running.remove(worker)
                        self._finish(worker, f"evaluate (shard {worker.shard})")
                        finished += self._shard_points(worker.shard)
                    advance_to(bar, finished + self._running_points(running))
            finally:  # a stop signal or a failed shard: the others save what they finished and stop
                stop_workers(running)
            advance_to(bar, finished)


#: Below this many free bytes on a folder storage, a failed worker is taken to have met the full disk
#: (its own last line may not have fitted into its log there).
LOW_SPACE = 1 << 20


def own_error(log: str) -> str | None:
    """A stage's own one-line error (``landscape-job: ...``, its last line), or None after a crash.

    It goes on the launcher's line: when the store fails, the worker may notice before the
    launcher's own poll does, and the line must say the same either way."""
    lines = log.strip().splitlines()
    last = lines[-1] if lines else ""
    return last.removeprefix(f"{PROG}: ") if last.startswith(f"{PROG}: ") else None


def _check_full(run: Storage, stage: str, log: str) -> None:
    """A worker that failed on a full disk or quota: its one line (``base.diskspace``), without the log's tail."""
    lines = log.strip().splitlines()
    last = lines[-1] if lines else ""
    if "no space left on device" in last or "disk quota exceeded" in last:
        raise StageError(f"{stage} stage failed: {last.split(': ', 1)[-1]}")
    free = getattr(run, "free_bytes", lambda: None)()
    if free is not None and free < LOW_SPACE:
        raise NoSpace(getattr(run, "root", run.url), LOW_SPACE)


def _signal_group(worker: _Worker, sig: int) -> None:
    try:
        os.killpg(worker.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_workers(workers: list[_Worker], grace: float = STOP_GRACE) -> None:
    """SIGTERM to each worker's process group (an evaluate worker saves its finished points as a segment
    and exits 143), SIGKILL to any group still there after ``grace`` s; returns when all have exited."""
    for worker in workers:
        if worker.process.poll() is None:
            _signal_group(worker, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(worker, signal.SIGKILL)  # the group: a worker's own children too
        worker.process.wait()
        worker.log_file.close()


def submit_local(spec: Spec, run_id: str | None = None, workers: int | None = None,
                 stream: TextIO | None = None) -> Storage:
    """prepare -> evaluate (all shards) -> merge, on this machine; returns the run's storage."""
    stream = stream or verbosity.stream()
    check_storage(spec)
    run_id = run_id or new_run_id(spec.name, spec.storage)
    run = open_run(spec, run_id)
    lease = Lease.acquire(run, run_id)  # one runner per run: a second one is refused here, naming this one
    try:
        if not run_missing(run):  # Complete (launcher.backends.done): its stages would only say so, seconds each
            print(f"run {run_id} is already complete; nothing to run -> {run.url}", file=stream)
            return run
        return _run_held(spec, run, run_id, lease, workers, stream)
    finally:
        lease.release()


def _run_held(spec: Spec, run: Storage, run_id: str, lease: Lease, workers: int | None, stream: TextIO) -> Storage:
    """The run's stages, with its lease held and its heartbeat going; a stop signal stops them in order."""
    workers = local_workers(spec.compute.shards, workers)
    print(f"run {run_id}: {spec.grid.size} points in {spec.compute.shards} shards, "
          f"{workers} local worker{'s' if workers > 1 else ''} -> {run.url}", file=stream)
    with tempfile.TemporaryDirectory(prefix="landscape-logs-") as tmp:
        live = spec.storage.scheme == "file"  # a folder: the workers write their logs straight into it
        log_dir = spec.storage.join(run_id).path / "logs" if live else Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        runner = LocalRunner(run, spec, workers, log_dir, stream, live_logs=live)
        # The stop signals' handler stays until the run is wound up (its record written): a second stop
        # signal then (a cancel's SIGTERM after the heartbeat's) is noted, not fatal.
        try:
            with _stop_signals():
                _run_stages(runner, run_id, lease)
        except _Stopped as stop:  # the first one came as the stages had ended
            if runner.record.state == SUCCEEDED:
                return run  # after the run's end: nothing was stopped
            raise _interrupted(runner, run_id, stop.signum, lease) from None
    return run


def _interrupted(runner: LocalRunner, run_id: str, signum: int, lease: Lease,
                 lost: Sequence[str] = ()) -> RunInterrupted:
    """The run stopped by ``signum``: why (the lease lost, a cancel, or the signal itself), in its record too."""
    reason = lost[0] if lost else (CANCEL_REASON if lease.cancel_requested() else None)
    interrupted = RunInterrupted(run_id, signum, reason)
    _end_quietly(runner, CANCELLED, interrupted.reason)
    return interrupted


def _run_stages(runner: LocalRunner, run_id: str, lease: Lease) -> None:
    """prepare -> evaluate -> merge; how the run ended, in its record."""
    lost: list[str] = []
    stages_running = threading.Event()
    # The heartbeat's look at stages_running and its SIGTERM are one step against the stages' end: a SIGTERM it
    # decided on while they ran has landed before _run_held winds up, while _stop_signals' handler is there.
    guard = threading.Lock()

    def on_lost(reason: str) -> None:  # the heartbeat's thread: the main thread stops as on SIGTERM
        lost.append(reason)
        with guard:
            if stages_running.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

    try:
        stages_running.set()
        lease.start(on_lost)
        try:
            runner.run_stage("prepare")
            runner.run_evaluate()
            runner.run_stage("merge")
        finally:
            stages_running.clear()
            with guard:  # a SIGTERM the heartbeat decided on before the clear has landed by now
                pass
    except _Stopped as stop:  # the workers are stopped (run_stage, run_evaluate); the run stays
        raise _interrupted(runner, run_id, stop.signum, lease, lost) from None
    except StageError as err:  # a stage, or the storage, failed: what is stored so far stays
        first, newline, rest = str(err).partition("\n")
        _end_quietly(runner, FAILED, first)
        raise StageError(f"{first} (run {run_id}: submit again with --run-id {run_id} to resume)"
                         f"{newline}{rest}") from None
    except KeyboardInterrupt:  # Ctrl-C outside the main thread's handlers (the Python API in a thread)
        _end_quietly(runner, CANCELLED, "interrupted")
        raise RunInterrupted(run_id) from None
    runner.end(SUCCEEDED)


def _end_quietly(runner: LocalRunner, state: str, error: str) -> None:
    """Records the end; a storage that fails here must not hide the error that ended the run."""
    try:
        runner.end(state, error)
    except (StageError, UserError, OSError):
        pass
