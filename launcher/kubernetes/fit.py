"""Does a rendered pod fit a node: the scheduler's filters that decide whether a run can start at all.

Pure functions of a pod spec (as ``launcher.kubernetes.render`` makes it) and ``NodeFacts``:
the node selector, the required node affinity (``matchExpressions`` with In, NotIn,
Exists, DoesNotExist, Gt, Lt; terms ORed, expressions ANDed), the NoSchedule and
NoExecute taints the pod must tolerate, and the pod's requests against the node's
*allocatable* (what is left for pods after the kubelet's and system reservations, always
below capacity: an 8 vCPU / 32 GiB node offers about 7.9 CPUs and 29 GiB). Other pods'
usage is not counted: a fit here means the pod can run on an empty node of that shape,
which the cluster autoscaler can make; no fit means it never runs anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from launcher.kubernetes.inventory import NodeFacts, quantities

_GI = Decimal(2**30)


def pod_requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """The pod's requests, summed over its containers (what the scheduler counts against allocatable)."""
    total: dict[str, Decimal] = {}
    for container in pod.get("containers") or []:
        for name, value in quantities((container.get("resources") or {}).get("requests")).items():
            total[name] = total.get(name, Decimal(0)) + value
    return total


def shown(resource: str, value: Decimal) -> str:
    """A quantity as people read it: CPUs with 2 decimals, bytes in Gi, counts as integers."""
    if resource == "cpu":
        return f"{value.normalize():f}" if value == value.to_integral() else f"{value:.2f}"
    if resource in ("memory", "ephemeral-storage") or resource.startswith("hugepages"):
        return f"{value / _GI:.1f}Gi"
    return f"{value.normalize():f}"


def _expression(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), list(expr.get("values") or [])
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            number, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return number > bound if op == "Gt" else number < bound
    return False


def _tolerates(tolerations: Iterable[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def refusal(pod: dict[str, Any], node: NodeFacts) -> str | None:
    """Why the scheduler would never put the pod on this node, whatever its load; None if it may."""
    if node.unschedulable:
        return "cordoned"
    for key, value in (pod.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return f"nodeSelector {key}={value}"
    required = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(all(_expression(e, node.labels) for e in term.get("matchExpressions") or [])
                         for term in terms):
        return "node affinity"
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod.get("tolerations") or [], taint):
            return f"taint {taint.get('key')}{'=' + taint['value'] if taint.get('value') else ''}:{taint.get('effect')}"
    return None


def shortfall(requests: dict[str, Decimal], node: NodeFacts) -> list[str]:
    """The resources the pod requests beyond the node's allocatable, as ``cpu 8 > 7.91``."""
    return [f"{r} {shown(r, v)} > {shown(r, node.allocatable.get(r, Decimal(0)))}"
            for r, v in sorted(requests.items()) if v > node.allocatable.get(r, Decimal(0))]


@dataclass(frozen=True)
class Fit:
    """Where a pod can run: the nodes that admit and hold it, and, if none, the closest miss."""

    stage: str
    requests: dict[str, Decimal]
    fitting: tuple[str, ...]
    admitting: int
    #: The largest node that admits the pod but cannot hold it, and what it lacks.
    largest: tuple[str, list[str]] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.fitting)

    def shape(self) -> str:
        return ", ".join(f"{r} {shown(r, v)}" for r, v in sorted(self.requests.items()))


def fit(stage: str, pod: dict[str, Any], nodes: list[NodeFacts]) -> Fit:
    requests = pod_requests(pod)
    admitting = [n for n in nodes if n.ready and refusal(pod, n) is None]
    fitting = tuple(n.name for n in admitting if not shortfall(requests, n))
    largest = None
    if not fitting and admitting:
        # the one that misses by the fewest resources, then the biggest in what the pod asks most of
        def size(n: NodeFacts) -> tuple:
            return (-len(shortfall(requests, n)),
                    *(n.allocatable.get(r, Decimal(0)) for r in sorted(requests, key=lambda r: r != "nvidia.com/gpu")))
        best = max(admitting, key=size)
        largest = (best.name, shortfall(requests, best))
    return Fit(stage, requests, fitting, len(admitting), largest)
