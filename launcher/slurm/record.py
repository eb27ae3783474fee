"""A Slurm run's own record in its storage (``slurm.json``): its three job ids and where its logs are.

``submit --slurm`` writes it once the jobs exist; ``status``, ``wait``, ``logs`` and
``cancel`` read it to know which jobs to ask the scheduler about, so a run is found from
its folder or URL (``launcher status runs/<id>``) as a local run is, with no other state
on the submitting machine. ``cancelled`` is set by ``launcher cancel``, so the run reads
Cancelled (not Failed) once Slurm has forgotten its jobs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace

SLURM_KEY = "slurm.json"


@dataclass(frozen=True)
class SlurmRunRecord:
    """The run's jobs (``prepare``, the ``evaluate`` array, ``merge``), its shards and its log folder."""

    run_id: str
    prepare: str
    evaluate: str
    merge: str
    shards: int
    log_dir: str
    submitted: float
    signal_seconds: int = 0
    cancelled: bool = False

    @classmethod
    def new(cls, run_id: str, jobs: dict[str, str], shards: int, log_dir: str, signal_seconds: int) -> SlurmRunRecord:
        return cls(run_id=run_id, prepare=jobs["prepare"], evaluate=jobs["evaluate"], merge=jobs["merge"],
                   shards=shards, log_dir=log_dir, submitted=time.time(), signal_seconds=signal_seconds)

    @property
    def job_ids(self) -> dict[str, str]:
        return {"prepare": self.prepare, "evaluate": self.evaluate, "merge": self.merge}

    def marked_cancelled(self) -> SlurmRunRecord:
        return replace(self, cancelled=True)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> SlurmRunRecord:
        """Raises ValueError (or TypeError) for a record that is not one."""
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("slurm run record is not a JSON object")
        record = cls(**{k: parsed[k] for k in cls.__dataclass_fields__ if k in parsed})
        if not all(isinstance(v, str) and v.isdigit() for v in record.job_ids.values()):
            raise ValueError("slurm run record: job ids malformed")
        return record
