"""The ``kubernetes:`` section of a surface spec, parsed strictly by the launcher.

``landscape_job`` keeps this section as a raw mapping (pods never read it); the launcher
alone turns it into cluster objects, so it alone validates it. Every mistake is one
``UserError`` naming the key path (``kubernetes.gpus: expected an integer, got a string
'one'``), raised before any object is rendered or created.

Every key has a default, so a spec without a ``kubernetes:`` section renders a working
run: one GPU a shard in the ``landscape`` namespace, the image of this version.

    kubernetes:
      image: ghcr.io/landscape-dev/landscape:0.1.0
      namespace: landscape
      gpus: 1                       # 0 on a CPU cluster
      gpu_memory: 80Gi              # one GPU's memory: launcher estimate compares a shard's peak with it
      cpu: "4"                      # request; no CPU limit is set
      memory: 32Gi                  # request == limit
      shm_size: 8Gi                 # /dev/shm for data-loader workers
      parallelism: 16               # default: the number of shards, at most 256
      backoff_limit_per_index: 3
      s3_secret: landscape-s3       # a Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
      kueue_queue: team-a           # evaluate and merge enter the queue when prepare releases them
      node_selector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}   # evaluate pods (not merge)
      runtime_class: nvidia         # GPU pods' runtimeClassName (k3s, RKE2)
      cpu_node_selector: {pool: cpu}  # merge, and prepare without the Hessian
      priority_class: batch-low
      point_seconds: 60             # bound on one point: sizes the default stage deadlines
      # evaluate_deadline_seconds: 86400   # or set a stage's deadline (prepare_/merge_ likewise)
      volumes:                      # PVCs holding checkpoints or data sets, mounted in prepare and evaluate pods
        - {claim: datasets, mount_path: /data}
      cache_size: 50Gi              # bound on each pod's input cache (emptyDir at /var/cache/landscape)
      tmp_size: 4Gi                 # bound on each pod's /tmp; both set the ephemeral-storage request = limit
      # cache_claim: landscape-cache  # or: a ReadWriteMany PVC as the cache, shared by every pod and stage
      ephemeral_storage: true       # request = limit the pods' local disk; false where a Kueue ClusterQueue does not cover it
      one_node: false               # true: every pod runs on one node, so ReadWriteOnce claims are fine
      light_pods_on_gpu_nodes: false  # true: prepare and merge may land on GPU nodes (default: kept off them)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import landscape_job
from landscape_job.base.errors import UserError, shown
from landscape_job.base.schema import Section, default_of, key, object_schema, one_or_list, type_name

DEFAULT_IMAGE = f"ghcr.io/landscape-dev/landscape:{landscape_job.__version__}"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
AFFINITY_KEYS = ("nodeAffinity", "podAffinity", "podAntiAffinity")
WEEK_SECONDS = 7 * 24 * 3600
#: The Indexed Job limit on parallelism.
MAX_PARALLELISM = 100_000
#: Evaluate pods at once when ``parallelism`` is unset: every shard of a small run, but a
#: 10,000-shard run does not ask the scheduler for 10,000 pods at once (``launcher validate`` says so).
DEFAULT_PARALLELISM_CAP = 256


def evaluate_parallelism(parallelism: int | None, shards: int) -> int:
    """The evaluate Job's parallelism: the spec's, else every shard up to ``DEFAULT_PARALLELISM_CAP``."""
    return parallelism or min(shards, DEFAULT_PARALLELISM_CAP)

#: Label keys the renderer sets itself; ``kubernetes.labels`` may not override them.
RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "landscape.", "kueue.x-k8s.io/", "batch.kubernetes.io/")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_RESERVED_MOUNTS = ("/tmp", "/dev/shm", "/var/cache/landscape")


#: JSON Schema forms of the values the readers below check by hand.
_DNS_NAME_SCHEMA = {"type": "string", "pattern": _DNS_SUBDOMAIN.pattern, "maxLength": 253}
_DNS_LABEL_SCHEMA = {"type": "string", "pattern": _DNS_LABEL.pattern, "maxLength": 63}
_QUANTITY_SCHEMA = {"anyOf": [{"type": "string", "pattern": _QUANTITY.pattern},
                              {"type": "number", "exclusiveMinimum": 0}]}
_STRING_MAP_SCHEMA = {"type": "object", "additionalProperties": {"type": "string"}}
_TOLERATION_SCHEMA = {"type": "object", "properties": {
    "key": {"type": "string"}, "operator": {"enum": list(TOLERATION_OPERATORS)}, "value": {"type": "string"},
    "effect": {"enum": list(TOLERATION_EFFECTS)}, "tolerationSeconds": {"type": "integer", "minimum": 0}},
    "additionalProperties": False}
_AFFINITY_SCHEMA = {"type": "object", "properties": {k: {"type": "object"} for k in AFFINITY_KEYS},
                    "additionalProperties": False}


@dataclass(frozen=True)
class VolumeSpec:
    """A PersistentVolumeClaim mounted at the same path in the prepare and evaluate pods (checkpoints, data
    sets): they read it; merge reads only storage, so it mounts no claim (a ReadWriteOnce claim stays free)."""

    claim: str = key(json=_DNS_NAME_SCHEMA, description="the PersistentVolumeClaim's name")
    mount_path: str = key(description="an absolute path in every pod, other than /, /tmp, /dev/shm")
    read_only: bool = key(True, kind=bool)


@dataclass(frozen=True)
class KubernetesSpec:
    """The cluster settings of a run; see the module docstring for the YAML form."""

    image: str = key(DEFAULT_IMAGE, description="the pods' image")
    image_pull_policy: str = key("IfNotPresent", choices=PULL_POLICIES)
    image_pull_secrets: tuple[str, ...] = key((), kind=(list, str), json=one_or_list(_DNS_NAME_SCHEMA, choices=False))
    namespace: str = key("landscape", json=_DNS_LABEL_SCHEMA)
    #: GPUs a shard pod requests (request == limit); 0 renders CPU-only pods.
    gpus: int = key(1, kind=int, minimum=0, description="GPUs per evaluate pod; 0 on a CPU cluster")
    #: Memory of one of the cluster's GPUs; ``launcher estimate`` compares a shard's peak with it.
    gpu_memory: str | None = key(None, json=_QUANTITY_SCHEMA, description="memory of one GPU (16Gi: V100 or T4, "
                                                                        "80Gi: H100), for launcher estimate")
    #: CPU request of a shard pod; no CPU limit (throttling only slows the data loader).
    cpu: str = key("4", json=_QUANTITY_SCHEMA, description="CPU request of an evaluate pod (no limit)")
    #: Memory request and limit of a shard pod (equal: no overcommit, no surprise OOM kill).
    memory: str = key("32Gi", json=_QUANTITY_SCHEMA, description="memory request = limit of an evaluate pod")
    #: Size limit of the memory-backed /dev/shm of every pod (counted in its memory limit).
    shm_size: str = key("8Gi", json=_QUANTITY_SCHEMA, description="/dev/shm of every pod, below memory")
    #: CPU request and memory request/limit of the prepare and merge pods.
    prepare_merge_cpu: str = key("2", json=_QUANTITY_SCHEMA)
    prepare_merge_memory: str = key("8Gi", json=_QUANTITY_SCHEMA)
    #: Shard pods at once; ``None``: all shards.
    parallelism: int | None = key(None, kind=int, minimum=1, json={"type": "integer", "minimum": 1,
                                                                   "maximum": MAX_PARALLELISM},
                                  description="evaluate pods at once (default: the number of shards, "
                                              "at most 256)")
    #: Retries of one shard (and of the prepare and merge pods) before it counts as failed.
    backoff_limit_per_index: int = key(3, kind=int, minimum=0)
    #: Failed shards after which the evaluate Job stops; ``None``: run every shard to the end,
    #: so merge names all the missing ones at once.
    max_failed_indexes: int | None = key(None, kind=int, minimum=0)
    ttl_seconds_after_finished: int = key(WEEK_SECONDS, kind=int, minimum=0)
    #: Bound on the prepare and the evaluate Job both, where their own keys are unset.
    active_deadline_seconds: int | None = key(None, kind=int, minimum=1)
    #: Per-stage bounds (activeDeadlineSeconds); unset: sized from the run (``launcher.kubernetes.deadlines``).
    #: A Job created suspended counts its deadline from its release, not from submit.
    prepare_deadline_seconds: int | None = key(None, kind=int, minimum=1)
    evaluate_deadline_seconds: int | None = key(None, kind=int, minimum=1)
    merge_deadline_seconds: int | None = key(None, kind=int, minimum=1)
    #: An upper bound on one grid point's evaluation, in seconds: sizes the default deadlines.
    point_seconds: int = key(60, kind=int, minimum=1, description="upper bound on one point's evaluation (s); "
                                                                  "sizes the default stage deadlines")
    #: Placement of the evaluate-shaped pods (evaluate, and prepare when it runs Lanczos at θ*).
    node_selector: dict[str, str] = key(default_factory=dict, json=_STRING_MAP_SCHEMA)
    #: Added to the ``nvidia.com/gpu`` NoSchedule toleration that GPU pods always get.
    tolerations: tuple[dict[str, Any], ...] = key((), json={"type": "array", "items": _TOLERATION_SCHEMA})
    affinity: dict[str, Any] = key(default_factory=dict, json=_AFFINITY_SCHEMA)
    #: Placement of the light pods (merge, and prepare when it does not run Lanczos); none by default.
    cpu_node_selector: dict[str, str] = key(default_factory=dict, json=_STRING_MAP_SCHEMA)
    cpu_tolerations: tuple[dict[str, Any], ...] = key((), json={"type": "array", "items": _TOLERATION_SCHEMA})
    cpu_affinity: dict[str, Any] = key(default_factory=dict, json=_AFFINITY_SCHEMA)
    #: The GPU pods' runtimeClassName (``nvidia`` on k3s/RKE2-style set-ups without a default runtime).
    runtime_class: str | None = key(None, json=_DNS_NAME_SCHEMA, description="runtimeClassName of the GPU pods")
    #: Every pod's priorityClassName (a PriorityClass of the cluster).
    priority_class: str | None = key(None, json=_DNS_NAME_SCHEMA)
    #: Kueue's WorkloadPriorityClass (label ``kueue.x-k8s.io/priority-class``), with ``kueue_queue``.
    kueue_priority_class: str | None = key(None, json=_DNS_NAME_SCHEMA)
    #: The prepare and merge pods' service account (k8s/base binds it read-only to Jobs and Pods).
    service_account: str = key("landscape", json=_DNS_NAME_SCHEMA)
    #: Name of a Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally
    #: AWS_ENDPOINT_URL) become the pods' environment; never a value.
    s3_secret: str | None = key(None, json=_DNS_NAME_SCHEMA, description="a Secret holding AWS_ACCESS_KEY_ID / "
                                                                        "AWS_SECRET_ACCESS_KEY")
    kueue_queue: str | None = key(None, json=_DNS_LABEL_SCHEMA)
    #: Create the Jobs suspended (``kubectl patch job ... -p '{"spec":{"suspend":false}}'`` starts them).
    suspend: bool = key(False, kind=bool)
    labels: dict[str, str] = key(default_factory=dict, json=_STRING_MAP_SCHEMA)
    annotations: dict[str, str] = key(default_factory=dict, json=_STRING_MAP_SCHEMA)
    volumes: tuple[VolumeSpec, ...] = key((), json={"type": "array", "items": object_schema(VolumeSpec)},
                                          description="PersistentVolumeClaims mounted in the prepare and evaluate pods")
    #: Size limit of each pod's input cache emptyDir (fetched checkpoints, data sets).
    cache_size: str = key("20Gi", json=_QUANTITY_SCHEMA, description="bound on each pod's input cache")
    #: Size limit of each pod's /tmp emptyDir (HOME, compiler and matplotlib caches).
    tmp_size: str = key("4Gi", json=_QUANTITY_SCHEMA, description="bound on each pod's /tmp")
    #: A ReadWriteMany PVC used as the input cache instead of the emptyDir: every stage, shard
    #: and retried pod (on any node) then reuses what one pod fetched.
    cache_claim: str | None = key(None, json=_DNS_NAME_SCHEMA, description="a ReadWriteMany PVC as the input "
                                                                          "cache, shared by every pod")
    #: Request (= limit) ``ephemeral-storage``: the scheduler then places pods only where their disk fits,
    #: and the kubelet evicts a pod past it. A Kueue ClusterQueue must then cover it (false: no request).
    ephemeral_storage: bool = key(True, kind=bool, description="request and limit the pods' ephemeral storage "
                                                               "(false where a Kueue ClusterQueue does not cover it)")
    #: Every pod runs on one node (a one-node cluster): ReadWriteOnce claims are then fine (preflight).
    one_node: bool = key(False, kind=bool, description="every pod runs on one node: ReadWriteOnce claims are fine")
    #: Let prepare and merge (CPU pods) land on GPU nodes; by default a required node affinity keeps them off
    #: nodes labelled as GPU nodes, so they neither take a GPU node's room nor keep it from scaling down.
    light_pods_on_gpu_nodes: bool = key(False, kind=bool, description="let prepare and merge run on GPU nodes")


def kubernetes_schema() -> dict[str, Any]:
    """The JSON Schema of the ``kubernetes:`` section, from the declarations above."""
    return object_schema(KubernetesSpec, description="cluster settings, read only by the launcher")


def _default(name: str) -> Any:
    return default_of(KubernetesSpec, name)


def parse_quantity(value: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``8Gi``, ``1.5``) as a number; ValueError if malformed."""
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(value)
    return Decimal(match.group(1)) * _SUFFIX[match.group(3) or ""]


