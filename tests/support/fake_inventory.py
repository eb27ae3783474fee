"""What the fake API server (tests/support/fake_k8s.py) knows of the cluster beyond Jobs and pods:
nodes, claims, storage and runtime classes, the server version, SelfSubjectAccessReview,
and Kueue (tests/support/fake_kueue.py).

In the real API's shapes, reduced to what ``launcher doctor`` and submit's preflight read:

* ``GET /version``; ``GET /api/v1/nodes`` (``status.allocatable``, ``metadata.labels``,
  ``spec.taints``); ``GET .../persistentvolumeclaims/<name>`` (``spec.accessModes``,
  ``spec.storageClassName``, ``status.phase``); ``GET /apis/storage.k8s.io/v1/storageclasses/<name>``;
  ``GET /apis/node.k8s.io/v1/runtimeclasses/<name>``;
* ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``: every authenticated
  identity may ask, as on a real server; the answer is the fake's own authorizer's.

Cluster-scoped objects (nodes, classes, ClusterQueues) are readable only through a
ClusterRole, which the fake does not model as objects: ``cluster_reads`` names the
resources the launcher's user may read (all by default; a test empties it to play a
user without that ClusterRole, who gets a 403 as from a real server).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_k8s import FakeCluster
    from fake_rbac import Identity

CLUSTER_SCOPED = {"nodes": ("", "Node"), "storageclasses": ("storage.k8s.io", "StorageClass"),
                  "runtimeclasses": ("node.k8s.io", "RuntimeClass"), "clusterqueues": ("kueue.x-k8s.io", "ClusterQueue")}
_CLUSTER_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>storage\.k8s\.io|node\.k8s\.io|kueue\.x-k8s\.io)/v1(?:beta1)?)/"
                           r"(?P<resource>nodes|storageclasses|runtimeclasses|clusterqueues)(?:/(?P<name>[a-z0-9.-]+))?$")
_NAMESPACED_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>kueue\.x-k8s\.io)/v1beta1)/namespaces/(?P<ns>[a-z0-9-]+)/"
                              r"(?P<resource>persistentvolumeclaims|localqueues)(?:/(?P<name>[a-z0-9.-]+))?$")
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def node(name: str, cpu: str, memory: str, ephemeral: str, gpus: int = 0, labels: dict | None = None,
         taints: list[dict] | None = None, gpu_resource: str = "nvidia.com/gpu") -> dict:
    """A Node as the kubelet reports it: allocatable (below capacity), labels, taints."""
    allocatable = {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral, "pods": "110"}
    node_labels = {"kubernetes.io/hostname": name, **(labels or {})}
    if gpus:
        allocatable[gpu_resource] = str(gpus)
        node_labels.setdefault("nvidia.com/gpu.present", "true")
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels},
            "spec": {"taints": taints} if taints else {},
            "status": {"allocatable": allocatable, "capacity": dict(allocatable),
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def claim(name: str, modes: list[str], phase: str = "Bound", storage_class: str = "standard",
          namespace: str = "landscape") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": modes, "storageClassName": storage_class,
                     "resources": {"requests": {"storage": "100Gi"}}},
            "status": {"phase": phase, **({"accessModes": modes} if phase == "Bound" else {})}}


def roomy_nodes() -> list[dict]:
    """The fake's nodes unless a test says otherwise: a big CPU node and a big 8-GPU node, so every
    pod a test renders fits somewhere and submit's preflight passes."""
    return [node("cpu-big", "32", "128Gi", "500Gi"),
            node("gpu-big", "96", "1000Gi", "2000Gi", gpus=8)]


@dataclass
class Inventory:
    """The cluster's nodes, claims and classes, and who may read the cluster-scoped ones."""

    version: tuple[int, int] = (1, 30)
    nodes: list[dict] = field(default_factory=roomy_nodes)
    claims: dict[tuple[str, str], dict] = field(default_factory=dict)
    storage_classes: dict[str, dict] = field(default_factory=dict)
    runtime_classes: dict[str, dict] = field(default_factory=dict)
    cluster_reads: set[str] = field(default_factory=lambda: set(CLUSTER_SCOPED))

    def add_claim(self, obj: dict) -> None:
        self.claims[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def add_runtime_class(self, name: str, handler: str = "nvidia") -> None:
        self.runtime_classes[name] = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                      "metadata": {"name": name}, "handler": handler}

    def add_storage_class(self, name: str, provisioner: str) -> None:
        self.storage_classes[name] = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                      "metadata": {"name": name}, "provisioner": provisioner}


