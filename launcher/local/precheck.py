"""``submit --local``'s check of the device and the inputs, run in a stage process of the run's own server.

The check builds the model, loads the checkpoints and the data: it needs torch, ~1.7 s of CPU
to import. A local run's stages fork from a stage server (``landscape_job.forkserver.shared``),
which imports torch too. So a launcher that has not imported torch starts that server first and
runs the check as a stage forked from it (``landscape-job check``), and the run's stages fork
from the same server: torch is imported once per submit, not twice.

What the user sees is the same: a mistake is the same ``launcher: error:`` line (exit 2)
that ``launcher validate`` prints, before anything is written. A process that has imported
torch already (a notebook using the Python API, a test) checks in itself, where it costs
nothing more, as does one where stages are not forked (not Linux).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from landscape_job.base.errors import USER_ERROR_EXIT, StageError, UserError, UserErrors
from landscape_job.base import verbosity
from landscape_job.cli import PROG
from landscape_job.forkserver import FORKS, shared
from landscape_job.spec.sections import Spec

_ERROR, _NOTE = f"{PROG}: error: ", f"{PROG}: note: "


class StagedCheck:
    """``inputs`` for ``launcher.cli.checked_spec``: starts the stage server (once the spec has parsed, so a
    typo costs no server) and checks in a stage forked from it."""

    def __init__(self, path: Path, storage: str | None):
        self.path, self.storage = Path(path).absolute(), storage

    @staticmethod
    def wanted() -> bool:
        """Whether checking in a stage saves this process importing torch."""
        return FORKS and "torch" not in sys.modules

    def __call__(self, spec: Spec) -> None:
        from launcher.local.runner import own_error, stage_env

        env = stage_env()
        read, write = os.pipe()
        try:
            args = ["-v"] if verbosity.level() >= verbosity.VERBOSE else []
            args += ["check", "--spec-file", str(self.path), *(["--storage", self.storage] if self.storage else [])]
            process = shared(env).start(args, env, stdout=write, cwd=os.getcwd())
        finally:
            os.close(write)
        with os.fdopen(read, errors="replace") as out:
            output = out.read()
        code = process.wait()
        lines = output.splitlines()
        errors = [line.removeprefix(_ERROR) for line in lines if line.startswith(_ERROR)]
        if code == USER_ERROR_EXIT and errors:
            notes = [line.removeprefix(_NOTE) for line in lines if line.startswith(_NOTE)]
            UserErrors.raise_if_any([UserError(e) for e in errors], notes)
        shown = [line for line in lines if not line.startswith((_ERROR, _NOTE))]
        if code != 0:  # not the user's mistake: what the check printed (a traceback) is the story
            sys.stderr.write("".join(f"{line}\n" for line in shown))
            last = own_error(output) or (lines[-1] if lines else f"exit {code}")
            raise StageError(f"the check of the inputs failed: {last}")
        if shown and verbosity.level() > verbosity.QUIET:  # what the check logged, as it would have here
            sys.stderr.write("".join(f"{line}\n" for line in shown))
