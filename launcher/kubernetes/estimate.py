"""``launcher estimate surface.yaml --cluster``: the estimate measured where the pods run.

A laptop's seconds per point say little about a GPU node. This creates one pod shaped like
an evaluate pod (``render_estimate``), waits for it, reads the one JSON line that
``landscape-job estimate`` printed in its log, deletes what it created, and prints the
same projection as the local estimate. Nothing is written to storage.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import time
from typing import TYPE_CHECKING, Any

from landscape_job.base.errors import StageError, UserError
from landscape_job.checks.estimate import Estimate, from_log
from launcher.commands.cluster_run import connect
from launcher.kubernetes.job_state import end_condition
from launcher.kubernetes.names import STAGE_LABEL, run_selector
from launcher.kubernetes.ownership import with_owner
from launcher.kubernetes.render import CONTAINER, ESTIMATE, estimate_names, render_estimate

if TYPE_CHECKING:
    from launcher.kubernetes.cluster import Cluster

LOG_TAIL = 200


def estimate_run_id(name: str) -> str:
    """A fresh id for the estimate's objects: ``<name>-est-<hex>``, never a run's id."""
    return f"{name}-est-{secrets.token_hex(3)}"


def _finished(cluster: Cluster, run_id: str) -> dict[str, Any] | None:
    """The estimate Job once it has ended, else None; StageError if it is gone."""
    jobs = [j for j in cluster.list_jobs(run_selector(run_id))
            if (j["metadata"].get("labels") or {}).get(STAGE_LABEL) == ESTIMATE]
    if not jobs:
        raise StageError(f"the estimate Job of {run_id} is gone (deleted by someone else?)")
    return jobs[0] if end_condition(jobs[0]) else None


def _pod_log(cluster: Cluster, run_id: str) -> list[str]:
    pods = cluster.list_pods(run_selector(run_id))
    if not pods:
        return []
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return list(cluster.pod_log(pods[-1]["metadata"]["name"], CONTAINER, tail=LOG_TAIL))


def measure_on_cluster(cluster: Cluster, objects: list[dict[str, Any]], run_id: str, timeout: float,
                       interval: float, parallel: int | None) -> Estimate:
    """Creates the estimate's objects, waits for its pod, returns its measurement; always cleans up."""
    names = estimate_names(run_id)
    config_map, job = objects
    uid = cluster.create(config_map)["metadata"]["uid"]
    try:
        cluster.create(with_owner(job, "ConfigMap", names["spec"], uid))
        deadline = time.monotonic() + timeout
        while (finished := _finished(cluster, run_id)) is None:
            if time.monotonic() >= deadline:
                raise StageError(f"the estimate pod did not finish within {timeout:g}s (--timeout); is a node with "
                                 f"the requested resources free? kubectl get pods -n {cluster.namespace} "
                                 f"-l {run_selector(run_id)}")
            time.sleep(interval)
        lines = _pod_log(cluster, run_id)
        est = from_log(lines, parallel)
        condition = end_condition(finished) or {}
        if condition.get("type") != "Complete" or est is None:
            tail = "\n  ".join(lines[-10:]) or "(no log)"
            raise StageError(f"the estimate Job {names[ESTIMATE]} failed ({condition.get('reason', '?')}: "
                             f"{condition.get('message', '')}); last log lines:\n  {tail}")
        return est
    finally:
        # Deleting the ConfigMap garbage-collects the Job and its pod.
        try:
            cluster.delete_config_map(names["spec"])
        except (UserError, StageError):
            pass


def run_estimate_cluster(args: argparse.Namespace) -> list[str]:
    """Everything checked before anything is created, as for submit; returns the projection's lines."""
    from landscape_job.checks.estimate import describe
    from landscape_job.spec.parse import load_spec
    from launcher.kubernetes.section import parse_kubernetes

    if args.timeout <= 0:
        raise UserError(f"--timeout: must be positive, got {args.timeout}")
    spec = load_spec(args.spec, check_files=False)  # model and data paths are the pods' paths
    k8s = parse_kubernetes(spec.kubernetes)
    if args.namespace:
        k8s = dataclasses.replace(k8s, namespace=args.namespace)
    run_id = estimate_run_id(spec.name)
    objects = render_estimate(spec, run_id, k8s, args.points)
    cluster = connect(args, k8s.namespace)
    try:
        est = measure_on_cluster(cluster, objects, run_id, args.timeout, args.interval, args.parallel)
    finally:
        cluster.close()
    return describe(est)