def _quantity(s: Section, name: str) -> str:
    raw = s.raw.get(name)
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (str, int, float))):
        raise UserError(f"{s.key(name)}: expected a quantity such as 4, 500m or 32Gi; got {type_name(raw)}")
    value = s.get(name, object, _default(name))
    text = str(value)
    try:
        amount = parse_quantity(text)
    except ValueError:
        raise UserError(f"{s.key(name)}: expected a Kubernetes quantity such as 4, 500m, 32Gi or 8G; "
                        f"got {shown(value)}") from None
    if amount <= 0:
        raise UserError(f"{s.key(name)}: must be positive, got {shown(value)}")
    return text


def _name(s: Section, name: str, pattern: re.Pattern[str] = _DNS_SUBDOMAIN, limit: int = 253,
          record: type = KubernetesSpec) -> Any:
    value = s.get(name, str, default_of(record, name))
    if value is not None:
        _check_name(value, s.key(name), pattern, limit)
    return value


def _check_name(value: str, key: str, pattern: re.Pattern[str] = _DNS_SUBDOMAIN, limit: int = 253) -> None:
    if len(value) > limit or not pattern.match(value):
        what = "a DNS label" if pattern is _DNS_LABEL else "a DNS subdomain name"
        raise UserError(f"{key}: expected {what} (lowercase letters, digits and '-', at most {limit} "
                        f"characters, starting and ending with a letter or digit); got {shown(value)}")


