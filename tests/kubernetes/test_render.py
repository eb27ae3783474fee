"""The Kubernetes half that needs no cluster: the ``kubernetes:`` section, the rendered run,
the ``launcher render`` command and the k8s/ kustomize base.

Every object is validated against the OpenAPI schemas of every Kubernetes version from
1.29 on that kubernetes-validate ships (strict: an unknown field fails), and every pod
template is checked against the ``restricted`` Pod Security rules explicitly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import functools
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version

from conftest import REQUIRE_TOOLS_ENV, spec_from, write_spec
from kustomize import kustomize
from landscape_job.base.errors import USER_ERROR_EXIT, UserError
from landscape_job.spec.parse import spec_from_yaml
from launcher.kubernetes import render_cli
from launcher.kubernetes.section import DEFAULT_IMAGE, KubernetesSpec, parse_kubernetes
from launcher.kubernetes.ownership import owned_by_jobs, with_owner
from launcher.kubernetes.render import UID, render_run, to_json, to_yaml
from launcher.kubernetes.names import object_names, run_selector

REPO = Path(__file__).resolve().parents[2]
MIN_VERSION = Version("1.29")
VERSIONS = sorted({v for v in all_versions() if Version(v) >= MIN_VERSION}, key=Version)
# kubernetes_validate parses the kind's schema and its multi-megabyte _definitions.json from its package on
# every call, ~2.5 s of CPU over this module's ~400 validations; they are the same files each time.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
RUN_ID = "linear-20260101-120000"
SHARDS = 4
SECRET_VALUE = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-DISTINCTIVE-SECRET"
ACCESS_KEY = "AKIADISTINCTIVEKEYID7"

#: The restricted profile's volume types (Pod Security Standards).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}

K8S_SECTION: dict[str, Any] = {
    "namespace": "team-a",
    "image": "registry.example.com/landscape:0.1.0",
    "image_pull_secrets": ["regcred"],
    "gpus": 1,
    "cpu": 6,
    "memory": "48Gi",
    "shm_size": "16Gi",
    "parallelism": 2,
    "backoff_limit_per_index": 4,
    "max_failed_indexes": 2,
    "active_deadline_seconds": 86400,
    "merge_deadline_seconds": 90000,
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
    "service_account": "landscape",
    "s3_secret": "landscape-s3",
    "kueue_queue": "team-a-gpus",
    "labels": {"team": "a"},
    "annotations": {"example.com/owner": "alice"},
    "volumes": [{"claim": "datasets", "mount_path": "/data"}],
}


@pytest.fixture
def cluster_raw(linear_spec: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(linear_spec)
    raw["compute"]["shards"] = SHARDS
    raw["storage"] = {"url": "s3://bucket/runs", "endpoint_url": "http://minio.example:9000",
                      "addressing_style": "path"}
    raw["kubernetes"] = copy.deepcopy(K8S_SECTION)
    return raw


@pytest.fixture
def rendered(tmp_path: Path, cluster_raw: dict[str, Any]):
    spec = spec_from(tmp_path, cluster_raw)
    k8s = parse_kubernetes(spec.kubernetes)
    return spec, k8s, render_run(spec, RUN_ID, k8s)


def by_kind_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def jobs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["labels"]["landscape.stage"]: o for o in objects if o["kind"] == "Job"}


def validate_all(objects: list[dict[str, Any]]) -> None:
    assert VERSIONS, "kubernetes-validate ships no schema for Kubernetes >= 1.29"
    for obj in objects:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                            f"{path}: {err.message}")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The ``restricted`` Pod Security Standard (plus our read-only root), checked by hand."""
    problems: list[str] = []
    psc = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"pod {flag}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    if psc.get("runAsUser") == 0 or psc.get("runAsGroup") == 0:
        problems.append("pod runs as root")
    if psc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("pod seccompProfile is not RuntimeDefault")
    for container in pod.get("initContainers", []) + pod["containers"]:
        csc = container.get("securityContext", {})
        name = container["name"]
        if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot is not true")
        if csc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if csc.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = csc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if csc.get("seccompProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if csc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root file system is writable")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {stage: job["spec"]["template"] for stage, job in jobs(objects).items()}


