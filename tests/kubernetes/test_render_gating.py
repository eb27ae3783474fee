"""The rendered run against issue 12's review: gating, per-stage placement, resources, deadlines, Kueue.

Pure rendering (no cluster); the behaviour on a cluster is in test_gating.py and test_rbac.py.
"""

from __future__ import annotations

import copy
import json
from math import ceil
from pathlib import Path
from typing import Any

import pytest

from conftest import spec_from
from landscape_job.base.errors import UserError
from launcher.kubernetes.deadlines import ATTEMPTS, SETUP_SECONDS, stage_deadlines
from launcher.kubernetes.section import parse_kubernetes, parse_quantity
from launcher.kubernetes.placement import off_gpu_nodes
from launcher.kubernetes.render import render_run
from test_render import K8S_SECTION, RUN_ID, SHARDS, env_of, jobs, restricted_violations, validate_all

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CPU_PLACEMENT = {
    "cpu_node_selector": {"pool": "cpu"},
    "cpu_tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
    "cpu_affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}]}}},
}


def render(tmp_path: Path, raw: dict[str, Any], **k8s: Any) -> list[dict[str, Any]]:
    raw = copy.deepcopy(raw)
    raw["kubernetes"] = {**raw["kubernetes"], **k8s}
    spec = spec_from(tmp_path, raw)
    return render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))


@pytest.fixture
def raw(linear_spec: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(linear_spec)
    raw["compute"]["shards"] = SHARDS
    raw["storage"] = {"url": "s3://bucket/runs", "endpoint_url": "http://minio.example:9000"}
    raw["kubernetes"] = copy.deepcopy(K8S_SECTION)
    del raw["kubernetes"]["kueue_queue"]
    return raw


def pod(objects: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    return jobs(objects)[stage]["spec"]["template"]["spec"]


@pytest.mark.slow
def test_evaluate_and_merge_are_gated_and_prepare_releases_them(tmp_path, raw):
    objects = render(tmp_path, raw)
    by_stage = jobs(objects)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Role", "RoleBinding", "Job", "Job", "Job"]
    assert [o["metadata"]["labels"].get("landscape.stage") for o in objects[3:]] == ["evaluate", "merge", "prepare"]
    assert by_stage["prepare"]["spec"]["suspend"] is False
    assert by_stage["evaluate"]["spec"]["suspend"] is True and by_stage["merge"]["spec"]["suspend"] is True
    release = json.loads(env_of(by_stage["prepare"]["spec"]["template"])["LANDSCAPE_RELEASE"])
    assert release == {"jobs": [f"{RUN_ID}-evaluate", f"{RUN_ID}-merge"], "patch": {"spec": {"suspend": False}}}
    assert "LANDSCAPE_RELEASE" not in env_of(by_stage["evaluate"]["spec"]["template"])
    role, binding = objects[1], objects[2]
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["patch"],
         "resourceNames": [f"{RUN_ID}-evaluate", f"{RUN_ID}-merge"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"], "resourceNames": [f"{RUN_ID}-evaluate"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{RUN_ID}-pods"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "landscape", "namespace": "team-a"}]
    # the token only where the API is called: prepare (release), merge (watch); never evaluate
    assert pod(objects, "prepare")["automountServiceAccountToken"] is True
    assert pod(objects, "merge")["automountServiceAccountToken"] is True
    assert pod(objects, "evaluate")["automountServiceAccountToken"] is False
    validate_all(objects)


@pytest.mark.slow
def test_under_kueue_every_job_is_suspended_and_the_release_hands_the_gated_ones_to_the_queue(tmp_path, raw):
    objects = render(tmp_path, raw, kueue_queue="team-a-gpus", kueue_priority_class="low", priority_class="batch")
    by_stage = jobs(objects)
    assert all(job["spec"]["suspend"] is True for job in by_stage.values())
    labels = {stage: job["metadata"]["labels"] for stage, job in by_stage.items()}
    assert labels["prepare"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    # held in a queue that does not exist: Kueue's webhook cannot default them into a `default` LocalQueue
    assert labels["evaluate"]["kueue.x-k8s.io/queue-name"] == labels["merge"]["kueue.x-k8s.io/queue-name"] \
        == "landscape-held-until-released"
    assert all(labels[stage]["kueue.x-k8s.io/priority-class"] == "low" for stage in labels)
    assert all(pod(objects, stage)["priorityClassName"] == "batch" for stage in by_stage)
    release = json.loads(env_of(by_stage["prepare"]["spec"]["template"])["LANDSCAPE_RELEASE"])
    assert release["patch"] == {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "team-a-gpus"}}}
    assert release["jobs"] == [by_stage["evaluate"]["metadata"]["name"]]  # merge: by the last shard
    merge = json.loads(env_of(by_stage["evaluate"]["spec"]["template"])["LANDSCAPE_RELEASE_MERGE"])
    assert merge == {"jobs": [by_stage["merge"]["metadata"]["name"]], "patch": release["patch"]}
    validate_all(objects)


