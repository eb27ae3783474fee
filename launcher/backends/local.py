"""The local backend: runs on this machine, and any run read from its storage alone.

``submit`` runs the stages as processes here (``launcher.local.runner``) and returns when
the run ends. Everything else reads the run's storage prefix, no cluster: ``spec.yaml``
(the shards), ``manifest.json``, the shard files and progress records, the outputs and
``report.json``, and for a local run ``local.json`` and ``logs/`` (``launcher.local.record``).
So it also reads a cluster run's prefix given by URL or folder (``launcher.backends.choose``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from landscape_job.run.lease import stop_holder
from landscape_job.base.errors import StageError, UserError
from landscape_job.spec.sections import Spec
from landscape_job.stages import SPEC_KEY
from landscape_job.storage import NotFound, Storage, open_storage, run_storage
from landscape_job.storage.location import StorageLocation, file_url

from launcher.backends.base import Plan, StagePlan, poll_until_ended
from launcher.backends.done import read_report
from launcher.backends.pulling import pull_run
from launcher.commands.cluster_run import read_progress
from launcher.commands.views import done_lines
from launcher.kubernetes.render import STAGES
from launcher.local.record import CANCELLED, LOCAL_KEY, LOGS_PREFIX, LocalRunRecord, alive, here, stop
from launcher.run_status import RunRow, RunStatus, stored_row, stored_status

#: Seconds between reads of a local worker's log with -f.
FOLLOW_INTERVAL = 0.5


class LocalBackend:
    """Runs on this machine; reads runs under ``base`` (default ``./runs``), or where ``known`` says."""

    name = "local"
    #: ``submit`` runs the run in this process until it ends (``launcher.api`` gives it a thread).
    runs_here = True

    def __init__(self, base: StorageLocation | str | None = None, workers: int | None = None, stream: Any = None):
        self.base = StorageLocation.of(base) if base is not None else StorageLocation.parse(file_url(
            Path("runs").absolute()))
        self.workers, self.stream = workers, stream
        #: Runs named by their own URL or folder: their storage, by run id.
        self.known: dict[str, Storage] = {}

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LocalBackend:
        """From ``submit --local``'s flags: a cluster flag is a mistake here, named before anything is read."""
        for flag, name in (("--server-dry-run", "server_dry_run"), ("--wait", "wait"), ("-n", "namespace"),
                           ("--context", "context"), ("--kubeconfig", "kubeconfig")):
            if getattr(args, name, None):
                raise UserError(f"{flag}: only for the cluster, not with --local")
        workers = getattr(args, "workers", None)
        if workers is not None and workers < 1:
            raise UserError(f"--workers: must be at least 1, got {workers}")
        storage = getattr(args, "storage", None)
        return cls(StorageLocation.parse(storage) if storage else None, workers, getattr(args, "stream", None))

    def where(self) -> str:
        return f"under {self.base.url}"

    def storage(self, run: str) -> Storage:
        return self.known.get(run) or run_storage(self.base, run)

    # -- submit -------------------------------------------------------------------------------

    def checked_spec(self, path: Path, storage: str | None = None) -> Spec:
        """As ``launcher validate`` checks it (the inputs load, the device exists), and the storage reachable.
        The inputs are checked in a stage forked from this process's stage server where that spares it torch
        (``launcher.local.precheck``); ``submit`` then forks the run's stages from the same server."""
        from launcher.cli import checked_spec
        from launcher.local.precheck import StagedCheck
        from launcher.local.runner import check_storage

        spec = checked_spec(path, storage, inputs=StagedCheck(path, storage) if StagedCheck.wanted() else None)[0]
        check_storage(spec)
        return spec

    def plan(self, spec: Spec, run_id: str) -> Plan:
        from launcher.local.runner import local_workers, stage_command

        workers = local_workers(spec.compute.shards, self.workers)
        here = "this machine"
        stages = (StagePlan("prepare", tuple(stage_command("prepare")), 1, here),
                  StagePlan("evaluate", tuple(stage_command("evaluate")), spec.compute.shards,
                            f"{here}, {workers} at a time"),
                  StagePlan("merge", tuple(stage_command("merge")), 1, here))
        storage = run_storage(spec.storage, run_id)
        self.known.setdefault(run_id, storage)  # the backend that planned a run finds it again, wherever it is
        return Plan(self.name, run_id, storage.url, spec.hash, stages, spec, options={"workers": workers})

    def submit(self, plan: Plan) -> str:
        """Runs the plan here, prepare -> evaluate -> merge; returns where the results are, once they are."""
        from launcher.local.runner import submit_local

        run = submit_local(plan.spec, run_id=plan.run_id, workers=plan.options.get("workers"), stream=self.stream)
        return done_lines(run.url, series=plan.spec.series is not None)

    # -- a run in storage ---------------------------------------------------------------------

    def status(self, run: str) -> RunStatus:
        return read_stored_status(run, self.storage(run))

    def wait(self, run: str, timeout: float | None = None, interval: float = 5.0) -> RunStatus:
        storage = self.storage(run)
        stored_spec(storage)  # a folder that is no run: one line, exit 2, before any wait
        return poll_until_ended(lambda: read_stored_status(run, storage), run, timeout, interval)

    def list(self) -> list[RunRow]:
        """The runs under the base: each prefix that holds a ``spec.yaml``, oldest first."""
        storage = open_storage(self.base)
        run_ids = sorted({key.split("/")[0] for key in storage.list() if key.count("/") == 1
                          and key.endswith("/spec.yaml")})
        rows = []
        for run_id in run_ids:
            try:
                rows.append(stored_row(read_stored_status(run_id, run_storage(self.base, run_id))))
            except UserError:
                continue  # a folder that is no run id of ours (a name the launcher would not choose)
        return sorted(rows, key=lambda r: (r.created, r.run))

    def pull(self, run: str, dest: Path | None = None, shards: bool = False) -> Path:
        storage = self.storage(run)
        return pull_run(storage, run, dest, shards, state=lambda: read_stored_status(run, storage).state)

    def cancel(self, run: str) -> str:
        """Stops a local run's processes if they run; a run in storage with no live process is said so."""
        storage = self.storage(run)
        stored_spec(storage)  # a folder that is no run: one line, exit 2
        holder = stop_holder(storage)  # the runner holding the run's lease, on any host (landscape_job.run.lease)
        if holder is not None:
            return (f"run {run} cancelled: {holder.holder} was asked to stop and stopped its workers. Its storage "
                    f"is kept: submit again with --run-id {run} to resume")
        record = local_record(storage)
        if record is None:
            raise UserError(f"run {run}: {storage.url} has no {LOCAL_KEY}: not a local run; a run on the "
                            f"cluster is cancelled by its id (launcher cancel {run} -n NAMESPACE)")
        if not here(record):
            raise UserError(f"run {run} was started on host {record.host}, not here; cancel it there "
                            f"(its processes cannot be reached from this machine)")
        if not alive(record):
            return (f"run {run} is not running (it {record.state if record.state != 'running' else 'stopped'}; "
                    f"launcher pid {record.pid} on {record.host} is gone); nothing to cancel")
        pids = stop(record)
        try:
            storage.put(LOCAL_KEY, record.ended(CANCELLED, "cancelled").to_json())
        except (StageError, OSError) as err:
            raise StageError(f"run {run}: stopped, but its record could not be written: {err}") from None
        return (f"run {run} cancelled: stopped {len(pids)} processes ({', '.join(map(str, pids))}). Its storage is "
                f"kept: submit again with --run-id {run} to resume")

    def logs(self, run: str, stage: str | None = None, shard: int | None = None, tail: int | None = None,
             follow: bool = False, previous: bool = False) -> Iterator[str]:
        """The workers' logs under ``logs/`` of the prefix, each of its latest attempt."""
        storage = self.storage(run)
        if previous:
            raise UserError(f"--previous: run {run} is read from storage, which keeps each worker's latest log only")
        chosen = stored_logs(storage.list(LOGS_PREFIX), stage, shard)
        if not chosen:
            what = f" for shard {shard}" if shard is not None else f" of stage {stage}" if stage else ""
            raise UserError(f"run {run}: no logs{what} in {storage.url}/{LOGS_PREFIX} (not started yet; see "
                            f"launcher status {run})")
        if follow and len(chosen) > 1:  # every worker's log at once, interleaved as they grow
            from launcher.commands.logs import check_followed, interleaved, prefix

            check_followed(len(chosen))
            return interleaved([(prefix(key_stage, index), lambda key=key: _follow(storage, key, tail))
                                for key, key_stage, index in chosen])
        return self._lines(storage, chosen, tail, follow)

    def _lines(self, storage: Storage, chosen: list[tuple[str, str, int | None]], tail: int | None,
               follow: bool) -> Iterator[str]:
        from launcher.commands.logs import prefix

        for key, key_stage, index in chosen:
            tag = prefix(key_stage, index) if len(chosen) > 1 else None
            for line in (_follow(storage, key, tail) if follow else _read(storage, key, tail)):
                yield f"{tag} {line}" if tag else line


