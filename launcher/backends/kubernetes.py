"""The cluster backend: a run as Jobs on Kubernetes (``launcher.kubernetes`` renders and reads them).

``plan`` renders the run's objects once (``launcher.kubernetes.render``, pure); ``submit``
has the API server check every one in a dry run before it writes ``spec.yaml`` and creates
them, the run's ConfigMap first and, once its Jobs exist, owned by them
(``launcher.kubernetes.ownership``). The run is found again by its ConfigMap and its label
(``landscape.run=<run>``); its progress and outputs are read from the storage its spec names,
and it is Complete when its merge Job completed: the merge pod exits only once it has written
every output, ``report.json`` last (``launcher.backends.done``); ``pull`` checks storage itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from landscape_job.base.errors import StageError, UserError
from landscape_job.spec.sections import Spec
from landscape_job.storage import Storage, run_storage

from launcher.backends.base import Plan, StagePlan, poll_until_ended
from launcher.backends.done import run_missing
from launcher.backends.pulling import pull_run
from launcher.commands.cluster_run import jobs_by_stage, read_progress, run_config_map, storage_of
from launcher.commands.follow import stop_error
from launcher.commands.views import done_lines, failed_parts, failed_pod_heading
from launcher.kubernetes.job_state import newest, pod_index, spec_of
from launcher.kubernetes.names import STAGE_LABEL, check_run_id, object_names, run_selector
from launcher.kubernetes.ownership import owned_by_jobs, with_owner
from launcher.kubernetes.pod_state import Event, PodView
from launcher.kubernetes.render import CONTAINER, STAGES
from launcher.run_status import RunRow, RunStatus, cluster_rows, cluster_status

if TYPE_CHECKING:
    from launcher.kubernetes.cluster import Cluster
    from launcher.kubernetes.section import KubernetesSpec

#: Lines of a failed pod's log shown under it by ``status``.
LOG_LINES = 10
#: Pods per stage whose events are fetched (one request each), besides the stage's Job.
EVENT_PODS = 3


def _preflighted(cluster: Cluster, spec: Spec, run_id: str, k8s: KubernetesSpec,
                 objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's objects after submit's preflight, rendered again where it found the run's queue
    (a ``default`` LocalQueue) that the plan did not know."""
    from launcher.kubernetes.doctor import preflight
    from launcher.kubernetes.render import render_run

    checked = preflight(cluster, spec, k8s, run_id)
    return objects if checked == k8s else render_run(spec, run_id, checked)


