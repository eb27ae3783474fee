"""The cluster commands against a fake API server (tests/support/fake_k8s.py) and moto's S3 server, over HTTP.

The official ``kubernetes`` client, unmodified, talks to the fake through a kubeconfig
file; the fake plays the Job controller by running the rendered pod commands as local
processes, so ``launcher submit --wait`` runs the real pipeline end to end through S3.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_all, spec_from, write_spec
from cluster_testing import (  # noqa: F401 (fixtures)
    ARRAYS, SECRET_VALUE, aws_env, bucket, cluster_spec, fake, keys, one_line_error, surface_arrays)
from fake_k8s import FakeCluster
from storage_testing import s3_client
from landscape_job.run.records import ProgressRecord
from landscape_job.run.tally import tally_key
from landscape_job.runtime.release import release_next_stages
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from s3server import closed_port

# -- end to end ---------------------------------------------------------------------------

@pytest.mark.slow
def test_submit_wait_pull_equals_local(fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict,
                                       tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Merge's figures: the exports only (surface.vtp), which pull fetches as it fetches PNGs; PNGs take seconds.
    linear_spec["plot"] = {"formats": ["vtp"]}
    path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint))
    code = launcher(["submit", str(path), "--run-id", "e2e", "--wait", "--interval", "0.5"])
    assert code == 0, (capsys.readouterr().err, fake.logs)
    out = capsys.readouterr().out
    assert "kubectl get jobs,pods -n landscape -l landscape.run=e2e" in out and "launcher status e2e -n landscape" in out
    assert f"done: s3://{bucket}/runs/e2e/surface.h5" in out

    # the objects as the server holds them: the ConfigMap owned by the Jobs (it goes with them), the Secret by
    # name only. --wait ends at merge's Complete condition; evaluate's can come a moment later (its last pod
    # released merge before it exited, as on a real cluster), so the controller is let finish first.
    fake.wait_idle()
    config_map = fake.get("configmaps", "e2e-spec")
    jobs = {j["metadata"]["labels"]["landscape.stage"]: j for j in fake.of("jobs")}
    assert set(jobs) == {"prepare", "evaluate", "merge"}
    assert config_map["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": f"e2e-{stage}", "uid": jobs[stage]["metadata"]["uid"]}
        for stage in ("evaluate", "merge", "prepare")]  # in creation order
    for job in jobs.values():
        assert "ownerReferences" not in job["metadata"]
        assert job["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "landscape-s3"}}]
        assert job["status"]["conditions"][-1]["type"] == "Complete"
    assert jobs["evaluate"]["status"]["completedIndexes"] == "0-1"
    # The run's objects (the launcher's creates); Events the pods post and access reviews are not objects of the run.
    sent = [r for r in fake.requests if r.method == "POST" and not r.path.endswith(("/events", "/selfsubjectaccessreviews"))]
    assert sent and all(r.query.get("fieldValidation") == "Strict" for r in sent), [
        r.path for r in sent if r.query.get("fieldValidation") != "Strict"]
    assert SECRET_VALUE not in json.dumps([r.body for r in sent]) + json.dumps(fake.of("configmaps"))
    assert len(fake.of("pods")) == 4  # prepare, two shards, merge

    assert launcher(["status", "e2e"]) == 0
    status = capsys.readouterr().out
    assert "evaluate  Complete   2/2 shards complete; CompletionsReached" in status and "merge     Complete" in status

    assert launcher(["pull", "e2e", str(tmp_path / "pulled")]) == 0  # storage found through the run's ConfigMap
    pulled = tmp_path / "pulled"
    assert (pulled / "report.json").is_file() and any((pulled / "plots").iterdir())
    assert not (pulled / "shards").exists()
    by_url = tmp_path / "by-url"  # the run's URL, and the S3 options of the spec
    assert launcher(["pull", f"s3://{bucket}/runs/e2e", str(by_url), "--spec", str(path), "--shards"]) == 0
    assert (by_url / "surface.h5").read_bytes() == (pulled / "surface.h5").read_bytes()
    assert (by_url / "shards" / "shard-0-of-2.h5").is_file()

    # The reference: the same spec on this machine, file:// storage, computed in this process (conftest.run_all:
    # prepare, each shard, merge, what the local backend's processes run; test_local_backend.py's
    # test_submit_local_runs_the_pod_entrypoints finds the two equal), then pulled as a local run is.
    local = dict(linear_spec, compute={**linear_spec["compute"], "shards": 2}, storage=str(tmp_path / "local"))
    run_all(open_run(spec_from(tmp_path, local), "loc"), 2)
    assert launcher(["pull", f"file://{tmp_path}/local/loc", str(tmp_path / "pulled-local"), "--shards"]) == 0
    assert (tmp_path / "pulled-local" / "shards" / "shard-1-of-2.h5").is_file()
    remote, here = surface_arrays(pulled / "surface.h5"), surface_arrays(tmp_path / "pulled-local" / "surface.h5")
    for name in ARRAYS:
        np.testing.assert_allclose(remote[name], here[name], rtol=1e-12, atol=0, err_msg=name)
    assert np.isfinite(remote["train_loss"]).all() and remote["train_loss"].shape == (4, 5)

    assert launcher(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("e2e "))
    assert row.split()[1:3] == ["Complete", "2/2"] and row.endswith(f"s3://{bucket}/runs/e2e")
    assert launcher(["cancel", "e2e"]) == 0
    assert fake.of("configmaps") == fake.of("jobs") == fake.of("pods") == []
    assert launcher(["list"]) == 0
    assert "no runs in namespace landscape" in capsys.readouterr().out
    assert "surface.h5" in " ".join(keys(moto_endpoint, bucket))  # cancel keeps the storage


# -- status, logs, cancel with a scripted controller --------------------------------------

def scripted(endpoint: str, bucket: str):
    """Pods that do not compute: shard 0 reports progress and keeps running, shard 1 fails (exit 2)."""

    def run(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        name, stage = pod["metadata"]["name"], pod["metadata"]["labels"]["landscape.stage"]
        index = env.get("JOB_COMPLETION_INDEX")
        fake.append_log(name, f"{stage}: starting on {env['HOSTNAME']}\n")
        if stage == "prepare":  # as the real prepare pod ends: it releases evaluate and merge
            release_next_stages(lambda line: fake.append_log(name, line + "\n"), environ=env)
            return 0
        if stage == "merge":
            return None
        if index == "0":
            progress = {"shard": 0, "num_shards": 2, "done": 3, "total": 10, "rate": 1.5, "eta_s": 4.2,
                        "host": env["HOSTNAME"], "device": "cpu", "state": "running"}
            prefix = env["LANDSCAPE_RUN"].split("/", 3)[3]
            s3_client(endpoint).put_object(Bucket=bucket, Key=f"{prefix}/shards/shard-0-of-2.progress.json",
                                    Body=json.dumps(progress).encode())
            # ... and its tally key, which status reads for every shard in one listing (run/tally.py)
            tally = tally_key(ProgressRecord.from_json(json.dumps(progress).encode()))
            s3_client(endpoint).put_object(Bucket=bucket, Key=f"{prefix}/{tally}", Body=b"")
            return None
        fake.append_log(name, "".join(f"evaluate: line {i}\n" for i in range(20)))
        fake.append_log(name, "landscape-job: error: data.root: folder not found: /data/cifar10\n")
        return 2

    return run


@pytest.mark.slow
def test_status_logs_cancel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, bucket: str,
                            moto_endpoint: str, linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    with FakeCluster(tmp_path / "cluster", runner=scripted(moto_endpoint, bucket)) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint))
        assert launcher(["submit", str(path), "--run-id", "st"]) == 0, capsys.readouterr().err
        fake.wait_idle()
        capsys.readouterr()

        assert launcher(["status", "st"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "prepare   Complete" in out
        assert "evaluate  Running    0/2 shards complete, 1 active, failed: 1\n" in out
        assert "merge     Running\n" in out
        assert "shard    0  3/10 points  1.50 points/s  ETA 0m04s  running on st-evaluate-0" in out
        assert "shard 1 failed: pod st-evaluate-1-" in out and "exit code 2" in out
        assert "data.root: folder not found" in out and "line 19" in out and "line 5" not in out

        assert launcher(["logs", "st", "--shard", "1"]) == 0
        assert "line 5" in capsys.readouterr().out
        assert launcher(["logs", "st", "--stage", "prepare", "--tail", "3"]) == 0
        prepare_log = capsys.readouterr().out
        assert prepare_log.startswith("prepare: starting on st-prepare-")
        assert prepare_log.endswith("prepare: released job st-evaluate\nprepare: released job st-merge\n")

        # -f streams the running merge pod until it ends
        follow = threading.Thread(target=launcher, args=(["logs", "st", "--stage", "merge", "-f"],))
        follow.start()
        time.sleep(1.0)
        merge_pod = next(p["metadata"]["name"] for p in fake.of("pods") if "merge" in p["metadata"]["name"])
        fake.append_log(merge_pod, "merge: still waiting\n")
        time.sleep(0.3)
        fake.end_pod(merge_pod, 0)
        follow.join(timeout=20)
        assert not follow.is_alive()
        streamed = capsys.readouterr().out
        assert streamed.startswith("merge: starting on st-merge-") and streamed.endswith("merge: still waiting\n")

        assert launcher(["submit", str(path), "--run-id", "st"]) == 2
        assert one_line_error(capsys) == "launcher: error: run st already exists in namespace landscape; " \
                                         "choose another --run-id"

        assert launcher(["cancel", "st", "--cascade", "foreground"]) == 0
        assert fake.requests[-1].method == "DELETE" and fake.requests[-1].query["propagationPolicy"] == "Foreground"
        assert fake.of("jobs") == fake.of("pods") == fake.of("configmaps") == []
        assert launcher(["status", "st"]) == 2
        assert "no configmap st-spec in namespace landscape" in one_line_error(capsys)


# -- mistakes: one line, exit 2, nothing made ---------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fake", [dict(forbidden=["locked"], namespaces=["landscape"], run_pods=False,
                                       unknown_job_fields=["backoffLimitPerIndex"])], indirect=True)
def test_errors_before_anything_is_made(fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict,
                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint))

    def submit(*extra: str) -> str:
        assert launcher(["submit", str(path), "--run-id", "r1", *extra]) == 2
        return one_line_error(capsys)

    # an older server: it does not know backoffLimitPerIndex, and must refuse it, not drop it
    message = submit()
    assert 'the API server rejected jobs r1-evaluate: strict decoding error: unknown field ' \
           '"spec.backoffLimitPerIndex"' in message and "too old" in message
    assert all(r.query.get("fieldValidation") == "Strict" for r in fake.requests if r.method == "POST")
    assert fake.requests and all(r.query.get("dryRun") == "All" for r in fake.requests if r.method == "POST")
    fake.job_fields.add("backoffLimitPerIndex")

    assert submit("-n", "locked") == "launcher: error: forbidden: the account alice cannot create configmaps in " \
                                     "namespace locked; ask a cluster admin to bind you the landscape-launcher " \
                                     "Role of k8s/base"
    assert "namespace nope does not exist" in submit("-n", "nope")

    fake.invalid["r1-merge"] = [("spec.activeDeadlineSeconds", "Invalid value: 0: must be greater than 0")]
    assert submit() == ('launcher: error: the API server rejected jobs r1-merge: Job.batch "r1-merge" is invalid: '
                        'spec.activeDeadlineSeconds: Invalid value: 0: must be greater than 0')
    fake.invalid.clear()

    kubeconfig = tmp_path / "kubeconfig"
    fake.write_kubeconfig(kubeconfig, token="expired")
    assert "unauthorized: the Kubernetes API at" in submit()
    port = closed_port()
    fake.write_kubeconfig(kubeconfig, server=f"http://127.0.0.1:{port}")
    assert submit().startswith(f"launcher: error: cannot reach the Kubernetes API at http://127.0.0.1:{port} "
                               f"(kubeconfig context fake)")
    assert "--context nowhere: no such context" in submit("--context", "nowhere")
    fake.write_kubeconfig(kubeconfig)

    # unreachable storage: found before the cluster is asked anything
    asked = len(fake.requests)
    broken = cluster_spec(linear_spec, bucket, f"http://127.0.0.1:{closed_port()}")
    assert launcher(["submit", str(write_spec(tmp_path, broken, "broken.yaml")), "--run-id", "r1"]) == 2
    assert "cannot reach the S3 endpoint" in one_line_error(capsys)
    assert len(fake.requests) == asked

    assert fake.objects == {} and keys(moto_endpoint, bucket) == []  # nothing created, nothing written

    # the server checks everything and keeps nothing
    dry = len(fake.dry_runs)
    assert launcher(["submit", str(path), "--run-id", "r1", "--server-dry-run"]) == 0
    assert "nothing was created or written" in capsys.readouterr().out
    # every object but the RoleBinding, whose escalation check needs its Role to exist
    assert [r.path.rsplit("/", 1)[-1] for r in fake.dry_runs[dry:]] == ["configmaps", "roles", "jobs", "jobs", "jobs"]
    assert fake.objects == {} and keys(moto_endpoint, bucket) == []

    # checkpoints that live on the pods' volume, not here: submit goes ahead, the pods check them
    on_pods = cluster_spec(linear_spec, bucket, moto_endpoint)
    on_pods["model"] = {**on_pods["model"], "checkpoint": "/data/checkpoints/a.pt"}
    on_pods_path = write_spec(tmp_path, on_pods, "on-pods.yaml")
    assert launcher(["submit", str(on_pods_path), "--run-id", "r1", "--server-dry-run"]) == 0
    err = capsys.readouterr().err
    assert "inputs not checked here: /data/checkpoints/a.pt is not on this machine" in err
    assert fake.objects == {} and keys(moto_endpoint, bucket) == []

    # a run that does exist: spec.yaml written, then the objects
    assert launcher(["submit", str(path), "--run-id", "r1"]) == 0
    assert keys(moto_endpoint, bucket) == ["runs/r1/spec.yaml"] and len(fake.of("jobs")) == 3
    for command, expected in ((["status", "nope"], "run nope: no configmap nope-spec in namespace landscape"),
                              (["cancel", "nope"], "run nope: no configmap nope-spec in namespace landscape"),
                              (["logs", "r1", "--shard", "0"], "run r1: no pods for shard 0 in namespace landscape")):
        assert launcher(command) == 2
        assert expected in one_line_error(capsys)


def test_pull_mistakes(tmp_path: Path, aws_env: None, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "runs" / "r2").mkdir(parents=True)
    assert launcher(["pull", f"file://{tmp_path}/runs/r2", str(tmp_path / "out")]) == 2
    assert "no surface.h5 (yet)" in one_line_error(capsys)
    assert launcher(["submit", "nowhere.yaml", "--local", "--wait"]) == 2
    assert "--wait: only for the cluster" in one_line_error(capsys)
