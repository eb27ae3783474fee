"""The Job controller and the Job validation of the fake API server (tests/support/fake_k8s.py).

Modelled on the behaviour documented for, and implemented by, kubernetes/kubernetes
(pkg/controller/job, pkg/apis/batch/validation, pkg/apis/batch/v1 defaults), reduced to
what our rendered Jobs use:

* defaults on create: ``completions``/``parallelism`` 1, ``completionMode`` NonIndexed,
  ``suspend`` false, ``backoffLimit`` 6, or the largest int32 when ``backoffLimitPerIndex``
  is set, ``podReplacementPolicy`` Failed with a pod failure policy, else TerminatingOrFailed;
* the validation our design depends on (``validate_job``), answered 422 as the server does;
* one controller thread per Job (``JobRun``), woken by a change to the Job, a pod's end or
  the next deadline or back-off rather than a clock: no pod while ``suspend`` is true (pods of a
  Job suspended again are deleted, without counting as failures); ``startTime`` set when
  it runs, reset on each resume; up to ``parallelism`` pods at once, one per pending
  index; ``activeDeadlineSeconds`` from ``startTime`` (the Job fails with
  ``DeadlineExceeded``, its pods are killed); the pod failure policy, rule by rule, on the
  container's exit code and on pod conditions (``DisruptionTarget``), with the actions
  Ignore (retry, not counted), Count, FailIndex and FailJob; ``backoffLimitPerIndex``,
  ``maxFailedIndexes`` and ``backoffLimit``; the conditions ``FailureTarget`` /
  ``SuccessCriteriaMet`` before ``Failed`` / ``Complete``.

The retry back-off: after a counted failure an index's next pod waits ``backoff_seconds x
2^(failures - 1)``, at most 36 times that (10 s doubling to 6 min on a real controller;
``FakeCluster.backoff_seconds`` is 0 unless a test sets it). Disruptions (Ignore) are not delayed.

Not modelled (docs/testing.md lists these): the back-off's reset after a success and its
sharing across the indexes of a non-indexed Job, ``podReplacementPolicy`` beyond "the old pod has ended",
``successPolicy``, elastic Indexed Jobs, ``managedBy``, pod ``ready``/``terminating``
counts, finalizers and the uncounted-pods bookkeeping.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_k8s import FakeCluster

MAX_INT32 = 2**31 - 1
#: The API server's bound on completions and parallelism of an Indexed Job with backoffLimitPerIndex.
MAX_PER_INDEX_COMPLETIONS = 100_000
#: Spec fields a PATCH may change on an existing Job (the rest are immutable, as on a real server).
MUTABLE = {"suspend", "parallelism", "activeDeadlineSeconds", "ttlSecondsAfterFinished"}
#: Seconds between two looks at a Job when nothing woke its controller (a test that edits the store directly).
FALLBACK = 0.5


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def index_ranges(indexes: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5", as the Job controller writes completedIndexes."""
    parts, items = [], sorted(set(indexes))
    while items:
        start = end = items.pop(0)
        while items and items[0] == end + 1:
            end = items.pop(0)
        parts.append(str(start) if start == end else f"{start}-{end}")
    return ",".join(parts)


# -- defaults and validation ----------------------------------------------------------------

def default_job(spec: dict[str, Any]) -> None:
    """The API server's defaults for a Job spec (pkg/apis/batch/v1 defaults), in place."""
    if spec.get("completionMode") != "Indexed":
        spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("backoffLimit", MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)


