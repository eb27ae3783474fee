"""Kueue, as the fake API server (tests/support/fake_k8s.py) plays it for batch/v1 Jobs.

Modelled on Kueue's documented behaviour (kueue.sigs.k8s.io: concepts/local_queue,
cluster_queue, admission; the Job integration's webhook), reduced to what decides
whether a run's Jobs start:

* **the create-time webhook**: a Job without the ``kueue.x-k8s.io/queue-name`` label, in a
  namespace with a LocalQueue named ``default``, gets ``queue-name: default``
  (LocalQueueDefaulting); a Job carrying the label is made ``suspend: true``;
* **suspend ownership**: a queued Job that is not admitted stays suspended (someone
  un-suspending it is suspended again), and its queue-name label may change only while
  it is suspended (the webhook refuses it otherwise, 422);
* **admission**: a queued, suspended Job is admitted (un-suspended) when its LocalQueue
  exists, points to a ClusterQueue that exists, the ClusterQueue's ``resourceGroups``
  cover every resource its pods request (``coveredResources``), and the ClusterQueue's
  ``nominalQuota`` of the first flavor holds the Job's usage (requests x parallelism) on
  top of what it has admitted. Else the Job waits with the reason Kueue would write in its
  Workload's ``QuotaReserved`` condition (``pending``), e.g. ``resource ephemeral-storage
  unavailable in ClusterQueue``. A Job that ended (Complete or Failed) releases its quota.

The controller is event-driven, as Kueue's reconcilers are: it looks again when something
that decides admission changes (``wake``: a Job created, patched, ended or deleted, a queue
added; tests/support/fake_k8s.py calls it), not on a clock. A slow fallback look
(``FALLBACK``) covers what a test changes behind the API's back.

Not modelled: Workload objects, flavors beyond the first, cohorts and borrowing,
preemption, fair sharing, admission checks, ``manageJobsWithoutQueueName: true``,
partial admission, priorities (docs/testing.md lists these).
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from fake_k8s import FakeCluster

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
API = "kueue.x-k8s.io/v1beta1"
#: Seconds between two looks when nothing woke the controller (a test that edits the store directly).
FALLBACK = 0.5


def _quantity(value: Any) -> Decimal:
    from launcher.kubernetes.section import parse_quantity

    return parse_quantity(str(value))


def cluster_queue(name: str, quotas: dict[str, str], flavor: str = "default-flavor") -> dict:
    """A ClusterQueue with one resource group and one flavor: ``coveredResources`` = the quotas' keys."""
    return {"apiVersion": API, "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {}, "resourceGroups": [{
                "coveredResources": list(quotas),
                "flavors": [{"name": flavor, "resources": [{"name": r, "nominalQuota": q}
                                                           for r, q in quotas.items()]}]}]}}


