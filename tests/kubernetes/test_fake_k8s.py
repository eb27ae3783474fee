"""The fake API server itself: a test double whose own faults would make cluster tests flaky,
and whose Job controller and validation must behave as kubernetes/kubernetes' do where our
design depends on them (tests/support/fake_jobs.py)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from fake_jobs import MAX_INT32
from fake_k8s import FakeCluster


def test_a_follow_client_that_goes_away_prints_no_traceback(capfd, tmp_path):
    """`launcher logs -f` ends by closing its connection; the server must take that quietly.

    Before: the handler thread's write to the closed socket raised ConnectionResetError
    (or BrokenPipeError), and socketserver printed its traceback to stderr, where the
    cluster tests read the launcher's one-line errors.
    """
    with FakeCluster(tmp_path) as fake:
        with fake.lock:
            fake.objects[("pods", "landscape", "p")] = {"metadata": {"name": "p", "namespace": "landscape"},
                                                       "status": {"phase": "Running"}}
        fake.append_log("p", "first line\n")
        host, port = fake.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(f"GET /api/v1/namespaces/landscape/pods/p/log?follow=true HTTP/1.1\r\n"
                           f"Host: {host}\r\nAuthorization: Bearer {fake.token}\r\n\r\n".encode())
            received = b""
            while b"first line" not in received:
                chunk = client.recv(4096)
                assert chunk, received
                received += chunk
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        for i in range(20):  # the server writes into the closed connection until it notices
            fake.append_log("p", f"more {i}\n" * 100)
            time.sleep(0.05)
        fake.end_pod("p", 0)
        time.sleep(0.2)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


# -- the Job controller and the API server's Job rules, as kubernetes/kubernetes has them ----


def api(fake: FakeCluster, method: str, path: str, body: dict | None = None,
        content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(f"{fake.url}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {fake.token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


JOBS = "/apis/batch/v1/namespaces/landscape/jobs"


def job(name: str, **spec) -> dict:
    container = {"name": "landscape", "image": "x", "command": ["landscape-job"], "args": ["evaluate"]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"t": name}},
            "spec": {"template": {"metadata": {}, "spec": {"restartPolicy": "Never", "containers": [container]}},
                     **spec}}


def until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def end_reason(fake: FakeCluster, name: str) -> str | None:
    conditions = (fake.get("jobs", name) or {}).get("status", {}).get("conditions") or []
    return conditions[-1]["reason"] if conditions and conditions[-1]["type"] in ("Failed", "Complete") else None


def pods_of(fake: FakeCluster, name: str) -> list[dict]:
    return [p for p in fake.of("pods") if p["metadata"]["name"].startswith(f"{name}-")]


FAIL_INDEX = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}}]}


@pytest.mark.parametrize("spec,field", [
    (dict(completionMode="Indexed", completions=2, podFailurePolicy=FAIL_INDEX), "spec.podFailurePolicy.rules[0].action"),
    (dict(completionMode="Indexed", parallelism=2), "spec.completions"),
    (dict(completionMode="Indexed", completions=2, maxFailedIndexes=1), "spec.maxFailedIndexes"),
    (dict(backoffLimitPerIndex=1), "spec.backoffLimitPerIndex"),
    (dict(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds"),
    (dict(podFailurePolicy={"rules": [{"action": "Count", "onExitCodes": {"operator": "In", "values": [0, 1]}}]}),
     "spec.podFailurePolicy.rules[0].onExitCodes.values"),
])
def test_the_server_refuses_what_the_real_one_refuses(tmp_path, spec, field):
    with FakeCluster(tmp_path, run_pods=False) as fake:
        code, status = api(fake, "POST", JOBS, job("bad", **spec))
        assert code == 422 and status["reason"] == "Invalid", status
        assert field in [c["field"] for c in status["details"]["causes"]]
        assert fake.of("jobs") == []


def test_a_pod_failure_policy_needs_restart_policy_never(tmp_path):
    body = job("bad", podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [
        {"type": "DisruptionTarget", "status": "True"}]}]})
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with FakeCluster(tmp_path, run_pods=False) as fake:
        code, status = api(fake, "POST", JOBS, body)
        assert code == 422 and "spec.template.spec.restartPolicy" in status["message"]


def test_defaults_as_the_real_server(tmp_path):
    with FakeCluster(tmp_path, run_pods=False) as fake:
        assert api(fake, "POST", JOBS, job("plain"))[1]["spec"]["backoffLimit"] == 6
        indexed = api(fake, "POST", JOBS, job("per-index", completionMode="Indexed", completions=2,
                                              backoffLimitPerIndex=1))[1]["spec"]
        assert indexed["backoffLimit"] == MAX_INT32 and indexed["suspend"] is False
        assert indexed["podReplacementPolicy"] == "TerminatingOrFailed"


def test_suspend_makes_no_pods_and_resume_resets_start_time(tmp_path):
    def runner(fake, pod, env):
        return None  # keeps running

    with FakeCluster(tmp_path, runner=runner) as fake:
        api(fake, "POST", JOBS, job("gated", suspend=True))
        time.sleep(0.3)
        assert pods_of(fake, "gated") == [] and not fake.get("jobs", "gated")["status"].get("startTime")
        code, _ = api(fake, "PATCH", f"{JOBS}/gated", {"spec": {"suspend": False}}, "application/merge-patch+json")
        assert code == 200
        until(lambda: pods_of(fake, "gated"))
        assert fake.get("jobs", "gated")["status"]["startTime"]
        api(fake, "PATCH", f"{JOBS}/gated", {"spec": {"suspend": True}}, "application/merge-patch+json")
        until(lambda: not pods_of(fake, "gated"))  # suspending deletes the active pods
        until(lambda: not fake.get("jobs", "gated")["status"].get("startTime"))
        code, status = api(fake, "PATCH", f"{JOBS}/gated", {"spec": {"completions": 3}},
                           "application/merge-patch+json")
        assert code == 422 and "field is immutable" in status["message"]


def test_active_deadline_kills_the_pods_and_fails_the_job(tmp_path):
    def runner(fake, pod, env):  # runs until killed
        name = pod["metadata"]["name"]
        until(lambda: (fake.get("pods", name) or {"status": {"phase": "Failed"}})["status"]["phase"] == "Failed", 30)
        return 137

    with FakeCluster(tmp_path, runner=runner) as fake:
        started = time.monotonic()
        api(fake, "POST", JOBS, job("slow", activeDeadlineSeconds=1))
        assert until(lambda: end_reason(fake, "slow")) == "DeadlineExceeded"
        assert 1 <= time.monotonic() - started < 5
        (pod,) = pods_of(fake, "slow")
        assert pod["status"]["phase"] == "Failed"


def test_parallel_indexes_per_index_limits_and_max_failed_indexes(tmp_path):
    """Indexes 1 and 3 always fail (exit 1); with one retry each and maxFailedIndexes 1 the Job
    fails as soon as the second index has spent its retries."""
    running, peak = set(), []

    def runner(fake, pod, env):
        index = env["JOB_COMPLETION_INDEX"]
        running.add(pod["metadata"]["name"])
        peak.append(len(running))
        time.sleep(0.2)
        running.discard(pod["metadata"]["name"])
        return 1 if index in ("1", "3") else 0

    with FakeCluster(tmp_path, runner=runner) as fake:
        api(fake, "POST", JOBS, job("shards", completionMode="Indexed", completions=4, parallelism=4,
                                    backoffLimitPerIndex=1, maxFailedIndexes=1))
        assert until(lambda: end_reason(fake, "shards")) == "MaxFailedIndexesExceeded"
        fake.wait_idle()
        status = fake.get("jobs", "shards")["status"]
        assert status["failedIndexes"] == "1,3" and status["failed"] == 4  # two tries of each
        assert max(peak) >= 2


def test_failure_policy_ignore_on_disruption_and_fail_index_on_exit_code(tmp_path):
    attempts: dict[str, int] = {}

    def runner(fake, pod, env):
        index = env["JOB_COMPLETION_INDEX"]
        attempts[index] = attempts.get(index, 0) + 1
        if index == "0" and attempts[index] <= 3:  # preempted three times: not counted
            fake.disrupt(pod["metadata"]["name"])
            return 137
        return 2 if index == "1" else 0

    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}}]}
    with FakeCluster(tmp_path, runner=runner) as fake:
        api(fake, "POST", JOBS, job("policy", completionMode="Indexed", completions=2, parallelism=1,
                                    backoffLimitPerIndex=0, podFailurePolicy=policy))
        assert until(lambda: end_reason(fake, "policy")) == "FailedIndexes"
        status = fake.get("jobs", "policy")["status"]
        assert status["completedIndexes"] == "0" and status["failedIndexes"] == "1"
        assert attempts == {"0": 4, "1": 1} and status["failed"] == 1


# -- the garbage collector and the TTL-after-finished controller, as a real cluster has them ----

CONFIG_MAPS = "/api/v1/namespaces/landscape/configmaps"


def owned(name: str, *owners: dict) -> dict:
    """A ConfigMap owned by the given objects (as the server returned them)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": {"k": "v"}, "metadata": {
        "name": name, "ownerReferences": [{"apiVersion": o.get("apiVersion", "batch/v1"), "kind": o["kind"],
                                           "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
                                          for o in owners]}}


