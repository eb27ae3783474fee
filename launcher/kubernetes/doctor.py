"""Is this cluster ready for a run: ``launcher doctor`` and submit's preflight, one line a check.

Like ``sky check`` or ``kubectl auth can-i``: it reads the cluster (``launcher.kubernetes.inventory``)
and judges it, as pure functions of those facts, the rendered pods and the spec:

* the API (reachable, version at least 1.29, where ``backoffLimitPerIndex`` and
  ``podReplacementPolicy`` are on by default), and every verb the launcher needs
  (SelfSubjectAccessReview, doctor only: submit's server dry run asks the same);
* the GPU nodes: their GPU resource, allocatable GPU / CPU / memory / ephemeral storage, taints;
* with a spec: each stage's pod fits a node that its selectors, affinity and tolerations
  admit (``launcher.kubernetes.fit``); the runtime class exists; every claim exists, is not
  lost, and may be mounted from several nodes (ReadOnlyMany / ReadWriteMany) unless the spec
  says every pod runs on one node (``kubernetes.one_node``); under Kueue, the LocalQueue and
  its ClusterQueue exist, cover every resource the pods request, and hold one evaluate wave.

A check whose failure would leave a run stalled, holding GPUs or never admitted, is
``stalls``: submit refuses with that one line (and its way out) before creating anything.
What the account may not read is ``skipped``, never guessed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from landscape_job.base.errors import UserError
from launcher.kubernetes.fit import Fit, fit, shown
from launcher.kubernetes.inventory import ClusterFacts, effective_queue, gather
from launcher.kubernetes.render import GPU_RESOURCE, render_run
from launcher.kubernetes.section import KubernetesSpec

if TYPE_CHECKING:
    from landscape_job.spec.sections import Spec
    from launcher.kubernetes.cluster import Cluster

#: The oldest Kubernetes whose Job API has everything the rendered Jobs use, on by default.
MIN_VERSION = (1, 29)
READY, NOT_READY, SKIPPED, NOTE = "ready", "not ready", "skipped", "note"
#: What the launcher asks of the API in a run's life (k8s/base/launcher-role.yaml grants it).
VERBS = (("create", "configmaps", ""), ("get", "configmaps", ""), ("delete", "configmaps", ""),
         ("create", "jobs", "batch"), ("list", "jobs", "batch"), ("patch", "jobs", "batch"),
         ("create", "roles", "rbac.authorization.k8s.io"), ("create", "rolebindings", "rbac.authorization.k8s.io"),
         ("list", "pods", ""), ("get", "pods/log", ""), ("list", "events", ""))
#: The spec keys that size each stage's pod, for the way out of a pod that fits no node.
SHAPE_KEYS = {"evaluate": "kubernetes.cpu / memory / gpus", "prepare": "kubernetes.prepare_merge_cpu / memory",
              "merge": "kubernetes.prepare_merge_cpu / memory"}
#: The way out of a resource a ClusterQueue does not cover.
UNCOVERED_WAY_OUT = {"ephemeral-storage": "add it, or set kubernetes.ephemeral_storage: false"}


@dataclass(frozen=True)
class Check:
    """One line of doctor's answer."""

    name: str
    state: str
    detail: str
    #: A run submitted now would stall on this (submit refuses).
    stalls: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fail(name: str, detail: str) -> Check:
    return Check(name, NOT_READY, detail, stalls=True)


def version_check(facts: ClusterFacts) -> Check:
    if facts.version is None:
        return Check("version", SKIPPED, "the server did not say its version")
    if facts.version < MIN_VERSION:
        return _fail("version", f"Kubernetes {facts.git_version} is older than 1.29: the Jobs' "
                                "backoffLimitPerIndex and podReplacementPolicy need 1.29 or newer")
    return Check("version", READY, f"Kubernetes {facts.git_version}")


