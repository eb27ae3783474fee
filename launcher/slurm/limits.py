"""Each stage's ``--time``, sized from the run as the Kubernetes deadlines are.

The same loose upper bounds as ``launcher.kubernetes.deadlines`` (one start-up of
``SETUP_SECONDS``, ``point_seconds`` a point, the Hessian at θ* in prepare), with one
difference that Slurm makes: a time limit binds one array task, not the whole array, and a
requeued task starts with a fresh one. So evaluate's limit is one shard's work (no waves,
no retries), plus the ``--signal`` lead, so that the warning to save comes after the work
a task is expected to do, not in the middle of it. Merge starts only after every shard
(``afterok``), so it waits for nothing and needs only its own work.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from landscape_job.base.errors import UserError
from landscape_job.spec.sections import Spec

from launcher.kubernetes.deadlines import HESSIAN_POINTS, SETUP_SECONDS
from launcher.slurm.section import SlurmSpec, format_time, parse_time


@dataclass(frozen=True)
class StageTimes:
    """``--time`` of each stage, as ``D-HH:MM:SS``."""

    prepare: str
    evaluate: str
    merge: str


def stage_times(spec: Spec, slurm: SlurmSpec) -> StageTimes:
    """The spec's own limits where set, else bounds from the run's size; a ``signal_seconds`` that
    is not below evaluate's limit is refused (the warning would come before the task starts)."""
    per_shard = ceil(spec.grid.size / spec.compute.shards)
    evaluate = slurm.evaluate_time or format_time(SETUP_SECONDS + per_shard * slurm.point_seconds
                                                  + slurm.signal_seconds)
    if parse_time(evaluate, "slurm.evaluate_time") <= slurm.signal_seconds:
        raise UserError(f"slurm.signal_seconds: {slurm.signal_seconds} s is not below evaluate's time limit "
                        f"({evaluate}); make it smaller or slurm.evaluate_time longer")
    hessian = HESSIAN_POINTS * slurm.point_seconds if spec.uses_hessian else 0
    return StageTimes(prepare=slurm.prepare_time or format_time(2 * SETUP_SECONDS + hessian),
                      evaluate=evaluate,
                      merge=slurm.merge_time or format_time(2 * SETUP_SECONDS))
