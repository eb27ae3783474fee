"""The Slurm backend: a run's three stages as batch jobs chained by ``afterok``, and the
operations every backend offers (submit, status, wait, logs, list, cancel, pull).

``submit`` checks everything before the first ``sbatch``: the spec and its ``slurm:``
section, the scripts (rendered, ``launcher.slurm.render``), the inputs where they are on
this machine, the storage, with ``code: venv`` the virtualenv's ``landscape-job``, and
each script with ``sbatch --test-only`` (an unknown partition, account or QOS, a request
no node can hold: exit 2, no job). It
then writes ``spec.yaml``, creates the log folder, submits prepare, the evaluate array
(``afterok`` on prepare) and merge (``afterok`` on evaluate), and records their ids in
``slurm.json``; a later ``sbatch`` that fails cancels the jobs already submitted. After
that the run needs no launcher: the scheduler starts each stage, and ``--kill-on-invalid-dep``
ends the run when one fails.

It is a ``launcher.backends.base.Backend`` (registered as ``slurm``): the CLI
(``--slurm``, or a run whose storage holds ``slurm.json``: ``launcher.backends.choose``)
and ``launcher.api`` use it as they use the others. A run is found in its storage (by its
folder or URL, or by id under the backend's base, ``./runs`` by default); the scheduler is
asked about the jobs its record names.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from landscape_job.base.errors import StageError, UserError
from landscape_job.spec.sections import Spec
from landscape_job.stages import SERIES_KEY, SURFACE_KEY
from landscape_job.storage import NotFound, Storage, run_storage
from landscape_job.storage.location import StorageLocation, file_url

from launcher.backends.base import Plan, StagePlan, poll_until_ended
from launcher.run_status import RunRow, RunStatus, StageStatus

from launcher.slurm.record import SLURM_KEY, SlurmRunRecord
from launcher.slurm.render import COMMENT_PREFIX, SlurmRun, render_scripts
from launcher.slurm.scheduler import Slurm
from launcher.slurm.section import SlurmSpec, parse_slurm, with_defaults
from launcher.slurm.status import STORED, SlurmRunStatus, run_status



def slurm_settings(spec: Spec) -> SlurmSpec:
    """The spec's ``slurm:`` section, checked, with the launcher's own virtualenv as the default ``venv``."""
    return with_defaults(parse_slurm(spec.slurm), sys.prefix)


def render(spec: Spec, run_id: str) -> SlurmRun:
    """The run's scripts (``launcher render --slurm``): every mistake in the section is found here."""
    return render_scripts(spec, run_id, slurm_settings(spec))


def read_record(run: Storage) -> SlurmRunRecord | None:
    """The run's ``slurm.json``, or None: not a Slurm run (or one whose submit never got that far)."""
    try:
        return SlurmRunRecord.from_json(run.get(SLURM_KEY))
    except NotFound:
        return None
    except (ValueError, TypeError):
        raise StageError(f"{run.url}/{SLURM_KEY}: not a Slurm run record") from None


def is_slurm_run(run: Storage) -> bool:
    return run.exists(SLURM_KEY)


@dataclass(frozen=True)
class Submitted:
    """A submitted run: its id, storage and jobs."""

    run_id: str
    url: str
    record: SlurmRunRecord


