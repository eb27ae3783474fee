"""One runner per run: a lease object in the run's own storage, taken by conditional create.

Two ``launcher submit --local --run-id SAME`` at once would both run every stage, write
over each other's logs and record, and a ``cancel`` would stop only one of them. So the
runner of a run first takes its lease; a second one is refused in one line naming the
holder (exit 2).

The lease is a chain of generations, ``lease/00000001.json``, ``lease/00000002.json``,
...: the highest stored generation is the lease. Taking it means creating the *next*
generation with the storage's ``put_if_absent`` (``os.link`` on a folder, a conditional
``PutObject`` with ``If-None-Match: *`` on S3; ``landscape_job.storage``), so of two
runners racing for the same generation exactly one wins, and nothing is ever deleted or
overwritten by anyone but the holder. The holder renews its own generation every
``ttl / 4`` seconds (the heartbeat) and marks it released when it ends. A generation is
stale, and the next one may be taken, when it is released, when it was not renewed for
``ttl`` seconds (a crashed or SIGKILLed runner on any host; clocks of the hosts must agree
to well within ``ttl``), or at once when its holder ran on this host and its process is
gone. A holder that finds a newer generation than its own (it stalled past ``ttl`` and was
superseded) or a cancel request for its generation (``cancel.json``, what ``launcher
cancel`` writes for a holder on another host) stops its run.

On an S3 server that ignores ``If-None-Match`` (neither refusing nor honouring it) two
runners starting in the very same instant may both win; ``storage.s3`` documents its
fallback. ``$LANDSCAPE_LEASE_TTL`` sets ``ttl`` (default 60 s).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

from landscape_job.base.errors import StageError, UserError
from landscape_job.base.procstat import stat_fields

LEASE_PREFIX = "lease/"
CANCEL_KEY = "cancel.json"
TTL_ENV = "LANDSCAPE_LEASE_TTL"
DEFAULT_TTL = 60.0
#: Why a runner stopped when ``launcher cancel`` asked it to.
CANCELLED = "cancelled (launcher cancel)"


def lease_ttl() -> float:
    """Seconds a lease lives unrenewed: ``$LANDSCAPE_LEASE_TTL`` or 60."""
    try:
        return max(1.0, float(os.environ.get(TTL_ENV, DEFAULT_TTL)))
    except ValueError:
        raise UserError(f"{TTL_ENV}: expected seconds, got {os.environ[TTL_ENV]!r}") from None


def lease_key(generation: int) -> str:
    return f"{LEASE_PREFIX}{generation:08d}.json"


@dataclass(frozen=True)
class LeaseRecord:
    """One generation of the lease: who holds it (``pid`` on ``host``), since when, last renewed, released."""

    generation: int
    run_id: str
    host: str
    pid: int
    acquired: float
    renewed: float
    ttl: float
    released: bool = False
    pid_start: int | None = None

    @property
    def holder(self) -> str:
        return f"launcher pid {self.pid} on host {self.host}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseRecord:
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("lease record is not a JSON object")
        return cls(**{k: parsed[k] for k in cls.__dataclass_fields__ if k in parsed})


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat``), None where unknown: with
    the pid it names one process for good, where the pid alone may be reused."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _holder_alive(record: LeaseRecord) -> bool:
    """The holder's process (on this host) still runs: its pid exists and, where /proc tells, started when it did."""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process of that pid: decided by its start time, if known
    started = process_start(record.pid)
    return started is None or record.pid_start is None or started == record.pid_start


def stale(record: LeaseRecord, now: float | None = None) -> bool:
    """The generation may be superseded: released, expired, or its holder's process on this host is gone."""
    now = time.time() if now is None else now
    if record.released or now - record.renewed > record.ttl:
        return True
    return record.host == socket.gethostname() and not _holder_alive(record)


def current(storage) -> LeaseRecord | None:
    """The highest stored generation, or None for a run that never had a runner with a lease."""
    generations = [int(k[len(LEASE_PREFIX):-5]) for k in storage.list(LEASE_PREFIX)
                   if k.endswith(".json") and k[len(LEASE_PREFIX):-5].isdigit()]
    if not generations:
        return None
    return LeaseRecord.from_json(storage.get(lease_key(max(generations))))


class LeaseHeld(UserError):
    """Another runner holds the run: one line naming it (exit 2)."""


