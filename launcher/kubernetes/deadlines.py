"""How long each stage's Job may run (``activeDeadlineSeconds``), sized from the run.

Every stage gets a deadline, so nothing hangs unseen: a pod stuck on a dead mount, a
shard evicted over and over (the pod failure policy ignores ``DisruptionTarget``, so only
the deadline bounds that loop), a merge waiting for shards that never come. The defaults
are deliberately loose upper bounds from the run's size, not estimates: ``point_seconds``
bounds one point's evaluation (``launcher estimate`` measures the real figure; set
``kubernetes.point_seconds`` from it, or a stage's ``*_deadline_seconds`` directly).

A Job created suspended counts its deadline from its release: the Job controller sets
``status.startTime`` when the Job resumes and never applies ``activeDeadlineSeconds``
while ``startTime`` is unset. So evaluate's and merge's deadlines count from the moment
prepare releases them (or Kueue admits them), not from submit.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from landscape_job.spec.sections import Spec
from launcher.kubernetes.section import KubernetesSpec, evaluate_parallelism

#: One pod's start-up: image pull, model build, compile, data loading.
SETUP_SECONDS = 1800
#: Room for every shard to be retried once within the evaluate deadline.
ATTEMPTS = 2
#: Lanczos at θ* (Hessian metrics or directions) in prepare, in units of one point's evaluation.
HESSIAN_POINTS = 300


@dataclass(frozen=True)
class StageDeadlines:
    """``activeDeadlineSeconds`` of each stage's Job."""

    prepare: int
    evaluate: int
    merge: int


def stage_deadlines(spec: Spec, k8s: KubernetesSpec) -> StageDeadlines:
    """The spec's own deadlines where set, else bounds from the run's size.

    evaluate: the waves of shards (``completions / parallelism``), each shard its points
    and a start-up, ``ATTEMPTS`` times. merge is released together with evaluate and waits
    for its shards, so its bound is evaluate's plus its own work; under Kueue the last shard
    releases it (``launcher.kubernetes.gate``), so its deadline counts from then and bounds its own work only.
    """
    shards = spec.compute.shards
    per_shard = ceil(spec.grid.size / shards)
    waves = ceil(shards / evaluate_parallelism(k8s.parallelism, shards))
    evaluate = waves * ATTEMPTS * (SETUP_SECONDS + per_shard * k8s.point_seconds)
    prepare = 2 * SETUP_SECONDS + (HESSIAN_POINTS * k8s.point_seconds if spec.uses_hessian else 0)
    evaluate = k8s.evaluate_deadline_seconds or k8s.active_deadline_seconds or evaluate
    return StageDeadlines(
        prepare=k8s.prepare_deadline_seconds or k8s.active_deadline_seconds or prepare,
        evaluate=evaluate,
        merge=k8s.merge_deadline_seconds or (0 if k8s.kueue_queue else evaluate) + 2 * SETUP_SECONDS)
