"""``launcher wait <run> [--timeout S]``: block until the run ends; the exit code says how.

    0    the run succeeded: merge has written every output, report.json last; where the
         results are is printed
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

from landscape_job.base.errors import UserError

from launcher.backends.choose import run_backend
from launcher.commands.cluster_run import add_cluster_options
from launcher.commands.run_ref import add_run_arguments
from launcher.commands.views import done_lines

NAME = "wait"
#: Exit code when --timeout passes before the run ends (timeout(1)'s).
TIMEOUT_EXIT = 124


def add_parser(sub: argparse._SubParsersAction) -> None:
    wait = sub.add_parser(NAME, help="wait until a run ends: exit 0 succeeded, 1 failed, 124 timed out",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(wait)
    wait.add_argument("--timeout", type=float, default=None,
                      help="give up after this many seconds, exit 124 (default: wait until the run ends)")
    wait.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    add_cluster_options(wait)


def check_wait_flags(timeout: float | None, interval: float) -> None:
    if timeout is not None and timeout < 0:
        raise UserError(f"--timeout: must be at least 0, got {timeout:g}")
    if interval <= 0:
        raise UserError(f"--interval: must be more than 0, got {interval:g}")


def run(args: argparse.Namespace) -> int:
    check_wait_flags(args.timeout, args.interval)
    backend, run_id = run_backend(args)
    try:
        status = backend.wait(run_id, args.timeout, args.interval)
    except TimeoutError:
        print(f"launcher: run {args.run} has not ended after {args.timeout:g} s (timed out; it goes on)",
              file=sys.stderr)
        return TIMEOUT_EXIT
    print(done_lines(status.storage, series=status.series))
    return 0
