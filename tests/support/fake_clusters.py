"""Cluster shapes for the readiness tests and docs/cluster.md: common GPU nodes, a ready cluster, a broken one.

Allocatable is what the kubelet leaves for pods after its own and the system's
reservations, always below capacity; the figures are typical of GKE and EKS nodes of
these shapes (``kubectl describe node`` shows a real node's). Each is a Node as the API
serves it (tests/support/fake_inventory.py).
"""

from __future__ import annotations

from fake_inventory import claim, node
from fake_kueue import cluster_queue

#: 1 GPU, 8 vCPU / 32 GiB (g5.2xlarge, g2-standard-8 class): ~7.9 CPUs and ~29 GiB allocatable, 100 GB boot disk.
GPU_8X32 = node("gpu-8x32", "7910m", "29Gi", "85Gi", gpus=1)
#: 1 GPU, 4 vCPU / 16 GiB (g4dn.xlarge, n1-standard-4 + T4 class).
GPU_4X16 = node("gpu-4x16", "3920m", "14Gi", "85Gi", gpus=1)
#: 8 GPUs, 96 vCPU / 1152 GiB (p4d.24xlarge, a2-highgpu-8g class) on a 100 GB boot disk.
GPU_8GPU = node("gpu-8gpu", "95690m", "1100Gi", "85Gi", gpus=8)
#: A CPU node for prepare and merge.
CPU_4X16 = node("cpu-4x16", "3920m", "14Gi", "85Gi")
COMMON_NODES = (GPU_8X32, GPU_4X16, GPU_8GPU, CPU_4X16)
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def ready_cluster(fake) -> None:
    """Tainted GPU nodes of every common shape, a CPU node, a ReadWriteMany data claim, the nvidia
    runtime class, and Kueue with a team queue that covers everything the pods request."""
    fake.inventory.nodes = [dict(n, spec={"taints": [GPU_TAINT]}) if "gpu" in n["metadata"]["name"] else n
                            for n in COMMON_NODES]
    fake.inventory.add_claim(claim("landscape-data", ["ReadWriteMany"], storage_class="filestore"))
    fake.inventory.add_storage_class("filestore", "filestore.csi.storage.gke.io")
    fake.inventory.add_runtime_class("nvidia")
    fake.kueue.add_cluster_queue(cluster_queue("team-a", {"cpu": "200", "memory": "2000Gi",
                                                          "ephemeral-storage": "2000Gi", "nvidia.com/gpu": "16"}))
    fake.kueue.add_local_queue("landscape", "team-a", "team-a")


def broken_cluster(fake) -> None:
    """What the issue found on ordinary clusters: only 8 vCPU / 32 GiB GPU nodes, untainted; a ReadWriteOnce
    claim; no runtime class; Kueue's example ClusterQueue (cpu and memory only) behind the team's queue."""
    fake.inventory.nodes = [GPU_8X32, CPU_4X16]
    fake.inventory.add_claim(claim("landscape-data", ["ReadWriteOnce"], storage_class="standard-rwo"))
    fake.kueue.add_cluster_queue(cluster_queue("team-a", {"cpu": "9", "memory": "36Gi"}))
    fake.kueue.add_local_queue("landscape", "team-a", "team-a")