def _check_label_key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise UserError(f"{where}: keys must be strings, got {type_name(key)} {shown(key)}")
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 \
            or not _LABEL_NAME.match(name):
        raise UserError(f"{where}.{key}: not a valid Kubernetes label or annotation key "
                        f"([prefix/]name, name at most 63 letters, digits, '-', '_' or '.')")
    return key


def _string_map(s: Section, name: str, labels: bool = False) -> dict[str, str]:
    raw = s.get(name, dict, _default(name))
    where = s.key(name)
    result: dict[str, str] = {}
    for key, value in raw.items():
        _check_label_key(key, where)
        if not isinstance(value, str):
            raise UserError(f"{where}.{key}: expected a string, got {type_name(value)} {shown(value)} "
                            f"(quote it in YAML)")
        if labels and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            raise UserError(f"{where}.{key}: not a valid label value (at most 63 letters, digits, '-', '_' "
                            f"or '.', starting and ending with a letter or digit); got {shown(value)}")
        result[key] = value
    return result


def _names_list(s: Section, name: str) -> tuple[str, ...]:
    raw = s.get(name, (list, str), _default(name))
    items = [raw] if isinstance(raw, str) else raw
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise UserError(f"{s.key(name)}[{i}]: expected a Secret name, got {type_name(item)} {shown(item)}")
        _check_name(item, f"{s.key(name)}[{i}]")
    return tuple(items)


