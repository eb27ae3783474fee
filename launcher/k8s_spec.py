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
      cpu: "4"                      # request; no CPU limit is set
      memory: 32Gi                  # request == limit
      shm_size: 8Gi                 # /dev/shm for data-loader workers
      parallelism: 16               # default: the number of shards
      backoff_limit_per_index: 3
      s3_secret: landscape-s3       # a Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
      kueue_queue: team-a
      volumes:                      # PVCs holding checkpoints or data sets, mounted in every pod
        - {claim: datasets, mount_path: /data}
      cache_size: 50Gi              # bound on each pod's input cache (emptyDir at /var/cache/landscape)
      # cache_claim: landscape-cache  # or: a ReadWriteMany PVC as the cache, shared by every pod and stage
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import landscape_job
from landscape_job.errors import UserError
from landscape_job.schema import REQUIRED, Section, type_name

DEFAULT_IMAGE = f"ghcr.io/landscape-dev/landscape:{landscape_job.__version__}"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
AFFINITY_KEYS = ("nodeAffinity", "podAffinity", "podAntiAffinity")
WEEK_SECONDS = 7 * 24 * 3600

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


@dataclass(frozen=True)
class VolumeSpec:
    """A PersistentVolumeClaim mounted at the same path in every pod (checkpoints, data sets)."""

    claim: str
    mount_path: str
    read_only: bool = True


@dataclass(frozen=True)
class KubernetesSpec:
    """The cluster settings of a run; see the module docstring for the YAML form."""

    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    namespace: str = "landscape"
    #: GPUs a shard pod requests (request == limit); 0 renders CPU-only pods.
    gpus: int = 1
    #: CPU request of a shard pod; no CPU limit (throttling only slows the data loader).
    cpu: str = "4"
    #: Memory request and limit of a shard pod (equal: no overcommit, no surprise OOM kill).
    memory: str = "32Gi"
    #: Size limit of the memory-backed /dev/shm of every pod (counted in its memory limit).
    shm_size: str = "8Gi"
    #: CPU request and memory request/limit of the prepare and merge pods.
    prepare_merge_cpu: str = "2"
    prepare_merge_memory: str = "8Gi"
    #: Shard pods at once; ``None``: all shards.
    parallelism: int | None = None
    #: Retries of one shard (and of the prepare and merge pods) before it counts as failed.
    backoff_limit_per_index: int = 3
    #: Failed shards after which the evaluate Job stops; ``None``: run every shard to the end,
    #: so merge names all the missing ones at once.
    max_failed_indexes: int | None = None
    ttl_seconds_after_finished: int = WEEK_SECONDS
    #: Bound on the prepare and evaluate Jobs; ``None``: unbounded.
    active_deadline_seconds: int | None = None
    #: Bound on the merge Job. It is created at submit time with the others and waits for the
    #: shards, so this counts from submit and must cover the evaluate stage.
    merge_deadline_seconds: int = 3 * 24 * 3600
    node_selector: dict[str, str] = field(default_factory=dict)
    #: Added to the ``nvidia.com/gpu`` NoSchedule toleration that GPU pods always get.
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = field(default_factory=dict)
    #: The prepare and merge pods' service account (k8s/base binds it read-only to Jobs and Pods).
    service_account: str = "landscape"
    #: Name of a Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally
    #: AWS_ENDPOINT_URL) become the pods' environment; never a value.
    s3_secret: str | None = None
    kueue_queue: str | None = None
    #: Create the Jobs suspended (``kubectl patch job ... -p '{"spec":{"suspend":false}}'`` starts them).
    suspend: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeSpec, ...] = ()
    #: Size limit of each pod's input cache emptyDir (fetched checkpoints, data sets); None: unbounded.
    cache_size: str | None = None
    #: A ReadWriteMany PVC used as the input cache instead of the emptyDir: every stage, shard
    #: and retried pod (on any node) then reuses what one pod fetched.
    cache_claim: str | None = None


