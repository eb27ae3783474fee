"""``launcher estimate --cluster``: one pod shaped like an evaluate pod, its JSON line, the projection.

The rendered objects validate against every supported Kubernetes version and the
restricted profile; against the fake API server (tests/support/fake_k8s.py) the pod really runs
``landscape-job estimate`` as a process, and the launcher prints the projection from it
and deletes what it created.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import spec_from, write_spec
from fake_k8s import FakeCluster
from landscape_job.checks.estimate import Estimate, from_log
from launcher.cli import main as launcher
from launcher.kubernetes.section import parse_kubernetes
from launcher.kubernetes.render import render_estimate, render_run
from cluster_testing import aws_env, one_line_error  # noqa: F401  (aws_env is a fixture)
from test_render import K8S_SECTION, env_of, restricted_violations, validate_all


@pytest.fixture
def cluster_raw(linear_spec: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(linear_spec)
    raw["compute"]["shards"] = 4
    raw["storage"] = "s3://bucket/runs"
    raw["kubernetes"] = copy.deepcopy(K8S_SECTION)
    return raw


@pytest.mark.slow
def test_estimate_job_is_an_evaluate_pod_running_the_estimate(tmp_path: Path, cluster_raw: dict) -> None:
    spec = spec_from(tmp_path, cluster_raw)
    k8s = parse_kubernetes(spec.kubernetes)
    config_map, job = render_estimate(spec, "lin-est-abc123", k8s, points=5)
    validate_all([config_map, job])
    assert config_map["metadata"]["labels"]["app.kubernetes.io/component"] == "estimate-spec"  # not a run
    assert config_map["data"]["spec.yaml"] == spec.to_yaml()
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert job["spec"]["completions"] == 1 and job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    container = pod["containers"][0]
    assert "command" not in container and container["args"] == ["estimate", "--points", "5"]
    assert env_of(job["spec"]["template"])["LANDSCAPE_SPEC_FILE"] == "/etc/landscape/spec.yaml"
    assert {"name": "spec", "configMap": {"name": "lin-est-abc123-estimate-spec"}} in pod["volumes"]

    # Measured where the shards run: the evaluate pod's image, resources, placement, volumes, Secret.
    evaluate = next(o for o in render_run(spec, "lin", k8s) if o["metadata"]["name"] == "lin-evaluate")
    reference = evaluate["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert pod[key] == reference[key], key
    # Under Kueue the shards mount the run's token (the last one releases merge); the estimate
    # releases nothing and reads no Kubernetes API, so it mounts none.
    assert reference["automountServiceAccountToken"] is True and pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    for key in ("image", "resources", "envFrom"):
        assert container[key] == reference["containers"][0][key], key
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {m["mountPath"] for m in reference["containers"][0]["volumeMounts"]} | {"/etc/landscape"}


def test_estimate_json_line_round_trips_and_is_found_among_other_lines() -> None:
    est = Estimate(seconds_per_point=0.25, points=2601, shards=8, parallel=8, device="cuda", setup_seconds=12.0)
    lines = ["W: some warning", "{\"not\": \"ours\"}", est.to_json_line(), "trailing noise"]
    assert from_log(lines) == est
    assert from_log(lines, parallel=2).parallel == 2 and from_log(lines, parallel=99).parallel == 8
    assert from_log(["no estimate here"]) is None
    # The projection: 2601 points in 8 shards of at most 326, 2 at a time -> 4 waves.
    assert from_log(lines, parallel=2).wall_seconds == pytest.approx(12.0 + 4 * (326 * 0.25 + 12.0))


@pytest.mark.slow
def test_estimate_on_the_fake_cluster(tmp_path: Path, linear_spec: dict, monkeypatch: pytest.MonkeyPatch,
                                      aws_env: None, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    raw = dict(linear_spec, storage="s3://bucket/runs", kubernetes={"gpus": 0})
    raw["compute"] = {**raw["compute"], "shards": 2}
    raw["plot"] = {"formats": ["vtp"]}  # the pod times merge's outputs: without PNGs, no matplotlib in it
    path = write_spec(tmp_path, raw)
    with FakeCluster(tmp_path / "cluster") as fake:
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        code = launcher(["estimate", str(path), "--cluster", "--points", "2", "--parallel", "1",
                         "--interval", "0.2", "--timeout", "120"])
        err = capsys.readouterr()
        assert code == 0, (err.err, fake.logs)
        lines = err.out.splitlines()
        assert lines[0].startswith("measured on cpu: ") and "s per point" in lines[0]
        assert lines[1].startswith("compute: 20 points x ")
        assert lines[2].endswith("with 2 shards, 1 at a time")
        # The pod really ran `landscape-job estimate` and printed one JSON line.
        log = "".join(fake.logs.values())
        result = json.loads(next(line for line in log.splitlines() if "landscape_estimate" in line))
        assert result["landscape_estimate"]["points"] == 20 and result["landscape_estimate"]["shards"] == 2
        # Everything it created is gone again, and it wrote nothing to storage (none is reachable).
        fake.wait_idle()
        assert fake.of("configmaps") == fake.of("jobs") == fake.of("pods") == []
        posted = [r.body["kind"] for r in fake.requests if r.method == "POST"]
        assert posted == ["ConfigMap", "Job"]


def test_a_failing_estimate_pod_is_reported_with_its_log(tmp_path: Path, linear_spec: dict, aws_env: None,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    raw = dict(linear_spec, storage="s3://bucket/runs", kubernetes={"gpus": 0})
    path = write_spec(tmp_path, raw)

    def broken(fake: FakeCluster, pod: dict, env: dict) -> int:
        fake.append_log(pod["metadata"]["name"], "estimate: CUDA error: out of memory\n")
        return 1

    with FakeCluster(tmp_path / "cluster", runner=broken) as fake:
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        code = launcher(["estimate", str(path), "--cluster", "--interval", "0.1", "--timeout", "60"])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err
        assert "the estimate Job" in err and "failed (BackoffLimitExceeded" in err and "out of memory" in err
        fake.wait_idle()
        assert fake.of("configmaps") == fake.of("jobs") == []


def test_cluster_flags_need_cluster(tmp_path: Path, linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    path = write_spec(tmp_path, linear_spec)
    assert launcher(["estimate", str(path), "-n", "team-a"]) == 2
    assert one_line_error(capsys) == "launcher: error: -n: only with --cluster"
