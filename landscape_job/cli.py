"""``landscape-job``: the pod entrypoint, one subcommand per stage.

The run's storage prefix comes from ``--run`` or ``LANDSCAPE_RUN``; the evaluate stage
takes its shard from ``--shard``, ``JOB_COMPLETION_INDEX`` (set by an Indexed Job, and
by the local backend, so both exercise the same contract) or ``SLURM_ARRAY_TASK_ID`` (a
Slurm array task, ``launcher submit --slurm``).

Exit codes, which the Jobs' podFailurePolicy reads: 0 done; 2 the user's mistake (one
line; FailIndex/FailJob, no retry); 1 a failure a retry may heal (one line; retried),
a GPU pod without usable CUDA among them (landscape_job/runtime/gpu.py); 143 SIGTERM, after the
evaluate worker saved its finished points (landscape_job/base/termination.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Callable, Sequence

from landscape_job.base import diskspace, termination

from landscape_job.base import verbosity
from landscape_job.base.errors import USER_ERROR_EXIT, StageError, UserError
from landscape_job.storage.location import RUN_ENV, StorageLocation

STAGE_ERROR_EXIT = 1


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, not the one there when it was made (a
    caller, or a test, may have replaced it since)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ sets it; the property always answers the current stderr

    def filter(self, record: logging.LogRecord) -> bool:
        """``-q`` keeps warnings and errors only (the level is set after the handler is made)."""
        return record.levelno >= logging.WARNING or verbosity.level() > verbosity.QUIET


def log_to_stderr() -> None:
    """The project's log records (which checkpoint layout was used, ...) as plain lines on stderr.

    Only the ``landscape_job`` logger's: other libraries' INFO records (boto's) stay quiet.
    """
    logger = logging.getLogger("landscape_job")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)


#: The pod entrypoint's name: each line it prints about a failure starts "landscape-job: " (``run_guarded``),
#: which the local runner reads back from a stage's output (``launcher.local.runner.own_error``).
PROG = "landscape-job"


def run_guarded(body: Callable[[], int | None], prog: str) -> int:
    """Turns a user's mistake or a broken run into one line on stderr; the traceback too only with ``-v``."""
    log_to_stderr()
    try:
        code = body() or 0
        sys.stdout.flush()  # a closed pipe (``| head``) shows here, where it is caught, not at exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except UserError as err:
        _trace()
        # Several independent mistakes (``UserErrors``: validate's every static error) one a line.
        for message in getattr(err, "messages", None) or [str(err)]:
            print(f"{prog}: error: {_one_line(message)}", file=sys.stderr)
        for note in getattr(err, "notes", []):  # what was not checked because it depends on a wrong part
            print(f"{prog}: note: {_one_line(note)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except StageError as err:
        _trace()
        print(f"{prog}: {err}", file=sys.stderr)
        return getattr(err, "exit_code", STAGE_ERROR_EXIT)  # UpstreamFailed: 3, not retried
    except KeyboardInterrupt as err:
        _trace()
        print(f"{prog}: interrupted{'; ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except OSError as err:
        if not diskspace.is_full(err):
            raise
        _trace()  # a full disk or quota met outside the storage's own check: one line, exit 1, a retry heals it
        print(f"{prog}: {diskspace.no_space(err)}", file=sys.stderr)
        return STAGE_ERROR_EXIT
    except termination.Terminated:
        print(f"{prog}: stopped by SIGTERM; a retry resumes from the saved checkpoint", file=sys.stderr)
        return termination.TERMINATED_EXIT


#: The exit status of a process killed by SIGPIPE (128 + 13), as a shell tool piped into ``head`` has.
BROKEN_PIPE_EXIT = 141


def _reader_gone() -> int:
    """stdout's reader closed it (``launcher list | head -1``): no traceback; stdout is pointed at
    /dev/null so the interpreter's last flush at exit has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout with no descriptor (a test's StringIO) has nothing to flush
        pass
    return BROKEN_PIPE_EXIT


def _one_line(text: str) -> str:
    """A message as one line: every message cuts the user's values; this bounds the rest (file names)."""
    text = text if len(text) <= 2000 else text[:1997] + "..."
    # Line breaks of any kind (\n, \r, \f, \u2028, ...) and other control characters escaped.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _trace() -> None:
    """With ``-v``, the traceback of the exception being handled."""
    if verbosity.level() >= verbosity.VERBOSE:
        traceback.print_exc()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=os.environ.get(RUN_ENV),
                        help="the run's storage prefix, e.g. file:///data/runs/r1 (default: $LANDSCAPE_RUN)")
    sub = parser.add_subparsers(dest="stage", required=True)
    prepare = sub.add_parser("prepare", help="build the directions and the run manifest")
    prepare.add_argument("--spec-file", default=os.environ.get("LANDSCAPE_SPEC_FILE"),
                         help="seed the run's spec.yaml from this file if storage has none "
                              "(default: $LANDSCAPE_SPEC_FILE; the prepare pod's mounted ConfigMap)")
    evaluate = sub.add_parser("evaluate", help="evaluate one shard of the grid")
    evaluate.add_argument("--shard", type=int, default=None,
                          help="shard index (default: $JOB_COMPLETION_INDEX, else $SLURM_ARRAY_TASK_ID)")
    evaluate.add_argument("--log-points", action="store_true", help="log every finished grid point")
    evaluate.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                          help="wait up to SECONDS for the prepare stage's output (default: fail at once)")
    merge = sub.add_parser("merge", help="verify and merge the shards, write surface.h5, plots and report")
    merge.add_argument("--no-plots", action="store_true", help="skip the plots")
    merge.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait up to SECONDS for every shard (default: fail at once, naming the missing)")
    estimate = sub.add_parser("estimate", help="time a few grid points of a spec here; print one JSON line "
                                                "(what `launcher estimate --cluster` runs in a pod)")
    estimate.add_argument("--spec-file", default=os.environ.get("LANDSCAPE_SPEC_FILE"),
                          help="the spec (default: $LANDSCAPE_SPEC_FILE; the pod's mounted ConfigMap)")
    estimate.add_argument("--points", type=int, default=3, help="points to time after one warm-up group")
    check = sub.add_parser("check", help="check that a spec's inputs load here: the model builds, its checkpoints "
                                         "fit, the data loads (what `launcher submit --local` runs first)")
    check.add_argument("--spec-file", required=True, help="the spec")
    check.add_argument("--storage", help="the storage that replaces the spec's (launcher's --storage)")
    verbosity.add_flags(parser, sub.choices.values())
    return parser


def _check(spec_file: str, storage: str | None) -> None:
    """``launcher submit --local``'s check of the inputs, in a stage process: there torch is imported
    anyway (a stage forked from the run's server, ``landscape_job.forkserver``), and the launcher
    need not import it a second time (~1.7 s of CPU). Exit 2 with each mistake a line, as the launcher
    would print it."""
    from landscape_job.checks.preflight import check_runs_here
    from landscape_job.spec.parse import load_spec

    check_runs_here(load_spec(spec_file, storage_override=storage))


def _estimate(spec_file: str | None, points: int) -> None:
    """Needs no storage: the spec comes from a file and nothing is written. Its relative paths
    are the spec file's folder's, as ``launcher`` reads them (a pod's normalised spec has
    absolute paths only)."""
    from landscape_job.checks.estimate import estimate
    from landscape_job.spec.parse import load_spec

    if not spec_file:
        raise UserError("estimate: give --spec-file or set LANDSCAPE_SPEC_FILE")
    if points < 1:
        raise UserError(f"--points: must be at least 1, got {points}")
    print(estimate(load_spec(spec_file), points).to_json_line(), flush=True)


#: Where a shard's index comes from when ``--shard`` is not given, in order: an Indexed Job's
#: pod (and the local backend's workers), a Slurm array task.
SHARD_INDEX_ENVS = ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")


def _shard_index(value: int | None) -> int:
    if value is not None:
        return value
    name = next((n for n in SHARD_INDEX_ENVS if os.environ.get(n) is not None), None)
    if name is None:
        raise UserError(f"evaluate: give --shard or set {' or '.join(SHARD_INDEX_ENVS)}")
    env = os.environ[name]
    try:
        return int(env)
    except ValueError:
        raise UserError(f"{name}: expected an integer, got {env!r}") from None


def pipe_safe(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """A CLI's ``main`` that ends quietly (exit 141, as a shell tool) when its reader closes stdout:
    ``launcher list | head -1``, ``landscape-job --help | head``. Covers what ``run_guarded`` cannot:
    argparse's own printing (``--help``, ``--version``) and the last flush."""
    def guarded(argv: Sequence[str] | None = None) -> int:
        try:
            try:
                code = main(argv)
            except SystemExit:
                sys.stdout.flush()  # argparse printed and exits: its output must fail here, if anywhere
                raise
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            return _reader_gone()

    guarded.__doc__, guarded.__name__ = main.__doc__, main.__name__
    guarded.__wrapped__ = main  # type: ignore[attr-defined]
    return guarded


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbosity.set_from(args)

    def body() -> None:
        from landscape_job.runtime import gpu

        if gpu.gpu_required():  # a pod that holds a GPU: CUDA works, or one line and exit 1 before any work
            gpu.require_cuda()
        if args.stage == "estimate":
            return _estimate(args.spec_file, args.points)
        if args.stage == "check":
            return _check(args.spec_file, args.storage)
        from landscape_job import stages
        from landscape_job.storage import open_storage

        # The run's URL, and the options of its storage that the launcher put in the environment.
        run = open_storage(StorageLocation.from_env(args.run))
        if args.stage == "prepare":
            from landscape_job.runtime.release import release_next_stages

            stages.prepare(run, spec_file=args.spec_file)
            release_next_stages(stages.stderr_log)  # on a cluster: evaluate and merge start only now
        elif args.stage == "evaluate":
            stages.evaluate(run, _shard_index(args.shard), log_points=args.log_points, wait_seconds=args.wait)
        else:
            from landscape_job.runtime.jobwatch import failure_check, in_cluster_reader

            from landscape_job.runtime.events import JOB_NAME_ENV, post_event

            evaluate_job = os.environ.get("LANDSCAPE_EVALUATE_JOB")
            reader = in_cluster_reader(evaluate_job, os.environ.get("LANDSCAPE_NAMESPACE"))
            abort = failure_check(reader, stages.stderr_log, evaluate_job) if reader else None
            stages.merge(run, plots=not args.no_plots, wait_seconds=args.wait, abort=abort)
            post_event(os.environ.get(JOB_NAME_ENV, ""), "Merged", f"merged: {run.url}", stages.stderr_log)

    # SIGTERM: a checkpoint flushed and exit 143, not a lost interval (nor, as PID 1, ignored). The parent
    # watch starts inside: a launcher gone already is a SIGTERM at once, and that too is exit 143.
    def unmasked_body() -> None:
        with termination.unmasked():
            termination.watch_parent()
            body()

    with termination.handled():
        return run_guarded(unmasked_body, PROG)


if __name__ == "__main__":
    sys.exit(main())
