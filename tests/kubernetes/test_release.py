"""The prepare pod's release of the gated Jobs (landscape_job.runtime.release), against the fake API server
with a pod's own token over TLS: allowed by the run's Role it works; otherwise one clear line. And the events
the pods post on the run's Jobs (landscape_job.runtime.events): Released, and the merge pod's ShardsFailed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster_testing import aws_env, bucket, cluster_spec  # noqa: F401 (fixtures)
from conftest import write_spec
from fake_k8s import FakeCluster, run_subprocess
from landscape_job.base.errors import StageError
from landscape_job.runtime.release import release_next_stages
from launcher.cli import main as launcher
from test_fake_k8s import JOBS, api, job, until

ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r-pods"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["patch"],
                   "resourceNames": ["r-evaluate", "r-merge"]}]}
BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r-pods"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r-pods"},
           "subjects": [{"kind": "ServiceAccount", "name": "landscape", "namespace": "landscape"}]}
RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/landscape"


def pod_env(fake: FakeCluster, jobs: list[str]) -> dict[str, str]:
    """The environment of a prepare pod: its token, the API, and what to release."""
    env = fake._mount_token({"metadata": {"name": "r-prepare-abcde", "namespace": "landscape"},
                             "spec": {"serviceAccountName": "landscape"}})
    return {**env, "LANDSCAPE_NAMESPACE": "landscape",
            "LANDSCAPE_RELEASE": json.dumps({"jobs": jobs, "patch": {"spec": {"suspend": False}}})}


def test_release_through_the_run_s_role(tmp_path: Path) -> None:
    with FakeCluster(tmp_path, run_pods=False) as fake:
        for name in ("r-evaluate", "r-merge", "other-evaluate"):
            assert api(fake, "POST", JOBS, job(name, suspend=True))[0] == 201
        env = pod_env(fake, ["r-evaluate", "r-merge"])
        with pytest.raises(StageError, match=r"not allowed to release job r-evaluate: .*cannot patch resource"):
            release_next_stages(lambda _: None, environ=env)  # no Role yet
        assert api(fake, "POST", f"{RBAC}/roles", ROLE)[0] == 201
        assert api(fake, "POST", f"{RBAC}/rolebindings", BINDING)[0] == 201
        lines: list[str] = []
        release_next_stages(lines.append, environ=env)
        # released; the Released events could not be posted (this Role has no events: create), which is only noted
        assert [line for line in lines if not line.startswith("note: event Released")] == \
            ["prepare: released job r-evaluate", "prepare: released job r-merge"]
        assert len(lines) == 4 and "cannot create resource \"events\"" in lines[1]
        assert [fake.get("jobs", n)["spec"]["suspend"] for n in ("r-evaluate", "r-merge", "other-evaluate")] == \
            [False, False, True]
        with pytest.raises(StageError, match="not allowed to release job other-evaluate"):  # another run's Job
            release_next_stages(lambda _: None, environ=pod_env(fake, ["other-evaluate"]))
        with fake.lock:
            fake._delete("jobs", "landscape", "r-merge")
        with pytest.raises(StageError, match=r"job r-merge is gone \(the run was cancelled\?\)"):
            release_next_stages(lambda _: None, environ=env)


def test_nothing_to_release_outside_a_cluster_and_no_token_is_an_error(tmp_path: Path) -> None:
    release_next_stages(lambda _: pytest.fail("logged"), environ={})  # a local run: nothing set, nothing done
    with pytest.raises(StageError, match="no service-account token"):
        release_next_stages(lambda _: None, environ={"LANDSCAPE_RELEASE": json.dumps(
            {"jobs": ["r-evaluate"], "patch": {"spec": {"suspend": False}}})})


def test_the_api_unreachable_is_retried_then_fails(tmp_path: Path) -> None:
    with FakeCluster(tmp_path, run_pods=False) as fake:
        env = {**pod_env(fake, ["r-evaluate"]), "KUBERNETES_SERVICE_PORT": "9"}
        waits: list[float] = []
        with pytest.raises(StageError, match="cannot reach the Kubernetes API to release job r-evaluate"):
            release_next_stages(lambda _: None, sleep=waits.append, environ=env)
        assert waits == [1.0, 2.0, 4.0, 8.0]


def test_each_release_is_an_event_naming_the_pod(tmp_path: Path) -> None:
    """The Released event on each Job says which pod released it (``?`` where HOSTNAME is unset)."""
    role = {**ROLE, "rules": ROLE["rules"] + [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]}
    with FakeCluster(tmp_path, run_pods=False) as fake:
        for name in ("r-evaluate", "r-merge"):
            assert api(fake, "POST", JOBS, job(name, suspend=True))[0] == 201
        assert api(fake, "POST", f"{RBAC}/roles", role)[0] == 201
        assert api(fake, "POST", f"{RBAC}/rolebindings", BINDING)[0] == 201
        lines: list[str] = []
        release_next_stages(lines.append, environ={**pod_env(fake, ["r-evaluate"]), "HOSTNAME": "r-prepare-abcde"})
        release_next_stages(lines.append, environ=pod_env(fake, ["r-merge"]))
        assert lines == ["prepare: released job r-evaluate", "prepare: released job r-merge"]
        with fake.lock:
            events = [obj for key, obj in fake.objects.items() if key[0] == "events"]
        assert sorted((e["involvedObject"]["name"], e["reason"], e["message"]) for e in events) == [
            ("r-evaluate", "Released", "released by pod r-prepare-abcde: its stage may start"),
            ("r-merge", "Released", "released by pod ?: its stage may start")]


def test_no_token_names_every_job_it_would_release() -> None:
    with pytest.raises(StageError) as info:
        release_next_stages(lambda _: None, environ={"LANDSCAPE_RELEASE": json.dumps(
            {"jobs": ["r-evaluate", "r-merge"], "patch": {"spec": {"suspend": False}}})})
    assert "to release r-evaluate, r-merge with (automountServiceAccountToken?)" in str(info.value)


@pytest.mark.slow
def test_a_shard_failed_for_good_is_a_shards_failed_event_on_the_evaluate_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, bucket: str, moto_endpoint: str,
        linear_spec: dict) -> None:
    """Shard 0 exits 2 (a user error: the pod failure policy fails its index at once) while shard 1 still runs;
    the real merge pod's watch finds the failed index, posts one ``ShardsFailed`` Warning on the evaluate Job
    with its own token, and fails (exit 3) saying the same."""

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        stage, name = pod["metadata"]["labels"]["landscape.stage"], pod["metadata"]["name"]
        if stage == "evaluate":
            if env["JOB_COMPLETION_INDEX"] == "0":
                fake.append_log(name, "landscape-job: a user error in shard 0\n")
                return 2
            return None  # shard 1 is still computing
        if stage == "merge":
            pod["spec"]["containers"][0]["args"].append("--no-plots")
        return run_subprocess(fake, pod, env)

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint, shards=2))
        assert launcher(["submit", str(path), "--run-id", "sf"]) == 0
        merge = until(lambda: next((pod for pod in fake.of("pods") if pod["metadata"]["labels"]["landscape.stage"]
                                    == "merge" and pod["status"].get("phase") == "Failed"), None), timeout=180)
        events = [e for e in fake.of("events") if e["reason"] == "ShardsFailed"]
        posted = [c for c in fake.calls if (c.verb, c.resource) == ("create", "events") and c.pod]

    failure = "evaluate Job indexes 0 failed and will not be retried; see their pods' logs"
    assert len(events) == 1, events
    event = events[0]
    assert event["involvedObject"] == {"apiVersion": "batch/v1", "kind": "Job", "name": "sf-evaluate",
                                       "namespace": "landscape"}
    assert (event["type"], event["message"], event["source"]) == ("Warning", failure, {"component": "landscape"})
    assert event["metadata"]["name"].startswith("sf-evaluate.") and event["metadata"]["namespace"] == "landscape"
    # posted by the merge pod, with its service account's token, and allowed by the run's Role
    assert [(c.pod, c.allowed) for c in posted if c.pod == merge["metadata"]["name"]] == \
        [(merge["metadata"]["name"], True)]
    assert merge["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert failure in fake.logs[merge["metadata"]["name"]]