class FakeKueue:
    """Kueue's webhook and admission for the fake's Jobs; ``installed`` False: no Kueue on the cluster."""

    def __init__(self, fake: "FakeCluster"):
        self.fake = fake
        self.installed = False
        self.local_queues: dict[tuple[str, str], dict] = {}
        self.cluster_queues: dict[str, dict] = {}
        #: (namespace, Job) -> the usage Kueue admitted it with.
        self.admitted: dict[tuple[str, str], dict[str, Decimal]] = {}
        #: (namespace, Job) -> why Kueue does not admit it (its Workload's QuotaReserved message).
        self.pending: dict[tuple[str, str], str] = {}
        #: (namespace, Job) in the order Kueue admitted them.
        self.admissions: list[tuple[str, str]] = []
        #: (namespace, Job) -> time.monotonic() of its admission.
        self.admitted_at: dict[tuple[str, str], float] = {}
        #: Called with (namespace, Job) at each admission, under the fake's lock (a test's probe).
        self.on_admit: Callable[[tuple[str, str]], None] | None = None
        self._thread: threading.Thread | None = None
        self._woken = threading.Event()

    def install(self) -> None:
        self.installed = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="fake-kueue")
            self._thread.start()
        self.wake()

    def wake(self) -> None:
        """Something admission depends on changed: look again now."""
        self._woken.set()

    def job_touched(self, job: dict) -> None:
        """A stored Job changed (fake_k8s ``touch``: each status change while it runs): wake only when a
        queued Job has ended, which releases its quota."""
        if self.installed and QUEUE_LABEL in (job["metadata"].get("labels") or {}) and _ended(job):
            self.wake()

    def add_local_queue(self, namespace: str, name: str, cluster_queue_name: str) -> None:
        self.install()
        self.local_queues[(namespace, name)] = {
            "apiVersion": API, "kind": "LocalQueue", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue_name}}
        self.wake()

    def add_cluster_queue(self, obj: dict) -> None:
        self.install()
        self.cluster_queues[obj["metadata"]["name"]] = obj
        self.wake()

    # -- the webhook ---------------------------------------------------------------------

    def on_create(self, ns: str, job: dict) -> None:
        """The Job webhook on create: default the queue, suspend a queued Job."""
        if not self.installed:
            return
        labels = job.setdefault("metadata", {}).setdefault("labels", {})
        if QUEUE_LABEL not in labels and (ns, "default") in self.local_queues:
            labels[QUEUE_LABEL] = "default"
        if QUEUE_LABEL in labels:
            job.setdefault("spec", {})["suspend"] = True

    def check_update(self, old: dict, new: dict) -> list[tuple[str, str]]:
        """The webhook on update: the queue of a running (un-suspended) Job cannot change."""
        if not self.installed:
            return []
        before = (old["metadata"].get("labels") or {}).get(QUEUE_LABEL)
        after = (new["metadata"].get("labels") or {}).get(QUEUE_LABEL)
        if before is not None and before != after and not old["spec"].get("suspend"):
            return [(f"metadata.labels[{QUEUE_LABEL}]", "Invalid value: field is immutable")]
        return []

    # -- the controller --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.fake.stopping:
            self._woken.wait(FALLBACK)
            self._woken.clear()  # before the look: a change made during it wakes the next one
            if self.fake.stopping:
                return
            try:
                self.tick()
            except Exception:  # a test's half-made object: look again at the next change or fallback
                pass

    def tick(self) -> None:
        with self.fake.lock:
            jobs = [(ns, name, job) for (r, ns, name), job in self.fake.objects.items() if r == "jobs"]
            for key in [k for k in self.admitted if ("jobs", *k) not in self.fake.objects]:
                self.admitted.pop(key)
            for ns, name, job in jobs:
                queue = (job["metadata"].get("labels") or {}).get(QUEUE_LABEL)
                if queue is None:
                    continue
                key = (ns, name)
                if _ended(job):
                    self.admitted.pop(key, None)
                elif key in self.admitted:
                    continue
                elif not job["spec"].get("suspend"):
                    self._set_suspend(ns, name, job, True)  # Kueue owns suspend until it admits
                else:
                    self._try_admit(ns, name, job, queue)

    def _set_suspend(self, ns: str, name: str, job: dict, value: bool) -> None:
        job["spec"]["suspend"] = value
        self.fake.touch(job)
        run = self.fake.runs.get((ns, name))
        if run is not None:
            run.kick()

    def _try_admit(self, ns: str, name: str, job: dict, queue: str) -> None:
        key = (ns, name)
        local = self.local_queues.get((ns, queue))
        if local is None:
            self.pending[key] = f"LocalQueue {queue} doesn't exist"
            return
        cq_name = local["spec"]["clusterQueue"]
        cq = self.cluster_queues.get(cq_name)
        if cq is None:
            self.pending[key] = f"ClusterQueue {cq_name} doesn't exist"
            return
        usage = job_usage(job)
        quota = first_flavor_quota(cq)
        for resource in sorted(usage):
            if resource not in quota:
                self.pending[key] = (f"couldn't assign flavors to pod set main: resource {resource} "
                                     f"unavailable in ClusterQueue")
                return
        used = {r: sum((u.get(r, Decimal(0)) for k, u in self.admitted.items()
                        if self._cluster_queue_of(k) == cq_name), Decimal(0)) for r in usage}
        for resource, amount in sorted(usage.items()):
            if used[resource] + amount > quota[resource]:
                self.pending[key] = (f"couldn't assign flavors to pod set main: insufficient unused quota for "
                                     f"{resource} in flavor, {used[resource] + amount - quota[resource]} more needed")
                return
        self.pending.pop(key, None)
        self.admitted[key] = usage
        self.admissions.append(key)
        self.admitted_at[key] = time.monotonic()
        if self.on_admit is not None:
            self.on_admit(key)
        self._set_suspend(ns, name, job, False)

    def _cluster_queue_of(self, key: tuple[str, str]) -> str | None:
        job = self.fake.objects.get(("jobs", *key))
        queue = ((job or {}).get("metadata", {}).get("labels") or {}).get(QUEUE_LABEL)
        local = self.local_queues.get((key[0], queue or ""))
        return local["spec"]["clusterQueue"] if local else None


def _ended(job: dict) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def job_usage(job: dict) -> dict[str, Decimal]:
    """What Kueue counts for a Job: each container's requests, times the Job's parallelism."""
    pods = Decimal(job["spec"].get("parallelism", 1))
    usage: dict[str, Decimal] = {}
    for container in job["spec"]["template"]["spec"].get("containers", []):
        for resource, value in ((container.get("resources") or {}).get("requests") or {}).items():
            usage[resource] = usage.get(resource, Decimal(0)) + _quantity(value) * pods
    return usage


def first_flavor_quota(cq: dict) -> dict[str, Decimal]:
    """Each covered resource's nominal quota in its group's first flavor."""
    quota: dict[str, Decimal] = {}
    for group in cq["spec"].get("resourceGroups", []):
        flavors = group.get("flavors") or [{}]
        nominal = {r["name"]: _quantity(r["nominalQuota"]) for r in flavors[0].get("resources", [])}
        for resource in group.get("coveredResources", []):
            quota[resource] = nominal.get(resource, Decimal(0))
    return quota