class SlurmBackend:
    """Runs as Slurm jobs from this login node; reads runs under ``base`` (default ``./runs``), or where
    ``known`` says. ``slurm`` is the seam over the scheduler's commands."""

    name = "slurm"

    def __init__(self, base: StorageLocation | str | None = None, slurm: Slurm | None = None, **_: object):
        self.base = StorageLocation.of(base) if base is not None else StorageLocation.parse(file_url(
            Path("runs").absolute()))
        self.slurm = slurm or Slurm()
        #: Runs named by their own URL or folder: their storage, by run id.
        self.known: dict[str, Storage] = {}

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SlurmBackend:
        """From ``submit --slurm``'s flags: another backend's flag is a mistake here, named before any I/O."""
        for flag, name in (("--local", "local"), ("--server-dry-run", "server_dry_run"), ("-n", "namespace"),
                           ("--context", "context"), ("--kubeconfig", "kubeconfig"), ("--workers", "workers")):
            if getattr(args, name, None):
                raise UserError(f"{flag}: not with --slurm")
        storage = getattr(args, "storage", None)
        return cls(StorageLocation.parse(storage) if storage else None)

    def where(self) -> str:
        return f"under {self.base.url} (Slurm runs)"

    def storage(self, run: str) -> Storage:
        return self.known.get(run) or run_storage(self.base, run)

    # -- submit ---------------------------------------------------------------------------------

    def checked_spec(self, path: Path, storage: str | None = None) -> Spec:
        """The spec with its ``slurm:`` section and scripts checked, the inputs where they are on this
        machine (else the jobs check them: exit 2), the virtualenv, and the storage reachable."""
        from landscape_job.spec.parse import load_spec

        from launcher.commands.submit import check_inputs_here
        from launcher.kubernetes.render_cli import default_run_id
        from launcher.local.runner import check_storage

        spec = load_spec(path, storage_override=storage, check_files=False)
        settings = slurm_settings(spec)
        render_scripts(spec, default_run_id(spec.name), settings)  # every setting checked before I/O
        if settings.code == "venv" and settings.venv and not Path(settings.venv, "bin", "landscape-job").exists():
            raise UserError(f"slurm.venv: {settings.venv}/bin/landscape-job not found; give the virtualenv (on the "
                            f"shared filesystem) where landscape is installed")
        print(check_inputs_here(spec), file=sys.stderr)
        check_storage(spec)
        return spec

    def plan(self, spec: Spec, run_id: str) -> Plan:
        """The three scripts (``Plan.objects``), each stage's command and partition. Pure."""
        settings = slurm_settings(spec)
        scripts = render_scripts(spec, run_id, settings)
        storage = run_storage(spec.storage, run_id)
        self.known.setdefault(run_id, storage)
        stages = tuple(StagePlan(s.stage, tuple(s.text.rstrip().rsplit("\n", 1)[-1].split()[1:]),
                                 spec.compute.shards if s.stage == "evaluate" else 1,
                                 _partition(s.text)) for s in scripts.scripts)
        return Plan(self.name, run_id, storage.url, spec.hash, stages, spec,
                    objects=tuple(s.text for s in scripts.scripts),
                    options={"code": settings.code, "log_dir": scripts.log_dir})

    def submit(self, plan: Plan) -> str:
        """``sbatch --test-only`` of each script, then (nothing written before) ``spec.yaml``, the log
        folder, prepare, the evaluate array ``afterok`` prepare, merge ``afterok`` evaluate, ``slurm.json``."""
        from launcher.local.runner import open_run

        spec, run_id = plan.spec, plan.run_id
        settings = slurm_settings(spec)
        scripts = render_scripts(spec, run_id, settings)
        for script in scripts.scripts:  # the controller's own check of each: nothing is written or submitted yet
            self.slurm.check(script.text)
        run = open_run(spec, run_id)
        previous = read_record(run)
        if previous is not None and self._active(previous):
            raise UserError(f"--run-id {run_id}: that run still has jobs in Slurm "
                            f"({', '.join(previous.job_ids.values())}); launcher cancel it first, or choose another")
        Path(scripts.log_dir).mkdir(parents=True, exist_ok=True)
        jobs: dict[str, str] = {}
        try:
            jobs["prepare"] = self.slurm.submit(scripts.script("prepare").text)
            jobs["evaluate"] = self.slurm.submit(scripts.script("evaluate").text, after=jobs["prepare"])
            jobs["merge"] = self.slurm.submit(scripts.script("merge").text, after=jobs["evaluate"])
        except (UserError, StageError) as err:
            if jobs:
                self.slurm.cancel(list(jobs.values()))
            undone = f" (jobs {', '.join(jobs.values())} cancelled again)" if jobs else ""
            raise type(err)(f"{err}{undone}") from None
        record = SlurmRunRecord.new(run_id, jobs, spec.compute.shards, scripts.log_dir, settings.signal_seconds)
        run.put(SLURM_KEY, record.to_json())
        self.known[run_id] = run
        return (f"run {run_id}: {spec.grid.size} points in {spec.compute.shards} shards, Slurm jobs prepare "
                f"{jobs['prepare']}, evaluate {jobs['evaluate']} (array), merge {jobs['merge']}; storage {run.url}\n"
                f"  squeue -j {','.join(jobs.values())}\n"
                f"  launcher status {run.url}\n"
                f"  launcher pull {run.url}")

    def _active(self, record: SlurmRunRecord) -> bool:
        return any(job.state in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED")
                   for job_id in record.job_ids.values() for job in self.slurm.jobs(job_id))

    # -- status, wait -----------------------------------------------------------------------------

    def record(self, run: str) -> SlurmRunRecord:
        storage = self.storage(run)
        record = read_record(storage)
        if record is None:
            raise UserError(f"{storage.url}: no {SLURM_KEY}: not a run submitted with --slurm")
        return record

    def slurm_status(self, run: str) -> SlurmRunStatus:
        """What Slurm and the storage say of the run, per stage and task (``launcher.slurm.status``)."""
        from launcher.commands.cluster_run import read_progress

        storage = self.storage(run)
        record = self.record(run)
        jobs = {stage: self.slurm.jobs(job_id) for stage, job_id in record.job_ids.items()}
        return run_status(record, storage.url, jobs, set(storage.list()), read_progress(storage, record.shards),
                          lambda stage, shard: last_log_line(record, stage, shard))

    def status(self, run: str) -> RunStatus:
        """The common record; Complete only once merge's job is and every output ``report.json`` lists
        exists (``launcher.backends.done``), as for every backend."""
        from launcher.backends.done import run_missing

        storage = self.storage(run)
        found = as_run_status(self.slurm_status(run), storage.exists(SERIES_KEY))
        missing = tuple(run_missing(storage)) if found.complete else ()
        return replace(found, state="Running", missing=missing) if missing else found

    def wait(self, run: str, timeout: float | None = None, interval: float = 5.0) -> RunStatus:
        self.record(run)  # not a Slurm run: one line, exit 2, before any wait
        return poll_until_ended(lambda: self.status(run), run, timeout, interval)

    # -- logs, list, cancel, pull -----------------------------------------------------------------

    def log_files(self, run: str, stage: str | None = None, shard: int | None = None) -> list[Path]:
        """The log files of the run's jobs (every array task's), in stage and shard order."""
        record = self.record(run)
        folder = Path(record.log_dir)
        found = []
        for name in [stage] if stage else ["prepare", "evaluate", "merge"]:
            if name == "evaluate":
                shards = [shard] if shard is not None else range(record.shards)
                found += [p for p in (folder / f"evaluate-{i}.log" for i in shards) if p.exists()]
            elif (folder / f"{name}.log").exists():
                found.append(folder / f"{name}.log")
        return found

    def logs(self, run: str, stage: str | None = None, shard: int | None = None, tail: int | None = None,
             follow: bool = False, previous: bool = False) -> Iterator[str]:
        """Every task's log, prefixed ``[shard i]`` when several are shown (each file keeps every attempt)."""
        if follow or previous:
            raise UserError("-f, --previous: not for a Slurm run (its log files keep every attempt; --tail N)")
        files = self.log_files(run, stage, shard)
        if not files:
            raise UserError(f"run {run}: no logs yet (the jobs have not started; see launcher status)")
        return _tagged(files, tail)

    def list(self) -> list[RunRow]:
        """The runs this user has jobs of in Slurm (from the jobs' ``--comment``), with their jobs' states."""
        runs: dict[str, set[str]] = {}
        for _job, comment, state, _reason in self.slurm.queue():
            if comment.startswith(COMMENT_PREFIX):
                runs.setdefault(comment[len(COMMENT_PREFIX):], set()).add(state)
        return [RunRow(run_id, ",".join(sorted(states)), None, None, "", "", source="slurm") for run_id, states in sorted(runs.items())]

    def cancel(self, run: str) -> str:
        """``scancel`` every job of the run (the array's every task); its storage stays, to resume."""
        storage = self.storage(run)
        record = self.record(run)
        ids = list(record.job_ids.values())
        self.slurm.cancel(ids)
        storage.put(SLURM_KEY, record.marked_cancelled().to_json())
        return (f"run {run} cancelled: scancel {' '.join(ids)} (every task of the evaluate array). Its storage is "
                f"kept: submit again with --slurm --run-id {run} to resume")

    def pull(self, run: str, dest: Path | None = None, shards: bool = False) -> Path:
        from launcher.backends.pulling import pull_run

        storage = self.storage(run)
        return pull_run(storage, run, dest, shards, state=lambda: self.status(run).state)