def env_of(template: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in template["spec"]["containers"][0]["env"]}


# --- schemas -----------------------------------------------------------------------------


def test_versions_cover_129_to_newest_shipped():
    newest = max(all_versions(), key=Version)
    assert VERSIONS[0].startswith("1.29") and VERSIONS[-1] == newest
    assert len(VERSIONS) >= 2


@pytest.mark.slow
def test_rendered_objects_validate_against_every_kubernetes_version(rendered):
    _, _, objects = rendered
    assert [o["kind"] for o in objects] == ["ConfigMap", "Role", "RoleBinding", "Job", "Job", "Job"]
    validate_all(objects)


@pytest.mark.slow
def test_default_and_cpu_only_renders_validate(tmp_path, cluster_raw):
    cluster_raw["kubernetes"] = {"gpus": 0}
    spec = spec_from(tmp_path, cluster_raw)
    validate_all(render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes)))
    del cluster_raw["kubernetes"]
    spec = spec_from(tmp_path, cluster_raw)
    objects = render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))
    validate_all(objects)
    assert all(o["metadata"]["namespace"] == "landscape" for o in objects)
    assert pod_templates(objects)["evaluate"]["spec"]["containers"][0]["image"] == DEFAULT_IMAGE


def test_schema_validation_can_fail(rendered):
    _, _, objects = rendered
    broken = copy.deepcopy(jobs(objects)["evaluate"])
    broken["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("required", [False, True], ids=["locally", "in CI"])
def test_a_missing_kubectl_skips_locally_and_fails_in_ci(monkeypatch, required: bool) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    if required:
        monkeypatch.setenv(REQUIRE_TOOLS_ENV, "1")
    else:
        monkeypatch.delenv(REQUIRE_TOOLS_ENV, raising=False)
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match="kubectl is not installed"):
        kustomize("k8s/base")


@pytest.mark.slow
@pytest.mark.parametrize("folder,namespace", [("k8s/base", "landscape"), ("k8s/overlays/example", "landscape-team-a")])
def test_kustomize_output_validates(folder, namespace):
    objects = kustomize(folder)
    named = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    expected = {("Namespace", namespace), ("ServiceAccount", "landscape"), ("Role", "landscape-launcher")}
    if folder.endswith("example"):
        expected |= {("RoleBinding", "landscape-launcher-team-a"), ("NetworkPolicy", "landscape-stages"),
                     ("NetworkPolicy", "landscape-api-access")}
    assert set(named) == expected
    validate_all(objects)
    ns = named[("Namespace", namespace)]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for key, obj in named.items():
        if key[0] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, key

    def rules(role: dict) -> dict:
        return {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}

    # The pods' account has no rights of its own: each run's Role grants them (launcher.kubernetes.gate).
    # The launcher's: what submit/status/logs/cancel do (tests/kubernetes/test_rbac.py checks each is used).
    assert rules(named[("Role", "landscape-launcher")]) == {
        (("",), ("configmaps",)): {"create", "get", "list", "patch", "delete"},
        (("",), ("configmaps/finalizers",)): {"update"},
        (("batch",), ("jobs",)): {"create", "get", "list", "patch", "delete"},
        (("rbac.authorization.k8s.io",), ("roles", "rolebindings")): {"create", "list", "delete"},
        (("",), ("pods",)): {"get", "list"},
        (("",), ("pods/log",)): {"get"},
        (("",), ("events",)): {"list", "create"},
        (("",), ("persistentvolumeclaims",)): {"get"},
        (("kueue.x-k8s.io",), ("localqueues",)): {"get", "list"}}
    assert all(o["kind"] != "Secret" for o in objects)