# -- reading a run's prefix --------------------------------------------------------------------

def stored_spec(run: Storage) -> dict[str, Any]:
    """The run's ``spec.yaml``, parsed but not checked: enough to know its shards."""
    try:
        raw = yaml.safe_load(run.get(SPEC_KEY)) or {}
    except NotFound:
        raise UserError(f"{run.url}: no {SPEC_KEY}: not a run's folder (submit a spec first)") from None
    except yaml.YAMLError:
        raise StageError(f"{run.url}/{SPEC_KEY}: not YAML") from None
    return raw if isinstance(raw, dict) else {}


def shards_of(raw: dict[str, Any]) -> int:
    compute = raw.get("compute") if isinstance(raw.get("compute"), dict) else {}
    shards = compute.get("shards", 1)
    return shards if isinstance(shards, int) and shards > 0 else 1


def local_record(run: Storage) -> LocalRunRecord | None:
    """The run's ``local.json``, or None (not a local run, or one written before there were records)."""
    try:
        return LocalRunRecord.from_json(run.get(LOCAL_KEY))
    except NotFound:
        return None
    except (ValueError, TypeError):
        return None


def read_stored_status(run_id: str, run: Storage) -> RunStatus:
    """The run's status from its prefix (one listing, the spec, the progress records, the local record,
    ``report.json``)."""
    shards = shards_of(stored_spec(run))
    keys = set(run.list())
    record = local_record(run)
    return stored_status(run_id, run.url, keys, shards, read_progress(run, shards), record,
                         alive(record) if record else False, report=read_report(run, keys))