def _tolerations(s: Section, name: str = "tolerations") -> tuple[dict[str, Any], ...]:
    raw = s.get(name, list, _default(name))
    result = []
    for i, item in enumerate(raw):
        t = Section(item, f"{s.key(name)}[{i}]")
        key = t.get("key", str, None)
        operator = t.choice("operator", TOLERATION_OPERATORS, "Equal")
        value = t.get("value", str, None)
        effect = t.choice("effect", TOLERATION_EFFECTS, None)
        seconds = t.integer("tolerationSeconds", None, minimum=0)
        t.finish()
        if operator == "Exists" and value is not None:
            raise UserError(f"{t.key('value')}: must be empty when operator is Exists")
        if key is None and operator != "Exists":
            raise UserError(f"{t.key('key')}: required unless operator is Exists")
        if seconds is not None and effect != "NoExecute":
            raise UserError(f"{t.key('tolerationSeconds')}: only with effect NoExecute")
        toleration = {"key": key, "operator": operator, "value": value, "effect": effect,
                      "tolerationSeconds": seconds}
        result.append({k: v for k, v in toleration.items() if v is not None})
    return tuple(result)


def _affinity(s: Section, name: str = "affinity") -> dict[str, Any]:
    raw = s.get(name, dict, _default(name))
    for key, value in raw.items():
        if key not in AFFINITY_KEYS:
            raise UserError(f"{s.key(name)}.{key}: unknown key; expected one of {', '.join(AFFINITY_KEYS)}")
        if not isinstance(value, dict):
            raise UserError(f"{s.key(name)}.{key}: expected a mapping, got {type_name(value)}")
    return raw


