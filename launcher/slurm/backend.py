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

The other operations take the run's storage (``launcher status runs/<id>`` finds it as
for a local run) and ask the scheduler about the jobs its record names.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from landscape_job.base.errors import StageError, UserError
from landscape_job.spec.sections import Spec
from landscape_job.stages import SERIES_KEY, SURFACE_KEY
from landscape_job.storage import NotFound, Storage

from launcher.slurm.record import SLURM_KEY, SlurmRunRecord
from launcher.slurm.render import COMMENT_PREFIX, SlurmRun, render_scripts
from launcher.slurm.scheduler import Slurm
from launcher.slurm.section import SlurmSpec, parse_slurm, with_defaults
from launcher.slurm.status import SlurmRunStatus, run_status

#: Run states that are an end; ``wait`` returns on them.
ENDS = ("Complete", "Failed", "Cancelled", "Gone")


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
    """One run's stages as Slurm jobs; ``slurm`` is the seam over the scheduler's commands."""

    name = "slurm"

    def __init__(self, slurm: Slurm | None = None):
        self.slurm = slurm or Slurm()

    # -- submit ---------------------------------------------------------------------------------

    def submit(self, spec: Spec, run_id: str | None = None, stream: TextIO | None = None) -> Submitted:
        from launcher.commands.submit import check_inputs_here
        from launcher.kubernetes.render_cli import default_run_id
        from launcher.local.runner import check_storage, new_run_id, open_run

        stream = stream or sys.stderr
        settings = slurm_settings(spec)
        render_scripts(spec, run_id or default_run_id(spec.name), settings)  # every setting checked before I/O
        if settings.code == "venv" and settings.venv and not Path(settings.venv, "bin", "landscape-job").exists():
            raise UserError(f"slurm.venv: {settings.venv}/bin/landscape-job not found; give the virtualenv (on the "
                            f"shared filesystem) where landscape is installed")
        print(check_inputs_here(spec), file=stream)
        check_storage(spec)
        run_id = run_id or new_run_id(spec.name, spec.storage)
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
        return Submitted(run_id, run.url, record)

    def _active(self, record: SlurmRunRecord) -> bool:
        return any(job.state in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED")
                   for job_id in record.job_ids.values() for job in self.slurm.jobs(job_id))

    # -- status, wait -----------------------------------------------------------------------------

    def record(self, run: Storage) -> SlurmRunRecord:
        record = read_record(run)
        if record is None:
            raise UserError(f"{run.url}: no {SLURM_KEY}: not a run submitted with --slurm")
        return record

    def status(self, run: Storage) -> SlurmRunStatus:
        from launcher.commands.cluster_run import read_progress

        record = self.record(run)
        jobs = {stage: self.slurm.jobs(job_id) for stage, job_id in record.job_ids.items()}
        keys = set(run.list())
        return run_status(record, run.url, jobs, keys, read_progress(run, record.shards),
                          lambda stage, shard: last_log_line(record, stage, shard))

    def wait(self, run: Storage, timeout: float | None = None, interval: float = 5.0) -> SlurmRunStatus | None:
        """Polls until the run ends; its last status, or None when ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(run)
            if status.state in ENDS:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))

    # -- logs, list, cancel, pull -----------------------------------------------------------------

    def logs(self, run: Storage, stage: str | None = None, shard: int | None = None) -> list[Path]:
        """The log files of the run's jobs (every array task's), in stage and shard order."""
        record = self.record(run)
        folder = Path(record.log_dir)
        stages = [stage] if stage else ["prepare", "evaluate", "merge"]
        found = []
        for name in stages:
            if name == "evaluate":
                shards = [shard] if shard is not None else range(record.shards)
                found += [p for p in (folder / f"evaluate-{i}.log" for i in shards) if p.exists()]
            elif (folder / f"{name}.log").exists():
                found.append(folder / f"{name}.log")
        return found

    def list(self) -> list[tuple[str, str, str]]:
        """The runs this user has jobs of in Slurm: (run id, job ids, states), from the jobs' comments."""
        runs: dict[str, list[tuple[str, str]]] = {}
        for job_id, comment, state, _reason in self.slurm.queue():
            if comment.startswith(COMMENT_PREFIX):
                runs.setdefault(comment[len(COMMENT_PREFIX):], []).append((job_id, state))
        return [(run_id, ",".join(j for j, _ in jobs), ",".join(sorted({s for _, s in jobs})))
                for run_id, jobs in sorted(runs.items())]

    def cancel(self, run: Storage) -> list[str]:
        """``scancel`` every job of the run (the array's every task); its storage stays, to resume."""
        record = self.record(run)
        ids = list(record.job_ids.values())
        self.slurm.cancel(ids)
        run.put(SLURM_KEY, record.marked_cancelled().to_json())
        return ids

    def pull(self, run: Storage, dest: Path) -> Path:
        """The merged surface (or series), report, spec and plots into ``dest``; the result's path."""
        from launcher.commands.pull import pulled_keys

        available = set(run.list())
        result = SERIES_KEY if SERIES_KEY in available else SURFACE_KEY
        if result not in available:
            raise UserError(f"{run.url}: no {SURFACE_KEY} (yet): the run has not merged")
        for key in pulled_keys(available, shards=False):
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(run.get(key))
        return dest / result


def last_log_line(record: SlurmRunRecord, stage: str, shard: int | None) -> str | None:
    """The last line of a task's log that says something (Slurm's own kill notice is skipped)."""
    name = f"{stage}-{shard}.log" if shard is not None else f"{stage}.log"
    try:
        lines = (Path(record.log_dir) / name).read_text(errors="replace").splitlines()
    except OSError:
        return None
    said = [line.strip() for line in lines if line.strip() and not line.startswith("slurmstepd")]
    return said[-1][:300] if said else None

