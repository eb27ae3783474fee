"""The one seam over Slurm: its commands (``sbatch``, ``scontrol``, ``scancel``, ``squeue``,
``sinfo``) run as subprocesses, their output read into typed records.

Slurm 22.05's ``squeue --json`` ignores ``--jobs`` (it dumps every job of the cluster) and
leaves ``time_limit`` empty for array tasks, so a job is read with ``scontrol show job -o``:
one line per array task that has started or ended, one for the tasks still pending
together (``ArrayTaskId=2-15%4``), every field there (state, reason, exit code, restarts,
run time, time limit). A job the controller has forgotten (``MinJobAge`` after it ended) is
an empty list: the caller falls back to the run's storage.

Errors: a command missing, or an answer that names the user's setting (an unknown
partition, account or QOS) is a ``UserError`` (exit 2); a controller that cannot be
reached or times out is a ``StageError`` (exit 1: a retry may heal it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

from landscape_job.base.errors import StageError, UserError, shown

#: Seconds a Slurm command may take before it counts as a controller that does not answer.
COMMAND_TIMEOUT = 60
#: Answers that a retry may heal: the controller, not the request, is the problem.
_TRANSIENT = ("Unable to contact slurm controller", "Socket timed out", "Connection refused", "connect failure",
              "Slurm backup controller in standby mode", "Transport endpoint", "Zero Bytes were transmitted")
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9/:_]*)=")


@dataclass(frozen=True)
class SlurmJob:
    """One line of ``scontrol show job``: a job, one array task, or the still-pending tasks of an array."""

    job_id: int
    array_job_id: int | None
    tasks: tuple[int, ...]
    name: str
    state: str
    reason: str
    exit_code: int
    signal: int
    restarts: int
    run_seconds: int
    limit_seconds: int | None
    comment: str

    @property
    def label(self) -> str:
        """``12`` or ``12_3``, as ``squeue`` and ``scancel`` name it."""
        if self.array_job_id is None:
            return str(self.job_id)
        return f"{self.array_job_id}_{self.tasks[0]}" if len(self.tasks) == 1 else f"{self.array_job_id}_[...]"


def _seconds(text: str) -> int | None:
    """``[D-]HH:MM:SS`` (or ``MM:SS``) as seconds; ``UNLIMITED``, ``Partition_Limit``, ``N/A``: None."""
    match = re.match(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$", text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def task_indexes(text: str) -> tuple[int, ...]:
    """``0-15%4``, ``1,3,5-7``, ``2``: the array task indexes it names (the ``%`` limit dropped)."""
    indexes: list[int] = []
    for part in text.split("%")[0].split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        step = 1
        if ":" in last:
            last, step_text = last.split(":")
            step = int(step_text)
        indexes.extend(range(int(first), int(last or first) + 1, step))
    return tuple(indexes)


def parse_show_job(line: str) -> SlurmJob:
    """One ``scontrol show job -o`` line as a record."""
    marks = list(_FIELD.finditer(line))
    fields = {m.group(1): line[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(line)].strip()
              for i, m in enumerate(marks)}
    exit_code, _, signal = fields.get("ExitCode", "0:0").partition(":")
    array = fields.get("ArrayJobId")
    return SlurmJob(job_id=int(fields["JobId"]), array_job_id=int(array) if array else None,
                    tasks=task_indexes(fields["ArrayTaskId"]) if array else (),
                    name=fields.get("JobName", ""), state=fields.get("JobState", "UNKNOWN"),
                    reason=fields.get("Reason", "None"), exit_code=int(exit_code or 0), signal=int(signal or 0),
                    restarts=int(fields.get("Restarts", "0") or 0),
                    run_seconds=_seconds(fields.get("RunTime", "")) or 0,
                    limit_seconds=_seconds(fields.get("TimeLimit", "")),
                    comment=fields.get("Comment", "(null)").replace("(null)", ""))


class Slurm:
    """Runs Slurm's commands with this process's environment (``SLURM_CONF`` picks the cluster)."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = env

    def _run(self, words: Sequence[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        if shutil.which(words[0], path=(self.env or os.environ).get("PATH")) is None:
            raise UserError(f"{words[0]}: not found on PATH; run the launcher on a Slurm login node (or install "
                            f"Slurm's client commands)")
        try:
            result = subprocess.run(list(words), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                    env=self.env)
        except subprocess.TimeoutExpired:
            raise StageError(f"{words[0]}: no answer from the Slurm controller in {COMMAND_TIMEOUT} s; "
                             f"try again") from None
        if check and result.returncode != 0:
            raise self.error(words[0], result.stderr)
        return result

    @staticmethod
    def error(command: str, stderr: str) -> Exception:
        """A failed command as the error it is: the controller (retry) or the request (the user's)."""
        text = " ".join(stderr.replace(f"{command}: error: ", "").split()) or "no message"
        text = text if len(text) <= 300 else text[:297] + "..."  # Slurm's own words, bounded
        if any(t.lower() in text.lower() for t in _TRANSIENT):
            return StageError(f"{command}: the Slurm controller did not answer: {text}; try again")
        return UserError(f"{command}: {text}")

    def submit(self, script: str, after: str | None = None) -> str:
        """``sbatch --parsable`` with the script on stdin (``after``: ``afterok`` on that job); the job id."""
        words = ["sbatch", "--parsable", *([f"--dependency=afterok:{after}"] if after else [])]
        out = self._run(words, stdin=script).stdout.strip()
        job_id = out.split(";")[0]
        if not job_id.isdigit():
            raise StageError(f"sbatch: expected a job id, got {shown(out)}")
        return job_id

    def check(self, script: str) -> None:
        """``sbatch --test-only``: the controller checks the script (partition, account, QOS, resources,
        limits) and submits nothing; a refusal is the user's to fix, before any job exists."""
        self._run(["sbatch", "--test-only"], stdin=script)

    def jobs(self, job_id: str) -> list[SlurmJob]:
        """Every record of ``job_id`` (an array's tasks each); [] once the controller has forgotten it."""
        result = self._run(["scontrol", "show", "job", "-o", job_id], check=False)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return []
            raise self.error("scontrol", result.stderr)
        return [parse_show_job(line) for line in result.stdout.splitlines() if line.startswith("JobId=")]

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``scancel`` each job (an array's every task); a job already gone is no error."""
        result = self._run(["scancel", *job_ids], check=False)
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise self.error("scancel", result.stderr)

    def queue(self, fields: str = "%i|%k|%T|%r") -> list[list[str]]:
        """``squeue`` of this user's jobs in every state the controller still holds, one list of fields a job."""
        out = self._run(["squeue", "--me", "-h", "-t", "all", "-o", fields]).stdout
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def command(self, words: Sequence[str]) -> str:
        """Any other read-only command's output (``sinfo``, ``scontrol show config``), for ``doctor``."""
        return self._run(words).stdout
