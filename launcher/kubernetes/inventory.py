"""What the cluster is, read once for ``launcher doctor`` and submit's preflight: typed facts.

Each fact is read with one request through ``Cluster.read``; a fact the account may not
read (403) is ``None`` and its checks say "skipped" instead of guessing. The reading is
the only I/O here; ``launcher.kubernetes.fit`` and ``launcher.kubernetes.doctor`` judge the facts
as pure functions, so the tests can judge a cluster they describe in a few lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from launcher.kubernetes.section import KubernetesSpec, parse_quantity

if TYPE_CHECKING:
    from launcher.kubernetes.cluster import Cluster

#: What a claim read from nodes on different hosts must allow (ReadWriteOnce binds to one node).
MULTI_NODE_MODES = ("ReadOnlyMany", "ReadWriteMany")
#: A LocalQueue of this name takes every Job of its namespace that names no queue (Kueue's LocalQueueDefaulting).
DEFAULT_LOCAL_QUEUE = "default"


def quantities(raw: dict[str, Any] | None) -> dict[str, Decimal]:
    """A resource list (``{"cpu": "7910m", ...}``) as numbers; a value that is no quantity is left out."""
    result = {}
    for name, value in (raw or {}).items():
        try:
            result[name] = parse_quantity(str(value))
        except ValueError:
            continue
    return result


@dataclass(frozen=True)
class NodeFacts:
    """A node as the scheduler weighs it: allocatable (what pods may request), labels, taints."""

    name: str
    allocatable: dict[str, Decimal]
    labels: dict[str, str]
    taints: tuple[dict[str, Any], ...]
    ready: bool = True
    unschedulable: bool = False

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> "NodeFacts":
        status, spec = item.get("status") or {}, item.get("spec") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return cls(item["metadata"]["name"], quantities(status.get("allocatable")),
                   dict(item["metadata"].get("labels") or {}), tuple(spec.get("taints") or ()), ready,
                   bool(spec.get("unschedulable")))

    def gpus(self, resource: str) -> int:
        return int(self.allocatable.get(resource, 0))


@dataclass(frozen=True)
class ClaimFacts:
    """A PersistentVolumeClaim the spec mounts: does it exist, is it bound, from how many nodes may it be read."""

    name: str
    found: bool
    phase: str = ""
    modes: tuple[str, ...] = ()
    storage_class: str = ""

    @property
    def multi_node(self) -> bool:
        return any(mode in MULTI_NODE_MODES for mode in self.modes)


@dataclass(frozen=True)
class QueueFacts:
    """The LocalQueue a run enters and its ClusterQueue: what it covers and its quota (first flavor)."""

    local_queue: str
    #: None: the account may not read LocalQueues.
    found: bool | None
    cluster_queue: str = ""
    #: None: the ClusterQueue could not be read (forbidden, or it does not exist: ``cluster_queue_found``).
    covered: frozenset[str] | None = None
    quota: dict[str, Decimal] = field(default_factory=dict)
    cluster_queue_found: bool | None = None


@dataclass
class ClusterFacts:
    """Everything doctor and preflight judge; ``None`` where the account may not read it."""

    namespace: str
    version: tuple[int, int] | None = None
    git_version: str = ""
    nodes: list[NodeFacts] | None = None
    claims: dict[str, ClaimFacts | None] = field(default_factory=dict)
    #: The spec's runtime class: True found, False missing, None unreadable or none asked for.
    runtime_class: bool | None = None
    #: Kueue's API served: True, False, None (unreadable).
    kueue: bool | None = None
    local_queues: list[str] | None = None
    queue: QueueFacts | None = None


def _version(raw: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return int(str(raw.get("major", "")).rstrip("+")), int(str(raw.get("minor", "")).rstrip("+"))
    except ValueError:
        return None


def effective_queue(k8s: KubernetesSpec, facts: ClusterFacts) -> str | None:
    """The LocalQueue the run's Jobs enter: the spec's ``kueue_queue``, else a ``default`` LocalQueue
    of the namespace (Kueue's webhook would put them there anyway), else none."""
    if k8s.kueue_queue:
        return k8s.kueue_queue
    if facts.local_queues is not None and DEFAULT_LOCAL_QUEUE in facts.local_queues:
        return DEFAULT_LOCAL_QUEUE
    return None


def _queue(cluster: Cluster, name: str) -> QueueFacts:
    code, local = cluster.read("localqueues", name)
    if code != 200:
        return QueueFacts(name, found=False if code == 404 else None)
    target = (local.get("spec") or {}).get("clusterQueue", "")
    code, cq = cluster.read("clusterqueues", target)
    if code != 200:
        return QueueFacts(name, True, target, cluster_queue_found=False if code == 404 else None)
    covered: set[str] = set()
    quota: dict[str, Decimal] = {}
    for group in (cq.get("spec") or {}).get("resourceGroups") or []:
        covered.update(group.get("coveredResources") or [])
        flavors = group.get("flavors") or [{}]
        for resource in flavors[0].get("resources") or []:
            quota.update(quantities({resource["name"]: resource.get("nominalQuota")}))
    return QueueFacts(name, True, target, frozenset(covered), quota, True)


def gather(cluster: Cluster, k8s: KubernetesSpec | None) -> ClusterFacts:
    """Reads the facts; with a ``kubernetes:`` section, also its claims, runtime class and queue."""
    facts = ClusterFacts(cluster.namespace)
    code, version = cluster.read("version")
    if code == 200:
        facts.version, facts.git_version = _version(version), str(version.get("gitVersion", ""))
    code, nodes = cluster.read("nodes")
    if code == 200:
        facts.nodes = [NodeFacts.from_api(item) for item in nodes.get("items") or []]
    code, queues = cluster.read("localqueues")
    facts.kueue = {200: True, 404: False}.get(code)
    if code == 200:
        facts.local_queues = sorted(q["metadata"]["name"] for q in queues.get("items") or [])
    if k8s is None:
        return facts
    for volume in [*k8s.volumes, *([] if not k8s.cache_claim else [k8s.cache_claim])]:
        name = volume if isinstance(volume, str) else volume.claim
        code, pvc = cluster.read("persistentvolumeclaims", name)
        facts.claims[name] = (None if code == 403 else ClaimFacts(name, False) if code == 404 else ClaimFacts(
            name, True, (pvc.get("status") or {}).get("phase", ""),
            tuple((pvc.get("status") or {}).get("accessModes") or (pvc.get("spec") or {}).get("accessModes") or ()),
            (pvc.get("spec") or {}).get("storageClassName") or ""))
    if k8s.runtime_class and k8s.gpus:
        code, _ = cluster.read("runtimeclasses", k8s.runtime_class)
        facts.runtime_class = {200: True, 404: False}.get(code)
    queue = effective_queue(k8s, facts)
    if queue and facts.kueue is not False:
        facts.queue = _queue(cluster, queue)
    return facts