@pytest.mark.slow
def test_gpu_placement_on_gpu_pods_cpu_placement_on_cpu_pods(tmp_path, raw):
    objects = render(tmp_path, raw, runtime_class="nvidia", **CPU_PLACEMENT)
    gpu, merge, prepare = pod(objects, "evaluate"), pod(objects, "merge"), pod(objects, "prepare")
    assert gpu["nodeSelector"] == K8S_SECTION["node_selector"] and gpu["affinity"] == K8S_SECTION["affinity"]
    assert gpu["tolerations"][0] == GPU_TOLERATION and gpu["runtimeClassName"] == "nvidia"
    for cpu in (merge, prepare):  # no GPU: prepare without the Hessian, and merge
        assert cpu["nodeSelector"] == {"pool": "cpu"} and cpu["affinity"] == CPU_PLACEMENT["cpu_affinity"]
        assert cpu["tolerations"] == CPU_PLACEMENT["cpu_tolerations"]
        assert "runtimeClassName" not in cpu
    bare = render(tmp_path, raw)
    for stage in ("prepare", "merge"):  # nothing given for CPU pods: none of the GPU pool's, only off GPU nodes
        assert not {"nodeSelector", "tolerations", "runtimeClassName"} & set(pod(bare, stage)), stage
        assert pod(bare, stage)["affinity"] == off_gpu_nodes(), stage
    validate_all(objects)


def test_on_a_cpu_cluster_the_evaluate_pods_keep_their_placement(tmp_path, raw):
    objects = render(tmp_path, raw, gpus=0, runtime_class="nvidia", **CPU_PLACEMENT)
    evaluate = pod(objects, "evaluate")
    assert evaluate["nodeSelector"] == K8S_SECTION["node_selector"]
    assert evaluate["tolerations"] == K8S_SECTION["tolerations"]  # no GPU toleration, no runtime class
    assert "runtimeClassName" not in evaluate
    assert pod(objects, "merge")["nodeSelector"] == {"pool": "cpu"}


def test_a_hessian_prepare_gets_the_gpu_placement(tmp_path, raw):
    raw["metrics"] = ["loss", "accuracy", "hessian"]
    objects = render(tmp_path, raw, runtime_class="nvidia", **CPU_PLACEMENT)
    prepare = pod(objects, "prepare")
    assert prepare["nodeSelector"] == K8S_SECTION["node_selector"] and prepare["runtimeClassName"] == "nvidia"
    assert GPU_TOLERATION in prepare["tolerations"]
    assert pod(objects, "merge")["nodeSelector"] == {"pool": "cpu"}


def test_claims_are_mounted_only_where_read(tmp_path, raw):
    objects = render(tmp_path, raw)
    for stage, mounted in (("prepare", True), ("evaluate", True), ("merge", False)):
        spec = pod(objects, stage)
        claims = [v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "datasets"]
        mounts = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/data"]
        assert bool(claims) == bool(mounts) == mounted, stage


