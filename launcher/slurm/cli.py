"""The ``--slurm`` side of the launcher's commands: what each prints and exits with for a Slurm run.

The commands (``launcher.cli``, ``launcher.commands``) parse the flags and find the run;
for a run whose storage holds ``slurm.json`` (or with ``--slurm``) they hand over here.
Exit codes are the other backends': ``wait`` 0 succeeded, 1 failed (one line says why),
124 timed out; a user's mistake 2 before anything is submitted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape_job.base.errors import StageError, UserError
from landscape_job.storage import Storage

from launcher.slurm.backend import SlurmBackend, render
from launcher.slurm.render import sbatch_lines
from launcher.slurm.status import status_lines

#: ``launcher wait``'s exit when ``--timeout`` passes first (timeout(1)'s).
TIMEOUT_EXIT = 124


def submit(args: argparse.Namespace) -> None:
    """``launcher submit spec.yaml --slurm [--run-id R] [--wait]``."""
    from landscape_job.spec.parse import load_spec
    from landscape_job.storage.location import check_run_id

    for flag, given in (("--local", args.local), ("--server-dry-run", args.server_dry_run), ("-n", args.namespace),
                        ("--context", args.context), ("--kubeconfig", args.kubeconfig), ("--workers", args.workers)):
        if given:
            raise UserError(f"{flag}: not with --slurm")
    if args.run_id is not None:
        check_run_id(args.run_id, "--run-id")
    # Paths are the nodes' paths: checked here where they exist (check_inputs_here), else by the jobs (exit 2).
    spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
    backend = SlurmBackend()
    done = backend.submit(spec, args.run_id)
    jobs = done.record.job_ids
    print(f"run {done.run_id}: {spec.grid.size} points in {spec.compute.shards} shards, Slurm jobs prepare "
          f"{jobs['prepare']}, evaluate {jobs['evaluate']} (array), merge {jobs['merge']}; storage {done.url}\n"
          f"  squeue -j {','.join(jobs.values())}\n"
          f"  launcher status {done.url}\n"
          f"  launcher pull {done.url}", flush=True)
    if args.wait:
        from landscape_job.storage import open_storage
        from landscape_job.storage.location import StorageLocation

        run = open_storage(StorageLocation.parse(done.url, spec.storage.options))
        _end(backend, run, None, args.interval)


def render_scripts(args: argparse.Namespace) -> None:
    """``launcher render spec.yaml --slurm``: the three batch scripts, then the sbatch commands."""
    from landscape_job.spec.parse import load_spec

    from launcher.kubernetes.render_cli import default_run_id

    spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
    scripts = render(spec, args.run_id or default_run_id(spec.name))
    for script in scripts.scripts:
        print(f"# ---- {script.file_name}\n{script.text}")
    print("# ---- submit them by hand (the launcher writes spec.yaml to the run's storage first; prepare seeds it "
          "from its script otherwise):", *sbatch_lines(scripts), sep="\n")


def status(run: Storage, output: str) -> None:
    from launcher.commands.views import formatted

    found = SlurmBackend().status(run)
    print(formatted(found.to_dict(), output) if output != "text" else "\n".join(status_lines(found)))


def wait(run: Storage, timeout: float | None, interval: float) -> int:
    return _end(SlurmBackend(), run, timeout, interval)


def _end(backend: SlurmBackend, run: Storage, timeout: float | None, interval: float) -> int:
    from launcher.commands.views import done_lines
    from landscape_job.stages import SERIES_KEY

    found = backend.wait(run, timeout, interval)
    if found is None:
        print(f"launcher: run {run.url} has not ended after {timeout:g} s (timed out; it goes on)", file=sys.stderr)
        return TIMEOUT_EXIT
    if found.state != "Complete":
        raise StageError(f"run {found.run}: {found.state.lower()}: {found.error}")
    print(done_lines(run.url, series=run.exists(SERIES_KEY)))
    return 0


def logs(run: Storage, stage: str | None, shard: int | None, tail: int | None) -> None:
    """Every task's log (prefixed ``[shard i]`` when there are several), or one stage's or shard's."""
    files = SlurmBackend().logs(run, stage, shard)
    if not files:
        raise UserError(f"{run.url}: no logs yet (the jobs have not started; see launcher status {run.url})")
    for path in files:
        name = path.stem
        tag = (f"[shard {name.split('-', 1)[1]}]" if name.startswith("evaluate-") else f"[{name}]") \
            if len(files) > 1 else None
        lines = path.read_text(errors="replace").splitlines()
        for line in lines[-tail:] if tail else lines:
            print(f"{tag} {line}" if tag else line)


def cancel(run: Storage) -> None:
    ids = SlurmBackend().cancel(run)
    print(f"run {run.url.rsplit('/', 1)[-1]} cancelled: scancel {' '.join(ids)} (every task of the evaluate "
          f"array). Its storage is kept: submit again with --slurm --run-id to resume")


def list_runs() -> None:
    rows = SlurmBackend().list()
    if not rows:
        print("no landscape runs among your Slurm jobs")
        return
    width = max(len(r[0]) for r in rows)
    print(f"{'RUN':<{width}}  JOBS  STATES")
    for run_id, jobs, states in rows:
        print(f"{run_id:<{width}}  {jobs}  {states}")


def pull(run: Storage, dest: Path) -> None:
    print(SlurmBackend().pull(run, dest))
