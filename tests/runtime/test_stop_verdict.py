"""Why a pod was stopped, judged by the pod at SIGTERM (landscape_job.runtime.disk.stop_verdict), and the
record that fails the shard's next attempt (landscape_job.stages.shard_stops).

The verdict is a function of the pod's environment, its folders, its node's disk (``os.statvfs``) and its
memory cgroup: here each is made by hand (a cgroup v2 folder of files, sparse files, a node disk's numbers),
so memory full, disk full and neither are judged without filling anything. The whole path on the fake
cluster, an over-disk eviction, is tests/kubernetes/test_cluster_readiness.py's.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import spec_from
from landscape_job import stages
from landscape_job.cli import main as landscape_job
from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import progress_key, shard_key
from landscape_job.runtime.disk import DISK_LIMIT_ENV, stop_verdict
from landscape_job.stages import shard_stops
from landscape_job.stages.shard_stops import JOB_UID_ENV, record_stop, refuse_after_full_stop
from launcher.local.runner import open_run

GiB = 2**30
MEMORY_FULL = "memory: the pod used 3.8 GiB of its 4.0 GiB limit (kubernetes.memory)"


def cgroup(folder: Path, limit: int | str, current: int, inactive_file: int = 0, peak: int | None = None) -> Path:
    """A cgroup v2 folder as the pod sees it: ``memory.max`` (bytes or ``max``), ``memory.current`` (page
    cache included), ``memory.stat``'s ``inactive_file`` and ``memory.peak`` (kernels from 5.19)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.max").write_text(f"{limit}\n")
    (folder / "memory.current").write_text(f"{current}\n")
    (folder / "memory.stat").write_text(f"anon {current - inactive_file}\nfile {inactive_file}\n"
                                        f"active_file 0\ninactive_file {inactive_file}\n")
    if peak is not None:
        (folder / "memory.peak").write_text(f"{peak}\n")
    return folder


def sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk (its size is what the kubelet's du and the pod count)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def node_disk(monkeypatch: pytest.MonkeyPatch, free: int, size: int = 100 * GiB) -> None:
    """The node's disk as ``os.statvfs`` reports it, whatever this machine's is."""
    monkeypatch.setattr(os, "statvfs", lambda _: SimpleNamespace(f_bavail=free // 4096, f_frsize=4096,
                                                                  f_blocks=size // 4096))


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A cluster pod's environment: a 10 GiB ephemeral-storage limit, $HOME (the /tmp emptyDir) and the
    input cache, each holding a small file, on a node disk with room."""
    home, cache = tmp_path / "home", tmp_path / "cache"
    for folder in (home, cache):
        folder.mkdir()
        (folder / "small").write_bytes(b"x" * 4096)
    node_disk(monkeypatch, free=50 * GiB)
    return {DISK_LIMIT_ENV: str(10 * GiB), "HOME": str(home), "LANDSCAPE_CACHE_DIR": str(cache)}


def test_memory_at_its_limit_is_the_memory_verdict(pod: dict[str, str], tmp_path: Path) -> None:
    """The pod's working set (its memory less the page cache it could drop, as the kubelet counts it) at
    SIGTERM against its limit."""
    assert stop_verdict(pod, cgroup(tmp_path / "cg", 4 * GiB, current=int(3.9 * GiB),
                                    inactive_file=GiB // 10)) == MEMORY_FULL


def test_page_cache_and_an_earlier_peak_are_not_a_full_memory(pod: dict[str, str], tmp_path: Path) -> None:
    """A preempted pod that once came near its limit, or whose cgroup is full of the inputs' page cache
    (reading the data set fills it), is not failed for memory: the kernel drops that cache before it
    runs out, and a pod over its limit is OOM-killed (SIGKILL), never sent a SIGTERM to judge."""
    cached = cgroup(tmp_path / "cache", 4 * GiB, current=int(3.9 * GiB), inactive_file=int(2.5 * GiB))
    assert stop_verdict(pod, cached) is None
    once_high = cgroup(tmp_path / "peak", 4 * GiB, current=GiB, peak=int(3.9 * GiB))
    assert stop_verdict(pod, once_high) is None


def test_a_pod_without_a_disk_limit_is_still_judged_for_memory(pod: dict[str, str], tmp_path: Path) -> None:
    """kubernetes.ephemeral_storage: false (a Kueue queue without that resource) renders no disk limit; the
    pod's memory limit is still there to judge by. Outside a pod (no KUBERNETES_SERVICE_HOST: a local or
    a Slurm run, whose time limit is not a full memory) nothing is judged."""
    full = cgroup(tmp_path / "cg", 4 * GiB, current=int(3.9 * GiB), inactive_file=GiB // 10)
    in_pod = {k: v for k, v in pod.items() if k != DISK_LIMIT_ENV} | {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert stop_verdict(in_pod, full) == MEMORY_FULL
    outside = {k: v for k, v in pod.items() if k != DISK_LIMIT_ENV}
    assert stop_verdict(outside, full) is None


def test_disk_at_its_limit_is_the_disk_verdict(pod: dict[str, str], tmp_path: Path) -> None:
    """What the pod's folders hold together ($HOME and the cache) against its limit, memory notwithstanding."""
    sparse(Path(pod["HOME"]) / "scratch", int(1.5 * GiB))
    sparse(Path(pod["LANDSCAPE_CACHE_DIR"]) / "inputs" / "data.bin", int(1.5 * GiB))
    limited = {**pod, DISK_LIMIT_ENV: str(3 * GiB)}
    roomy_memory = cgroup(tmp_path / "cg", 4 * GiB, current=GiB)
    assert stop_verdict(limited, roomy_memory) == ("ephemeral storage: the pod used 3.0 GiB of its 3.0 GiB limit "
                                                   "(kubernetes.cache_size + tmp_size)")
    assert stop_verdict(limited, cgroup(tmp_path / "full", 4 * GiB, current=int(3.8 * GiB))).startswith(
        "ephemeral storage: the pod used 3.0 GiB")


def test_a_full_node_disk_is_the_disk_verdict(pod: dict[str, str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    node_disk(monkeypatch, free=GiB)
    assert stop_verdict(pod, cgroup(tmp_path / "cg", 4 * GiB, current=GiB)) == (
        "ephemeral storage: the node's disk was full (1.0 GiB free of 100.0 GiB); use nodes with more disk or a "
        "smaller kubernetes.cache_size")


@pytest.mark.parametrize("limit, used", [(4 * GiB, int(3.4 * GiB)), ("max", 64 * GiB)],
                         ids=["below-90-percent", "unlimited"])
def test_neither_full_is_no_verdict(pod: dict[str, str], tmp_path: Path, limit: int | str, used: int) -> None:
    """A preemption or a drain: memory and disk below their limits (or no memory limit) leave no verdict."""
    sparse(Path(pod["HOME"]) / "scratch", 8 * GiB)  # 80% of the 10 GiB limit
    assert stop_verdict(pod, cgroup(tmp_path / "cg", limit, current=used)) is None
    assert stop_verdict(pod, tmp_path / "no-cgroup") is None  # unreadable: nothing to judge by


def test_a_memory_stop_fails_the_next_attempt_of_the_same_job_in_one_line(
        pod: dict[str, str], tmp_path: Path, linear_spec: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """On SIGTERM the worker records the verdict in the shard's progress record; the next attempt in the same
    Job exits 2 (the pod failure policy fails the index) with one line naming memory; a new Job starts afresh.
    A SIGTERM with memory below its limit (a preemption) records nothing."""
    run = open_run(spec_from(tmp_path, linear_spec), "oom")
    stages.prepare(run, log=lambda _: None)
    for name, value in {**pod, JOB_UID_ENV: "job-1"}.items():
        monkeypatch.setenv(name, value)

    def memory(used: float) -> None:  # the pod's memory cgroup at SIGTERM: 4 GiB limit, that much used
        folder = cgroup(tmp_path / f"cg-{used}", 4 * GiB, current=int(used * GiB))
        monkeypatch.setattr(shard_stops, "stop_verdict", lambda: stop_verdict(cgroup=folder))

    lines: list[str] = []
    memory(1.0)
    record_stop(run, 0, 1, lines.append)
    assert lines == [] and not run.exists(progress_key(0, 1))
    memory(3.8)
    record_stop(run, 0, 1, lines.append)
    assert lines == [f"evaluate: stopped for {MEMORY_FULL}"]
    record = ProgressRecord.from_json(run.get(progress_key(0, 1)))
    assert (record.state, record.stopped_for, record.job) == ("terminated", MEMORY_FULL, "job-1")

    capsys.readouterr()
    assert landscape_job(["--run", run.url, "evaluate", "--shard", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (f"landscape-job: error: shard 0: the previous attempt was stopped for {MEMORY_FULL}; retrying "
                   "would fill it again\n"), err
    assert not run.exists(shard_key(0, 1))

    monkeypatch.setenv(JOB_UID_ENV, "job-2")  # the run resubmitted: a new Job, a new budget
    refuse_after_full_stop(run, 0, 1)