def validate_job(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each rule of the real validation that a Job spec breaks."""
    errors: list[tuple[str, str]] = []
    pod = spec.get("template", {}).get("spec", {})
    restart = pod.get("restartPolicy")
    indexed = spec.get("completionMode") == "Indexed"
    per_index = spec.get("backoffLimitPerIndex")
    if restart not in ("OnFailure", "Never"):
        errors.append(("spec.template.spec.restartPolicy", f'Unsupported value: "{restart}"'))
    if indexed and spec.get("completions") is None:
        errors.append(("spec.completions", "Required value: when completion mode is Indexed"))
    if per_index is not None and not indexed:
        errors.append(("spec.backoffLimitPerIndex", "Invalid value: requires indexed completion mode"))
    if spec.get("maxFailedIndexes") is not None:
        if per_index is None:
            errors.append(("spec.maxFailedIndexes", "Invalid value: requires the backoffLimitPerIndex to be set"))
        elif spec["maxFailedIndexes"] > (spec.get("completions") or 0):
            errors.append(("spec.maxFailedIndexes", "Invalid value: must be less than or equal to completions"))
    if per_index is not None and (spec.get("completions") or 0) > MAX_PER_INDEX_COMPLETIONS:
        errors.append(("spec.completions", f"Invalid value: must be less than or equal to "
                                           f"{MAX_PER_INDEX_COMPLETIONS} when backoffLimitPerIndex is specified"))
    if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
        errors.append(("spec.activeDeadlineSeconds", "Invalid value: must be greater than 0"))
    policy = spec.get("podFailurePolicy")
    if policy:
        if restart != "Never":
            errors.append(("spec.template.spec.restartPolicy", "Invalid value: only \"Never\" is supported when "
                                                               "podFailurePolicy is specified"))
        if spec.get("podReplacementPolicy") not in (None, "Failed"):
            errors.append(("spec.podReplacementPolicy", "Invalid value: must be Failed when podFailurePolicy "
                                                        "is specified"))
        containers = {c["name"] for c in pod.get("containers", [])}
        for i, rule in enumerate(policy.get("rules", [])):
            where = f"spec.podFailurePolicy.rules[{i}]"
            if rule.get("action") == "FailIndex" and per_index is None:
                errors.append((f"{where}.action", "Invalid value: requires the backoffLimitPerIndex to be set"))
            codes = rule.get("onExitCodes")
            if codes:
                if codes.get("operator") == "In" and 0 in codes.get("values", []):
                    errors.append((f"{where}.onExitCodes.values", "Invalid value: 0: must not be 0 for the In "
                                                                  "operator"))
                if codes.get("containerName") and codes["containerName"] not in containers:
                    errors.append((f"{where}.onExitCodes.containerName", "Invalid value: must be one of the "
                                                                         "container or initContainer names"))
            if bool(codes) == bool(rule.get("onPodConditions")):
                errors.append((where, "Invalid value: specifying one of OnExitCodes and OnPodConditions is "
                                      "required"))
    return errors


def validate_job_update(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    """A PATCH may change only the mutable fields of a Job's spec (labels and annotations are free)."""
    return [(f"spec.{field}", "Invalid value: field is immutable")
            for field in sorted(set(old) | set(new)) if field not in MUTABLE and old.get(field) != new.get(field)]


# -- the pod failure policy -------------------------------------------------------------

def failure_action(job_spec: dict[str, Any], pod: dict[str, Any], exit_code: int) -> str:
    """The action of the first rule matching the failed pod (its exit code or its conditions), else Count."""
    conditions = {(c.get("type"), c.get("status")) for c in (pod.get("status") or {}).get("conditions") or []}
    for rule in (job_spec.get("podFailurePolicy") or {}).get("rules", []):
        codes = rule.get("onExitCodes")
        if codes:
            hit = exit_code in codes["values"]
            if exit_code != 0 and hit == (codes.get("operator", "In") == "In"):
                return rule["action"]
        for pattern in rule.get("onPodConditions") or []:
            if (pattern["type"], pattern.get("status", "True")) in conditions:
                return rule["action"]
    return "Count"


# -- the controller -----------------------------------------------------------------------

class JobRun:
    """The Job controller's work on one Job, on a thread of its own.

    Event-driven, as the real controller's sync is: the thread looks at the Job when something
    woke it (``kick``: the Job patched, suspended or resumed by Kueue; ``wake``: the Job deleted,
    the cluster stopping; tests/support/fake_k8s.py and fake_kueue.py call them), when one of its
    pods ended, or at the next time it waits for (``activeDeadlineSeconds``, the end of an
    index's retry back-off), not on a clock. A slow fallback look (``FALLBACK``) covers what a
    test changes behind the API's back. The status is written only where a value changed (as
    on a real server, where a no-op update leaves ``resourceVersion`` be).
    """

    def __init__(self, fake: "FakeCluster", ns: str, name: str):
        self.fake, self.ns, self.name = fake, ns, name
        self.busy = True  # until it has looked at the Job at least once
        self.done = False  # the Job ended, or is gone: the thread has returned
        self.uid: str | None = None  # the Job this run controls (one recreated under its name is another)
        self.results: queue.Queue = queue.Queue()
        self.running: dict[str, int | None] = {}  # pod -> index, with a live worker thread
        self.parked: dict[str, int | None] = {}  # pod -> index, left running by the runner
        self.killed: set[str] = set()
        #: index -> time.monotonic() before which its next pod may not start (the retry back-off).
        self.not_before: dict[int | None, float] = {}
        self._woken = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"job-{name}")

    def start(self) -> None:
        self.thread.start()

    def kick(self) -> None:
        """The Job changed (a patch, Kueue's suspend): busy until the loop has seen it."""
        self.busy = True
        if self.done:  # nothing left to see (read after the write: the loop sets done before busy)
            self.busy = False
        self._woken.set()

    def wake(self) -> None:
        """Look at the Job now (it was deleted, the cluster is stopping)."""
        self._woken.set()

    # -- the loop --------------------------------------------------------------------

    def _stored(self) -> dict | None:
        """The Job in the store, under the fake's lock; None once it is gone or replaced."""
        job = self.fake.objects.get(("jobs", self.ns, self.name))
        if job is None or (self.uid is not None and job["metadata"].get("uid") != self.uid):
            return None
        return job

    def _job(self) -> dict | None:
        with self.fake.lock:
            job = self._stored()
            return copy.deepcopy(job) if job else None

    def _status(self, **status: Any) -> None:
        """Sets these status fields, touching the Job only if one of them changed."""
        with self.fake.lock:
            job = self._stored()
            if job is not None:
                missing = object()
                if any(job["status"].get(key, missing) != value for key, value in status.items()):
                    job["status"].update(status)
                    self.fake.touch(job)

    def _wait(self, until: float) -> None:
        """Until woken, or the time.monotonic() ``until``, or the fallback look."""
        self._woken.wait(max(0.0, min(until - time.monotonic(), FALLBACK)))

    def _finish(self) -> None:
        self.done = True
        self.busy = False

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._finish()

    def _loop(self) -> None:
        job = self._job()
        if job is None:
            return
        self.uid = job["metadata"].get("uid")
        spec = job["spec"]
        indexed = spec["completionMode"] == "Indexed"
        total = spec["completions"] or 1
        pending: list[int | None] = list(range(total)) if indexed else [None] * total
        completed: list[int] = []
        failed_indexes: list[int] = []
        index_failures: dict[int | None, int] = {}
        failed = succeeded = 0
        deadline_at: float | None = None
        while True:
            self._woken.clear()  # before the look: a change made during it wakes the next one
            job = self._job()
            if job is None or self.fake.stopping:
                self._kill_all("the Job is gone")
                return
            spec = job["spec"]
            if spec.get("suspend"):
                pending = [i for i in self.running.values()] + [i for i in self.parked.values()] + pending
                self._kill_all("the Job was suspended", delete=True)
                if deadline_at is not None or job["status"].get("startTime"):
                    self._status(startTime=None, active=0)
                deadline_at = None
                self.busy = False
                self._wait(float("inf"))
                continue
            if deadline_at is None:
                started = time.monotonic()
                limit = spec.get("activeDeadlineSeconds")
                deadline_at = started + limit if limit else float("inf")
                self._status(startTime=now(), active=0, succeeded=succeeded, failed=failed, ready=0,
                             **({"completedIndexes": index_ranges(completed),
                                 "failedIndexes": index_ranges(failed_indexes)} if indexed else {}))
            if time.monotonic() >= deadline_at:
                return self._end(("DeadlineExceeded", "Job was active longer than specified deadline"))
            wake_at = deadline_at
            while pending and len(self.running) + len(self.parked) < spec.get("parallelism", 1):
                ready = [i for i, index in enumerate(pending) if self.not_before.get(index, 0) <= time.monotonic()]
                if not ready:  # every pending index is in its retry back-off: look again when the first ends
                    wake_at = min(wake_at, *(self.not_before[index] for index in pending))
                    break
                self._start_pod(spec, pending.pop(ready[0]))
            self._status(active=len(self.running) + len(self.parked))
            self.busy = bool(self.running) or bool(pending and spec.get("parallelism", 1))
            try:
                pod, index, exit_code = self.results.get_nowait()
            except queue.Empty:
                if not pending and not self.running and not self.parked:
                    if failed_indexes:
                        return self._end(("FailedIndexes", "Job has failed indexes"))
                    return self._end(None)
                self._wait(wake_at)
                continue
            self.running.pop(pod, None)
            if pod in self.killed:
                continue
            if exit_code is None:
                self.parked[pod] = index
                continue
            if exit_code == 0:
                succeeded += 1
                completed.append(index or 0)
                self._status(succeeded=succeeded, **({"completedIndexes": index_ranges(completed)} if indexed else {}))
                continue
            action = failure_action(spec, self.fake.get("pods", pod, self.ns) or {}, exit_code)
            if action == "Ignore":
                pending.insert(0, index)
                continue
            failed += 1
            self._status(failed=failed)
            if action == "FailJob":
                return self._end(("PodFailurePolicy", f"Container landscape for pod {self.ns}/{pod} failed with "
                                                      f"exit code {exit_code} matching FailJob rule"))
            index_failures[index] = index_failures.get(index, 0) + 1
            per_index = spec.get("backoffLimitPerIndex")
            if action == "FailIndex" or (per_index is not None and index_failures[index] > per_index):
                failed_indexes.append(index)  # type: ignore[arg-type]
                self._status(failedIndexes=index_ranges(failed_indexes))
                max_failed = spec.get("maxFailedIndexes")
                if max_failed is not None and len(failed_indexes) > max_failed:
                    return self._end(("MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number "
                                                                  "of failed indexes"))
            elif failed > spec.get("backoffLimit", 6):
                return self._end(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
            else:
                # the controller's back-off before the index's next pod: base x 2^(failures - 1), at most 36 x base
                # (10 s doubling to 6 min on a real controller; FakeCluster.backoff_seconds, 0 by default)
                base = self.fake.backoff_seconds
                self.not_before[index] = time.monotonic() + min(base * 2 ** (index_failures[index] - 1), 36 * base)
                pending.insert(0, index)

    def _start_pod(self, spec: dict[str, Any], index: int | None) -> None:
        with self.fake.lock:
            if self._stored() is None:
                return
            pod = self.fake.new_pod(self.ns, self.name, spec, index)
        self.running[pod] = index

        def work() -> None:
            try:
                code = self.fake.run_pod(self.ns, pod)
            except Exception as err:  # a runner's fault: the pod fails, the test sees it in the log
                self.fake.append_log(pod, f"fake runner: {err!r}\n")
                self.fake.end_pod(pod, 1, self.ns)
                code = 1
            self.results.put((pod, index, code))
            self._woken.set()

        threading.Thread(target=work, daemon=True, name=f"pod-{pod}").start()

    def _kill_all(self, why: str, delete: bool = False) -> None:
        for pod in list(self.running) + list(self.parked):
            self.killed.add(pod)
            self.fake.kill_pod(self.ns, pod, why, delete=delete)
        self.running.clear()
        self.parked.clear()

    def _end(self, failure: tuple[str, str] | None) -> None:
        """The Job's end: kill what runs, then the interim condition and the final one, as the controller."""
        self._kill_all(failure[1] if failure else "the Job completed")
        first, last = ("FailureTarget", "Failed") if failure else ("SuccessCriteriaMet", "Complete")
        reason, message = failure or ("CompletionsReached", "Reached expected number of succeeded pods")
        conditions = [{"type": t, "status": "True", "reason": reason, "message": message,
                       "lastProbeTime": now(), "lastTransitionTime": now()} for t in (first, last)]
        self._status(active=0, conditions=conditions, **({} if failure else {"completionTime": now()}))
        with self.fake.lock:
            job = self._stored()
            ttl = job and job["spec"].get("ttlSecondsAfterFinished")
        if ttl is not None:  # the TTL-after-finished controller's part
            self.fake.expire(self.ns, self.name, ttl)