def test_secret_template_is_a_placeholder_outside_the_kustomization():
    base = yaml.safe_load((REPO / "k8s/base/kustomization.yaml").read_text())
    assert "s3-secret.example.yaml" not in base["resources"]
    template = yaml.safe_load((REPO / "k8s/base/s3-secret.example.yaml").read_text())
    validate_all([template])
    assert set(template["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all(value.startswith("REPLACE-") for value in template["stringData"].values())
    assert "kubectl" in (REPO / "k8s/base/s3-secret.example.yaml").read_text()


# --- pod security ------------------------------------------------------------------------


def test_every_pod_template_meets_the_restricted_profile(rendered):
    _, _, objects = rendered
    templates = pod_templates(objects)
    assert set(templates) == {"prepare", "evaluate", "merge"}
    for stage, template in templates.items():
        pod = template["spec"]
        assert restricted_violations(pod) == [], stage
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["runAsUser"] == psc["runAsGroup"] == psc["fsGroup"] == UID == 1000
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert all("hostPath" not in v for v in pod["volumes"])
        assert pod["restartPolicy"] == "Never"
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("breakage", ["hostPath", "privileged", "escalation", "root", "caps", "seccomp",
                                      "hostNetwork", "writable"])
def test_restricted_check_catches_violations(rendered, breakage):
    _, _, objects = rendered
    pod = copy.deepcopy(pod_templates(objects)["evaluate"]["spec"])
    csc = pod["containers"][0]["securityContext"]
    if breakage == "hostPath":
        pod["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})
    elif breakage == "privileged":
        csc["privileged"] = True
    elif breakage == "escalation":
        del csc["allowPrivilegeEscalation"]
    elif breakage == "root":
        pod["securityContext"]["runAsUser"] = 0
    elif breakage == "caps":
        csc["capabilities"] = {"add": ["SYS_ADMIN"]}
    elif breakage == "seccomp":
        pod["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    elif breakage == "hostNetwork":
        pod["hostNetwork"] = True
    else:
        csc["readOnlyRootFilesystem"] = False
    assert restricted_violations(pod)


# --- the jobs ----------------------------------------------------------------------------


def test_names_labels_and_creation_order(rendered):
    spec, k8s, objects = rendered
    names = object_names(RUN_ID, SHARDS)
    assert [o["metadata"]["name"] for o in objects] == [
        f"{RUN_ID}-spec", f"{RUN_ID}-pods", f"{RUN_ID}-pods", f"{RUN_ID}-evaluate", f"{RUN_ID}-merge",
        f"{RUN_ID}-prepare"]  # the gated Jobs exist before the prepare pod that releases them
    assert [o["metadata"]["name"] for o in objects] == [names[k] for k in ("spec", "pods", "pods", "evaluate",
                                                                           "merge", "prepare")]
    assert run_selector(RUN_ID) == f"landscape.run={RUN_ID}"
    metas = [o["metadata"] for o in objects] + [t["metadata"] for t in pod_templates(objects).values()]
    for meta in metas:
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "landscape"
        assert labels["app.kubernetes.io/part-of"] == "landscape"
        assert labels["landscape.run"] == RUN_ID
        assert labels["team"] == "a"
        assert meta["annotations"]["example.com/owner"] == "alice"
        assert meta["annotations"]["landscape.spec-hash"] == spec.hash
    for stage, job in jobs(objects).items():
        for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
            assert labels["app.kubernetes.io/component"] == labels["landscape.stage"] == stage
        # Kueue admits prepare; evaluate and merge wait in a queue that does not exist until released
        queued = job["metadata"]["labels"].get("kueue.x-k8s.io/queue-name")
        assert queued == ("team-a-gpus" if stage == "prepare" else "landscape-held-until-released"), stage
        assert job["metadata"]["namespace"] == "team-a"
        assert job["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
        assert job["spec"]["suspend"] is True  # Kueue's guidance (prepare), the gate (evaluate, merge)
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["name"] == "landscape"
        assert "command" not in container and container["args"][0] == stage  # the image's ENTRYPOINT runs
        # evaluate only covers a slow store (prepare releases it when its output is written); merge its deadline
        waits = {"prepare": [], "evaluate": ["--wait", "120"], "merge": ["--wait", "90000"]}
        assert container["args"][1:] == waits[stage]
        assert container["image"] == "registry.example.com/landscape:0.1.0"
        assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert objects[0]["metadata"]["labels"]["app.kubernetes.io/component"] == "spec"


def test_config_map_holds_the_spec(rendered):
    spec, _, objects = rendered
    config_map = objects[0]
    assert config_map["kind"] == "ConfigMap" and config_map["immutable"] is True
    assert config_map["data"]["spec.yaml"] == spec.to_yaml()
    assert spec_from_yaml(config_map["data"]["spec.yaml"], "configmap").hash == spec.hash


def test_evaluate_is_an_indexed_job_with_a_pod_failure_policy(rendered):
    _, _, objects = rendered
    job = jobs(objects)["evaluate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == SHARDS
    assert job["parallelism"] == 2
    assert job["backoffLimitPerIndex"] == 4
    assert job["maxFailedIndexes"] == 2
    assert job["podReplacementPolicy"] == "Failed"
    assert job["activeDeadlineSeconds"] == 86400
    rules = job["podFailurePolicy"]["rules"]
    ignore = [r for r in rules if r["action"] == "Ignore"]
    assert ignore == [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    fail_index = [r for r in rules if r["action"] == "FailIndex"]
    assert fail_index == [{"action": "FailIndex", "onExitCodes": {
        "containerName": "landscape", "operator": "In", "values": [USER_ERROR_EXIT]}}]
    assert USER_ERROR_EXIT == 2
    assert rules.index(ignore[0]) < rules.index(fail_index[0])


def test_evaluate_pods_resources_gpu_shm_and_token_only_under_kueue(rendered):
    _, k8s, objects = rendered
    pod = jobs(objects)["evaluate"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "48Gi"
    assert resources["requests"]["cpu"] == "6" and "cpu" not in resources["limits"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == K8S_SECTION["node_selector"]
    assert pod["affinity"] == K8S_SECTION["affinity"]
    # under Kueue the last shard releases merge (launcher.kubernetes.gate): the pods mount the run's account
    assert k8s.kueue_queue and pod["automountServiceAccountToken"] is True and pod["serviceAccountName"] == "landscape"
    no_kueue = jobs(render_run(rendered[0], RUN_ID, dataclasses.replace(k8s, kueue_queue=None)))["evaluate"]
    assert no_kueue["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in no_kueue["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {"sizeLimit": "4Gi"}
    assert volumes[mounts["/data"]]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    env = env_of(jobs(objects)["evaluate"]["spec"]["template"])
    assert env["LANDSCAPE_RUN"] == f"s3://bucket/runs/{RUN_ID}"
    assert json.loads(env["LANDSCAPE_STORAGE_OPTIONS"]) == {"endpoint_url": "http://minio.example:9000",
                                                             "addressing_style": "path"}
    assert env["MPLBACKEND"] == "Agg"
    for name in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME", "MPLCONFIGDIR"):
        assert env[name].startswith("/tmp"), name
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    assert env["LANDSCAPE_REQUIRE_GPU"] == "1"  # a GPU pod computes on its GPU or exits 1 (landscape_job/runtime/gpu.py)


def test_prepare_and_merge_pods(rendered):
    _, _, objects = rendered
    for stage in ("prepare", "merge"):
        job = jobs(objects)[stage]["spec"]
        assert "completionMode" not in job and job["completions"] == 1
        assert job["parallelism"] == 1  # one pod; the manifest says so rather than relying on the controller
        assert job["backoffLimit"] == 4
        assert job["podReplacementPolicy"] == "Failed"
        actions = {r["action"] for r in job["podFailurePolicy"]["rules"]}
        assert actions == {"Ignore", "FailJob"}
        pod = job["template"]["spec"]
        assert pod["serviceAccountName"] == "landscape"
        resources = pod["containers"][0]["resources"]
        assert "nvidia.com/gpu" not in resources["requests"] and "nvidia.com/gpu" not in resources["limits"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]
        assert "cpu" not in resources["limits"]
        assert all(t.get("key") != "nvidia.com/gpu" for t in pod.get("tolerations", []))
        assert env_of(job["template"])["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert "LANDSCAPE_REQUIRE_GPU" not in env_of(job["template"])
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
    codes = {stage: [r for r in jobs(objects)[stage]["spec"]["podFailurePolicy"]["rules"]
                     if r["action"] == "FailJob"][0]["onExitCodes"]["values"] for stage in ("prepare", "merge")}
    assert codes == {"prepare": [2], "merge": [2, 3]}  # 3: merge's evaluate Job failed or is gone
    assert jobs(objects)["merge"]["spec"]["activeDeadlineSeconds"] == 90000
    assert jobs(objects)["prepare"]["spec"]["activeDeadlineSeconds"] == 86400


def test_cpu_only_cluster(tmp_path, cluster_raw):
    cluster_raw["kubernetes"] = {"gpus": 0, "suspend": True}
    spec = spec_from(tmp_path, cluster_raw)
    objects = render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))
    evaluate = jobs(objects)["evaluate"]
    pod = evaluate["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod["containers"][0]["resources"])
    assert "tolerations" not in pod
    assert evaluate["spec"]["parallelism"] == SHARDS  # default: every shard at once
    assert "maxFailedIndexes" not in evaluate["spec"]
    assert all(job["spec"]["suspend"] is True for job in jobs(objects).values())
    assert all("kueue.x-k8s.io/queue-name" not in o["metadata"]["labels"] for o in objects)


def test_owner_references_tie_the_run_to_its_jobs(rendered):
    _, _, objects = rendered
    role = next(o for o in objects if o["kind"] == "Role")
    owned = with_owner(role, "ConfigMap", objects[0]["metadata"]["name"], "6b1f0c1e-0000-4000-8000-000000000001")
    assert "ownerReferences" not in role["metadata"]  # pure: the input is untouched
    assert owned["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": f"{RUN_ID}-spec",
        "uid": "6b1f0c1e-0000-4000-8000-000000000001", "blockOwnerDeletion": True}]
    with pytest.raises(ValueError):
        with_owner(role, "ConfigMap", "x", "")
    # the ConfigMap's patch: owned by every Job (as the server returned them), none blocking their deletion
    created = [{**job, "metadata": {**job["metadata"], "uid": f"uid-{stage}"}} for stage, job in jobs(objects).items()]
    patch = owned_by_jobs(created)
    assert patch == {"metadata": {"ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": f"{RUN_ID}-{stage}", "uid": f"uid-{stage}"}
        for stage in jobs(objects)]}}
    assert not any(o["metadata"].get("ownerReferences") for o in objects)  # rendered: no uid exists yet


def test_yaml_and_json_round_trip(rendered):
    _, _, objects = rendered
    assert [d for d in yaml.safe_load_all(to_yaml(objects))] == objects
    assert to_yaml(objects).startswith("---\n")
    listed = json.loads(to_json(objects))
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List" and listed["items"] == objects


@pytest.mark.slow
def test_forty_character_name_keeps_every_name_within_63(tmp_path, cluster_raw):
    name = "a" * 38 + "-z"
    assert len(name) == 40
    cluster_raw["name"] = name
    cluster_raw["compute"]["shards"] = 20
    spec = spec_from(tmp_path, cluster_raw)
    run_id = render_cli.default_run_id(spec.name)
    objects = render_run(spec, run_id, parse_kubernetes(spec.kubernetes))
    names = [o["metadata"]["name"] for o in objects]
    assert len(set(names)) == 5  # the Role and the RoleBinding share <run>-pods
    assert all(len(n) <= 63 for n in names), names
    evaluate = jobs(objects)["evaluate"]["metadata"]["name"]
    assert len(f"{evaluate}-19") <= 63  # the host name of the last shard's pod
    for stage, job in jobs(objects).items():
        assert job["metadata"]["name"].endswith(f"-{stage}")
    assert objects[0]["metadata"]["name"].endswith("-spec") and objects[1]["metadata"]["name"].endswith("-pods")
    assert all(o["metadata"]["labels"]["landscape.run"] == run_id for o in objects)
    validate_all(objects)
    # Deterministic: the status and cancel commands recompute the same names.
    assert names == [o["metadata"]["name"] for o in render_run(spec, run_id, parse_kubernetes(spec.kubernetes))]


# --- secrets -----------------------------------------------------------------------------


@pytest.mark.slow
def test_no_secret_value_is_ever_rendered(tmp_path, cluster_raw, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUE)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRET_VALUE + "-token")
    spec = spec_from(tmp_path, cluster_raw)
    objects = render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))
    texts = {"yaml": to_yaml(objects), "json": to_json(objects)}
    path = write_spec(tmp_path, cluster_raw, "cli.yaml")
    for output in ("yaml", "json"):
        assert render_cli.main(["render", str(path), "-o", output, "--run-id", RUN_ID]) == 0
        texts[f"cli-{output}"] = capsys.readouterr().out
    assert yaml.safe_load_all(texts["cli-yaml"]) and json.loads(texts["cli-json"])["items"]
    for where, text in texts.items():
        assert SECRET_VALUE not in text, where
        assert ACCESS_KEY not in text, where
    for template in pod_templates(objects).values():
        container = template["spec"]["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": "landscape-s3"}}]
        names = {e["name"] for e in container["env"]}
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
        assert "secretKeyRef" not in json.dumps(container["env"])
    assert all(o["kind"] != "Secret" for o in objects)


def test_without_s3_secret_no_env_from(tmp_path, cluster_raw):
    del cluster_raw["kubernetes"]["s3_secret"]
    spec = spec_from(tmp_path, cluster_raw)
    objects = render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))
    assert all("envFrom" not in t["spec"]["containers"][0] for t in pod_templates(objects).values())


# --- mistakes ----------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [
    ("gpu", 1),                                      # unknown key (typo)
    ("gpus", "one"),                                 # wrong type
    ("gpus", -1),
    ("suspend", "yes"),
    ("memory", "32GB"),                              # not a Kubernetes quantity
    ("shm_size", "64Gi"),                            # larger than the memory limit
    ("namespace", "Team_A"),
    ("node_selector", ["gpu"]),
    ("node_selector", {"gpu": True}),
    ("tolerations", [{"key": "x", "operator": "Sometimes"}]),
    ("tolerations", {"key": "x"}),
    ("affinity", {"nodeAfinity": {}}),
    ("image_pull_policy", "always"),
    ("image_pull_secrets", [{"name": "regcred"}]),
    ("labels", {"landscape.run": "mine"}),
    ("labels", {"team": "not a label value"}),
    ("s3_secret", {"name": "landscape-s3"}),
    ("volumes", [{"claim": "data", "mount_path": "/tmp"}]),
    ("volumes", [{"claim": "data"}]),
    ("ttl_seconds_after_finished", 1.5),
])
def test_kubernetes_mistakes_name_the_key(tmp_path, cluster_raw, key, value):
    cluster_raw["kubernetes"][key] = value
    spec = spec_from(tmp_path, cluster_raw)  # the spec keeps the section raw; the launcher parses it
    with pytest.raises(UserError) as err:
        parse_kubernetes(spec.kubernetes)
    assert str(err.value).startswith(f"kubernetes.{key}"), str(err.value)