def stored_logs(keys: Iterable[str], stage: str | None, shard: int | None) -> list[tuple[str, str, int | None]]:
    """(key, stage, shard) of the worker logs under ``logs/`` that match, in stage then shard order."""
    found = []
    for key in keys:
        if not (key.startswith(LOGS_PREFIX) and key.endswith(".log")):
            continue
        name = key[len(LOGS_PREFIX):-len(".log")]
        base, _, index = name.partition("-")
        if base not in STAGES or (index and not index.isdigit()):
            continue
        found.append((key, base, int(index) if index else None))
    chosen = [f for f in found if (stage is None or f[1] == stage) and (shard is None or f[2] == shard)]
    return sorted(chosen, key=lambda f: (STAGES.index(f[1]), f[2] or 0))


def _read(storage: Storage, key: str, tail: int | None) -> list[str]:
    try:
        lines = storage.get(key).decode("utf-8", "replace").splitlines()
    except NotFound:
        return []
    return lines[-tail:] if tail else ([] if tail == 0 else lines)


def _follow(storage: Storage, key: str, tail: int | None = None) -> Iterator[str]:
    """A local worker's log as it grows, until its run no longer runs it (or the run ends); ``tail``: from
    its last lines at the start, as ``kubectl logs -f --tail``."""
    sent = 0
    pending = ""
    if tail is not None:  # skip all but the last ``tail`` complete lines written so far
        try:
            text = storage.get(key).decode("utf-8", "replace")
        except NotFound:
            text = ""
        whole = text[:text.rfind("\n") + 1]
        lines = whole.splitlines(keepends=True)
        sent = len(whole) - sum(len(line) for line in lines[max(0, len(lines) - tail):]) if tail else len(whole)
    while True:
        record = local_record(storage)
        running = record is not None and alive(record) and log_key_name(key) in record.workers
        try:
            text = storage.get(key).decode("utf-8", "replace")
        except NotFound:
            text = ""
        pending += text[sent:]
        sent = len(text)
        *lines, pending = pending.split("\n")
        yield from lines
        if not running:
            if pending:
                yield pending
            return
        sys.stdout.flush()
        time.sleep(FOLLOW_INTERVAL)


def log_key_name(key: str) -> str:
    """``logs/evaluate-3.log`` -> ``evaluate-3``, the worker's name in ``local.json``."""
    return key[len(LOGS_PREFIX):-len(".log")]
