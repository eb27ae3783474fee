"""A pod that requested a GPU computes on CUDA or stops saying why (issue 12, point 3); on any machine.

The reasons are checked with CUDA's answers faked (torch built without CUDA, devices
hidden, CUDA's init error, no device); the real worker process is run with
``LANDSCAPE_REQUIRE_GPU=1`` and every device hidden (``CUDA_VISIBLE_DEVICES=""``, so the
test means the same on a GPU machine), and against the fake API server a GPU evaluate pod
that cannot see CUDA fails with the message, is retried, and leaves no CPU surface.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import spec_from, write_spec
from fake_k8s import FakeCluster, run_subprocess
from landscape_job import stages
from landscape_job.base.errors import StageError, UserError
from landscape_job.surface.evaluator_setup import resolve_device
from landscape_job.runtime.gpu import REQUIRE_GPU_ENV, GpuUnavailable, cuda_problem, gpu_required, require_cuda
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from cluster_testing import aws_env, bucket, cluster_spec, keys  # noqa: F401 - fixtures

HIDDEN = {"CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture
def working_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA as a healthy GPU node reports it: a CUDA build that initialises and counts one device."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_the_flag_is_read_as_the_renderer_writes_it() -> None:
    assert gpu_required({REQUIRE_GPU_ENV: "1"}) and gpu_required({REQUIRE_GPU_ENV: " true "})
    assert not gpu_required({}) and not gpu_required({REQUIRE_GPU_ENV: "0"}) and not gpu_required({REQUIRE_GPU_ENV: ""})


def test_each_reason_is_named(working_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cuda_problem({}) is None
    require_cuda({})  # no exception: this node is fine
    for env, expected in (({"NVIDIA_VISIBLE_DEVICES": "void"}, "NVIDIA_VISIBLE_DEVICES='void' hides every GPU"),
                          ({"NVIDIA_VISIBLE_DEVICES": "none"}, "NVIDIA_VISIBLE_DEVICES='none'"),
                          ({"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES='' hides every GPU"),
                          ({"CUDA_VISIBLE_DEVICES": "-1"}, "CUDA_VISIBLE_DEVICES='-1'")):
        problem = cuda_problem(env)
        assert problem is not None and problem.startswith(expected) and "kubernetes.runtime_class" in problem
    assert cuda_problem({"NVIDIA_VISIBLE_DEVICES": "GPU-5f1e0c2a", "CUDA_VISIBLE_DEVICES": "0"}) is None

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert cuda_problem({}).startswith("CUDA initialised but counts no device")

    def no_driver() -> None:
        raise RuntimeError("Found no NVIDIA driver on your system. Please check that you\nhave an NVIDIA GPU")

    monkeypatch.setattr(torch.cuda, "init", no_driver)
    problem = cuda_problem({})
    assert problem.startswith("CUDA does not initialise (Found no NVIDIA driver on your system. Please check "
                              "that you have an NVIDIA GPU); check the node's NVIDIA driver") and "\n" not in problem

    monkeypatch.setattr(torch.version, "cuda", None)
    assert cuda_problem({}).startswith(f"torch {torch.__version__} is built without CUDA")
    with pytest.raises(GpuUnavailable, match=rf"^this pod requested a GPU \({REQUIRE_GPU_ENV}=1\) but cannot use "
                                             r"CUDA: torch .* does not fall back to the CPU"):
        require_cuda({})
    assert issubclass(GpuUnavailable, StageError)  # exit 1: the Job retries the index


def test_auto_never_means_cpu_in_a_gpu_pod(monkeypatch: pytest.MonkeyPatch, working_cuda: None) -> None:
    monkeypatch.setenv(REQUIRE_GPU_ENV, "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    assert resolve_device("auto") == torch.device("cuda") == resolve_device("cuda")
    with pytest.raises(UserError, match=r"^compute.device: cpu, but the pod requested a GPU"):
        resolve_device("cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(GpuUnavailable):
        resolve_device("auto")
    monkeypatch.delenv(REQUIRE_GPU_ENV)
    assert resolve_device("auto") == torch.device("cpu")  # a laptop: CPU fallback stays


@pytest.mark.slow
def test_an_evaluate_worker_that_cannot_use_cuda_exits_1_and_writes_no_point(tmp_path: Path,
                                                                             linear_spec: dict) -> None:
    run = open_run(spec_from(tmp_path, linear_spec), "gpu")
    stages.prepare(run, log=lambda _: None)
    before = sorted(run.list(""))
    env = {**os.environ, REQUIRE_GPU_ENV: "1", **HIDDEN}
    result = subprocess.run([sys.executable, "-m", "landscape_job.cli", "--run", run.url, "evaluate", "--shard", "0"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("landscape-job: this pod requested a GPU (LANDSCAPE_REQUIRE_GPU=1) but cannot "
                                    "use CUDA: CUDA_VISIBLE_DEVICES='' hides every GPU")
    assert sorted(run.list("")) == before  # no shard, no segment, no progress object


@pytest.mark.slow
def test_a_gpu_pod_without_cuda_fails_its_index_with_the_reason_and_is_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str, moto_endpoint: str,  # noqa: F811
        linear_spec: dict) -> None:
    """Against the fake API server: the rendered GPU pod runs with CUDA hidden (as on a node whose
    runtime did not inject the GPU); each attempt exits 1 with the reason, the index is retried and
    fails, and nothing was computed on the CPU."""

    def no_gpu_here(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        if pod["metadata"]["labels"]["landscape.stage"] == "merge":
            return 1  # not what this test is about (and merge gating is not the pod's business)
        return run_subprocess(fake, pod, {**env, **HIDDEN})

    spec = cluster_spec(linear_spec, bucket, moto_endpoint, shards=1, gpus=1, backoff_limit_per_index=1)
    path = write_spec(tmp_path, spec)
    with FakeCluster(tmp_path / "cluster", runner=no_gpu_here) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        assert launcher(["submit", str(path), "--run-id", "nogpu"]) == 0
        fake.wait_idle(timeout=240)
        evaluate_pods = [p for p in fake.of("pods") if p["metadata"]["labels"]["landscape.stage"] == "evaluate"]
        assert len(evaluate_pods) == 2  # the first attempt and one retry (backoffLimitPerIndex 1)
        for pod in evaluate_pods:
            container = pod["spec"]["containers"][0]
            assert {"name": REQUIRE_GPU_ENV, "value": "1"} in container["env"]
            assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
            log = fake.logs[pod["metadata"]["name"]]
            assert log.count("\n") == 1 and "cannot use CUDA: CUDA_VISIBLE_DEVICES='' hides every GPU" in log, log
        job = next(j for j in fake.of("jobs") if j["metadata"]["labels"]["landscape.stage"] == "evaluate")
        assert job["status"]["failedIndexes"] == "0"
    stored = keys(moto_endpoint, bucket)
    assert any(k.endswith("/directions.h5") for k in stored)  # prepare ran (no GPU asked for there)
    assert not [k for k in stored if "/shards/" in k or k.endswith("surface.h5")], stored
