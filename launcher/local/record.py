"""A local run's own record in its storage: who runs it, its workers, how it ended (``local.json``).

``submit --local`` writes it when it starts, whenever a worker starts or ends, and when
the run ends; ``launcher status``, ``list`` and ``cancel`` read it to say whether the run
is still going and to stop it: with no cluster, the processes are the run's only
"controller", and this is where they are named. Per-worker logs sit beside it under
``logs/<stage>[-<shard>].log`` (written live when the storage is a folder, uploaded as
each worker ends otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

LOCAL_KEY = "local.json"
LOGS_PREFIX = "logs/"
#: ``state`` values: the run's processes are going, or how they ended.
RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"


def log_key(stage: str, shard: int | None = None) -> str:
    """``logs/prepare.log``, ``logs/evaluate-3.log``: one per worker (its latest attempt)."""
    return f"{LOGS_PREFIX}{stage if shard is None else f'{stage}-{shard}'}.log"


@dataclass(frozen=True)
class LocalRunRecord:
    """``local.json``: the launcher process (``pid`` on ``host``), its live workers by log name, the state."""

    pid: int
    host: str
    started: float
    state: str = RUNNING
    workers: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    updated: float | None = None

    @classmethod
    def start(cls) -> LocalRunRecord:
        now = time.time()
        return cls(pid=os.getpid(), host=socket.gethostname(), started=now, updated=now)

    def with_workers(self, workers: dict[str, int]) -> LocalRunRecord:
        return replace(self, workers=dict(workers), updated=time.time())

    def ended(self, state: str, error: str | None = None) -> LocalRunRecord:
        return replace(self, state=state, workers={}, error=error, updated=time.time())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> LocalRunRecord:
        """Raises ValueError (or TypeError) for a record that is not one."""
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("local run record is not a JSON object")
        known = {k: parsed[k] for k in cls.__dataclass_fields__ if k in parsed}
        record = cls(**known)
        if not isinstance(record.pid, int) or not isinstance(record.workers, dict):
            raise ValueError("local run record: pid and workers malformed")
        return record


def is_ours(pid: int) -> bool:
    """The process ``pid`` on this host is alive and runs landscape (not a stranger that reused the pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not one we started
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # no /proc (macOS): the pid is alive, take it as ours
    try:
        text = cmdline.read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"landscape_job" in text or b"launcher" in text


def here(record: LocalRunRecord) -> bool:
    """The run was started on this host (its pids mean something here)."""
    return record.host == socket.gethostname()


def alive(record: LocalRunRecord) -> bool:
    """The run's launcher process still runs. On another host (a shared folder or bucket) its pids cannot
    be checked from here: the record's own word is taken."""
    if record.state != RUNNING:
        return False
    return is_ours(record.pid) if here(record) else True


def stop(record: LocalRunRecord, grace: float = 5.0) -> list[int]:
    """SIGTERM to the launcher process, then to its workers; SIGKILL what is still there after ``grace``.

    The launcher first, so that it does not take its workers' ends for failures and start
    reporting; returns the pids that were signalled.
    """
    pids = [p for p in [record.pid, *record.workers.values()] if is_ours(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_ours(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if is_ours(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids
