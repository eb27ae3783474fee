"""Where a run's pods may go: the evaluate-shaped pods on GPU nodes, the light ones off them.

The evaluate-shaped pods (evaluate, and a prepare that computes the Hessian) get the main
placement (``node_selector``, ``tolerations``, ``affinity``) and, where they request GPUs,
the ``nvidia.com/gpu`` NoSchedule toleration and the runtime class. The light pods (merge,
a plain prepare) get the ``cpu_*`` placement and, on a GPU run, a required node affinity
that keeps them off nodes labelled as GPU nodes: on clusters whose GPU nodes are not
tainted (common on EKS) they would otherwise take a GPU node's room and keep it from
scaling down. The labels are those the GPU operator's feature discovery
(``nvidia.com/gpu.present``), GKE (``cloud.google.com/gke-accelerator``) and EKS
(``k8s.amazonaws.com/accelerator``) put on GPU nodes. ``kubernetes.light_pods_on_gpu_nodes:
true``, or a ``cpu_affinity`` with its own ``nodeAffinity``, lifts it.
"""

from __future__ import annotations

import copy
from typing import Any

from launcher.kubernetes.section import KubernetesSpec

GPU_RESOURCE = "nvidia.com/gpu"
#: A node carrying any of these is a GPU node (the ``NotIn`` / ``DoesNotExist`` below keep light pods off it).
GPU_NODE_EXPRESSIONS = (
    {"key": "nvidia.com/gpu.present", "operator": "NotIn", "values": ["true"]},
    {"key": "cloud.google.com/gke-accelerator", "operator": "DoesNotExist"},
    {"key": "k8s.amazonaws.com/accelerator", "operator": "DoesNotExist"},
)


def off_gpu_nodes() -> dict[str, Any]:
    """The node affinity of a pod that must not land on a GPU node."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [dict(e) for e in GPU_NODE_EXPRESSIONS]}]}}}


def place(pod: dict[str, Any], k8s: KubernetesSpec, shaped: bool, gpus: int) -> None:
    """Sets the pod's node selector, tolerations, affinity, runtime and priority class, in place."""
    if shaped:
        selector, tolerations, affinity = k8s.node_selector, list(copy.deepcopy(k8s.tolerations)), k8s.affinity
        if gpus:
            tolerations.insert(0, {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
            if k8s.runtime_class:
                pod["runtimeClassName"] = k8s.runtime_class
    else:
        selector, tolerations, affinity = (k8s.cpu_node_selector, list(copy.deepcopy(k8s.cpu_tolerations)),
                                           k8s.cpu_affinity)
        if k8s.gpus and not k8s.light_pods_on_gpu_nodes and "nodeAffinity" not in affinity:
            affinity = {**affinity, **off_gpu_nodes()}
    if selector:
        pod["nodeSelector"] = dict(selector)
    if tolerations:
        pod["tolerations"] = tolerations
    if affinity:
        pod["affinity"] = copy.deepcopy(affinity)
    if k8s.priority_class:
        pod["priorityClassName"] = k8s.priority_class
