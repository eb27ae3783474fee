"""Every shard's progress in one listing: the tally a poller reads in O(1) requests.

A shard's full progress record (``shards/shard-<i>-of-<n>.progress.json``) is one object per
shard, so a poll that read them all made one request per shard (at 256 shards and a 5 s
interval, about 51 requests a second against the store), and its listing of ``shards/``
named every checkpoint segment too. Here each evaluate worker also keeps one empty object
whose *key* carries what a poller shows:

    progress/of-<n>/shard-<i>/<done>~<total>~<state>~<rate>~<eta>~<host>~<device>

rewritten (the new key put, the old one deleted) whenever the worker reports. One listing
of ``progress/of-<n>/`` (S3: one request per 1,000 shards) then gives every shard's points
done, state and rate, with no checkpoint segment in it. The tally is kept per shard count
and per shard index, never per point, so which points a shard holds does not matter. A
worker killed between the put and the delete leaves two keys for its shard; readers take
the one with the most points done (a finished one first).
"""

from __future__ import annotations

from dataclasses import dataclass

from landscape_job.run.records import ProgressRecord
from landscape_job.storage import Storage

SEPARATOR = "~"


def tally_prefix(num_shards: int) -> str:
    return f"progress/of-{num_shards}/"


def shard_tally_prefix(shard: int, num_shards: int) -> str:
    return f"{tally_prefix(num_shards)}shard-{shard}/"


def _clean(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in text)[:63] or "?"


def tally_key(progress: ProgressRecord) -> str:
    """The key that carries ``progress`` (its shard, points done, total, state, rate, ETA, host, device)."""
    assert progress.shard is not None and progress.num_shards is not None
    fields = (str(progress.done), "" if progress.total is None else str(progress.total), _clean(progress.state),
              f"{progress.rate:.4g}", "" if progress.eta_s is None else f"{progress.eta_s:.0f}",
              _clean(progress.host), _clean(progress.device))
    return shard_tally_prefix(progress.shard, progress.num_shards) + SEPARATOR.join(fields)


def parse_tally(key: str) -> ProgressRecord | None:
    """The progress a tally key carries; None for a key that is not one."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "progress" or not parts[1].startswith("of-") or not parts[2].startswith("shard-"):
        return None
    fields = parts[3].split(SEPARATOR)
    if len(fields) != 7:
        return None
    done, total, state, rate, eta, host, device = fields
    try:
        return ProgressRecord(shard=int(parts[2][6:]), num_shards=int(parts[1][3:]), done=int(done),
                              total=int(total) if total else None, state=state, rate=float(rate),
                              eta_s=float(eta) if eta else None, host=host, device=device)
    except ValueError:
        return None


def read_tallies(run: Storage, num_shards: int) -> dict[int, ProgressRecord]:
    """Every shard's progress from one listing, by shard."""
    best: dict[int, ProgressRecord] = {}
    for key in run.list(tally_prefix(num_shards)):
        progress = parse_tally(key)
        if progress is None or progress.num_shards != num_shards or progress.shard is None:
            continue
        seen = best.get(progress.shard)
        if seen is None or (progress.state == "done", progress.done) > (seen.state == "done", seen.done):
            best[progress.shard] = progress
    return best


@dataclass
class TallyWriter:
    """A worker's tally: each ``write`` puts the new key and deletes the one before."""

    run: Storage
    shard: int
    num_shards: int
    current: str | None = None

    def write(self, progress: ProgressRecord) -> None:
        key = tally_key(progress)
        if key == self.current:
            return
        self.run.put(key, b"")
        previous, self.current = self.current, key
        stale = [previous] if previous is not None else [
            k for k in self.run.list(shard_tally_prefix(self.shard, self.num_shards)) if k != key]
        for old in stale:  # a previous attempt's keys, on this worker's first write
            self.run.delete(old)