def test_every_emptydir_is_bounded_and_ephemeral_storage_covers_them(tmp_path, raw):
    objects = render(tmp_path, raw, tmp_size="2Gi", cache_size="10Gi", prepare_merge_memory="6Gi")
    for stage in ("prepare", "evaluate", "merge"):
        spec = pod(objects, stage)
        assert restricted_violations(spec) == []
        dirs = {v["name"]: v["emptyDir"] for v in spec["volumes"] if "emptyDir" in v}
        assert set(dirs) == {"tmp", "dshm", "inputs-cache"} and all("sizeLimit" in d for d in dirs.values()), stage
        disk = sum(parse_quantity(d["sizeLimit"]) for d in dirs.values() if d.get("medium") != "Memory")
        resources = spec["containers"][0]["resources"]
        assert resources["requests"]["ephemeral-storage"] == resources["limits"]["ephemeral-storage"]
        assert parse_quantity(resources["limits"]["ephemeral-storage"]) == disk + 2**30  # + 1Gi: log, writable layer
        shm, memory = parse_quantity(dirs["dshm"]["sizeLimit"]), parse_quantity(resources["limits"]["memory"])
        assert shm < memory, stage
    assert pod(objects, "merge")["volumes"][1]["emptyDir"]["sizeLimit"] == "3072Mi"  # half of 6Gi, not all of it
    claimed = render(tmp_path, raw, cache_claim="shared-cache")
    resources = pod(claimed, "evaluate")["containers"][0]["resources"]
    assert resources["limits"]["ephemeral-storage"] == "5Gi"  # /tmp 4Gi + 1Gi: the claim is not local disk


def test_deadlines_default_from_the_run_and_can_be_set(tmp_path, raw):
    for key in ("active_deadline_seconds", "merge_deadline_seconds"):
        del raw["kubernetes"][key]
    spec = spec_from(tmp_path, raw)
    k8s = parse_kubernetes(spec.kubernetes)
    objects = render_run(spec, RUN_ID, k8s)
    deadlines = {stage: job["spec"]["activeDeadlineSeconds"] for stage, job in jobs(objects).items()}
    points = ceil(spec.grid.size / SHARDS)
    waves = ceil(SHARDS / K8S_SECTION["parallelism"])
    evaluate = waves * ATTEMPTS * (SETUP_SECONDS + points * 60)
    assert deadlines == {"prepare": 2 * SETUP_SECONDS, "evaluate": evaluate, "merge": evaluate + 2 * SETUP_SECONDS}
    assert jobs(objects)["merge"]["spec"]["template"]["spec"]["containers"][0]["args"] == \
        ["merge", "--wait", str(deadlines["merge"])]
    slower = stage_deadlines(spec, parse_kubernetes({**spec.kubernetes, "point_seconds": 600}))
    assert slower.evaluate > evaluate and slower.prepare == deadlines["prepare"]
    raw["metrics"] = ["loss", "accuracy", "hessian"]
    assert stage_deadlines(spec_from(tmp_path, raw), k8s).prepare > deadlines["prepare"]
    objects = render(tmp_path, raw, prepare_deadline_seconds=100, evaluate_deadline_seconds=200,
                     merge_deadline_seconds=300)
    assert {s: j["spec"]["activeDeadlineSeconds"] for s, j in jobs(objects).items()} == \
        {"prepare": 100, "evaluate": 200, "merge": 300}


@pytest.mark.parametrize("key,value", [
    ("runtime_class", "Nvidia_Runtime"),
    ("priority_class", 3),
    ("cpu_node_selector", {"pool": True}),
    ("cpu_tolerations", [{"key": "x", "operator": "Sometimes"}]),
    ("cpu_affinity", {"nodeAfinity": {}}),
    ("point_seconds", 0),
    ("evaluate_deadline_seconds", 0),
    ("tmp_size", "4GB"),
])
def test_new_keys_name_themselves_in_mistakes(tmp_path, raw, key, value):
    raw["kubernetes"][key] = value
    spec = spec_from(tmp_path, raw)
    with pytest.raises(UserError) as err:
        parse_kubernetes(spec.kubernetes)
    assert str(err.value).startswith(f"kubernetes.{key}"), str(err.value)