def api_checks(cluster: Cluster, facts: ClusterFacts) -> list[Check]:
    checks = [Check("api", READY, f"{cluster.host} (context {cluster.context}), namespace {cluster.namespace}"),
              version_check(facts)]
    denied = [f"{verb} {resource}" for verb, resource, group in VERBS if not cluster.can_i(verb, resource, group)]
    checks.append(Check("rbac", READY, f"all {len(VERBS)} verbs a run needs are allowed") if not denied else
                  Check("rbac", NOT_READY, f"not allowed: {', '.join(denied)}; ask an admin to bind you the "
                                           "landscape-launcher Role of k8s/base"))
    return checks


def node_checks(facts: ClusterFacts, k8s: KubernetesSpec | None) -> list[Check]:
    if facts.nodes is None:
        return [Check("nodes", SKIPPED, "may not list nodes (a ClusterRole with get/list nodes, "
                                        "k8s/base/launcher-cluster-role.yaml, lets doctor check pod shapes)")]
    gpu = [n for n in facts.nodes if n.gpus(GPU_RESOURCE)]
    checks = [Check("nodes", READY if facts.nodes else NOT_READY,
                    f"{len(facts.nodes)} nodes, {len(gpu)} with {GPU_RESOURCE}")]
    for node in gpu:
        taints = ", ".join(f"{t.get('key')}:{t.get('effect')}" for t in node.taints) or "no taints"
        a = node.allocatable
        checks.append(Check("gpu node", READY if node.ready else NOT_READY,
                            f"{node.name}: {node.gpus(GPU_RESOURCE)} GPU, cpu {shown('cpu', a.get('cpu', Decimal(0)))}, "
                            f"memory {shown('memory', a.get('memory', Decimal(0)))}, ephemeral-storage "
                            f"{shown('ephemeral-storage', a.get('ephemeral-storage', Decimal(0)))} allocatable; {taints}"))
    if k8s is not None and k8s.gpus and not gpu:
        checks.append(_fail("gpu nodes", f"no node offers {GPU_RESOURCE} (the NVIDIA device plugin or GPU operator "
                                         "is not running?); or set kubernetes.gpus: 0 for CPU pods"))
    return checks


def _fit_check(f: Fit, k8s: KubernetesSpec) -> Check:
    if f.ok:
        return Check(f"fit {f.stage}", READY, f"the {f.stage} pod ({f.shape()}) fits {len(f.fitting)} node(s), "
                                               f"e.g. {f.fitting[0]}")
    if f.largest is None:
        hint = ("kubernetes.cpu_node_selector / cpu_tolerations, or light_pods_on_gpu_nodes: true"
                if f.stage != "evaluate" and not k8s.light_pods_on_gpu_nodes and k8s.gpus
                else "kubernetes.node_selector / tolerations / affinity" if f.stage == "evaluate"
                else "kubernetes.cpu_node_selector / cpu_tolerations / cpu_affinity")
        return _fail(f"fit {f.stage}", f"no node admits the {f.stage} pod (its node selector, affinity or the "
                                       f"nodes' taints); check {hint}")
    name, lacks = f.largest
    return _fail(f"fit {f.stage}", f"the {f.stage} pod ({f.shape()}) fits no node: the largest that admits it, "
                                   f"{name}, has {'; '.join(lacks)} allocatable; lower {SHAPE_KEYS[f.stage]}")


