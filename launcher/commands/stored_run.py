"""A run read from its storage alone: a local run (``submit --local``), or any run's prefix, no cluster.

What ``status``, ``list``, ``logs`` and ``cancel`` know of such a run is what its prefix
holds: ``spec.yaml`` (the shards), ``manifest.json``, the shard files and their progress
records, ``surface.h5``, and for a local run ``local.json`` and ``logs/`` (see
``launcher.local.record``). The I/O is here; ``launcher.run_status`` turns it into a record.
"""

from __future__ import annotations

from typing import Any

import yaml

from landscape_job.base.errors import StageError, UserError
from landscape_job.stages import SPEC_KEY
from landscape_job.storage import NotFound, Storage

from launcher.commands.cluster_run import read_progress
from launcher.local.record import LOCAL_KEY, LocalRunRecord, alive
from launcher.run_status import RunStatus, stored_status


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
    """The run's status from its prefix (one listing, the spec, the progress records, the local record)."""
    shards = shards_of(stored_spec(run))
    keys = set(run.list())
    record = local_record(run)
    return stored_status(run_id, run.url, keys, shards, read_progress(run, shards), record,
                         alive(record) if record else False)
