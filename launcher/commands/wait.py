"""``launcher wait <run> [--timeout S]``: block until the run ends; the exit code says how.

    0    the run succeeded (merge complete); where the results are is printed
    1    the run failed (a stage failed, its Jobs were deleted, a local run failed, was
         cancelled or its processes are gone): one line says why
    2    the command was wrong (no such run, a bad flag)
    124  --timeout passed first, as timeout(1) exits; the run goes on

For scripts and CI: ``launcher wait r1 --timeout 3600 && launcher pull r1``. It polls
(``--interval``) the Jobs on a cluster, or the run's storage for a run given by folder or
URL (a local run), and prints nothing while it waits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from landscape_job.base.errors import StageError, UserError
from landscape_job.stages import SERIES_KEY
from landscape_job.storage import run_storage

from launcher.commands.cluster_run import add_cluster_options, connect, jobs_by_stage, run_config_map, storage_of
from launcher.commands.follow import merged, stop_error
from launcher.commands.run_ref import add_run_arguments, resolve_run
from launcher.commands.stored_run import read_stored_status
from launcher.commands.views import done_lines
from launcher.kubernetes.job_state import spec_of

NAME = "wait"
#: Exit code when --timeout passes before the run ends (timeout(1)'s).
TIMEOUT_EXIT = 124
#: A local run's states that are an end, and not a success.
STORED_ENDS = ("Failed", "Cancelled", "Stopped")


def add_parser(sub: argparse._SubParsersAction) -> None:
    wait = sub.add_parser(NAME, help="wait until a run ends: exit 0 succeeded, 1 failed, 124 timed out",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(wait)
    wait.add_argument("--timeout", type=float, default=None,
                      help="give up after this many seconds, exit 124 (default: wait until the run ends)")
    wait.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    add_cluster_options(wait)


Check = Callable[[], "tuple[bool, str | None]"]


def run(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout < 0:
        raise UserError(f"--timeout: must be at least 0, got {args.timeout:g}")
    if args.interval <= 0:
        raise UserError(f"--interval: must be more than 0, got {args.interval:g}")
    ref = resolve_run(args)
    if ref.storage is not None:
        storage = ref.storage

        def check() -> tuple[bool, str | None]:
            status = read_stored_status(ref.run_id, storage)
            if status.state == "Complete":
                return True, None
            if status.state in STORED_ENDS:
                error = status.local.error if status.local and status.local.error else "its processes are gone"
                return True, f"run {ref.run_id}: {status.state.lower()}: {error}"
            return False, None

        return _poll(check, args, storage.url, lambda: storage.exists(SERIES_KEY))
    cluster = connect(args)
    try:
        raw = spec_of(run_config_map(cluster, ref.run_id))
        url = run_storage(storage_of(raw.get("storage"), Path.cwd()), ref.run_id).url

        def check_cluster() -> tuple[bool, str | None]:
            jobs = jobs_by_stage(cluster, ref.run_id)
            error = stop_error(ref.run_id, jobs)
            return (True, error) if error else (merged(jobs), None)

        return _poll(check_cluster, args, url, lambda: "series" in raw)
    finally:
        cluster.close()


def _poll(check: Check, args: argparse.Namespace, url: str, series: Callable[[], bool]) -> int:
    """Asks ``check`` every interval until it says the run ended (with an error, or None for success)."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while True:
        ended, error = check()
        if ended:
            if error:
                raise StageError(error)
            print(done_lines(url, series=series()))
            return 0
        if deadline is not None and time.monotonic() >= deadline:
            print(f"launcher: run {args.run} has not ended after {args.timeout:g} s (timed out; it goes on)",
                  file=sys.stderr)
            return TIMEOUT_EXIT
        time.sleep(args.interval if deadline is None else max(0.0, min(args.interval, deadline - time.monotonic())))