def claim_checks(facts: ClusterFacts, k8s: KubernetesSpec) -> list[Check]:
    checks = []
    for name, claim in facts.claims.items():
        where = f"claim {name}"
        if claim is None:
            checks.append(Check(where, SKIPPED, "may not read persistentvolumeclaims"))
        elif not claim.found:
            checks.append(_fail(where, f"persistentvolumeclaim {name} not found in namespace {facts.namespace} "
                                       "(kubernetes.volumes / cache_claim)"))
        elif claim.phase == "Lost":
            checks.append(_fail(where, f"persistentvolumeclaim {name} is Lost (its volume is gone)"))
        elif "ReadWriteOncePod" in claim.modes:
            checks.append(_fail(where, f"persistentvolumeclaim {name} is ReadWriteOncePod: only one pod may mount "
                                       "it, and prepare and every shard do; use a ReadOnlyMany or ReadWriteMany claim"))
        elif not claim.multi_node and not k8s.one_node:
            modes = ", ".join(claim.modes) or "no access mode"
            checks.append(_fail(where, f"persistentvolumeclaim {name} is {modes}: prepare and the evaluate pods "
                                       "run on different nodes and cannot all mount it; use a ReadOnlyMany or "
                                       "ReadWriteMany claim (NFS, Filestore, EFS), or set kubernetes.one_node: true "
                                       "if every pod runs on one node"))
        else:
            bound = "" if claim.phase == "Bound" else f" ({claim.phase or 'no phase'}: bound when a pod first mounts it?)"
            checks.append(Check(where, READY if not bound else NOTE, f"{', '.join(claim.modes)}{bound}"))
    return checks


