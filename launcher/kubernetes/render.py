"""The Kubernetes objects of one run, rendered as plain dicts: no I/O, no client, no cluster.

``render_run`` returns, in creation order:

1. ConfigMap ``<run>-spec``: the validated spec as ``spec.yaml`` (immutable). It is the
   run's anchor object: the submit layer creates it first (its 409 says the id is taken),
   its Role and RoleBinding as its dependents, and once the Jobs exist makes it a dependent
   of all three, so the run's objects go away with its Jobs (``launcher.kubernetes.ownership``;
   owner references need the owners' UIDs, which exist only once created: none is rendered).
2. Role and RoleBinding ``<run>-pods``: what the run's prepare and merge pods may do on the
   API (release evaluate and merge, read evaluate), limited to this run's Jobs by name
   (``launcher.kubernetes.gate``).
3. Job ``<run>-evaluate``: an Indexed Job, one completion a shard; pod i reads its shard
   from ``JOB_COMPLETION_INDEX``. Preemption and eviction (``DisruptionTarget``) do not
   count against a shard's retries; a user error (exit code 2) fails the shard at once.
4. Job ``<run>-merge``: one CPU pod under the ``service_account``; it waits for the shards
   in storage and ends as soon as the evaluate Job fails or disappears.
5. Job ``<run>-prepare``: one pod, builds the directions and the run manifest, then
   releases evaluate and merge (created before it, so they exist when it does).

Evaluate and merge are created suspended: no GPU pod exists before prepare has
succeeded, and a failed prepare leaves them without pods (``launcher.kubernetes.gate``). Every stage
has an ``activeDeadlineSeconds`` sized from the run (``launcher.kubernetes.deadlines``). The run then
finishes without the launcher. Every object and pod template carries the labels
``app.kubernetes.io/{name,part-of,component,instance}``, ``landscape.run`` and (Jobs and
pods) ``landscape.stage``, so ``kubectl get jobs,pods -l landscape.run=<run>`` finds a run.

Evaluate-shaped pods get the main placement (``node_selector``, ``tolerations``,
``affinity``, and with GPUs ``runtime_class``), the light pods (merge, a plain prepare) the
``cpu_*`` placement; claims (``volumes``) are mounted
where they are read, in prepare and evaluate. Every pod requests and limits its
ephemeral storage: its bounded emptyDirs plus a little for its log.

The pods satisfy the ``restricted`` Pod Security profile: non-root UID/GID 1000 (the
image's numeric USER), RuntimeDefault seccomp, no privilege escalation, every capability
dropped, a read-only root file system with writable emptyDirs at ``/tmp`` (HOME and the
caches), a writable emptyDir at ``/var/cache/landscape`` (``LANDSCAPE_CACHE_DIR``: the
inputs fetched from S3 or the web, see ``landscape_job.inputs.fetch``; ``kubernetes.cache_size``
bounds it) and a memory-backed ``/dev/shm``. S3 credentials reach the pods only through
``envFrom`` of the Secret named by ``kubernetes.s3_secret``: no credential value is ever
rendered.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import yaml

import landscape_job
from landscape_job.base.cache import CACHE_ENV
from landscape_job.runtime.disk import CACHE_LIMIT_ENV, DISK_LIMIT_ENV
from landscape_job.base.errors import UPSTREAM_FAILED_EXIT, USER_ERROR_EXIT, UserError
from landscape_job.runtime.gpu import REQUIRE_GPU_ENV
from landscape_job.spec.sections import Spec
from landscape_job.storage.location import RUN_ENV, S3, STORAGE_OPTIONS_ENV
from launcher.kubernetes.deadlines import StageDeadlines, stage_deadlines
from launcher.kubernetes.gate import HELD_QUEUE, KUEUE_LABEL, merge_release_env, pods_role, pods_role_binding, release_env
from launcher.kubernetes.placement import GPU_RESOURCE, place
from launcher.kubernetes.names import RUN_LABEL, STAGE_LABEL, check_run_id, object_name, object_names
from launcher.kubernetes.section import KubernetesSpec, evaluate_parallelism, parse_quantity

CONTAINER = "landscape"
STAGES = ("prepare", "evaluate", "merge")
#: The gated Jobs first: when the prepare pod comes to release them, they exist.
CREATION_ORDER = ("evaluate", "merge", "prepare")
#: The component of ``launcher estimate --cluster``'s one-pod Job (not a stage of a run).
ESTIMATE = "estimate"
#: How long the estimate pod may run: setup, compile and a few points, not a surface.
ESTIMATE_DEADLINE_SECONDS = 3600
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
SPEC_HASH_ANNOTATION = "landscape.spec-hash"
#: The numeric USER of the Dockerfile; runAsNonRoot needs a number to check.
UID = GID = 1000
#: The API server's bound on completions (and parallelism) of an Indexed Job with backoffLimitPerIndex.
MAX_INDEXED_COMPLETIONS = 100_000


def _labels(run_id: str, component: str, k8s: KubernetesSpec, stage: bool = True) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "landscape",
        "app.kubernetes.io/part-of": "landscape",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": run_id,
        "app.kubernetes.io/version": landscape_job.__version__,
        "app.kubernetes.io/managed-by": "landscape-launcher",
        RUN_LABEL: run_id,
    }
    if stage:
        labels[STAGE_LABEL] = component
    return {**k8s.labels, **labels}


def _annotations(spec: Spec, k8s: KubernetesSpec) -> dict[str, str]:
    return {**k8s.annotations, SPEC_HASH_ANNOTATION: spec.hash}


def _metadata(name: str, run_id: str, component: str, spec: Spec, k8s: KubernetesSpec,
              stage: bool = True) -> dict[str, Any]:
    return {"name": name, "namespace": k8s.namespace, "labels": _labels(run_id, component, k8s, stage),
            "annotations": _annotations(spec, k8s)}


def _env(stage: str, spec: Spec, run_id: str, gpus: int, names: dict[str, str],
         k8s: KubernetesSpec) -> list[dict[str, Any]]:
    run = spec.storage.join(run_id).env()  # how a stage finds its run: URL and storage options
    env = [
        {"name": RUN_ENV, "value": run[RUN_ENV]},
        {"name": "LANDSCAPE_RUN_ID", "value": run_id},
        {"name": STORAGE_OPTIONS_ENV, "value": run[STORAGE_OPTIONS_ENV]},
        {"name": "LANDSCAPE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MPLBACKEND", "value": "Agg"},
        # The root file system is read-only: HOME and every cache live in the /tmp emptyDir.
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "TORCH_HOME", "value": "/tmp/.cache/torch"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/.cache/matplotlib"},
        {"name": "TRITON_CACHE_DIR", "value": "/tmp/.cache/triton"},
        # Inputs (checkpoints, data sets, pip requirements) are fetched once per pod into the cache emptyDir.
        {"name": CACHE_ENV, "value": CACHE_DIR},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    if stage == ESTIMATE:
        env.append({"name": "LANDSCAPE_SPEC_FILE", "value": f"{SPEC_DIR}/spec.yaml"})
    if stage == "prepare":
        # The prepare pod seeds the run's storage from the ConfigMap if nothing wrote the
        # spec there yet, so `launcher render | kubectl apply -f -` runs without the launcher.
        env.append({"name": "LANDSCAPE_SPEC_FILE", "value": f"{SPEC_DIR}/spec.yaml"})
        env.append(release_env(k8s, names))  # what prepare releases once its work is in storage
    if stage == "merge":
        env.append({"name": "LANDSCAPE_EVALUATE_JOB", "value": names["evaluate"]})
        env.append({"name": "LANDSCAPE_JOB_NAME", "value": names["merge"]})  # its Merged event (runtime/events)
    if stage == "evaluate":  # a shard stopped full fails within its Job, not a resubmitted run's (stages/shard_stops)
        env.append({"name": "LANDSCAPE_JOB_UID", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}})
    if stage == "evaluate" and merge_release_env(k8s, names):
        env.append(merge_release_env(k8s, names))  # under Kueue the last shard releases merge
    if stage != ESTIMATE and k8s.ephemeral_storage:
        # what the pod may use of its node's disk: its stages say so when a SIGTERM finds it full (runtime/disk)
        env.append({"name": DISK_LIMIT_ENV, "value": str(int(parse_quantity(_ephemeral_storage(k8s))))})
    if not k8s.cache_claim:
        env.append({"name": CACHE_LIMIT_ENV, "value": str(int(parse_quantity(k8s.cache_size)))})
    if gpus:
        # The pod holds a GPU: it computes on it or exits 1 saying why, never on the CPU (landscape_job/runtime/gpu.py).
        env.append({"name": REQUIRE_GPU_ENV, "value": "1"})
    if gpus == 0:
        # The CUDA image sets NVIDIA_VISIBLE_DEVICES=all; on a GPU node with the NVIDIA runtime
        # as default, a pod that requested no GPU would otherwise see (and use) other pods' GPUs.
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    return env


def _min_quantity(a: str, b: str) -> str:
    return a if parse_quantity(a) <= parse_quantity(b) else b


#: Where every pod keeps its fetched inputs: an emptyDir of its own (the root file system is read-only).
CACHE_DIR = "/var/cache/landscape"
#: Where the prepare pod mounts the run's ConfigMap.
SPEC_DIR = "/etc/landscape"
#: How long an evaluate pod waits for prepare's output. Prepare releases evaluate only once its
#: output is written, so this covers only a store slow to show new objects, never prepare's work.
PREPARE_WAIT_SECONDS = 120
#: What Kubernetes keeps of a pod besides its emptyDirs: its log and the (read-only) root's writable layer.
POD_OVERHEAD_STORAGE = "1Gi"


def _stage_args(stage: str, deadlines: StageDeadlines | None, estimate_points: int = 3) -> list[str]:
    """Evaluate and merge start when prepare releases them; merge waits for every shard via storage."""
    if stage == ESTIMATE:
        return [stage, "--points", str(estimate_points)]
    if stage == "evaluate":
        return [stage, "--wait", str(PREPARE_WAIT_SECONDS)]
    if stage == "merge" and deadlines is not None:
        return [stage, "--wait", str(deadlines.merge)]
    return [stage]


def _sum_quantities(*quantities: str) -> str:
    """A quantity in Gi or Mi that covers all of them (rounded up)."""
    mebibytes = int(-(-sum(parse_quantity(q) for q in quantities) // 2**20))
    return f"{mebibytes // 1024}Gi" if mebibytes % 1024 == 0 else f"{mebibytes}Mi"


def _cache_volume(k8s: KubernetesSpec) -> dict[str, Any]:
    """Where fetched inputs live: a shared claim if the spec names one, else the pod's own bounded emptyDir."""
    if k8s.cache_claim:
        return {"name": "inputs-cache", "persistentVolumeClaim": {"claimName": k8s.cache_claim}}
    return {"name": "inputs-cache", "emptyDir": {"sizeLimit": k8s.cache_size}}


