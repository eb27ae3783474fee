"""Least privilege, measured: every API call of a whole run is allowed, and every grant is used.

A run on the fake cluster (tests/support/fake_k8s.py, real pods, real launcher commands: submit
--wait, status, logs, list, pull, cancel --cascade foreground) records each request with
who made it: the launcher (the user bound to k8s/base's landscape-launcher Role) or a pod
(its service account, which holds only the run's own ``<run>-pods`` Role). The test checks
that none was refused, and that each verb, resource and name the Roles grant was asked for,
except the grants listed in ``UNUSED_BY_DESIGN`` with the reason they exist.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from conftest import write_spec
from fake_k8s import FakeCluster, run_subprocess
from fake_rbac import REPO, Call, Identity, launcher_role
from launcher.cli import main as launcher
from cluster_testing import aws_env, bucket, cluster_spec  # noqa: F401 (fixtures)

#: Launcher grants no launcher command calls in this run, each with why it is granted.
UNUSED_BY_DESIGN = {
    ("update", "", "configmaps/finalizers"): "admission (OwnerReferencesPermissionEnforcement) checks it when "
                                             "the Role's and RoleBinding's owner references set blockOwnerDeletion; "
                                             "not a request",
    ("get", "batch", "jobs"): "the kubectl the README shows: kubectl describe job, kubectl logs job/<name>",
    ("patch", "batch", "jobs"): "kubectl patch job ... suspend: false for kubernetes.suspend; and RBAC's "
                                "escalation check: binding the pods' Role needs the launcher to hold it",
    ("get", "", "pods"): "kubectl logs and kubectl describe pod, which submit's output points to",
    ("create", "", "events"): "RBAC's escalation check: the pods' Role lets them post events on the run's Jobs",
    ("get", "", "persistentvolumeclaims"): "submit's preflight reads the claims a spec mounts (this one has none)",
    ("get", "kueue.x-k8s.io", "localqueues"): "submit's preflight reads the spec's queue (this run has none)",
}


def grants(role: dict) -> set[tuple[str, str, str, str]]:
    """(verb, group, resource, name or "") for every rule of a Role."""
    return {(verb, group, resource, name)
            for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames") or [""]}


def used(calls: list[Call], named: bool) -> set[tuple[str, str, str, str]]:
    return {(c.verb, c.group, c.resource, c.name if named else "") for c in calls}


@pytest.mark.slow
def test_every_call_of_a_run_is_allowed_and_every_grant_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, bucket: str, moto_endpoint: str,
        linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        stage = pod["metadata"]["labels"]["landscape.stage"]
        if stage == "evaluate":
            time.sleep(4)  # the merge pod is waiting (and watching its evaluate Job) before the shards come
        if stage == "merge":  # the plots make no API call; they cost seconds
            pod["spec"]["containers"][0]["args"].append("--no-plots")
        return run_subprocess(fake, pod, env)

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        # one shard: the calls and grants are the same for any number (evaluate pods call no API)
        path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint, shards=1))
        assert launcher(["submit", str(path), "--run-id", "rbac", "--wait", "--interval", "0.5"]) == 0, \
            (capsys.readouterr().err, fake.logs)
        pods_role = fake.get("roles", "rbac-pods")
        assert launcher(["status", "rbac"]) == 0
        assert launcher(["logs", "rbac", "--shard", "0"]) == 0
        assert launcher(["list"]) == 0
        assert launcher(["pull", "rbac", str(tmp_path / "pulled")]) == 0
        assert launcher(["cancel", "rbac", "--cascade", "foreground"]) == 0
        calls = list(fake.calls)
        events = [e for e in fake.of("events") if e["source"]["component"] == "landscape"]
        tokened = set(fake.token_pods.values())  # the pods the kubelet mounted a token in
        # cancel took the Role and RoleBinding along (events stay, as on a real server, until their TTL)
        assert {key for key in fake.objects if key[0] != "events"} == set()

    refused = [c for c in calls if not c.allowed]
    assert refused == []
    by_launcher = [c for c in calls if c.identity == fake.launcher]
    by_pods = [c for c in calls if c.identity != fake.launcher]
    assert {c.identity.username for c in by_pods} == {"system:serviceaccount:landscape:landscape"}
    # a token only where the API is called: prepare (release) and merge (watch); evaluate pods get none
    assert tokened == {c.pod for c in by_pods}
    assert sorted(name.rsplit("-", 2)[1] for name in tokened) == ["merge", "prepare"]

    # the pods: the prepare pod released both gated Jobs, the merge pod read its evaluate Job, both posted
    # events; nothing else
    assert grants(pods_role) == used(by_pods, named=True) == {
        ("patch", "batch", "jobs", "rbac-evaluate"), ("patch", "batch", "jobs", "rbac-merge"),
        ("get", "batch", "jobs", "rbac-evaluate"), ("create", "", "events", "")}
    # and the stage transitions are on the Jobs as Events (kubectl describe job, alerting)
    assert {(e["involvedObject"]["name"], e["reason"]) for e in events} >= {
        ("rbac-evaluate", "Released"), ("rbac-merge", "Released"), ("rbac-merge", "Merged")}

    # the launcher: everything it called is granted (above), everything granted is called or explained
    granted = {g[:3] for g in grants(launcher_role())}
    unused = granted - {u[:3] for u in used(by_launcher, named=False)}
    assert unused == set(UNUSED_BY_DESIGN), sorted(unused ^ set(UNUSED_BY_DESIGN))


def test_the_check_can_fail(tmp_path: Path) -> None:
    """A pod's request beyond its Role is refused (403) and recorded as refused."""
    import json
    import urllib.error
    import urllib.request

    with FakeCluster(tmp_path, run_pods=False) as fake:
        fake.tokens["pod-token"] = type(fake.launcher)("ServiceAccount", "landscape", "landscape")
        request = urllib.request.Request(f"{fake.url}/apis/batch/v1/namespaces/landscape/jobs/other-evaluate",
                                         data=json.dumps({"spec": {"suspend": False}}).encode(), method="PATCH",
                                         headers={"Authorization": "Bearer pod-token",
                                                  "Content-Type": "application/merge-patch+json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 403
        assert 'User "system:serviceaccount:landscape:landscape" cannot patch resource "jobs"' in \
            json.loads(err.value.read())["message"]
        assert [c.allowed for c in fake.calls] == [False]


def test_a_binding_to_a_group_grants_its_members_only(tmp_path: Path) -> None:
    """k8s/overlays/example binds the launcher Role to the Group team-a-researchers: a user the authenticator
    puts in that group may use it; a user outside it (in another group, or none) may not."""
    import json
    import urllib.error
    import urllib.request

    binding = yaml.safe_load((REPO / "k8s" / "overlays" / "example" / "launcher-rolebinding.yaml").read_text())
    with FakeCluster(tmp_path, run_pods=False) as fake:
        fake.base_bindings = [binding]  # the overlay's binding instead of the one to the kubeconfig's user
        fake.tokens.update({"bob": Identity("User", "bob", groups=("team-a-researchers",)),
                            "carol": Identity("User", "carol", groups=("team-b-researchers",)),
                            "dave": Identity("User", "dave")})

        def list_configmaps(token: str) -> int:
            request = urllib.request.Request(f"{fake.url}/api/v1/namespaces/landscape/configmaps",
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                assert 'cannot list resource "configmaps"' in json.loads(err.read())["message"]
                return err.code

        assert {token: list_configmaps(token) for token in ("bob", "carol", "dave")} == \
            {"bob": 200, "carol": 403, "dave": 403}
        assert [(c.identity.name, c.allowed) for c in fake.calls] == [("bob", True), ("carol", False),
                                                                      ("dave", False)]
