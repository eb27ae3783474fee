"""A run's prefix as the stages see it: the object keys, reading the spec and the manifest, waiting for objects.

Every stage reads what an earlier one wrote here, and the launcher reads the same keys,
so the names live in one place. Shard keys are the shard file format's (``shards``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from landscape_job.base.errors import StageError, UpstreamFailed, UserError
from landscape_job.run.records import Manifest
from landscape_job.spec.parse import spec_from_yaml
from landscape_job.spec.sections import Spec
from landscape_job.storage import NotFound, Storage

SPEC_KEY = "spec.yaml"
MANIFEST_KEY = "manifest.json"
DIRECTIONS_KEY = "directions.h5"
SURFACE_KEY = "surface.h5"
#: A series run's result instead of the surface (its format: ``landscape_job.series.file``).
SERIES_KEY = "series.h5"
REPORT_KEY = "report.json"

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    """The stages' default log: a pod's log is its stderr, flushed at once so ``kubectl logs`` is live."""
    print(message, file=sys.stderr, flush=True)


def read_run_spec(run: Storage) -> Spec:
    try:
        text = run.get(SPEC_KEY).decode()
    except NotFound:
        raise UserError(f"{run.url}: no {SPEC_KEY}; is this a run prefix? (submit a spec first)") from None
    return spec_from_yaml(text, f"{run.url}/{SPEC_KEY}")


def read_manifest(run: Storage) -> Manifest:
    """The prepare stage's manifest; its absence names the stage to run."""
    try:
        return Manifest.from_json(run.get(MANIFEST_KEY))
    except NotFound:
        raise StageError(f"{run.url}/{MANIFEST_KEY} is missing; run the prepare stage first") from None


def withdraw_report(run: Storage) -> list[str]:
    """Removes an earlier merge's ``report.json`` before a merge writes anything; returns the outputs it listed.

    A run is Complete once ``report.json`` and every output it lists exist (merge writes the
    report last). A merge that runs again (a resumed or resubmitted run, a merge pod retried)
    rewrites those outputs, so the earlier report must go first: left in place it would
    vouch for outputs that are being replaced, and ``status``, ``wait`` and ``pull`` would
    take a half-rewritten run for a finished one.
    """
    try:
        data = run.get(REPORT_KEY)
    except NotFound:
        return []
    try:
        earlier = json.loads(data)
    except ValueError:
        earlier = None
    run.delete(REPORT_KEY)
    outputs = earlier.get("outputs") if isinstance(earlier, dict) else None
    return [k for k in outputs if isinstance(k, str)] if isinstance(outputs, list) else []


def write_report(run: Storage, report: dict, earlier: Sequence[str] = ()) -> None:
    """Stores ``report.json``, last of a merge's outputs; first removes the figures an earlier merge listed
    (``withdraw_report``) that this one no longer wrote, so a pull gets this merge's outputs only."""
    written = set(report.get("outputs") or ())
    for key in earlier:
        if key.startswith("plots/") and key not in written:
            run.delete(key)
    run.put(REPORT_KEY, json.dumps(report, indent=2).encode())


def store_plots(run: Storage, written: list[Path]) -> list[str]:
    """Stores each file a merge drew under ``plots/`` (its own name) and returns the keys, in order."""
    keys = []
    for path in written:
        key = f"plots/{path.name}"
        run.put(key, path.read_bytes())
        keys.append(key)
    return keys


def quarantine(run: Storage, key: str, why: str, log: Log) -> str:
    """Moves ``key`` aside under ``shards/quarantine/`` (kept for inspection, never merged); returns the new key.

    For a shard or partial that is damaged or was computed for something else: the run
    recomputes its points instead of refusing to go on until someone deletes files by hand.
    """
    from landscape_job.run.shards import quarantine_key

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
    target = quarantine_key(key, stamp)
    try:
        run.put(target, run.get(key))
    except NotFound:
        return target  # another attempt moved it first
    run.delete(key)
    log(f"moved {run.url}/{key} aside to {target}: {why}")
    return target


#: Above this many missing keys a poll lists their folder once instead of asking for each.
LIST_ABOVE = 16


def _still_missing(run: Storage, missing: list[str]) -> list[str]:
    """The keys of ``missing`` that do not exist yet, in a number of requests that does not grow with them.

    A key found stays found, so only the missing are asked for: one HEAD each while they
    are few, one listing of their common folder (a LIST per 1,000 keys on S3) when many,
    as at the start of a 10,000-shard run's merge.
    """
    if len(missing) <= LIST_ABOVE:
        return [k for k in missing if not run.exists(k)]
    folder = os.path.commonprefix(missing).rpartition("/")[0]
    present = set(run.list(f"{folder}/" if folder else ""))
    return [k for k in missing if k not in present]


def wait_for(run: Storage, keys: list[str], seconds: float, what: str, log: Log,
             poll: float = 1.0, max_poll: float = 30.0, abort: Callable[[], str | None] | None = None) -> None:
    """Polls storage until every key exists, so stages started together chain by themselves.

    On a cluster prepare releases evaluate and merge once its output is written: evaluate
    pods wait here briefly, for a store slow to show new objects, and the merge pod for the
    shards, instead of failing and burning retries. Gives up after ``seconds`` naming what is still missing, or as soon as
    ``abort`` says why the missing objects will never come.
    """
    deadline = time.monotonic() + seconds
    announced = False
    missing = list(keys)
    while True:
        missing = _still_missing(run, missing)
        if not missing:
            return
        reason = abort() if abort is not None else None
        if reason:
            listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise UpstreamFailed(f"{reason}; {len(missing)} missing under {run.url}: {listed}")
        if time.monotonic() >= deadline:
            listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise StageError(f"gave up after {seconds:g}s waiting for {what}: {len(missing)} missing under "
                             f"{run.url}: {listed}")
        if not announced:
            log(f"waiting up to {seconds:g}s for {what} ({len(missing)} of {len(keys)} objects missing)")
            announced = True
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        poll = min(poll * 1.5, max_poll)
