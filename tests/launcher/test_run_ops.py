"""The operational commands against the fake API server: status names why pods wait, -o json|yaml,
wait's exit codes, logs across shards with a prefix and of a previous attempt, list -A / -l,
cancel of a ``render | kubectl apply`` run by label, images by digest.

The pods are scripted (``FakeCluster(runner=...)``): nothing computes, so each test takes
seconds; the storage is moto's S3 (a cluster run needs one; the pods never touch it here).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_spec
from fake_k8s import FakeCluster
from landscape_job.runtime.release import release_next_stages
from launcher.cli import main as launcher
from launcher.commands.wait import TIMEOUT_EXIT
from launcher.kubernetes.pod_state import Event, PodView
from launcher.run_status import cluster_stage
from cluster_testing import aws_env, bucket  # noqa: F401  (fixtures: dummy credentials, a moto bucket)

IMAGE = "registry.example.com/landscape@sha256:" + "ab" * 32
PULL_MESSAGE = f'Back-off pulling image "{IMAGE}"'
SCHEDULER_MESSAGE = ("0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, "
                     "2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available")


def scripted(fake: FakeCluster, pod: dict, env: dict) -> int | None:
    """Each run's pods by its name: ``stuck`` waits on an image and a node, ``bad`` fails prepare,
    ``slow`` never merges, anything else logs and succeeds (shard 1 only on its second attempt)."""
    name = pod["metadata"]["name"]
    labels = pod["metadata"]["labels"]
    run, stage, index = labels["landscape.run"], labels["landscape.stage"], env.get("JOB_COMPLETION_INDEX")
    attempts = fake.attempts = getattr(fake, "attempts", {})  # type: ignore[attr-defined]
    attempt = attempts[(run, stage, index)] = attempts.get((run, stage, index), 0) + 1
    fake.append_log(name, f"{stage} {index or ''} attempt {attempt}: hello\n")
    if run == "stuck" and stage == "evaluate":
        if index == "0":
            fake.hold_waiting(name, "ImagePullBackOff", PULL_MESSAGE)
        else:
            fake.hold_unschedulable(name, SCHEDULER_MESSAGE)
        return None
    if run == "live" and stage == "evaluate":  # logs, then keeps running until the test ends it
        fake.append_log(name, "".join(f"shard {index} line {i}\n" for i in range(5)))
        return None
    if run == "bad" and stage == "prepare":
        return 2
    if stage == "prepare":  # as the real prepare pod ends: it releases evaluate and merge
        release_next_stages(lambda line: fake.append_log(name, line + "\n"), environ=env)
    if run in ("slow", "stuck") and stage == "merge":
        return None  # merge, released with evaluate, stays running here
    if stage == "evaluate" and index == "1" and attempt == 1:
        return 1  # retried: its second pod succeeds
    return 0


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str, moto_endpoint: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_STORAGE", json.dumps({"url": f"s3://{bucket}/runs", "endpoint_url": moto_endpoint,
                                                   "addressing_style": "path"}))
    with FakeCluster(tmp_path / "cluster", runner=scripted) as cluster:
        cluster.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        yield cluster


def submit(tmp_path: Path, linear_spec: dict, run_id: str, *extra: str, **k8s: object) -> None:
    spec = dict(linear_spec, compute={**linear_spec["compute"], "shards": 2},
                storage=json.loads(os.environ["TEST_STORAGE"]))
    spec["kubernetes"] = {"gpus": 0, "image": IMAGE, "s3_secret": "landscape-s3", **k8s}
    path = write_spec(tmp_path, spec, f"{run_id}.yaml")
    assert launcher(["submit", str(path), "--run-id", run_id, *extra]) == 0


def out_of(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return captured.out


@pytest.mark.slow
def test_status_names_why_pods_wait(fake: FakeCluster, tmp_path: Path, linear_spec: dict,
                                    capsys: pytest.CaptureFixture) -> None:
    submit(tmp_path, linear_spec, "stuck")
    fake.wait_idle()
    capsys.readouterr()
    assert launcher(["status", "stuck"]) == 0
    out = out_of(capsys)
    lines = out.splitlines()
    evaluate = next(line for line in lines if line.startswith("  evaluate "))
    assert evaluate.split()[1] == "Waiting" and "ImagePullBackOff" in evaluate  # not "Running"
    pulled = next(line for line in lines if "stuck-evaluate-0-" in line and "pod " in line)
    assert "(shard 0): Pending, ImagePullBackOff" in pulled and f"[image {IMAGE}]" in pulled
    unscheduled = next(line for line in lines if "stuck-evaluate-1-" in line and "pod " in line)
    assert f"(shard 1): Pending, Unschedulable: {SCHEDULER_MESSAGE}" in unscheduled
    assert evaluate.endswith("0/2 shards complete, 2 active; ImagePullBackOff, Unschedulable")
    assert out.count(SCHEDULER_MESSAGE) == 1  # its FailedScheduling event says the same: not repeated
    assert "prepare   Complete" in out

    assert launcher(["status", "stuck", "-o", "json"]) == 0
    record = json.loads(out_of(capsys))
    assert set(record) == {"run", "source", "namespace", "storage", "state", "stages", "progress", "shards", "local"}
    assert (record["run"], record["source"], record["namespace"], record["state"]) == \
        ("stuck", "cluster", "landscape", "Waiting")
    stages = {s["stage"]: s for s in record["stages"]}
    assert list(stages) == ["prepare", "evaluate", "merge"]
    assert set(stages["evaluate"]) == {"stage", "state", "reason", "message", "shards", "pods", "events"}
    assert stages["evaluate"]["shards"] == {"total": 2, "complete": 0, "failed": [], "active": 2}
    pods = {p["index"]: p for p in stages["evaluate"]["pods"]}
    assert set(pods[0]) == {"name", "stage", "index", "phase", "reason", "message", "image", "restarts",
                            "exit_code", "created"}
    assert (pods[0]["reason"], pods[0]["image"], pods[0]["message"]) == ("ImagePullBackOff", IMAGE, PULL_MESSAGE)
    assert (pods[1]["reason"], pods[1]["message"]) == ("Unschedulable", SCHEDULER_MESSAGE)
    # prepare's release posts a Released Event on the Job too (issue 24's operator events)
    assert {e["reason"] for e in stages["evaluate"]["events"]} == {"Failed", "FailedScheduling", "Released"}
    assert launcher(["status", "stuck", "-o", "yaml"]) == 0
    assert yaml.safe_load(out_of(capsys)) == record


def job(suspend: bool = False, labels: dict | None = None, active: int = 0) -> dict:
    return {"metadata": {"name": "r-merge", "namespace": "ns", "labels": labels or {}},
            "spec": {"suspend": suspend}, "status": {"active": active}}


def test_admission_rejections_and_kueue_holds_are_named() -> None:
    refused = Event("Job", "r-merge", "Warning", "FailedCreate",
                    'pods "r-merge-x" is forbidden: violates PodSecurity "restricted:latest": privileged')
    stage = cluster_stage("merge", job(), events=[refused])
    assert (stage.state, stage.reason) == ("Waiting", "FailedCreate") and "PodSecurity" in stage.message
    held = cluster_stage("merge", job(suspend=True, labels={"kueue.x-k8s.io/queue-name": "gpus"}))
    assert (held.state, held.reason) == ("Suspended", "Kueue") and "admission in queue gpus" in held.message
    secret = PodView.from_api({"metadata": {"name": "p", "labels": {"landscape.stage": "merge"}},
                               "spec": {"containers": [{"name": "landscape", "image": "i"}]},
                               "status": {"phase": "Pending", "containerStatuses": [{"name": "landscape", "state": {
                                   "waiting": {"reason": "CreateContainerConfigError",
                                               "message": 'secret "landscape-s3" not found'}}}]}})
    assert secret.stuck and secret.message == 'secret "landscape-s3" not found'
    running = cluster_stage("merge", job(active=1), pods=[PodView("p", "merge", None, "Running")])
    assert running.state == "Running"


@pytest.mark.slow
def test_wait_exits_by_outcome(fake: FakeCluster, tmp_path: Path, linear_spec: dict,
                               capsys: pytest.CaptureFixture) -> None:
    for run_id in ("good", "bad", "slow"):
        submit(tmp_path, linear_spec, run_id)
    fake.wait_idle()
    capsys.readouterr()
    assert launcher(["wait", "good", "--timeout", "10", "--interval", "0.1"]) == 0
    assert f"done: {json.loads(os.environ['TEST_STORAGE'])['url']}/good/surface.h5" in out_of(capsys)
    assert launcher(["wait", "bad", "--timeout", "10", "--interval", "0.1"]) == 1
    assert "the prepare Job failed" in capsys.readouterr().err
    assert launcher(["wait", "slow", "--timeout", "0.3", "--interval", "0.1"]) == TIMEOUT_EXIT == 124
    assert "has not ended after 0.3 s" in capsys.readouterr().err
    assert launcher(["wait", "nope", "--timeout", "1"]) == 2


@pytest.mark.slow
def test_logs_across_shards_with_a_prefix_and_the_previous_attempt(fake: FakeCluster, tmp_path: Path,
                                                                   linear_spec: dict,
                                                                   capsys: pytest.CaptureFixture) -> None:
    submit(tmp_path, linear_spec, "good")
    fake.wait_idle()
    capsys.readouterr()
    assert launcher(["logs", "good"]) == 0
    assert out_of(capsys).splitlines() == ["[prepare] prepare  attempt 1: hello",
                                           "[prepare] prepare: released job good-evaluate",
                                           "[prepare] prepare: released job good-merge", "[shard 0] evaluate 0 attempt 1: hello",
                                           "[shard 1] evaluate 1 attempt 2: hello", "[merge] merge  attempt 1: hello"]
    assert launcher(["logs", "good", "--index", "1"]) == 0
    assert out_of(capsys) == "evaluate 1 attempt 2: hello\n"  # one pod: no prefix, as kubectl logs
    assert launcher(["logs", "good", "--index", "1", "--previous"]) == 0
    assert out_of(capsys) == "evaluate 1 attempt 1: hello\n"
    assert launcher(["logs", "good", "--previous"]) == 0  # only shard 1 had an earlier attempt
    assert out_of(capsys) == "evaluate 1 attempt 1: hello\n"
    assert launcher(["logs", "good", "--stage", "merge", "--previous"]) == 2
    assert "no earlier attempts in stage merge" in capsys.readouterr().err


def test_logs_follow_every_shard_at_once(fake: FakeCluster, tmp_path: Path, linear_spec: dict,
                                        capsys: pytest.CaptureFixture) -> None:
    """``logs --stage evaluate -f --tail 2``: each shard's last two lines, then what each writes, prefixed,
    every stream open at once (as kubectl logs -f -l ... --prefix), until every pod has ended."""
    submit(tmp_path, linear_spec, "live")
    fake.wait_idle()
    capsys.readouterr()
    pods = {p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]: p["metadata"]["name"]
            for p in fake.of("pods") if p["metadata"]["labels"]["landscape.stage"] == "evaluate"}
    follow = threading.Thread(target=launcher, args=(["logs", "live", "--stage", "evaluate", "-f", "--tail", "2"],))
    follow.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(set(fake.log_streams)) < 2:
        time.sleep(0.05)  # both streams have sent their tails before the pods write more
    for index, name in pods.items():
        fake.append_log(name, f"shard {index} later\n")
    fake.end_pod(pods["1"], 0)
    time.sleep(0.3)
    fake.append_log(pods["0"], "shard 0 last\n")  # shard 0 still streams after shard 1 ended
    fake.end_pod(pods["0"], 0)
    follow.join(timeout=20)
    assert not follow.is_alive()
    lines = out_of(capsys).splitlines()
    assert [line for line in lines if line.startswith("[shard 0] ")] == [
        "[shard 0] shard 0 line 3", "[shard 0] shard 0 line 4", "[shard 0] shard 0 later", "[shard 0] shard 0 last"]
    assert [line for line in lines if line.startswith("[shard 1] ")] == [
        "[shard 1] shard 1 line 3", "[shard 1] shard 1 line 4", "[shard 1] shard 1 later"]
    assert len(lines) == 7
    assert all(r.query.get("follow") == "true" and r.query.get("tailLines") == "2"
               for r in fake.requests if r.path.endswith("/log"))


@pytest.mark.slow
def test_list_all_namespaces_and_by_label(fake: FakeCluster, tmp_path: Path, linear_spec: dict,
                                          capsys: pytest.CaptureFixture) -> None:
    submit(tmp_path, linear_spec, "good", labels={"team": "a"})
    submit(tmp_path, linear_spec, "slow", "-n", "default")
    fake.wait_idle()
    capsys.readouterr()
    assert launcher(["list"]) == 0
    rows = out_of(capsys).splitlines()
    assert [r.split()[0] for r in rows] == ["RUN", "good"] and rows[1].split()[1:3] == ["Complete", "2/2"]
    assert launcher(["list", "-A"]) == 0
    rows = out_of(capsys).splitlines()
    assert rows[0].split()[:2] == ["NAMESPACE", "RUN"]
    assert sorted(r.split()[:3] for r in rows[1:]) == [["default", "slow", "Running"],
                                                        ["landscape", "good", "Complete"]]
    assert launcher(["list", "-A", "-l", "team=a", "-o", "json"]) == 0
    listed = json.loads(out_of(capsys))
    assert [(r["run"], r["namespace"], r["state"]) for r in listed] == [("good", "landscape", "Complete")]
    assert set(listed[0]) == {"run", "state", "shards_complete", "shards_total", "created", "storage", "namespace",
                              "source"}
    assert launcher(["list", "-l", "team=b"]) == 0
    assert out_of(capsys) == "no runs in namespace landscape with labels team=b\n"
    assert launcher(["list", "-l", "team=a;rm"]) == 2
    assert "-l: expected key=value" in capsys.readouterr().err


def test_list_with_a_kubeconfig_and_local_runs_lists_both_and_says_where(
        fake: FakeCluster, tmp_path: Path, linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    """No flag naming a source, a kubeconfig and ./runs: both, each under where it looked; one source failing
    (the cluster unreachable) is one line, and the other still lists."""
    from landscape_job.spec.parse import load_spec
    from launcher.local.runner import open_run

    submit(tmp_path, linear_spec, "slow")  # on the cluster: merge never ends
    open_run(load_spec(write_spec(tmp_path, dict(linear_spec, storage="runs"), "here.yaml")), "here")  # ./runs/here
    fake.wait_idle()
    capsys.readouterr()
    assert launcher(["list"]) == 0
    out = out_of(capsys)
    cluster, local = out.split("\n\n")
    assert cluster.splitlines()[0] == "cluster, in namespace landscape:"
    assert [line.split()[:2] for line in cluster.splitlines()[2:]] == [["slow", "Running"]]
    assert local.splitlines()[0] == f"local runs, under file://{tmp_path}/runs:"
    assert [line.split()[:2] for line in local.splitlines()[2:]] == [["here", "Incomplete"]]
    assert launcher(["list", "-o", "json"]) == 0
    assert [(r["run"], r["source"]) for r in json.loads(out_of(capsys))] == [("slow", "cluster"), ("here", "storage")]
    assert launcher(["list", "-n", "landscape"]) == 0  # a flag that names the cluster: the cluster alone
    assert [line.split()[0] for line in out_of(capsys).splitlines()] == ["RUN", "slow"]

    kubeconfig = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = "http://127.0.0.1:9"  # nothing listens there
    (tmp_path / "unreachable").write_text(yaml.safe_dump(kubeconfig))
    os.environ["KUBECONFIG"] = str(tmp_path / "unreachable")  # the fixture's monkeypatch restores it
    assert launcher(["list"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("launcher: warning: cluster not listed: "), captured.err
    assert "Traceback" not in captured.err
    assert captured.out.splitlines()[0] == f"local runs, under file://{tmp_path}/runs:"
    assert captured.out.splitlines()[2].split()[:2] == ["here", "Incomplete"]


def test_cancel_finds_a_render_apply_run_by_label(fake: FakeCluster, tmp_path: Path, linear_spec: dict,
                                                  capsys: pytest.CaptureFixture) -> None:
    spec = dict(linear_spec, compute={**linear_spec["compute"], "shards": 2},
                storage=json.loads(os.environ["TEST_STORAGE"]), kubernetes={"gpus": 0, "s3_secret": "landscape-s3"})
    path = write_spec(tmp_path, spec, "applied.yaml")
    submit(tmp_path, linear_spec, "slow")  # another run: left alone
    capsys.readouterr()
    assert launcher(["render", str(path), "--run-id", "applied", "-o", "json"]) == 0
    objects = json.loads(capsys.readouterr().out)["items"]
    auth = {"authorization": f"Bearer {fake.token}"}
    for obj in objects:  # as kubectl apply creates them: no owner references
        plural = {"ConfigMap": "api/v1/namespaces/landscape/configmaps",
                  "Job": "apis/batch/v1/namespaces/landscape/jobs",
                  "Role": "apis/rbac.authorization.k8s.io/v1/namespaces/landscape/roles",
                  "RoleBinding": "apis/rbac.authorization.k8s.io/v1/namespaces/landscape/rolebindings"}[obj["kind"]]
        fake.handle("POST", f"/{plural}", {}, obj, auth)
    fake.wait_idle()
    applied = [j for j in fake.of("jobs") if j["metadata"]["labels"]["landscape.run"] == "applied"]
    assert len(applied) == 3 and not any(j["metadata"].get("ownerReferences") for j in applied)
    assert launcher(["cancel", "applied"]) == 0
    assert ("deleted job/applied-evaluate, job/applied-merge, job/applied-prepare, role/applied-pods, "
            "rolebinding/applied-pods, configmap/applied-spec") in out_of(capsys)
    left = {o["metadata"]["labels"].get("landscape.run") for kind in ("jobs", "pods", "configmaps", "roles",
                                                                       "rolebindings")
            for o in fake.of(kind)}
    assert left == {"slow"}  # the applied run's Jobs, pods and ConfigMap are gone; the other run stays

    # Jobs applied without their ConfigMap are found by label all the same
    for obj in (o for o in objects if o["kind"] == "Job"):
        fake.handle("POST", "/apis/batch/v1/namespaces/landscape/jobs", {}, obj, auth)
    fake.wait_idle()
    assert launcher(["cancel", "applied"]) == 0
    assert "configmap" not in out_of(capsys)
    assert not [j for j in fake.of("jobs") if j["metadata"]["labels"]["landscape.run"] == "applied"]


RUN_KINDS = ("configmaps", "roles", "rolebindings", "jobs", "pods")


def objects_of(fake: FakeCluster, run: str) -> dict[str, list[str]]:
    """The run's objects by resource, by the run's label (what kubectl get -l would show)."""
    found = {kind: sorted(o["metadata"]["name"] for o in fake.of(kind)
                          if (o["metadata"].get("labels") or {}).get("landscape.run") == run) for kind in RUN_KINDS}
    return {kind: names for kind, names in found.items() if names}


@pytest.mark.slow
def test_a_runs_objects_go_with_its_jobs(fake: FakeCluster, tmp_path: Path, linear_spec: dict,
                                         capsys: pytest.CaptureFixture) -> None:
    """Whatever removes a run's Jobs (kubectl, the TTL controller, cancel) removes its ConfigMap, Role and
    RoleBinding too, through the garbage collector; another run in the namespace is untouched."""
    submit(tmp_path, linear_spec, "good")
    submit(tmp_path, linear_spec, "slow")  # stays running: the bystander
    submit(tmp_path, linear_spec, "brief", ttl_seconds_after_finished=1)
    fake.wait_idle()
    capsys.readouterr()
    slow = objects_of(fake, "slow")
    assert set(slow) == set(RUN_KINDS)

    # the ownership as the server holds it: the ConfigMap owned by the three Jobs (by uid), the Role and
    # RoleBinding by the ConfigMap, the Jobs by nothing (no cycle)
    jobs = {j["metadata"]["name"]: j["metadata"]["uid"] for j in fake.of("jobs") if j["metadata"]["name"].startswith("good-")}
    config_map = fake.get("configmaps", "good-spec")
    assert {(r["kind"], r["name"], r["uid"]) for r in config_map["metadata"]["ownerReferences"]} == {
        ("Job", name, uid) for name, uid in jobs.items()}
    for kind in ("roles", "rolebindings"):
        assert [(r["kind"], r["uid"]) for r in fake.get(kind, "good-pods")["metadata"]["ownerReferences"]] == [
            ("ConfigMap", config_map["metadata"]["uid"])]
    assert not any(fake.get("jobs", name)["metadata"].get("ownerReferences") for name in jobs)

    # kubectl delete jobs -l landscape.run=good: one Job gone, the run's anchor stays; all gone, nothing stays
    auth = {"authorization": f"Bearer {fake.token}"}
    fake.handle("DELETE", "/apis/batch/v1/namespaces/landscape/jobs/good-prepare", {}, None, auth)
    assert fake.get("configmaps", "good-spec") is not None and fake.get("roles", "good-pods") is not None
    for name in ("good-evaluate", "good-merge"):
        fake.handle("DELETE", f"/apis/batch/v1/namespaces/landscape/jobs/{name}", {}, None, auth)
    assert objects_of(fake, "good") == {}

    # the TTL controller: a second after each Job finished, it is deleted, and the run's objects with the last
    deadline = time.monotonic() + 20
    while objects_of(fake, "brief") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert objects_of(fake, "brief") == {}
    assert launcher(["status", "brief"]) == 2  # the run's results stay in storage: the message says where
    assert "a run's objects go with its Jobs" in capsys.readouterr().err

    # cancel removes every object of its run, and only of its run
    assert objects_of(fake, "slow") == slow
    submit(tmp_path, linear_spec, "other")
    fake.wait_idle()
    assert launcher(["cancel", "slow"]) == 0
    assert ("deleted job/slow-evaluate, job/slow-merge, job/slow-prepare, role/slow-pods, rolebinding/slow-pods, "
            "configmap/slow-spec") in out_of(capsys)
    assert objects_of(fake, "slow") == {}
    assert set(objects_of(fake, "other")) == set(RUN_KINDS)


def test_images_by_digest(tmp_path: Path, linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    spec = dict(linear_spec, kubernetes={"image": IMAGE})
    path = str(write_spec(tmp_path, spec))
    assert launcher(["render", path, "--run-id", "r", "-o", "json", "--storage", "s3://b/runs"]) == 0
    rendered = json.loads(capsys.readouterr().out)["items"]
    assert {j["spec"]["template"]["spec"]["containers"][0]["image"] for j in rendered if j["kind"] == "Job"} == {IMAGE}
    for bad in ("registry.example.com/landscape@sha256:abc", "registry.example.com/landscape@md5:" + "a" * 64,
                "@sha256:" + "ab" * 32):
        spec = dict(linear_spec, kubernetes={"image": bad})
        assert launcher(["render", str(write_spec(tmp_path, spec)), "--run-id", "r", "--storage", "s3://b/r"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("launcher: error: kubernetes.image: a digest must be @sha256:") and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "runs")


def test_status_text_lists_waiting_pods_and_new_events_once() -> None:
    from launcher.commands.views import status_lines
    from launcher.run_status import cluster_status

    pod = PodView("r-evaluate-0-x", "evaluate", 0, "Pending", "ErrImagePull", "pull access denied", IMAGE)
    events = {"evaluate": [Event("Pod", "r-evaluate-0-x", "Warning", "Failed", "pull access denied", 3, "t2"),
                           Event("Pod", "r-evaluate-0-x", "Normal", "Pulling", f'Pulling image "{IMAGE}"', 1, "t1")]}
    evaluate = {"metadata": {"name": "r-evaluate"}, "spec": {"completions": 1}, "status": {"active": 1}}
    lines = status_lines(cluster_status("r", "ns", "s3://b/r", {"evaluate": evaluate}, [pod], events, {}, 1))
    assert lines[:3] == ["run r  namespace ns  storage s3://b/r", "  prepare   (gone: deleted, or removed after "
                         "ttlSecondsAfterFinished)", "  evaluate  Waiting    0/1 shards complete, 1 active; ErrImagePull"]
    assert lines[3] == f"      pod r-evaluate-0-x (shard 0): Pending, ErrImagePull: pull access denied [image {IMAGE}]"
    assert lines[4:6] == ["      events:", f'      t1                   Normal  Pulling          pod/r-evaluate-0-x: '
                                           f'Pulling image "{IMAGE}"']


def test_a_missing_secret_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str, moto_endpoint: str,
                                   linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    """No ``landscape-s3`` Secret in the namespace: the kubelet cannot build the container (the fake's own check)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_STORAGE", json.dumps({"url": f"s3://{bucket}/runs", "endpoint_url": moto_endpoint,
                                                   "addressing_style": "path"}))
    with FakeCluster(tmp_path / "cluster") as fake:  # no secret_from_environ: the Secret does not exist
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        submit(tmp_path, linear_spec, "nosecret")
        fake.wait_idle()
        capsys.readouterr()
        assert launcher(["status", "nosecret", "-o", "json"]) == 0
        prepare = json.loads(out_of(capsys))["stages"][0]
        assert (prepare["state"], prepare["reason"]) == ("Waiting", "CreateContainerConfigError")
        assert prepare["pods"][0]["message"] == 'secret "landscape-s3" not found'
