"""Why a pod was stopped, as far as the pod itself can tell: its disk or its memory was full.

A pod evicted for disk or memory carries the same ``DisruptionTarget`` condition as a
preempted one (the kubelet's reason ``TerminationByKubelet`` is shared with a node
shutdown), and a Job's pod failure policy matches conditions by type only. So the Job
controller would retry a shard whose inputs do not fit its disk until the stage's deadline,
each retry holding a GPU and downloading the inputs again. The pod can tell the
difference itself: on SIGTERM (the kubelet's, before it kills) it measures its own disk
use against its limit (``LANDSCAPE_DISK_LIMIT``, the rendered ``ephemeral-storage``
limit), the free space of its node's disk, and its memory cgroup against its limit. The
evaluate stage writes the verdict into the shard's progress record, and the next attempt
fails the index with it (exit 2): within one retry, saying why. A preemption or node drain
leaves no verdict and is retried as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

#: The pod's ephemeral-storage limit in bytes (render sets it with the request).
DISK_LIMIT_ENV = "LANDSCAPE_DISK_LIMIT"
#: The input cache emptyDir's size limit in bytes (``kubernetes.cache_size``); prepare checks the inputs against it.
CACHE_LIMIT_ENV = "LANDSCAPE_CACHE_LIMIT"
#: Usage above this share of a limit at SIGTERM counts as "it was full".
FULL = 0.9
#: A node disk with less than this free (bytes) at SIGTERM counts as full (the kubelet's default hard
#: eviction threshold is 10% of nodefs; a few GiB is what is left on a 100 GB boot disk then).
NODE_FREE_FLOOR = 2 * 2**30
_CGROUP = Path("/sys/fs/cgroup")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def used_bytes(folders: list[Path]) -> int:
    """The bytes of the files under ``folders`` (what the kubelet counts for emptyDirs)."""
    total = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    continue
    return total


def _pod_folders(environ: Mapping[str, str]) -> list[Path]:
    folders = {Path(environ[v]) for v in ("HOME", "LANDSCAPE_CACHE_DIR") if environ.get(v)}
    return sorted(f for f in folders if f.is_dir())


def _memory(cgroup: Path) -> tuple[int, int] | None:
    """(working set, limit) of the pod's cgroup v2, None where unreadable or unlimited.

    The working set is what the kubelet judges memory by: ``memory.current`` less the page cache the
    kernel would drop first (``memory.stat``'s ``inactive_file``). Not ``memory.peak``: a pod that once
    came near its limit, or read its inputs into the cache, and is then preempted must be retried."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        current = int((cgroup / "memory.current").read_text())
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines() if line.strip())
        inactive = int(stat.get("inactive_file", 0))
    except (OSError, ValueError):
        return None
    return None if limit == "max" else (max(current - inactive, 0), int(limit))


def stop_verdict(environ: Mapping[str, str] = os.environ, cgroup: Path = _CGROUP) -> str | None:
    """Why this pod is being stopped, if its disk or memory was full; None for anything else (a preemption)."""
    limit = int(environ.get(DISK_LIMIT_ENV) or 0)
    if not limit and not environ.get("KUBERNETES_SERVICE_HOST"):
        return None  # not a cluster pod (a local or a Slurm run, whose stops are not this): nothing to judge by
    folders = _pod_folders(environ)
    if folders and limit:  # without kubernetes.ephemeral_storage the pod has no disk limit, its memory one stays
        used = used_bytes(folders)
        if used >= FULL * limit:
            return (f"ephemeral storage: the pod used {_gib(used)} of its {_gib(limit)} limit "
                    "(kubernetes.cache_size + tmp_size)")
    for folder in folders[:1]:
        stat = os.statvfs(folder)
        free = stat.f_bavail * stat.f_frsize
        if free < NODE_FREE_FLOOR:
            return (f"ephemeral storage: the node's disk was full ({_gib(free)} free of "
                    f"{_gib(stat.f_blocks * stat.f_frsize)}); use nodes with more disk or a smaller kubernetes.cache_size")
    memory = _memory(cgroup)
    if memory and memory[0] >= FULL * memory[1]:
        return f"memory: the pod used {_gib(memory[0])} of its {_gib(memory[1])} limit (kubernetes.memory)"
    return None
