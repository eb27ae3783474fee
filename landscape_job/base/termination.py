"""SIGTERM: the kubelet's "stop within the grace period", turned into an exception the stages can answer.

When a pod is preempted, evicted or its node drained, the kubelet sends SIGTERM and,
``terminationGracePeriodSeconds`` later (30 s by default), SIGKILL. Two things go wrong
without a handler: a process that is PID 1 in its container ignores SIGTERM (the kernel
drops default-disposition signals to PID 1; NVIDIA's entrypoint script ``exec``\\ s into
``landscape-job``), so the pod waits out the whole grace period; and an evaluate worker
loses every point since its last checkpoint segment.

:func:`handled` makes SIGTERM raise :class:`Terminated` in the main thread, at the next
bytecode boundary (a running CPU kernel or CUDA synchronisation finishes first). The
evaluate stage catches it, writes the finished points not yet saved as one checkpoint
segment, and re-raises; the CLI edge prints one line and exits :data:`TERMINATED_EXIT`
(143 = 128 + SIGTERM, what a shell and the kubelet report for a process SIGTERM killed).
143 is neither 0 nor the user-error code 2, so the Job's ``podFailurePolicy`` does not
FailIndex/FailJob it: a disruption (``DisruptionTarget``) is ignored, anything else
counts as one retry. Prepare and merge have nothing to flush (they write whole objects
and are rerun from the start), so for them this is a clean, prompt exit.

Bookkeeping that must not be torn (a segment written and its points marked saved) runs
inside :func:`shielded`: a SIGTERM there is held and raised when the block ends.

Raised between two bytecodes, :class:`Terminated` can also land inside a library's own
context manager: torch.vmap's nesting bookkeeping then fails its cleanup with an INTERNAL
ASSERT of its own, and the SIGTERM survives only as that error's ``__context__``.
:func:`unmasked` turns such an error back into the SIGTERM it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

from landscape_job.base.procstat import stat_fields

#: The exit code of a stage stopped by SIGTERM.
TERMINATED_EXIT = 128 + int(signal.SIGTERM)

_state = threading.local()


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, so no ``except Exception`` on the way up swallows it."""


def _depth() -> int:
    return getattr(_state, "depth", 0)


def _handler(signum: int, frame: object) -> None:
    if _depth() > 0:
        _state.pending = True
        return
    raise Terminated()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere nothing changes).

    The previous handler comes back after it, so a caller in the same process (a test, the
    Python API) keeps its own behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded(deliver: bool = True) -> Iterator[None]:
    """A block a SIGTERM does not interrupt: one that arrives meanwhile is raised when the block ends.

    ``deliver=False`` drops it instead: for a block after which the work is done anyway (a
    shard's final write), so the process exits 0 rather than be retried for nothing.
    """
    _state.depth = _depth() + 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and getattr(_state, "pending", False):
            _state.pending = False
            if deliver:
                raise Terminated()


def _is_sigterm(err: BaseException) -> bool:
    """``err`` is :class:`Terminated` or was raised while one propagated (its context or cause chain)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, Terminated):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def unmasked() -> Iterator[None]:
    """Within the block, an error some cleanup raised over a SIGTERM is re-raised as :class:`Terminated`."""
    try:
        yield
    except Terminated:
        raise
    except BaseException as err:
        if not _is_sigterm(err):
            raise
        raise Terminated() from err


#: Set by the local backend to its own pid: a worker whose launcher is gone stops itself.
PARENT_ENV = "LANDSCAPE_PARENT_PID"


def _parent_of(pid: int) -> int | None:
    """The parent of process ``pid`` (Linux's /proc), or None."""
    fields = stat_fields(pid)
    try:
        return int(fields[1]) if fields else None
    except (ValueError, IndexError):
        return None


def launcher_alive(launcher: int) -> bool:
    """Whether this process's launcher is still there: its parent, or its parent's (a stage forked by the
    launcher's stage server, ``forkserver``, which ends with the launcher)."""
    parent = os.getppid()
    return parent == launcher or _parent_of(parent) == launcher


def watch_parent(environ: dict[str, str] | None = None, interval: float = 1.0) -> threading.Thread | None:
    """With ``$LANDSCAPE_PARENT_PID``: SIGTERM to this process once that launcher is no longer its parent
    (or its stage server's).

    The local backend's workers run in process groups of their own (a terminal's Ctrl-C
    reaches the launcher, which stops them in order), so a launcher killed outright
    (SIGKILL, OOM) would leave them computing as orphans. Polled (Linux's
    ``PR_SET_PDEATHSIG`` would need ctypes and misses a parent that died first); the
    SIGTERM goes through :func:`handled`, so an evaluate worker saves its finished points.
    """
    expected = (environ if environ is not None else os.environ).get(PARENT_ENV)
    if not expected or not expected.isdigit():
        return None

    def watch() -> None:
        while launcher_alive(int(expected)):
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