def queue_checks(facts: ClusterFacts, k8s: KubernetesSpec, objects: list[dict[str, Any]] | None) -> list[Check]:
    queue = effective_queue(k8s, facts)
    if facts.kueue is None:
        return [Check("kueue", SKIPPED, "may not list LocalQueues (kueue.x-k8s.io) in the namespace")]
    if not facts.kueue:
        return [_fail("kueue", "Kueue is not installed, but kubernetes.kueue_queue is set: remove it")
                if k8s.kueue_queue else Check("kueue", READY, "not installed: Jobs start without a queue")]
    checks = [Check("kueue", READY, f"installed; LocalQueues here: {', '.join(facts.local_queues or []) or 'none'}")]
    if queue is None:
        return checks
    q = facts.queue
    if q is None or q.found is None:
        return checks + [Check(f"queue {queue}", SKIPPED, "may not read the LocalQueue")]
    if not q.found:
        return checks + [_fail(f"queue {queue}", f"LocalQueue {queue} not found in namespace {facts.namespace} "
                                                 "(kubernetes.kueue_queue)")]
    if q.cluster_queue_found is False:
        return checks + [_fail(f"queue {queue}", f"LocalQueue {queue} points to ClusterQueue {q.cluster_queue}, "
                                                 "which does not exist")]
    if q.covered is None:
        return checks + [Check(f"queue {queue}", SKIPPED, f"may not read ClusterQueue {q.cluster_queue}")]
    if objects is None:
        return checks + [Check(f"queue {queue}", READY, f"ClusterQueue {q.cluster_queue} covers "
                                                        f"{', '.join(sorted(q.covered))}")]
    from launcher.kubernetes.fit import pod_requests

    jobs = {o["metadata"]["labels"].get("landscape.stage"): o for o in objects if o["kind"] == "Job"}
    for stage, job in jobs.items():
        requests = pod_requests(job["spec"]["template"]["spec"])
        for resource in sorted(set(requests) - q.covered):
            way_out = UNCOVERED_WAY_OUT.get(resource, "add it to the ClusterQueue's coveredResources")
            return checks + [_fail(f"queue {queue}", f"ClusterQueue {q.cluster_queue} does not cover {resource}, "
                                                     f"which the {stage} pods request: {way_out}")]
        pods = Decimal(job["spec"].get("parallelism", 1))
        for resource, amount in sorted(requests.items()):
            quota = q.quota.get(resource, Decimal(0))
            if amount * pods > quota:
                fits = int(quota // amount) if amount else 0
                way_out = (f"lower kubernetes.parallelism to {fits}" if stage == "evaluate" and fits >= 1
                           else "raise its nominalQuota")
                return checks + [_fail(f"queue {queue}", f"ClusterQueue {q.cluster_queue}'s {resource} quota "
                                                         f"({shown(resource, quota)}) is below what the {stage} Job "
                                                         f"asks at once ({shown(resource, amount * pods)}): "
                                                         f"{way_out}")]
    return checks + [Check(f"queue {queue}", READY, f"ClusterQueue {q.cluster_queue} covers and holds every "
                                                    "resource the pods request")]


def spec_checks(facts: ClusterFacts, k8s: KubernetesSpec, objects: list[dict[str, Any]]) -> list[Check]:
    """The checks that need the run's objects: shapes, claims, runtime class, queue."""
    checks: list[Check] = []
    if facts.nodes is not None:
        for job in (o for o in objects if o["kind"] == "Job"):
            stage = job["metadata"]["labels"].get("landscape.stage", "?")
            checks.append(_fit_check(fit(stage, job["spec"]["template"]["spec"], facts.nodes), k8s))
    if facts.runtime_class is False:
        checks.append(_fail("runtime class", f"RuntimeClass {k8s.runtime_class} does not exist "
                                             "(kubernetes.runtime_class); kubectl get runtimeclass lists them"))
    elif facts.runtime_class:
        checks.append(Check("runtime class", READY, f"RuntimeClass {k8s.runtime_class} exists"))
    return checks + claim_checks(facts, k8s) + queue_checks(facts, k8s, objects)


def doctor(cluster: Cluster, spec: Spec | None, k8s: KubernetesSpec | None, run_id: str = "doctor") -> list[Check]:
    """Every check; with a spec, those of its run too."""
    facts = gather(cluster, k8s)
    checks = api_checks(cluster, facts) + node_checks(facts, k8s)
    if spec is None or k8s is None:
        return checks + queue_checks(facts, k8s or KubernetesSpec(), None)
    k8s = _queued(k8s, facts)
    return checks + spec_checks(facts, k8s, render_run(spec, run_id, k8s))


def _queued(k8s: KubernetesSpec, facts: ClusterFacts) -> KubernetesSpec:
    queue = effective_queue(k8s, facts)
    return dataclasses.replace(k8s, kueue_queue=queue) if queue != k8s.kueue_queue else k8s


def preflight(cluster: Cluster, spec: Spec, k8s: KubernetesSpec, run_id: str) -> KubernetesSpec:
    """Submit's checks before anything is created: a ``UserError`` for the first that would stall the run.

    Returns the ``kubernetes:`` settings the run is rendered with: the namespace's ``default``
    LocalQueue becomes ``kueue_queue`` where the spec names none, since Kueue's webhook
    would queue the Jobs there anyway and the gating must know it.
    """
    facts = gather(cluster, k8s)
    queued = _queued(k8s, facts)
    if queued.kueue_queue != k8s.kueue_queue:
        print(f"preflight: namespace {facts.namespace} has a LocalQueue named default: Kueue queues the run there",
              file=sys.stderr)
    checks = node_checks(facts, queued) + spec_checks(facts, queued, render_run(spec, run_id, queued))
    # An old server drops the Jobs' fields it has off instead of refusing them, so its version is checked. A
    # server that does not say its version is no read the account was refused: not listed as skipped below.
    if facts.version is not None:
        checks.insert(0, version_check(facts))
    for check in checks:
        if check.stalls:
            raise UserError(f"preflight: {check.detail} (--no-preflight submits anyway)")
    skipped = [c.name for c in checks if c.state == SKIPPED]
    if skipped:
        print(f"preflight: not checked (not readable with your account): {', '.join(skipped)}", file=sys.stderr)
    return queued


def lines(checks: list[Check]) -> list[str]:
    width = max((len(c.name) for c in checks), default=0)
    return [f"{c.state:<9}  {c.name:<{width}}  {c.detail}" for c in checks]


def to_json(checks: list[Check]) -> str:
    return json.dumps({"ready": not any(c.state == NOT_READY for c in checks),
                       "checks": [c.to_dict() for c in checks]}, indent=2)