def test_a_dependent_goes_when_all_its_owners_are_gone(tmp_path):
    with FakeCluster(tmp_path, run_pods=False) as fake:
        a = api(fake, "POST", JOBS, job("a"))[1]
        b = api(fake, "POST", JOBS, job("b"))[1]
        api(fake, "POST", CONFIG_MAPS, owned("both", a, b))
        grandchild = api(fake, "POST", CONFIG_MAPS, owned("under", {**fake.get("configmaps", "both"),
                                                                    "apiVersion": "v1"}))[1]
        assert grandchild["metadata"]["ownerReferences"][0]["name"] == "both"
        assert api(fake, "DELETE", f"{JOBS}/a")[0] == 200
        # one owner left: it stays, without the dangling reference (the collector's own patch)
        assert [r["name"] for r in fake.get("configmaps", "both")["metadata"]["ownerReferences"]] == ["b"]
        api(fake, "DELETE", f"{JOBS}/b")
        assert fake.get("configmaps", "both") is None and fake.get("configmaps", "under") is None  # and its own

        # owners are matched by uid: an owner recreated under the same name is another object
        old = api(fake, "POST", JOBS, job("c"))[1]
        api(fake, "DELETE", f"{JOBS}/c")
        api(fake, "POST", JOBS, job("c"))
        api(fake, "POST", CONFIG_MAPS, owned("stale", old))
        keeper = api(fake, "POST", JOBS, job("keeper"))[1]
        api(fake, "POST", CONFIG_MAPS, owned("kept", keeper))
        api(fake, "DELETE", f"{JOBS}/c")  # deleting the new "c" takes nothing of the old one's
        assert fake.get("configmaps", "stale") is not None and fake.get("configmaps", "kept") is not None