def handle(fake: "FakeCluster", identity: "Identity", method: str, path: str, body: dict | None) -> Any:
    """The answer to a request for an inventory path, None for any other path; raises ApiError."""
    from fake_k8s import ApiError

    inventory: Inventory = fake.inventory
    if path.rstrip("/") == "/version" and method == "GET":
        major, minor = inventory.version
        return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0",
                "platform": "linux/amd64"}
    if path == SSAR_PATH and method == "POST":
        return _review(fake, identity, body or {})
    match = _CLUSTER_PATH.match(path)
    if match and method == "GET":
        resource, name = match["resource"], match["name"]
        group, kind = CLUSTER_SCOPED[resource]
        if resource == "clusterqueues" and not fake.kueue.installed:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = "get" if name else "list"
        if resource not in inventory.cluster_reads:
            qualified = f"{resource}.{group}" if group else resource
            raise ApiError(403, "Forbidden", f'{qualified}{f" {name!r}" if name else ""} is forbidden: User '
                           f'"{identity.username}" cannot {verb} resource "{resource}" in API group "{group}" '
                           f"at the cluster scope", {"name": name or "", "group": group, "kind": resource})
        store = {"nodes": {n["metadata"]["name"]: n for n in inventory.nodes},
                 "storageclasses": inventory.storage_classes, "runtimeclasses": inventory.runtime_classes,
                 "clusterqueues": fake.kueue.cluster_queues}[resource]
        return _get_or_list(store, name, resource, group, kind)
    match = _NAMESPACED_PATH.match(path)
    if match and method == "GET":
        ns, resource, name = match["ns"], match["resource"], match["name"]
        group = match["group"] or ""
        fake._authorize(identity, "get" if name else "list", group, resource, name or "", ns)  # before the 404
        if resource == "localqueues" and not fake.kueue.installed:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        store = (inventory.claims if resource == "persistentvolumeclaims" else fake.kueue.local_queues)
        in_ns = {n: o for (n_s, n), o in store.items() if n_s == ns}
        kind = "PersistentVolumeClaim" if resource == "persistentvolumeclaims" else "LocalQueue"
        return _get_or_list(in_ns, name, resource, group, kind)
    return None


def _get_or_list(store: dict[str, dict], name: str | None, resource: str, group: str, kind: str) -> dict:
    from fake_k8s import ApiError

    if name:
        if name not in store:
            raise ApiError(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found',
                           {"name": name, "group": group, "kind": resource})
        return copy.deepcopy(store[name])
    version = f"{group}/v1beta1" if group == "kueue.x-k8s.io" else (f"{group}/v1" if group else "v1")
    return {"apiVersion": version, "kind": f"{kind}List", "metadata": {},
            "items": [copy.deepcopy(o) for _, o in sorted(store.items())]}


def _review(fake: "FakeCluster", identity: "Identity", body: dict) -> dict:
    """A SelfSubjectAccessReview answered by the fake's authorizer (namespaced Roles, the cluster reads)."""
    attributes = (body.get("spec") or {}).get("resourceAttributes") or {}
    resource = attributes.get("resource", "")
    if attributes.get("subresource"):
        resource += "/" + attributes["subresource"]
    namespace = attributes.get("namespace", "")
    if resource in CLUSTER_SCOPED:
        allowed = resource in fake.inventory.cluster_reads and attributes.get("verb") in ("get", "list", "watch")
    else:
        with fake.lock:
            allowed = not fake.rbac or _allows(fake, identity, attributes, resource, namespace)
    result = copy.deepcopy(body)
    result["status"] = {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule allows it"})}
    return result


def _allows(fake: "FakeCluster", identity: "Identity", attributes: dict, resource: str, namespace: str) -> bool:
    from fake_rbac import allows

    return allows(fake._rules(identity, namespace), attributes.get("verb", ""), attributes.get("group", ""),
                  resource, attributes.get("name", ""))
