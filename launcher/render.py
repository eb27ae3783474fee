"""The Kubernetes objects of one run, rendered as plain dicts: no I/O, no client, no cluster.

``render_run`` returns, in creation order:

1. ConfigMap ``<run>-spec``: the validated spec as ``spec.yaml`` (immutable). It is the
   run's anchor object: the submit layer creates it first, then makes the Jobs its
   dependents with ``with_owner`` (an owner reference needs the owner's UID, which only
   exists once the ConfigMap is created), so ``kubectl delete configmap <run>-spec``
   removes the whole run, Jobs and pods included.
2. Job ``<run>-prepare``: one pod, builds the directions and the run manifest.
3. Job ``<run>-evaluate``: an Indexed Job, one completion a shard; pod i reads its shard
   from ``JOB_COMPLETION_INDEX``. Preemption and eviction (``DisruptionTarget``) do not
   count against a shard's retries; a user error (exit code 2) fails the shard at once.
4. Job ``<run>-merge``: one pod under the ``service_account``, bounded by
   ``merge_deadline_seconds``.

All three Jobs are created at submit time; the stages chain through storage, so the run
finishes without the launcher. Every object and pod template carries the labels
``app.kubernetes.io/{name,part-of,component,instance}``, ``landscape.run`` and (Jobs and
pods) ``landscape.stage``, so ``kubectl get jobs,pods -l landscape.run=<run>`` finds a run.

The pods satisfy the ``restricted`` Pod Security profile: non-root UID/GID 1000 (the
image's numeric USER), RuntimeDefault seccomp, no privilege escalation, every capability
dropped, a read-only root file system with writable emptyDirs at ``/tmp`` (HOME and the
caches), a writable emptyDir at ``/var/cache/landscape`` (``LANDSCAPE_CACHE_DIR``: the
inputs fetched from S3 or the web, see ``landscape_job.inputs``; ``kubernetes.cache_size``
bounds it) and a memory-backed ``/dev/shm``. S3 credentials reach the pods only through
``envFrom`` of the Secret named by ``kubernetes.s3_secret``: no credential value is ever
rendered.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any, Iterable

import yaml

import landscape_job
from landscape_job.cache import CACHE_ENV
from landscape_job.errors import USER_ERROR_EXIT, UserError
from landscape_job.location import RUN_ENV, S3, STORAGE_OPTIONS_ENV
from landscape_job.spec import Spec

from launcher.k8s_spec import KubernetesSpec, evaluate_parallelism, parse_quantity

CONTAINER = "landscape"
ENTRYPOINT = "landscape-job"
STAGES = ("prepare", "evaluate", "merge")
#: The component of ``launcher estimate --cluster``'s one-pod Job (not a stage of a run).
ESTIMATE = "estimate"
#: How long the estimate pod may run: setup, compile and a few points, not a surface.
ESTIMATE_DEADLINE_SECONDS = 3600
RUN_LABEL = "landscape.run"
STAGE_LABEL = "landscape.stage"
KUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SPEC_HASH_ANNOTATION = "landscape.spec-hash"
#: The numeric USER of the Dockerfile; runAsNonRoot needs a number to check.
UID = GID = 1000
GPU_RESOURCE = "nvidia.com/gpu"
MAX_NAME = 63
#: The API server's bound on completions (and parallelism) of an Indexed Job with backoffLimitPerIndex.
MAX_INDEXED_COMPLETIONS = 100_000
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_OWNER_API_VERSIONS = {"ConfigMap": "v1", "Secret": "v1", "Job": "batch/v1"}


def object_name(run_id: str, suffix: str, limit: int = MAX_NAME) -> str:
    """``<run>-<suffix>``, or ``<run prefix>-<hash>-<suffix>`` where that is longer than ``limit``.

    Deterministic, so the submit, status and cancel commands recompute the same names.
    """
    name = f"{run_id}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{run_id[:keep].rstrip('-')}-{digest}-{suffix}"


def object_names(run_id: str, shards: int) -> dict[str, str]:
    """The names of a run's objects: ``spec`` (the ConfigMap) and one Job a stage.

    The evaluate Job's name leaves room for ``-<index>``: an Indexed Job's pods get the
    host name ``<job>-<index>``, which must be a DNS label of at most 63 characters.
    """
    index_room = 1 + len(str(max(shards - 1, 0)))
    return {"spec": object_name(run_id, "spec"),
            "prepare": object_name(run_id, "prepare"),
            "evaluate": object_name(run_id, "evaluate", MAX_NAME - index_room),
            "merge": object_name(run_id, "merge")}


def run_selector(run_id: str) -> str:
    """The label selector of every object and pod of a run."""
    return f"{RUN_LABEL}={run_id}"


def check_run_id(run_id: str) -> None:
    if len(run_id) > MAX_NAME or not _RUN_ID.match(run_id):
        raise UserError(f"--run-id: expected at most {MAX_NAME} lowercase letters, digits or '-', starting and "
                        f"ending with a letter or digit (it is a Kubernetes label value); got {run_id!r}")


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


def _env(stage: str, spec: Spec, run_id: str, gpus: int, names: dict[str, str]) -> list[dict[str, Any]]:
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
    if stage == "merge":
        env.append({"name": "LANDSCAPE_EVALUATE_JOB", "value": names["evaluate"]})
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
#: How long an evaluate pod waits for the prepare stage's output before failing.
PREPARE_WAIT_SECONDS = 3600


def _stage_args(stage: str, k8s: KubernetesSpec, estimate_points: int = 3) -> list[str]:
    """All Jobs start at submit: evaluate waits for prepare, merge for every shard, via storage."""
    if stage == ESTIMATE:
        return [stage, "--points", str(estimate_points)]
    if stage == "evaluate":
        return [stage, "--wait", str(PREPARE_WAIT_SECONDS)]
    if stage == "merge":
        return [stage, "--wait", str(k8s.merge_deadline_seconds)]
    return [stage]


def _cache_volume(k8s: KubernetesSpec) -> dict[str, Any]:
    """Where fetched inputs live: a shared claim if the spec names one, else the pod's own emptyDir."""
    if k8s.cache_claim:
        return {"name": "inputs-cache", "persistentVolumeClaim": {"claimName": k8s.cache_claim}}
    return {"name": "inputs-cache", "emptyDir": {"sizeLimit": k8s.cache_size} if k8s.cache_size else {}}