def _volumes(s: Section) -> tuple[VolumeSpec, ...]:
    raw = s.get("volumes", list, _default("volumes"))
    result = []
    paths: set[str] = set()
    for i, item in enumerate(raw):
        v = Section(item, f"{s.key('volumes')}[{i}]")
        claim = _name(v, "claim", record=VolumeSpec)
        path = v.read(VolumeSpec, "mount_path")
        read_only = v.read(VolumeSpec, "read_only")
        v.finish()
        if not path.startswith("/") or path.rstrip("/") in ("", *_RESERVED_MOUNTS) or ":" in path:
            raise UserError(f"{v.key('mount_path')}: expected an absolute path other than /, /tmp, "
                            f"/dev/shm and /var/cache/landscape; got {shown(path)}")
        if path in paths:
            raise UserError(f"{v.key('mount_path')}: {path} is mounted twice")
        paths.add(path)
        result.append(VolumeSpec(claim=claim, mount_path=path, read_only=read_only))
    return tuple(result)


#: ``name[:tag]@sha256:<64 hex>``: an image pinned by digest (what runs is what was tested, tags move).
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_image_digest(image: str) -> None:
    """An image given by digest (``registry/name@sha256:...``, recommended) must carry a well-formed one:
    a typo there would only surface as ImagePullBackOff on every pod."""
    if "@" in image:
        name, _, digest = image.partition("@")
        if not name or not _DIGEST.match(digest):
            raise UserError(f"kubernetes.image: a digest must be @sha256: and 64 lowercase hex digits, as in "
                            f"registry.example.com/landscape@sha256:<64 hex>; got {shown(image)}")