def test_kubernetes_section_must_be_a_mapping():
    with pytest.raises(UserError, match=r"^kubernetes: expected a mapping"):
        parse_kubernetes(["gpus"])
    assert parse_kubernetes(None) == parse_kubernetes({}) == KubernetesSpec()


def test_more_shards_than_an_indexed_job_allows(tmp_path, cluster_raw):
    cluster_raw["grid"] = {"x": "-1:1:400", "y": "-1:1:400"}
    cluster_raw["compute"]["shards"] = 100_001
    spec = spec_from(tmp_path, cluster_raw)
    with pytest.raises(UserError, match=r"^compute\.shards: 100001 is more than the 100000"):
        render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))


def test_max_failed_indexes_beyond_shards(tmp_path, cluster_raw):
    cluster_raw["kubernetes"]["max_failed_indexes"] = SHARDS + 1
    spec = spec_from(tmp_path, cluster_raw)
    with pytest.raises(UserError, match=r"^kubernetes\.max_failed_indexes"):
        render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))


@pytest.mark.parametrize("change,args,prefix", [
    ({"kubernetes": {"gpus": "two"}}, [], "kubernetes.gpus"),
    ({"kubernetes": {"nodeSelector": {"a": "b"}}}, [], "kubernetes.nodeSelector"),
    ({"storage": "runs"}, [], "storage"),                       # pods cannot reach a local folder
    ({}, ["--run-id", "Not_A_Label"], "--run-id"),
])
def test_render_cli_reports_mistakes_in_one_line(tmp_path, cluster_raw, capsys, change, args, prefix):
    cluster_raw.update(change)
    path = write_spec(tmp_path, cluster_raw)
    assert render_cli.main(["render", str(path), *args]) == USER_ERROR_EXIT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"launcher: error: {prefix}"), captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1