def _pod_template(stage: str, spec: Spec, run_id: str, k8s: KubernetesSpec, names: dict[str, str],
                  estimate_points: int = 3) -> dict[str, Any]:
    # The estimate pod measures what an evaluate pod will do, so it gets the same shape.
    evaluate = stage in ("evaluate", ESTIMATE)
    mounts_spec = stage in ("prepare", ESTIMATE)
    # A prepare that runs Lanczos at θ* (Hessian metrics or directions) does an evaluate
    # pod's work, on the data: it gets an evaluate pod's GPU, CPU and memory.
    shaped = evaluate or (stage == "prepare" and spec.uses_hessian and spec.series is None)  # a series' prepare lists
    gpus = k8s.gpus if shaped else 0
    cpu = k8s.cpu if shaped else k8s.prepare_merge_cpu
    memory = k8s.memory if shaped else k8s.prepare_merge_memory
    shm = k8s.shm_size if shaped else _min_quantity(k8s.shm_size, k8s.prepare_merge_memory)
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    limits: dict[str, Any] = {"memory": memory}  # no CPU limit: throttling only slows a shard down
    if gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": [ENTRYPOINT],
        "args": _stage_args(stage, k8s, estimate_points),
        "env": _env(stage, spec, run_id, gpus, names),
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "inputs-cache", "mountPath": CACHE_DIR}]
                        + ([{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}] if mounts_spec else [])
                        + [{"name": f"data-{i}", "mountPath": v.mount_path, "readOnly": v.read_only}
                           for i, v in enumerate(k8s.volumes)],
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

    tolerations = list(copy.deepcopy(k8s.tolerations))
    if gpus:
        tolerations.insert(0, {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
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
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
            _cache_volume(k8s),
        ] + ([{"name": "spec", "configMap": {"name": names["spec"]}}] if mounts_spec else []) + [{"name": f"data-{i}", "persistentVolumeClaim": {"claimName": v.claim, "readOnly": v.read_only}}
             for i, v in enumerate(k8s.volumes)],
    }
    if evaluate:
        # Shard pods only read and write storage; they need no Kubernetes API access.
        pod["automountServiceAccountToken"] = False
    else:
        pod["serviceAccountName"] = k8s.service_account
        pod["automountServiceAccountToken"] = True
    if k8s.node_selector:
        pod["nodeSelector"] = dict(k8s.node_selector)
    if tolerations:
        pod["tolerations"] = tolerations
    if k8s.affinity:
        pod["affinity"] = copy.deepcopy(k8s.affinity)
    if k8s.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in k8s.image_pull_secrets]
    return {
        "metadata": {"labels": _labels(run_id, stage, k8s),
                     "annotations": {**_annotations(spec, k8s), "kubectl.kubernetes.io/default-container": CONTAINER}},
        "spec": pod,
    }