def parse_kubernetes(raw: object) -> KubernetesSpec:
    """Validates the ``kubernetes:`` mapping of a spec (``None`` or ``{}``: all defaults)."""
    s = Section(raw, "kubernetes")
    image = s.read(KubernetesSpec, "image")
    if not image or any(c.isspace() for c in image):
        raise UserError(f"kubernetes.image: expected an image reference such as {DEFAULT_IMAGE}; got {shown(image)}")
    check_image_digest(image)
    pull_policy = s.read(KubernetesSpec, "image_pull_policy")
    pull_secrets = _names_list(s, "image_pull_secrets")
    namespace = _name(s, "namespace", _DNS_LABEL, 63)
    gpus = s.read(KubernetesSpec, "gpus")
    gpu_memory = _quantity(s, "gpu_memory") if s.has("gpu_memory") else None
    cpu = _quantity(s, "cpu")
    memory = _quantity(s, "memory")
    shm_size = _quantity(s, "shm_size")
    if parse_quantity(shm_size) >= parse_quantity(memory):
        raise UserError(f"kubernetes.shm_size: {shm_size} of /dev/shm counts against the memory limit "
                        f"kubernetes.memory ({memory}); make it smaller")
    pm_cpu = _quantity(s, "prepare_merge_cpu")
    pm_memory = _quantity(s, "prepare_merge_memory")
    parallelism = s.read(KubernetesSpec, "parallelism")
    if parallelism is not None and parallelism > MAX_PARALLELISM:
        raise UserError(f"kubernetes.parallelism: at most {MAX_PARALLELISM} (the Indexed Job limit), got {parallelism}")
    backoff, max_failed, ttl, deadline, prepare_deadline, evaluate_deadline, merge_deadline, point_seconds = \
        s.read_all(KubernetesSpec, ("backoff_limit_per_index", "max_failed_indexes", "ttl_seconds_after_finished",
                                    "active_deadline_seconds", "prepare_deadline_seconds",
                                    "evaluate_deadline_seconds", "merge_deadline_seconds", "point_seconds")).values()
    node_selector = _string_map(s, "node_selector", labels=True)
    tolerations = _tolerations(s)
    affinity = _affinity(s)
    cpu_node_selector = _string_map(s, "cpu_node_selector", labels=True)
    cpu_tolerations = _tolerations(s, "cpu_tolerations")
    cpu_affinity = _affinity(s, "cpu_affinity")
    runtime_class = _name(s, "runtime_class")
    priority_class = _name(s, "priority_class")
    kueue_priority_class = _name(s, "kueue_priority_class")
    service_account = _name(s, "service_account")
    s3_secret = _name(s, "s3_secret")
    kueue_queue = _name(s, "kueue_queue", _DNS_LABEL, 63)
    suspend = s.read(KubernetesSpec, "suspend")
    labels = _string_map(s, "labels", labels=True)
    for key in labels:
        if key.startswith(RESERVED_LABEL_PREFIXES):
            raise UserError(f"kubernetes.labels.{key}: set by the launcher itself; choose another key")
    annotations = _string_map(s, "annotations")
    volumes = _volumes(s)
    cache_size = _quantity(s, "cache_size")
    tmp_size = _quantity(s, "tmp_size")
    cache_claim = _name(s, "cache_claim")
    ephemeral_storage, one_node, light_on_gpu = s.read_all(
        KubernetesSpec, ("ephemeral_storage", "one_node", "light_pods_on_gpu_nodes")).values()
    if cache_claim is not None and s.has("cache_size"):
        raise UserError("kubernetes.cache_size: bounds the per-pod emptyDir cache, which kubernetes.cache_claim "
                        "replaces; the claim's own size bounds it; remove one of the two")
    s.finish()
    return KubernetesSpec(
        image=image, image_pull_policy=pull_policy, image_pull_secrets=pull_secrets, namespace=namespace,
        gpus=gpus, gpu_memory=gpu_memory, cpu=cpu, memory=memory, shm_size=shm_size, prepare_merge_cpu=pm_cpu,
        prepare_merge_memory=pm_memory, parallelism=parallelism, backoff_limit_per_index=backoff,
        max_failed_indexes=max_failed, ttl_seconds_after_finished=ttl, active_deadline_seconds=deadline,
        prepare_deadline_seconds=prepare_deadline, evaluate_deadline_seconds=evaluate_deadline,
        merge_deadline_seconds=merge_deadline, point_seconds=point_seconds, node_selector=node_selector,
        tolerations=tolerations, affinity=affinity, cpu_node_selector=cpu_node_selector,
        cpu_tolerations=cpu_tolerations, cpu_affinity=cpu_affinity, runtime_class=runtime_class,
        priority_class=priority_class, kueue_priority_class=kueue_priority_class, service_account=service_account,
        s3_secret=s3_secret, kueue_queue=kueue_queue, suspend=suspend, labels=labels, annotations=annotations,
        volumes=volumes, cache_size=cache_size, tmp_size=tmp_size, cache_claim=cache_claim,
        ephemeral_storage=ephemeral_storage, one_node=one_node, light_pods_on_gpu_nodes=light_on_gpu)