def test_render_cli_storage_override_and_default_run_id(tmp_path, cluster_raw, capsys):
    cluster_raw["storage"] = "runs"
    path = write_spec(tmp_path, cluster_raw)
    assert render_cli.main(["render", str(path), "--storage", "s3://other/prefix"]) == 0
    objects = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    run_id = objects[0]["metadata"]["labels"]["landscape.run"]
    assert run_id.startswith("linear-") and len(run_id) == len("linear-20260101-120000")
    assert env_of(pod_templates(objects)["evaluate"])["LANDSCAPE_RUN"] == f"s3://other/prefix/{run_id}"


@pytest.mark.slow
def test_the_cifar10_example_renders_and_validates(capsys) -> None:
    """The README shows this output; its checkpoint and data are pod paths, not local files."""
    from launcher.cli import main as launcher_main

    example = Path(__file__).parents[2] / "examples" / "cifar10-resnet56.yaml"
    assert launcher_main(["render", str(example), "-o", "json", "--run-id", "cifar10-resnet56-20261124-120000"]) == 0
    listed = json.loads(capsys.readouterr().out)
    objects = listed["items"]
    assert [o["kind"] for o in objects] == ["ConfigMap", "Role", "RoleBinding", "Job", "Job", "Job"]
    validate_all(objects)
    evaluate = objects[3]["spec"]
    assert evaluate["completions"] == 16 and evaluate["parallelism"] == 8
    pod = evaluate["template"]["spec"]
    assert pod["volumes"][-1]["persistentVolumeClaim"]["claimName"] == "landscape-data"