class Lease:
    """The lease this process holds on one run's storage; ``acquire`` it, ``start`` its heartbeat, ``release`` it."""

    def __init__(self, storage, record: LeaseRecord):
        self.storage, self.record = storage, record
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, storage, run_id: str, ttl: float | None = None) -> Lease:
        """Takes the next generation, or raises :class:`LeaseHeld` naming the live holder."""
        ttl = lease_ttl() if ttl is None else ttl
        for _ in range(5):  # a lost race re-reads: the winner is named, or its generation is stale already
            held = current(storage)
            if held is not None and not stale(held):
                ago = max(0.0, time.time() - held.renewed)
                raise LeaseHeld(
                    f"run {run_id} is being run by {held.holder} (lease generation {held.generation}, renewed "
                    f"{ago:.0f} s ago, expires after {held.ttl:.0f} s unrenewed); wait for it, or stop it with "
                    f"launcher cancel {run_id}")
            now = time.time()
            record = LeaseRecord(generation=(held.generation + 1) if held else 1, run_id=run_id,
                                 host=socket.gethostname(), pid=os.getpid(), acquired=now, renewed=now, ttl=ttl,
                                 pid_start=process_start(os.getpid()))
            if storage.put_if_absent(lease_key(record.generation), record.to_json()):
                return cls(storage, record)
        raise StageError(f"run {run_id}: could not take its lease ({storage.url}/{LEASE_PREFIX}): "
                         "other runners keep taking it; try again")

    def renew(self) -> None:
        """Writes this generation's ``renewed`` time; sets ``lost`` if a newer generation or a cancel exists."""
        if self.storage.exists(lease_key(self.record.generation + 1)):
            self.lost = (f"its lease was taken over by another runner (generation {self.record.generation + 1}) "
                         f"after {self.record.ttl:.0f} s without renewal")
            return
        if self.storage.exists(CANCEL_KEY) and self.cancel_requested():
            self.lost = CANCELLED
            return
        self.record = replace(self.record, renewed=time.time())
        self.storage.put(lease_key(self.record.generation), self.record.to_json())

    def cancel_requested(self) -> bool:
        """``launcher cancel`` asked this generation to stop (its SIGTERM may arrive before the heartbeat reads it)."""
        try:
            asked = json.loads(self.storage.get(CANCEL_KEY)).get("generation")
        except Exception:  # noqa: BLE001 - no request, or none readable: not cancelled
            return False
        return asked == self.record.generation

    def start(self, on_lost: Callable[[str], None]) -> None:
        """Renews every ``ttl / 4`` s in a daemon thread; calls ``on_lost(reason)`` once if the lease is lost.

        A storage that fails a renewal is tried again at the next beat; one that fails for
        ``ttl / 2`` in all loses the lease (the holder stops before a rival may take over).
        """
        interval = self.record.ttl / 4

        def beat() -> None:
            last_ok = time.monotonic()
            while not self._stop.wait(interval):
                try:
                    self.renew()
                    last_ok = time.monotonic()
                except Exception as err:  # noqa: BLE001 - a failed renewal is retried; only its duration matters
                    if time.monotonic() - last_ok > self.record.ttl / 2:
                        self.lost = f"its lease could not be renewed for {self.record.ttl / 2:.0f} s ({err})"
                if self.lost:
                    on_lost(self.lost)
                    return

        self._thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stops the heartbeat and marks the generation released (a storage failure here is not the run's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost:
            return
        try:
            self.storage.put(lease_key(self.record.generation),
                             replace(self.record, renewed=time.time(), released=True).to_json())
        except (StageError, UserError, OSError):
            pass


def request_cancel(storage, record: LeaseRecord) -> None:
    """Asks the holder of ``record``'s generation to stop at its next heartbeat (any host)."""
    storage.put(CANCEL_KEY, json.dumps({"generation": record.generation, "time": time.time()}).encode())


def stop_holder(storage, grace: float = 30.0) -> LeaseRecord | None:
    """``launcher cancel``: asks the live holder of the run's lease to stop, and waits up to ``grace`` s.

    The request (``cancel.json``) reaches a holder on any host at its next heartbeat; one on
    this host is also sent SIGTERM, which it answers by stopping its workers in order.
    Returns the holder's record, or None when no live runner holds the run.
    """
    held = current(storage)
    if held is None or stale(held):
        return None
    request_cancel(storage, held)
    if held.host == socket.gethostname():
        try:
            os.kill(held.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        now = current(storage)
        if now is None or now.generation != held.generation or stale(now):
            break
        time.sleep(0.2)
    return held