def test_a_config_map_patch_may_change_its_owners_not_an_immutable_ones_data(tmp_path):
    with FakeCluster(tmp_path, run_pods=False) as fake:
        owner = api(fake, "POST", JOBS, job("owner"))[1]
        api(fake, "POST", CONFIG_MAPS, owned("cm"))
        patch = {"metadata": owned("cm", owner)["metadata"]}
        code, patched = api(fake, "PATCH", f"{CONFIG_MAPS}/cm", patch, "application/merge-patch+json")
        assert code == 200 and patched["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        code, status = api(fake, "PATCH", f"{CONFIG_MAPS}/cm", {"data": {"k": "w"}}, "application/merge-patch+json")
        assert code == 422 and "data: Forbidden: field is immutable" in status["message"]
        assert fake.get("configmaps", "cm")["data"] == {"k": "v"}
        api(fake, "DELETE", f"{JOBS}/owner")
        assert fake.get("configmaps", "cm") is None


@pytest.mark.slow
def test_the_ttl_controller_deletes_a_finished_job_and_what_it_alone_owns(tmp_path):
    with FakeCluster(tmp_path, runner=lambda fake, pod, env: 0) as fake:
        done = api(fake, "POST", JOBS, job("done", ttlSecondsAfterFinished=1))[1]
        kept = api(fake, "POST", JOBS, job("kept"))[1]  # no TTL: stays after it finished
        api(fake, "POST", CONFIG_MAPS, owned("of-done", done))
        assert until(lambda: end_reason(fake, "done")) == "CompletionsReached"
        assert fake.get("jobs", "done") is not None  # not before its TTL
        until(lambda: fake.get("jobs", "done") is None, 10)
        assert fake.get("configmaps", "of-done") is None and pods_of(fake, "done") == []
        until(lambda: end_reason(fake, "kept"))
        time.sleep(1.2)
        assert fake.get("jobs", "kept")["metadata"]["uid"] == kept["metadata"]["uid"]