@pytest.mark.slow
def test_a_hessian_prepare_gets_an_evaluate_pods_gpu_and_memory(tmp_path: Path, cluster_raw: dict[str, Any]) -> None:
    """Lanczos at θ* runs in prepare: its pod is shaped like an evaluate pod; merge stays small."""
    cluster_raw["metrics"] = ["loss", "accuracy", "hessian"]
    spec = spec_from(tmp_path, cluster_raw)
    objects = render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes))
    resources = {stage: jobs(objects)[stage]["spec"]["template"]["spec"]["containers"][0]["resources"]
                 for stage in ("prepare", "evaluate", "merge")}
    assert resources["prepare"] == resources["evaluate"]
    assert resources["prepare"]["requests"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in resources["merge"]["requests"]
    prepare_pod = jobs(objects)["prepare"]["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in prepare_pod["tolerations"]
    assert prepare_pod["serviceAccountName"] == "landscape"  # still prepare's identity
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(jobs(objects)["prepare"]["spec"]["template"])
    assert env_of(jobs(objects)["prepare"]["spec"]["template"])["LANDSCAPE_REQUIRE_GPU"] == "1"
    validate_all(objects)


def test_parallelism_unset_is_capped_for_many_shards_and_validate_says_so(tmp_path, cluster_raw):
    """1,000 shards without kubernetes.parallelism: 256 evaluate pods at once, not 1,000;
    validate's work lines say so, and warn of shards too small for their start-up."""
    from launcher.cli import describe_work
    from launcher.kubernetes.section import DEFAULT_PARALLELISM_CAP

    cluster_raw["grid"] = {"x": "-1:1:100", "y": "-1:1:50"}
    cluster_raw["compute"]["shards"] = 1000
    cluster_raw["kubernetes"] = {"gpus": 0}
    spec = spec_from(tmp_path, cluster_raw)
    evaluate = jobs(render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes)))["evaluate"]
    assert evaluate["spec"]["parallelism"] == DEFAULT_PARALLELISM_CAP and evaluate["spec"]["completions"] == 1000
    lines = describe_work(spec)
    assert any("256 of the 1000 evaluate pods at once" in line for line in lines)
    assert any(line.startswith("warning: 5 points per shard") and "compute.shards: 312" in line for line in lines)
    cluster_raw["kubernetes"]["parallelism"] = 1000
    spec = spec_from(tmp_path, cluster_raw)
    assert jobs(render_run(spec, RUN_ID, parse_kubernetes(spec.kubernetes)))["evaluate"]["spec"]["parallelism"] == 1000
    assert not any("at once" in line for line in describe_work(spec))