def parse_quantity(value: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``8Gi``, ``1.5``) as a number; ValueError if malformed."""
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(value)
    return Decimal(match.group(1)) * _SUFFIX[match.group(3) or ""]


def _quantity(s: Section, name: str, default: str) -> str:
    raw = s.raw.get(name)
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (str, int, float))):
        raise UserError(f"{s.key(name)}: expected a quantity such as 4, 500m or 32Gi; got {type_name(raw)}")
    value = s.get(name, object, default)
    text = str(value)
    try:
        amount = parse_quantity(text)
    except ValueError:
        raise UserError(f"{s.key(name)}: expected a Kubernetes quantity such as 4, 500m, 32Gi or 8G; "
                        f"got {value!r}") from None
    if amount <= 0:
        raise UserError(f"{s.key(name)}: must be positive, got {value!r}")
    return text


def _name(s: Section, name: str, default: Any, pattern: re.Pattern[str] = _DNS_SUBDOMAIN,
          limit: int = 253) -> Any:
    value = s.get(name, str, default)
    if value is not None:
        _check_name(value, s.key(name), pattern, limit)
    return value


def _check_name(value: str, key: str, pattern: re.Pattern[str] = _DNS_SUBDOMAIN, limit: int = 253) -> None:
    if len(value) > limit or not pattern.match(value):
        what = "a DNS label" if pattern is _DNS_LABEL else "a DNS subdomain name"
        raise UserError(f"{key}: expected {what} (lowercase letters, digits and '-', at most {limit} "
                        f"characters, starting and ending with a letter or digit); got {value!r}")


def _check_label_key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise UserError(f"{where}: keys must be strings, got {type_name(key)} {key!r}")
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 \
            or not _LABEL_NAME.match(name):
        raise UserError(f"{where}.{key}: not a valid Kubernetes label or annotation key "
                        f"([prefix/]name, name at most 63 letters, digits, '-', '_' or '.')")
    return key


def _string_map(s: Section, name: str, labels: bool = False) -> dict[str, str]:
    raw = s.get(name, dict, {})
    where = s.key(name)
    result: dict[str, str] = {}
    for key, value in raw.items():
        _check_label_key(key, where)
        if not isinstance(value, str):
            raise UserError(f"{where}.{key}: expected a string, got {type_name(value)} {value!r} "
                            f"(quote it in YAML)")
        if labels and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            raise UserError(f"{where}.{key}: not a valid label value (at most 63 letters, digits, '-', '_' "
                            f"or '.', starting and ending with a letter or digit); got {value!r}")
        result[key] = value
    return result


def _names_list(s: Section, name: str) -> tuple[str, ...]:
    raw = s.get(name, (list, str), [])
    items = [raw] if isinstance(raw, str) else raw
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise UserError(f"{s.key(name)}[{i}]: expected a Secret name, got {type_name(item)} {item!r}")
        _check_name(item, f"{s.key(name)}[{i}]")
    return tuple(items)


def _tolerations(s: Section) -> tuple[dict[str, Any], ...]:
    raw = s.get("tolerations", list, [])
    result = []
    for i, item in enumerate(raw):
        t = Section(item, f"{s.key('tolerations')}[{i}]")
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


def _affinity(s: Section) -> dict[str, Any]:
    raw = s.get("affinity", dict, {})
    for key, value in raw.items():
        if key not in AFFINITY_KEYS:
            raise UserError(f"{s.key('affinity')}.{key}: unknown key; expected one of {', '.join(AFFINITY_KEYS)}")
        if not isinstance(value, dict):
            raise UserError(f"{s.key('affinity')}.{key}: expected a mapping, got {type_name(value)}")
    return raw


def _volumes(s: Section) -> tuple[VolumeSpec, ...]:
    raw = s.get("volumes", list, [])
    result = []
    paths: set[str] = set()
    for i, item in enumerate(raw):
        v = Section(item, f"{s.key('volumes')}[{i}]")
        claim = _name(v, "claim", REQUIRED)
        path = v.get("mount_path", str)
        read_only = v.get("read_only", bool, True)
        v.finish()
        if not path.startswith("/") or path.rstrip("/") in ("", *_RESERVED_MOUNTS) or ":" in path:
            raise UserError(f"{v.key('mount_path')}: expected an absolute path other than /, /tmp, "
                            f"/dev/shm and /var/cache/landscape; got {path!r}")
        if path in paths:
            raise UserError(f"{v.key('mount_path')}: {path} is mounted twice")
        paths.add(path)
        result.append(VolumeSpec(claim=claim, mount_path=path, read_only=read_only))
    return tuple(result)


def parse_kubernetes(raw: object) -> KubernetesSpec:
    """Validates the ``kubernetes:`` mapping of a spec (``None`` or ``{}``: all defaults)."""
    s = Section(raw, "kubernetes")
    image = s.get("image", str, DEFAULT_IMAGE)
    if not image or any(c.isspace() for c in image):
        raise UserError(f"kubernetes.image: expected an image reference such as {DEFAULT_IMAGE}; got {image!r}")
    pull_policy = s.choice("image_pull_policy", PULL_POLICIES, "IfNotPresent")
    pull_secrets = _names_list(s, "image_pull_secrets")
    namespace = _name(s, "namespace", "landscape", _DNS_LABEL, 63)
    gpus = s.integer("gpus", 1, minimum=0)
    cpu = _quantity(s, "cpu", "4")
    memory = _quantity(s, "memory", "32Gi")
    shm_size = _quantity(s, "shm_size", "8Gi")
    if parse_quantity(shm_size) >= parse_quantity(memory):
        raise UserError(f"kubernetes.shm_size: {shm_size} of /dev/shm counts against the memory limit "
                        f"kubernetes.memory ({memory}); make it smaller")
    pm_cpu = _quantity(s, "prepare_merge_cpu", "2")
    pm_memory = _quantity(s, "prepare_merge_memory", "8Gi")
    parallelism = s.integer("parallelism", None, minimum=1)
    if parallelism is not None and parallelism > 100_000:
        raise UserError(f"kubernetes.parallelism: at most 100000 (the Indexed Job limit), got {parallelism}")
    backoff = s.integer("backoff_limit_per_index", 3, minimum=0)
    max_failed = s.integer("max_failed_indexes", None, minimum=0)
    ttl = s.integer("ttl_seconds_after_finished", WEEK_SECONDS, minimum=0)
    deadline = s.integer("active_deadline_seconds", None, minimum=1)
    merge_deadline = s.integer("merge_deadline_seconds", 3 * 24 * 3600, minimum=1)
    node_selector = _string_map(s, "node_selector", labels=True)
    tolerations = _tolerations(s)
    affinity = _affinity(s)
    service_account = _name(s, "service_account", "landscape")
    s3_secret = _name(s, "s3_secret", None)
    kueue_queue = _name(s, "kueue_queue", None, _DNS_LABEL, 63)
    suspend = s.get("suspend", bool, False)
    labels = _string_map(s, "labels", labels=True)
    for key in labels:
        if key.startswith(RESERVED_LABEL_PREFIXES):
            raise UserError(f"kubernetes.labels.{key}: set by the launcher itself; choose another key")
    annotations = _string_map(s, "annotations")
    volumes = _volumes(s)
    cache_size = _quantity(s, "cache_size", "1") if s.has("cache_size") else s.get("cache_size", str, None)
    cache_claim = _name(s, "cache_claim", None)
    if cache_claim is not None and cache_size is not None:
        raise UserError("kubernetes.cache_size: bounds the per-pod emptyDir cache, which kubernetes.cache_claim "
                        "replaces; the claim's own size bounds it; remove one of the two")
    s.finish()
    return KubernetesSpec(
        image=image, image_pull_policy=pull_policy, image_pull_secrets=pull_secrets, namespace=namespace,
        gpus=gpus, cpu=cpu, memory=memory, shm_size=shm_size, prepare_merge_cpu=pm_cpu,
        prepare_merge_memory=pm_memory, parallelism=parallelism, backoff_limit_per_index=backoff,
        max_failed_indexes=max_failed, ttl_seconds_after_finished=ttl, active_deadline_seconds=deadline,
        merge_deadline_seconds=merge_deadline, node_selector=node_selector, tolerations=tolerations,
        affinity=affinity, service_account=service_account, s3_secret=s3_secret, kueue_queue=kueue_queue,
        suspend=suspend, labels=labels, annotations=annotations, volumes=volumes, cache_size=cache_size,
        cache_claim=cache_claim)