def _ephemeral_storage(k8s: KubernetesSpec) -> str:
    """Request = limit of local disk: the disk-backed emptyDirs at their size limits and the pod's own overhead.
    /dev/shm is memory, counted in the memory limit instead."""
    disks = [k8s.tmp_size] + ([] if k8s.cache_claim else [k8s.cache_size])
    return _sum_quantities(*disks, POD_OVERHEAD_STORAGE)


def _pod_template(stage: str, spec: Spec, run_id: str, k8s: KubernetesSpec, names: dict[str, str],
                  deadlines: StageDeadlines | None = None, estimate_points: int = 3) -> dict[str, Any]:
    # The estimate pod measures what an evaluate pod will do, so it gets the same shape.
    evaluate = stage in ("evaluate", ESTIMATE)
    mounts_spec = stage in ("prepare", ESTIMATE)
    # Checkpoints and data sets are read where the model is built; merge reads only storage.
    volumes = k8s.volumes if stage != "merge" else ()
    # A prepare that runs Lanczos at θ* (Hessian metrics or directions) does an evaluate
    # pod's work, on the data: it gets an evaluate pod's GPU, CPU and memory.
    shaped = evaluate or (stage == "prepare" and spec.uses_hessian and spec.series is None)  # a series' prepare lists
    gpus = k8s.gpus if shaped else 0
    cpu = k8s.cpu if shaped else k8s.prepare_merge_cpu
    memory = k8s.memory if shaped else k8s.prepare_merge_memory
    # /dev/shm counts against the memory limit: a small pod keeps at least half its memory for itself.
    shm = k8s.shm_size if shaped else _min_quantity(k8s.shm_size, f"{int(parse_quantity(memory) // 2**21)}Mi")
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    # no CPU limit: throttling only slows a shard down
    limits: dict[str, Any] = {"memory": memory}
    if k8s.ephemeral_storage:  # off where a Kueue ClusterQueue does not cover it
        requests["ephemeral-storage"] = limits["ephemeral-storage"] = _ephemeral_storage(k8s)
    if gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        # No ``command``: the image's ENTRYPOINT runs (NVIDIA's script, which sets up CUDA forward
        # compatibility, then execs ``landscape-job``); a ``command`` here would bypass it.
        "args": _stage_args(stage, deadlines, estimate_points),
        "env": _env(stage, spec, run_id, gpus, names, k8s),
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "inputs-cache", "mountPath": CACHE_DIR}]
                        + ([{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}] if mounts_spec else [])
                        + [{"name": f"data-{i}", "mountPath": v.mount_path, "readOnly": v.read_only}
                           for i, v in enumerate(volumes)],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if k8s.s3_secret:
        # By name only: the kubelet reads the Secret; its values never pass through the launcher.
        container["envFrom"] = [{"secretRef": {"name": k8s.s3_secret}}]

    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": GID,
            "fsGroup": GID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": k8s.tmp_size}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
            _cache_volume(k8s),
        ] + ([{"name": "spec", "configMap": {"name": names["spec"]}}] if mounts_spec else [])
        + [{"name": f"data-{i}", "persistentVolumeClaim": {"claimName": v.claim, "readOnly": v.read_only}}
           for i, v in enumerate(volumes)],
    }
    if evaluate and not (stage == "evaluate" and k8s.kueue_queue):
        # Shard pods only read and write storage; they need no Kubernetes API access (under Kueue the
        # last one releases merge, so they mount the run's account's token).
        pod["automountServiceAccountToken"] = False
    else:
        # prepare releases evaluate and merge, merge watches evaluate: both through the run's Role (launcher.kubernetes.gate).
        pod["serviceAccountName"] = k8s.service_account
        pod["automountServiceAccountToken"] = True
    place(pod, k8s, shaped, gpus)
    if k8s.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in k8s.image_pull_secrets]
    return {
        "metadata": {"labels": _labels(run_id, stage, k8s),
                     "annotations": {**_annotations(spec, k8s), "kubectl.kubernetes.io/default-container": CONTAINER}},
        "spec": pod,
    }