def _partition(text: str) -> str:
    found = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH --partition=")]
    return f"partition {found[0]}" if found else "the default partition"


def _tagged(files: list[Path], tail: int | None) -> Iterator[str]:
    for path in files:
        name = path.stem
        tag = (f"[shard {name.split('-', 1)[1]}]" if name.startswith("evaluate-") else f"[{name}]") \
            if len(files) > 1 else None
        lines = path.read_text(errors="replace").splitlines()
        for line in lines[-tail:] if tail else lines:
            yield f"{tag} {line}" if tag else line


def as_run_status(found: SlurmRunStatus, series: bool) -> RunStatus:
    """The Slurm reading as the record every backend's ``status`` returns: each stage's word and reason,
    evaluate's shard counts, and one line a task that is not done (Slurm's state and reason, or why it
    failed) where the other backends put their failed pods' logs."""
    stages = []
    for stage in found.stages:
        done = sum(t.state in ("COMPLETED", STORED) for t in stage.tasks)
        extra = {} if stage.stage != "evaluate" else {
            "shards_total": found.shards, "shards_complete": done,
            "shards_failed": tuple(t.shard for t in stage.tasks if t.why is not None and t.shard is not None),
            "active": sum(t.state == "RUNNING" for t in stage.tasks)}
        stages.append(StageStatus(stage.stage, stage.state, stage.reason, stage.message, **extra))
    lines = [f"slurm jobs: prepare {found.jobs['prepare']}, evaluate {found.jobs['evaluate']} (array), "
             f"merge {found.jobs['merge']}"]
    for stage in found.stages:
        for task in stage.tasks:
            if task.state in ("COMPLETED", STORED):
                continue
            what = f"shard {task.shard}" if task.shard is not None else stage.stage
            again = f", requeued {task.restarts}x" if task.restarts else ""
            lines.append(f"  {what}: {task.state} ({task.why or task.reason}){again}")
    return RunStatus(found.run, "slurm", found.storage, found.state, tuple(stages), found.shards, found.progress,
                     error=found.error, series=series, failure_logs=tuple(lines))


def last_log_line(record: SlurmRunRecord, stage: str, shard: int | None) -> str | None:
    """The last line of a task's log that says something (Slurm's own kill notice is skipped)."""
    name = f"{stage}-{shard}.log" if shard is not None else f"{stage}.log"
    try:
        lines = (Path(record.log_dir) / name).read_text(errors="replace").splitlines()
    except OSError:
        return None
    said = [line.strip() for line in lines if line.strip() and not line.startswith("slurmstepd")]
    return said[-1][:300] if said else None

