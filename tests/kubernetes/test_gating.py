"""Stage gating and failures on the fake cluster (tests/support/fake_k8s.py): no evaluate pod before
prepare has succeeded, a failed stage ends the run, a preempted shard resumes exactly,
shards run side by side.

The pods are the real ``landscape-job`` processes where the behaviour is theirs (prepare's
failure, the preempted shard's resume, merge's watch of its evaluate Job), scripted where
only the controller's behaviour is asked about (concurrency).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_all, spec_from, write_spec
from fake_k8s import FakeCluster, run_subprocess
from landscape_job.runtime.release import release_next_stages
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from s3server import OK, FlakyProxy
from cluster_testing import ARRAYS, aws_env, bucket, cluster_spec, fake, surface_arrays  # noqa: F401 (fixtures)

GATED = ("evaluate", "merge")


def stage_of(pod: dict) -> str:
    return pod["metadata"]["labels"]["landscape.stage"]


def jobs_by_stage(fake: FakeCluster) -> dict[str, dict]:
    return {j["metadata"]["labels"]["landscape.stage"]: j for j in fake.of("jobs")}


@pytest.mark.slow
def test_a_failed_prepare_starts_no_evaluate_pod_and_fails_the_run_within_a_minute(
        fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """A checkpoint path that exists only in the pods, and not there either: the prepare pod
    (the real one) exits 2, FailJob ends its Job; evaluate and merge are never released."""
    spec = cluster_spec(linear_spec, bucket, moto_endpoint, gpus=1)
    spec["model"] = {**spec["model"], "checkpoint": "/data/checkpoints/missing.pt"}
    path = write_spec(tmp_path, spec)
    started = time.monotonic()
    code = launcher(["submit", str(path), "--run-id", "nogo", "--wait", "--interval", "0.2"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1, err
    assert elapsed < 60, elapsed
    assert "run nogo: the prepare Job failed (PodFailurePolicy" in err
    fake.wait_idle()
    pods = fake.of("pods")
    assert [stage_of(p) for p in pods] == ["prepare"]  # one attempt: exit 2 is not retried
    assert "missing.pt" in fake.logs[pods[0]["metadata"]["name"]]
    jobs = jobs_by_stage(fake)
    for stage in GATED:  # never released: suspended, never started, no deadline running
        assert jobs[stage]["spec"]["suspend"] is True and not jobs[stage]["status"].get("startTime"), stage
    # GPU pods would have been evaluate's: none was ever created, and none can be now
    assert jobs["evaluate"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert launcher(["status", "nogo"]) == 0
    out = capsys.readouterr().out
    assert "prepare   Failed" in out and "evaluate  Suspended" in out and "merge     Suspended" in out
    assert "NotStarted: prepare failed: never released" in out
    assert launcher(["list"]) == 0
    assert next(line for line in capsys.readouterr().out.splitlines() if line.startswith("nogo ")).split()[1] \
        == "Failed"


def test_a_prepare_that_exhausts_its_retries_releases_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             aws_env: None, bucket: str, moto_endpoint: str,
                                                             linear_spec: dict) -> None:
    """Exit 1 (what a retry may heal), every time: backoffLimit + 1 prepare pods, then Failed."""
    def runner(fake: FakeCluster, pod: dict, env: dict) -> int:
        assert stage_of(pod) == "prepare", "a gated stage started"
        return 1

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        spec = cluster_spec(linear_spec, bucket, moto_endpoint, backoff_limit_per_index=2)
        assert launcher(["submit", str(write_spec(tmp_path, spec)), "--run-id", "flaky"]) == 0
        fake.wait_idle()
        prepare = jobs_by_stage(fake)["prepare"]
        assert prepare["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
        assert [stage_of(p) for p in fake.of("pods")] == ["prepare"] * 3


@pytest.mark.slow
def test_a_preempted_shard_resumes_and_the_surface_equals_the_local_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, bucket: str, moto_endpoint: str,
        linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    """Shard 0's first pod is preempted (DisruptionTarget, then killed) at its first checkpoint:
    the Ignore rule retries it without using a retry (backoff limit 0), the new pod resumes.

    The preemption is synchronous: the run's storage is reached through a proxy, and the first
    checkpoint's PUT kills the pod before it is answered (the object is still stored, as a
    request the server finished for a client that died). Polling storage for the checkpoint
    instead lost the race on a loaded machine: the pod finished its shard first.
    """
    preempted: list[str] = []
    running: dict[str, str] = {}  # shard 0's first pod, once it runs
    grid = {"x": "-1:1:9", "y": "-0.5:0.5:8"}

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        if stage_of(pod) == "merge":  # the surface is under test, not the plots (seconds on 2 cores)
            pod["spec"]["containers"][0]["args"].append("--no-plots")
        if env.get("JOB_COMPLETION_INDEX") == "0" and not running:
            running["shard0"] = pod["metadata"]["name"]
        return run_subprocess(fake, pod, env)

    def preempt_at_first_checkpoint(method: str, path: str, headers) -> str:
        if method == "PUT" and "/shards/shard-0-of-1." in path and ".partial" in path and not preempted:
            preempted.append(running["shard0"])
            fake.disrupt(running["shard0"])
        return OK

    # the reference: the same spec on this machine, in this process, unsharded and never interrupted
    local = dict(linear_spec, grid=grid, compute={**linear_spec["compute"], "shards": 1}, storage=str(tmp_path / "local"))
    reference = open_run(spec_from(tmp_path, local), "loc")
    run_all(reference, 1)
    with FakeCluster(tmp_path / "cluster", runner=runner) as fake, \
            FlakyProxy(moto_endpoint, preempt_at_first_checkpoint) as proxy:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        # one shard: the preempted one (a second shard would be one more pod, and nothing this test asks about)
        spec = cluster_spec(dict(linear_spec, grid=grid), bucket, proxy.url, shards=1, backoff_limit_per_index=0)
        spec["compute"]["checkpoint_every"] = 2
        path = write_spec(tmp_path, spec)
        assert launcher(["submit", str(path), "--run-id", "pre", "--wait", "--interval", "0.5"]) == 0, \
            capsys.readouterr().err
        shard0 = [p for p in fake.of("pods") if p["metadata"]["labels"].get(
            "batch.kubernetes.io/job-completion-index") == "0"]
        assert len(shard0) == 2 and preempted == [shard0[0]["metadata"]["name"]]
        first, second = shard0
        assert {"type": "DisruptionTarget", "status": "True"}.items() <= first["status"]["conditions"][0].items()
        assert first["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
        assert "already done (resumed)" in fake.logs[second["metadata"]["name"]]
        assert jobs_by_stage(fake)["evaluate"]["status"].get("failed", 0) == 0  # the preemption was not counted
        assert launcher(["pull", f"s3://{bucket}/runs/pre", str(tmp_path / "remote"), "--spec", str(path)]) == 0
    remote, here = surface_arrays(tmp_path / "remote" / "surface.h5"), surface_arrays(tmp_path / "local" / "loc" /
                                                                                      "surface.h5")
    for name in ARRAYS:
        np.testing.assert_allclose(remote[name], here[name], rtol=1e-12, atol=0, err_msg=name)
    assert np.isfinite(remote["train_loss"]).all() and remote["train_loss"].shape == (8, 9)


@pytest.mark.slow
def test_a_deleted_evaluate_job_ends_the_merge_pod_within_a_minute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, bucket: str, moto_endpoint: str,
        linear_spec: dict) -> None:
    """The merge pod (the real one) waits for shards; its evaluate Job is deleted under it: its
    watch reads 404 and it exits 3 at once, instead of waiting out its deadline, and the merge
    Job fails without retrying (FailJob on exit 3)."""
    ended: dict[str, float] = {}

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        stage = stage_of(pod)
        if stage == "prepare":
            release_next_stages(lambda line: None, environ=env)
            return 0
        if stage == "evaluate":
            return None  # shards that never come
        code = run_subprocess(fake, pod, env)
        ended[pod["metadata"]["name"]] = time.monotonic()
        return code

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        spec = cluster_spec(linear_spec, bucket, moto_endpoint)  # 3 retries, which it must not use
        assert launcher(["submit", str(write_spec(tmp_path, spec)), "--run-id", "orphan"]) == 0
        for _ in range(600):  # until the merge pod is waiting for the shards
            merge = [p for p in fake.of("pods") if stage_of(p) == "merge"]
            if merge and "waiting up to" in fake.logs.get(merge[0]["metadata"]["name"], ""):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the merge pod never waited: {fake.logs}")
        time.sleep(3)  # into its polling, where the interval has grown
        name = merge[0]["metadata"]["name"]
        deleted = time.monotonic()
        with fake.lock:
            fake._delete("jobs", "landscape", "orphan-evaluate")
        for _ in range(700):
            if name in ended:
                break
            time.sleep(0.1)
        assert name in ended, fake.logs[name]
        assert ended[name] - deleted < 60
        log = fake.logs[name]
        assert "the evaluate Job is gone (deleted; the run cancelled?)" in log, log
        fake.wait_idle()
        merge_end = jobs_by_stage(fake)["merge"]["status"]["conditions"][-1]
        assert (merge_end["type"], merge_end["reason"]) == ("Failed", "PodFailurePolicy")  # exit 3: not retried
        assert [p["metadata"]["name"] for p in fake.of("pods") if stage_of(p) == "merge"] == [name]


@pytest.mark.slow
@pytest.mark.parametrize("parallelism,overlap", [(2, True), (1, False)])
def test_shards_run_side_by_side_up_to_parallelism(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None,
                                                   bucket: str, moto_endpoint: str, linear_spec: dict,
                                                   parallelism: int, overlap: bool) -> None:
    spans: dict[str, tuple[float, float]] = {}

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        stage = stage_of(pod)
        if stage == "prepare":
            release_next_stages(lambda line: None, environ=env)
        if stage == "evaluate":
            start = time.monotonic()
            time.sleep(0.6)
            spans[env["JOB_COMPLETION_INDEX"]] = (start, time.monotonic())
        return 0 if stage != "merge" else None

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        spec = cluster_spec(linear_spec, bucket, moto_endpoint, parallelism=parallelism)
        assert launcher(["submit", str(write_spec(tmp_path, spec)), "--run-id", "side"]) == 0
        fake.wait_idle()
        assert jobs_by_stage(fake)["evaluate"]["status"]["completedIndexes"] == "0-1"
    (a0, a1), (b0, b1) = spans["0"], spans["1"]
    assert (a0 < b1 and b0 < a1) is overlap, spans