class KubernetesBackend:
    """Jobs on the cluster of a kubeconfig (its current context, or ``context``), in ``namespace``."""

    name = "cluster"

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None,
                 all_namespaces: bool = False, selector: str | None = None, cascade: str = "background",
                 server_dry_run: bool = False, follow: bool = False, interval: float = 5.0, preflight: bool = True):
        self.kubeconfig, self.context, self.namespace = kubeconfig, context, namespace
        #: submit checks the cluster's nodes, claims and queue first (launcher.kubernetes.doctor.preflight)
        self.preflight = preflight
        self.all_namespaces, self.selector, self.cascade = all_namespaces, selector, cascade
        self.server_dry_run, self.follow, self.interval = server_dry_run, follow, interval
        self._where = f"in namespace {namespace}" if namespace else "on the cluster"
        #: The namespace of the runs this backend planned (``kubernetes.namespace``), where ``-n`` is not given.
        self._planned: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> KubernetesBackend:
        if getattr(args, "workers", None) is not None:
            raise UserError("--workers: only with --local")
        if getattr(args, "run_id", None):
            check_run_id(args.run_id)  # a name Kubernetes objects can carry, before any I/O
        return cls(getattr(args, "kubeconfig", None), getattr(args, "context", None), getattr(args, "namespace", None),
                   bool(getattr(args, "all_namespaces", False)), getattr(args, "selector", None) or None,
                   getattr(args, "cascade", None) or "background", bool(getattr(args, "server_dry_run", False)),
                   bool(getattr(args, "wait", False)), getattr(args, "interval", None) or 5.0,
                   not getattr(args, "no_preflight", False))

    def where(self) -> str:
        return self._where

    def connect(self, namespace: str | None = None) -> Cluster:
        """The cluster of the flags; ``namespace``: the spec's, below ``-n``."""
        from launcher.kubernetes.cluster import Cluster

        cluster = Cluster.connect(self.kubeconfig, self.context, self.namespace or namespace or self._planned)
        self._where = f"in namespace {cluster.namespace}"
        return cluster

    # -- submit -------------------------------------------------------------------------------

    def _k8s(self, spec: Spec) -> KubernetesSpec:
        from launcher.kubernetes.section import parse_kubernetes

        k8s = parse_kubernetes(spec.kubernetes)
        return dataclasses.replace(k8s, namespace=self.namespace) if self.namespace else k8s

    def checked_spec(self, path: Path, storage: str | None = None) -> Spec:
        """The spec, its ``kubernetes:`` section and what the cluster refuses of it, then the inputs where they
        are on this machine (on a cluster they may be pod paths: the pods check those) and the storage."""
        from landscape_job.spec.parse import load_spec

        from launcher.commands.submit import check_inputs_here
        from launcher.kubernetes.render import check_cluster_spec
        from launcher.local.runner import check_storage

        spec = load_spec(path, storage_override=storage, check_files=False)
        check_cluster_spec(spec, self._k8s(spec))  # every render mistake before any I/O
        print(check_inputs_here(spec), file=sys.stderr)
        check_storage(spec)
        return spec

    def plan(self, spec: Spec, run_id: str) -> Plan:
        from launcher.kubernetes.render import render_run

        k8s = self._k8s(spec)
        objects = tuple(render_run(spec, run_id, k8s))
        self._planned = k8s.namespace  # the backend that planned a run finds it again
        stages = []
        for stage in STAGES:
            job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["labels"].get(STAGE_LABEL) == stage)
            container = job["spec"]["template"]["spec"]["containers"][0]
            stages.append(StagePlan(stage, (*container.get("command", []), *container.get("args", [])),
                                    int(job["spec"].get("completions") or 1), f"Job {job['metadata']['name']}"))
        return Plan(self.name, run_id, run_storage(spec.storage, run_id).url, spec.hash, tuple(stages), spec, objects,
                    {"namespace": k8s.namespace, "image": k8s.image})

    def submit(self, plan: Plan) -> str:
        """The server checks every object (RBAC, validation, names) in a dry run; then ``spec.yaml`` is written
        and the objects created: the ConfigMap first, owning the Role and RoleBinding, and once the Jobs
        exist, owned by them (``launcher.kubernetes.ownership``: the run goes away with its Jobs)."""
        from launcher.commands.follow import follow
        from launcher.local.runner import open_run

        spec, run_id, objects = plan.spec, plan.run_id, list(plan.objects)
        namespace = plan.options["namespace"]
        cluster = self.connect(namespace)
        try:
            if self.preflight:  # what would stall the run, refused before anything exists (launcher doctor)
                objects = _preflighted(cluster, spec, run_id, self._k8s(spec), objects)
            names = object_names(run_id, spec.compute.shards)
            taken = f"run {run_id} already exists in namespace {namespace}; choose another --run-id"
            checked = cluster.create(objects[0], dry_run=True, on_409=taken)
            dry_uid = checked["metadata"].get("uid") or "00000000-0000-0000-0000-000000000000"
            for obj in objects[1:]:
                # A RoleBinding's dry run would need its Role to exist (RBAC's escalation check reads it).
                if obj["kind"] != "RoleBinding":
                    cluster.create(_owned(obj, names["spec"], dry_uid), dry_run=True, on_409=taken)
            if self.server_dry_run:
                jobs = sum(o["kind"] == "Job" for o in objects)
                return (f"server dry run: the API server at {cluster.host} accepts the ConfigMap, the pods' Role and "
                        f"{jobs} Jobs of run {run_id} in namespace {namespace}; nothing was created or written")
            run = open_run(spec, run_id)
            uid = cluster.create(objects[0], on_409=taken)["metadata"]["uid"]
            created: list[dict[str, Any]] = []
            try:
                for obj in objects[1:]:  # the Role and RoleBinding first: prepare releases the rest through them
                    made = cluster.create(_owned(obj, names["spec"], uid), on_409=taken)
                    if obj["kind"] == "Job":
                        created.append(made)
            except (UserError, StageError) as err:
                raise type(err)(f"{err} ({_undo(cluster, names['spec'], created, namespace)})") from None
            _own_by_jobs(cluster, names["spec"], created, run_id)
            print(f"run {run_id}: {spec.grid.size} points in {spec.compute.shards} shards, namespace {namespace}, "
                  f"storage {run.url}\n"
                  f"  kubectl get jobs,pods -n {namespace} -l {run_selector(run_id)}\n"
                  f"  launcher status {run_id} -n {namespace}\n"
                  f"  launcher pull {run_id} -n {namespace}", flush=True)
            if self.follow:
                follow(cluster, run, run_id, spec.compute.shards, spec.grid.size, self.interval)
                return done_lines(run.url, series=spec.series is not None)
            return ""
        finally:
            cluster.close()

    # -- a run on the cluster -----------------------------------------------------------------

    def _run(self, cluster: Cluster, run: str) -> tuple[dict[str, Any], Storage]:
        """The run's spec (from its ConfigMap: a UserError naming the namespace if absent) and its storage."""
        raw = spec_of(run_config_map(cluster, run))
        return raw, run_storage(storage_of(raw.get("storage"), Path.cwd()), run)

    def storage(self, run: str) -> Storage:
        cluster = self.connect()
        try:
            return self._run(cluster, run)[1]
        finally:
            cluster.close()

    def status(self, run: str) -> RunStatus:
        """From the run's ConfigMap, Jobs, pods, events and storage; a failed pod's last log lines with it."""
        cluster = self.connect()
        try:
            status, pods = cluster_run_status(cluster, run, *self._run(cluster, run))
            tails = []
            for what, pod in _failed_pods(status, pods):
                tails.append(failed_pod_heading(what, pod))
                if pod:
                    tails += _log_tail(cluster, pod["metadata"]["name"])
            return dataclasses.replace(status, failure_logs=tuple(tails))
        finally:
            cluster.close()

    def wait(self, run: str, timeout: float | None = None, interval: float = 5.0) -> RunStatus:
        """Polls the run's Jobs (and once merge completed, storage) until it ends."""
        cluster = self.connect()
        try:
            raw, storage = self._run(cluster, run)
            shards = int((raw.get("compute") or {}).get("shards", 1))

            def read() -> RunStatus:
                jobs = jobs_by_stage(cluster, run)
                missing = run_missing(storage) if not jobs else None  # Jobs gone: storage says if it finished
                return cluster_status(run, cluster.namespace, storage.url, jobs, [], {}, {}, shards, missing,
                                      series="series" in raw, error=stop_error(run, jobs))

            return poll_until_ended(read, run, timeout, interval)
        finally:
            cluster.close()

    def list(self) -> list[RunRow]:
        """The runs in the namespace (``all_namespaces``: every one), narrowed by ``selector``."""
        cluster = self.connect()
        try:
            try:
                config_maps = cluster.list_runs(self.selector or "", all_namespaces=self.all_namespaces)
                jobs = cluster.list_jobs("app.kubernetes.io/part-of=landscape", all_namespaces=self.all_namespaces)
            except UserError as err:
                if self.all_namespaces and str(err).startswith("forbidden"):
                    raise UserError("-A: forbidden: listing every namespace needs list on configmaps and jobs "
                                    "cluster-wide (a ClusterRole); the landscape-launcher Role of k8s/base grants it "
                                    "in one namespace: use -n") from None
                raise
            if self.all_namespaces:
                self._where = "in any namespace"
        finally:
            cluster.close()
        return cluster_rows(config_maps, jobs)

    def pull(self, run: str, dest: Path | None = None, shards: bool = False) -> Path:
        return pull_run(self.storage(run), run, dest, shards)

    def cancel(self, run: str) -> str:
        """Deletes the run's Roles, its ConfigMap, then its Jobs (each found by label or name: a ``render |
        kubectl apply`` run has no owners); the pods go with their Jobs. Dependents first, so that each
        delete is this command's own and none races the garbage collector (``launcher.kubernetes.ownership``:
        deleting the Jobs first would have the collector take the ConfigMap and Roles meanwhile)."""
        cluster = self.connect()
        try:
            propagation = self.cascade.capitalize()
            jobs = cluster.list_jobs(run_selector(run))
            names = object_names(run, 1)
            config_map = cluster.get_config_map(names["spec"])
            if not jobs and config_map is None:
                raise UserError(f"run {run}: no configmap {names['spec']} in namespace {cluster.namespace}, and "
                                f"no Jobs labelled {run_selector(run)} (launcher list shows the runs there; -n "
                                f"picks another namespace)")
            notes, rbac = [], []
            try:
                rbac = cluster.delete_rbac(run_selector(run))
            except UserError as err:  # an account that may not touch Roles: the run is stopped all the same
                notes.append(f"note: the run's Roles, if any, are left: {err}")
            gone = config_map is not None and cluster.delete_config_map(names["spec"], propagation=propagation,
                                                                        missing_ok=True)
            deleted = [f"job/{j['metadata']['name']}" for j in jobs
                       if cluster.delete_job(j["metadata"]["name"], propagation)]
            deleted += rbac + ([f"configmap/{names['spec']}"] if gone else [])
            return "\n".join(notes + [
                f"run {run} cancelled in namespace {cluster.namespace}: deleted {', '.join(deleted) or 'nothing'}"
                f"; their pods are garbage-collected. Its storage is kept: submit again with --run-id {run} "
                f"to resume"])
        finally:
            cluster.close()

    def logs(self, run: str, stage: str | None = None, shard: int | None = None, tail: int | None = None,
             follow: bool = False, previous: bool = False) -> Iterator[str]:
        """Of each stage and shard the newest pod (``previous``: the attempt before), prefixed when several;
        ``tail``: of each pod; ``follow``: every selected pod at once, its lines as they come."""
        from launcher.commands.logs import check_followed, latest_pods, previous_attempts

        cluster = self.connect()
        try:
            selector = run_selector(run) + (f",{STAGE_LABEL}={stage}" if stage else "")
            found = cluster.list_pods(selector)
            chosen = previous_attempts(found, shard) if previous else [(p, False) for p in latest_pods(found, shard)]
            if not chosen:
                what = f" for shard {shard}" if shard is not None else f" in stage {stage}" if stage else ""
                earlier = "no earlier attempts" if previous and found else "no pods"
                raise UserError(f"run {run}: {earlier}{what} in namespace {cluster.namespace} (not started yet, "
                                f"or removed with their Job; see launcher status {run})")
            if follow and len(chosen) > 1:
                check_followed(len(chosen))
                cluster.close()
                return self._followed([pod for pod, _ in chosen], tail)
        except BaseException:
            cluster.close()
            raise
        return self._lines(cluster, chosen, tail, follow)

    @staticmethod
    def _lines(cluster: Cluster, chosen: list[tuple[dict[str, Any], bool]], tail: int | None,
               follow: bool) -> Iterator[str]:
        from launcher.commands.logs import prefix

        try:
            for pod, previous in chosen:
                tag = prefix(pod["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(pod)) \
                    if len(chosen) > 1 else None
                for line in cluster.pod_log(pod["metadata"]["name"], CONTAINER, tail=tail, follow=follow,
                                            previous=previous):
                    yield f"{tag} {line}" if tag else line
        finally:
            cluster.close()

    def _followed(self, pods: list[dict[str, Any]], tail: int | None) -> Iterator[str]:
        """Every pod's log streamed at once, each on a connection of its own (one client's pool would be
        too small for many streams), interleaved and prefixed (``launcher.commands.logs.interleaved``)."""
        from launcher.commands.logs import interleaved, prefix

        def stream(name: str) -> Iterator[str]:
            cluster = self.connect()
            try:
                yield from cluster.pod_log(name, CONTAINER, tail=tail, follow=True)
            finally:
                cluster.close()

        return interleaved([(prefix(p["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(p)),
                             lambda name=p["metadata"]["name"]: stream(name)) for p in pods])


def _owned(obj: dict[str, Any], config_map: str, uid: str) -> dict[str, Any]:
    """The run's Role and RoleBinding as dependents of its ConfigMap; a Job as rendered (no owner: the
    ConfigMap becomes its dependent instead, ``launcher.kubernetes.ownership``)."""
    return obj if obj["kind"] == "Job" else with_owner(obj, "ConfigMap", config_map, uid)


def _own_by_jobs(cluster: Cluster, config_map: str, jobs: list[dict[str, Any]], run_id: str) -> None:
    """Makes the run's ConfigMap (and with it its Role and RoleBinding) a dependent of its Jobs. An account
    that may not patch ConfigMaps (a launcher Role older than this) gets a note: the run runs all the same."""
    try:
        cluster.patch_config_map(config_map, owned_by_jobs(jobs))
    except (UserError, StageError) as err:
        print(f"note: configmap {config_map} is not tied to the run's Jobs, so it and the run's Role stay after "
              f"them ({err}); launcher cancel {run_id} removes them", file=sys.stderr)


def _undo(cluster: Cluster, config_map: str, jobs: list[dict[str, Any]], namespace: str) -> str:
    """Deletes what a failed submit created (the Jobs, then the ConfigMap, which takes its Role and RoleBinding
    along); says what was done, or what to run."""
    try:
        for job in jobs:
            cluster.delete_job(job["metadata"]["name"])
        cluster.delete_config_map(config_map, missing_ok=True)
        return "the objects already created were deleted again"
    except (UserError, StageError):
        return f"delete what was created with: launcher cancel {config_map.removesuffix('-spec')} -n {namespace}"


def cluster_run_status(cluster: Cluster, run_id: str, raw: dict[str, Any],
                       storage: Storage) -> tuple[RunStatus, list[dict[str, Any]]]:
    """The run's status from its Jobs, pods, events and storage; and its pods as the server sent them."""
    shards = int((raw.get("compute") or {}).get("shards", 1))
    jobs = jobs_by_stage(cluster, run_id)
    pods = cluster.list_pods(run_selector(run_id))
    latest = newest(pods, lambda p: (p["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(p)))
    views = [PodView.from_api(p) for p in latest.values()]
    events: dict[str, list[Event]] = {}
    try:
        for stage, job in jobs.items():
            found = cluster.list_events(job["metadata"]["name"])
            for pod in [p for p in views if p.stage == stage and p.reason][:EVENT_PODS]:
                found += cluster.list_events(pod.name)
            events[stage] = found
    except UserError as err:  # a Role without events (an older k8s/base): the rest still helps
        print(f"note: events not shown: {err}", file=sys.stderr)
        events = {}
    missing = run_missing(storage) if not jobs else None  # Jobs gone: storage says if it finished
    status = cluster_status(run_id, cluster.namespace, storage.url, jobs, views, events,
                            read_progress(storage, shards), shards, missing, series="series" in raw,
                            error=stop_error(run_id, jobs))
    return status, pods


def _failed_pods(status: RunStatus, pods: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The latest failed pod of each failed shard, and of a failed prepare or merge Job ({} if it is gone)."""
    wanted = failed_parts(status.stages)
    if not wanted:
        return []

    def key(pod: dict[str, Any]) -> tuple[str, int | None] | None:
        k = (pod["metadata"]["labels"].get(STAGE_LABEL, "?"), pod_index(pod))
        return k if k in wanted and (pod.get("status") or {}).get("phase") == "Failed" else None

    latest = newest(pods, key)
    return [(what, latest.get(k, {})) for k, what in wanted.items()]


def _log_tail(cluster: Cluster, name: str) -> list[str]:
    """The pod's last log lines, indented; a log the server no longer has is said so in their place."""
    try:
        return [f"    {line}" for line in cluster.pod_log(name, CONTAINER, tail=LOG_LINES)]
    except UserError as err:
        return [f"    ({err})"]