def _disruption_rule() -> dict[str, Any]:
    """Preemption, eviction, node drain: retry without counting it against the backoff limit.

    The Job controller then replaces the pod without touching the index's retry budget, for
    as long as disruptions come; what bounds a loop of them (a node-pressure eviction that
    recurs on every node) is the stage's ``activeDeadlineSeconds``, which every stage has
    (``launcher.kubernetes.deadlines``). Counting disruptions instead would let one busy preempting
    scheduler fail a healthy run; a pod exceeding its own ephemeral-storage limit is also
    evicted with this condition, which the deadline bounds the same way.
    """
    return {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def _user_error_rule(action: str, *also: int) -> dict[str, Any]:
    """Exit code 2 is a user's mistake (``landscape_job.base.errors.USER_ERROR_EXIT``): retrying cannot help.
    Merge adds 3 (``UPSTREAM_FAILED_EXIT``): its evaluate Job failed or is gone, so no retry can help either."""
    return {"action": action,
            "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [USER_ERROR_EXIT, *also]}}


def _kueue_labels(metadata: dict[str, Any], k8s: KubernetesSpec, queued: bool) -> None:
    """Kueue's labels: the queue (a gated Job's is ``HELD_QUEUE`` until its release) and the workload priority."""
    if k8s.kueue_queue:
        metadata["labels"][KUEUE_LABEL] = k8s.kueue_queue if queued else HELD_QUEUE
    if k8s.kueue_queue and k8s.kueue_priority_class:
        metadata["labels"][KUEUE_PRIORITY_LABEL] = k8s.kueue_priority_class


def _job(stage: str, spec: Spec, run_id: str, k8s: KubernetesSpec, names: dict[str, str],
         deadlines: StageDeadlines) -> dict[str, Any]:
    metadata = _metadata(names[stage], run_id, stage, spec, k8s)
    gated = stage != "prepare"  # created suspended; prepare releases them (launcher.kubernetes.gate)
    _kueue_labels(metadata, k8s, queued=not gated)
    job_spec: dict[str, Any] = {}
    if stage == "evaluate":
        shards = spec.compute.shards
        job_spec.update({
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": evaluate_parallelism(k8s.parallelism, shards),
            "backoffLimitPerIndex": k8s.backoff_limit_per_index,
        })
        if k8s.max_failed_indexes is not None:
            job_spec["maxFailedIndexes"] = k8s.max_failed_indexes
        job_spec["podFailurePolicy"] = {"rules": [_disruption_rule(), _user_error_rule("FailIndex")]}
    else:
        final = (UPSTREAM_FAILED_EXIT,) if stage == "merge" else ()
        job_spec.update({"completions": 1, "parallelism": 1, "backoffLimit": k8s.backoff_limit_per_index,
                         "podFailurePolicy": {"rules": [_disruption_rule(), _user_error_rule("FailJob", *final)]}})
    # With a pod failure policy a replacement pod starts only once the old one has fully
    # terminated, so two pods never write the same shard's checkpoint at once.
    job_spec["podReplacementPolicy"] = "Failed"
    job_spec["ttlSecondsAfterFinished"] = k8s.ttl_seconds_after_finished
    job_spec["activeDeadlineSeconds"] = getattr(deadlines, stage)
    # Kueue's guidance: create queued Jobs suspended; Kueue un-suspends them on admission.
    job_spec["suspend"] = gated or k8s.suspend or bool(k8s.kueue_queue)
    job_spec["template"] = _pod_template(stage, spec, run_id, k8s, names, deadlines)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def render_run(spec: Spec, run_id: str, k8s: KubernetesSpec) -> list[dict[str, Any]]:
    """The run's objects in creation order: ConfigMap, the pods' Role and RoleBinding, the
    evaluate and merge Jobs (suspended until prepare releases them), the prepare Job.

    Pure: reads no file, no environment variable, no cluster. Raises ``UserError`` for a
    run id that cannot name Kubernetes objects, for storage that pods cannot reach, and
    for cluster settings that contradict the spec.
    """
    check_run_id(run_id)
    check_cluster_spec(spec, k8s)
    names = object_names(run_id, spec.compute.shards)
    config_map = _spec_config_map(names["spec"], run_id, "spec", spec, k8s)
    rbac_metadata = _metadata(names["pods"], run_id, "pods", spec, k8s, stage=False)
    deadlines = stage_deadlines(spec, k8s)
    return ([config_map, pods_role(rbac_metadata, names), pods_role_binding(rbac_metadata, names, k8s)]
            + [_job(stage, spec, run_id, k8s, names, deadlines) for stage in CREATION_ORDER])


def check_cluster_spec(spec: Spec, k8s: KubernetesSpec) -> None:
    """What ``render_run`` refuses of a spec whatever the run id, checked alone: ``submit`` asks it
    before any I/O, and renders once, when the run id is chosen."""
    if spec.storage.scheme != S3:
        raise UserError(f"storage: pods on a cluster cannot reach {spec.storage.url}; give s3://bucket/prefix "
                        f"in the spec's storage or with --storage")
    shards = spec.compute.shards
    if shards > MAX_INDEXED_COMPLETIONS:
        raise UserError(f"compute.shards: {shards} is more than the {MAX_INDEXED_COMPLETIONS} completions a "
                        f"Kubernetes Indexed Job with a per-index backoff limit may have; use fewer shards")
    if k8s.max_failed_indexes is not None and k8s.max_failed_indexes > shards:
        raise UserError(f"kubernetes.max_failed_indexes: {k8s.max_failed_indexes} is more than the "
                        f"{shards} shards (compute.shards)")


def _spec_config_map(name: str, run_id: str, component: str, spec: Spec, k8s: KubernetesSpec) -> dict[str, Any]:
    """The normalised spec that the pods mount; immutable, since a run's spec never changes."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, run_id, component, spec, k8s, stage=False),
        "immutable": True,
        "data": {"spec.yaml": spec.to_yaml()},
    }


def estimate_names(run_id: str) -> dict[str, str]:
    return {"spec": object_name(run_id, "estimate-spec"), ESTIMATE: object_name(run_id, ESTIMATE)}


def render_estimate(spec: Spec, run_id: str, k8s: KubernetesSpec, points: int = 3) -> list[dict[str, Any]]:
    """The objects of ``launcher estimate --cluster``: a ConfigMap with the spec and a one-pod
    Job that runs ``landscape-job estimate`` in an evaluate pod's shape (image, resources,
    GPUs, volumes, node placement, Secret), so the time it measures is the time a shard's
    points will take. Pure, like ``render_run``. The ConfigMap's component is
    ``estimate-spec``, not ``spec``: ``launcher list`` does not show it as a run. Storage
    is not used: the pod writes nothing.
    """
    check_run_id(run_id)
    if points < 1:
        raise UserError(f"--points: must be at least 1, got {points}")
    names = estimate_names(run_id)
    config_map = _spec_config_map(names["spec"], run_id, "estimate-spec", spec, k8s)
    metadata = _metadata(names[ESTIMATE], run_id, ESTIMATE, spec, k8s)
    _kueue_labels(metadata, k8s, queued=True)
    job_spec: dict[str, Any] = {
        # No retries: a failed measurement is cheaper to rerun by hand than to repeat blindly.
        "completions": 1, "parallelism": 1, "backoffLimit": 0,
        "podFailurePolicy": {"rules": [_disruption_rule(), _user_error_rule("FailJob")]},
        "podReplacementPolicy": "Failed",
        "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
        "activeDeadlineSeconds": min(k8s.active_deadline_seconds or ESTIMATE_DEADLINE_SECONDS,
                                     ESTIMATE_DEADLINE_SECONDS),
        "suspend": k8s.suspend or bool(k8s.kueue_queue),
        "template": _pod_template(ESTIMATE, spec, run_id, k8s, names, None, points),
    }
    return [config_map, {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}]


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so the ConfigMap's spec.yaml stays readable."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """Multi-document YAML, each object after ``---``, for ``kubectl apply -f -``."""
    return yaml.dump_all(list(objects), Dumper=_Dumper, sort_keys=False, explicit_start=True)


def to_json(objects: Iterable[dict[str, Any]]) -> str:
    """A ``v1 List`` of the objects, for ``kubectl apply -f -`` or ``jq``."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": list(objects)}, indent=2) + "\n"