def _disruption_rule() -> dict[str, Any]:
    """Preemption, eviction, node drain: retry without counting it against the backoff limit."""
    return {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def _user_error_rule(action: str) -> dict[str, Any]:
    """Exit code 2 is a user's mistake (``landscape_job.errors.USER_ERROR_EXIT``): retrying cannot help."""
    return {"action": action,
            "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [USER_ERROR_EXIT]}}


def _job(stage: str, spec: Spec, run_id: str, k8s: KubernetesSpec, names: dict[str, str]) -> dict[str, Any]:
    metadata = _metadata(names[stage], run_id, stage, spec, k8s)
    if k8s.kueue_queue:
        metadata["labels"][KUEUE_LABEL] = k8s.kueue_queue
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
        job_spec.update({"completions": 1, "parallelism": 1, "backoffLimit": k8s.backoff_limit_per_index,
                         "podFailurePolicy": {"rules": [_disruption_rule(), _user_error_rule("FailJob")]}})
    # With a pod failure policy a replacement pod starts only once the old one has fully
    # terminated, so two pods never write the same shard's checkpoint at once.
    job_spec["podReplacementPolicy"] = "Failed"
    job_spec["ttlSecondsAfterFinished"] = k8s.ttl_seconds_after_finished
    deadline = k8s.merge_deadline_seconds if stage == "merge" else k8s.active_deadline_seconds
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    job_spec["suspend"] = k8s.suspend
    job_spec["template"] = _pod_template(stage, spec, run_id, k8s, names)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def render_run(spec: Spec, run_id: str, k8s: KubernetesSpec) -> list[dict[str, Any]]:
    """The run's objects in creation order: ConfigMap, prepare, evaluate and merge Jobs.

    Pure: reads no file, no environment variable, no cluster. Raises ``UserError`` for a
    run id that cannot name Kubernetes objects, for storage that pods cannot reach, and
    for cluster settings that contradict the spec.
    """
    check_run_id(run_id)
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
    names = object_names(run_id, shards)
    config_map = _spec_config_map(names["spec"], run_id, "spec", spec, k8s)
    return [config_map] + [_job(stage, spec, run_id, k8s, names) for stage in STAGES]


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
    if k8s.kueue_queue:
        metadata["labels"][KUEUE_LABEL] = k8s.kueue_queue
    job_spec: dict[str, Any] = {
        # No retries: a failed measurement is cheaper to rerun by hand than to repeat blindly.
        "completions": 1, "parallelism": 1, "backoffLimit": 0,
        "podFailurePolicy": {"rules": [_disruption_rule(), _user_error_rule("FailJob")]},
        "podReplacementPolicy": "Failed",
        "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
        "activeDeadlineSeconds": min(k8s.active_deadline_seconds or ESTIMATE_DEADLINE_SECONDS,
                                     ESTIMATE_DEADLINE_SECONDS),
        "suspend": k8s.suspend,
        "template": _pod_template(ESTIMATE, spec, run_id, k8s, names, points),
    }
    return [config_map, {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}]


def with_owner(obj: dict[str, Any], owner_kind: str, owner_name: str, owner_uid: str,
               owner_api_version: str | None = None) -> dict[str, Any]:
    """A copy of ``obj`` with an owner reference to an object that exists (it has a UID).

    The submit layer creates the ConfigMap first, reads back its ``metadata.uid``, and
    creates each Job through ``with_owner(job, "ConfigMap", cm_name, cm_uid)``: deleting the
    ConfigMap then garbage-collects the Jobs, and with them their pods, so one delete
    cleans up a whole run. The owner must live in the object's namespace (owner references
    never cross namespaces). ``blockOwnerDeletion`` is left unset: it would need the
    ``update`` permission on the owner's finalizers.
    """
    if not owner_uid:
        raise ValueError("with_owner: the owner's UID is empty; create the owner first")
    api_version = owner_api_version or _OWNER_API_VERSIONS.get(owner_kind)
    if api_version is None:
        raise ValueError(f"with_owner: give owner_api_version for kind {owner_kind}")
    result = copy.deepcopy(obj)
    metadata = result.setdefault("metadata", {})
    references = [r for r in metadata.get("ownerReferences", []) if r.get("uid") != owner_uid]
    references.append({"apiVersion": api_version, "kind": owner_kind, "name": owner_name, "uid": owner_uid})
    metadata["ownerReferences"] = references
    return result


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
