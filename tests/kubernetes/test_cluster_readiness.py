"""Issue 24, one test per finding: what an ordinary GPU cluster (nodes, claims, Kueue) does to a run,
against the fake API server with its Kueue, nodes and claims (tests/support/fake_inventory.py,
tests/support/fake_kueue.py), and the real stages in the pods where their behaviour is asked about.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from cluster_testing import aws_env, bucket, cluster_spec, fake, one_line_error  # noqa: F401 (fixtures)
from conftest import write_spec
from counting_storage import Counting
from fake_clusters import COMMON_NODES, CPU_4X16, GPU_4X16, GPU_8GPU, GPU_8X32, broken_cluster, ready_cluster
from fake_inventory import claim, node
from fake_k8s import FakeCluster, run_subprocess
from fake_kueue import cluster_queue
from landscape_job.spec.parse import load_spec
from launcher.cli import main as launcher
from launcher.kubernetes.fit import fit
from launcher.kubernetes.inventory import NodeFacts
from launcher.kubernetes.render import render_run
from launcher.kubernetes.section import parse_kubernetes
from s3server import OK, FlakyProxy

REPO = Path(__file__).resolve().parents[2]


def stage_of(obj: dict) -> str:
    return obj["metadata"]["labels"]["landscape.stage"]


def created(fake: FakeCluster) -> list[str]:
    """What was really created (dry runs aside): kinds of POSTs that stored something."""
    return [r.path.rsplit("/", 1)[-1] for r in fake.requests
            if r.method == "POST" and r.query.get("dryRun") != "All" and "selfsubjectaccessreviews" not in r.path]


# -- 1. a ClusterQueue that does not cover ephemeral-storage ----------------------------------

def test_a_cluster_queue_without_ephemeral_storage_is_refused_before_any_object(
        fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    fake.kueue.add_cluster_queue(cluster_queue("team-a", {"cpu": "9", "memory": "36Gi"}))  # Kueue's example queue
    fake.kueue.add_local_queue("landscape", "team-a", "team-a")
    path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint, kueue_queue="team-a",
                                             memory="4Gi", shm_size="1Gi"))
    assert launcher(["submit", str(path), "--run-id", "noeph"]) == 2
    line = one_line_error(capsys)
    assert ("ClusterQueue team-a does not cover ephemeral-storage, which the evaluate pods request: add it, or set "
            "kubernetes.ephemeral_storage: false") in line, line
    assert created(fake) == [] and not fake.of("jobs") and not fake.of("configmaps")
    assert keys_under(moto_endpoint, bucket) == []  # nothing written to storage either


def keys_under(endpoint: str, bucket: str) -> list[str]:
    from cluster_testing import keys

    return keys(endpoint, bucket)


# -- 2. a `default` LocalQueue ---------------------------------------------------------------

@pytest.mark.slow
def test_a_default_local_queue_starts_no_evaluate_pod_before_prepare_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, bucket: str, moto_endpoint: str,
        linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    """Kueue's webhook would put the gated Jobs into the namespace's `default` LocalQueue and admit them at once;
    every evaluate pod must still start only after prepare's output is in storage."""
    from landscape_job.storage import run_storage
    from landscape_job.spec.parse import load_spec as load

    starts: list[tuple[str, bool]] = []

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        if stage_of(pod) == "evaluate":
            spec = load(path)
            starts.append((pod["metadata"]["name"], run_storage(spec.storage, "dflt").exists("manifest.json")))
        return run_subprocess(fake, pod, env)

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        fake.kueue.add_cluster_queue(cluster_queue("shared", {"cpu": "64", "memory": "256Gi",
                                                              "ephemeral-storage": "1000Gi"}))
        fake.kueue.add_local_queue("landscape", "default", "shared")
        raw = cluster_spec(linear_spec, bucket, moto_endpoint, memory="4Gi", shm_size="1Gi")
        raw["plot"] = {"formats": ["vtp"]}  # the order of the stages is under test, not merge's figures
        path = write_spec(tmp_path, raw)
        code = launcher(["submit", str(path), "--run-id", "dflt", "--wait", "--interval", "0.5"])
        err = capsys.readouterr().err
        assert code == 0, (err, fake.logs)
        assert "has a LocalQueue named default" in err
        assert starts and all(ready for _, ready in starts), starts
        jobs = {stage_of(j): j for j in fake.of("jobs")}
        assert all(j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default" for j in jobs.values())
        order = [name.rsplit("-", 1)[-1] for _, name in fake.kueue.admissions]
        assert order == ["prepare", "evaluate", "merge"], order


# -- 3. a ReadWriteOnce claim ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("modes, one_node, refused", [
    (["ReadWriteOnce"], False, True), (["ReadWriteOnce"], True, False), (["ReadOnlyMany"], False, False),
    (["ReadWriteOncePod"], True, True)])
def test_a_claim_read_from_several_nodes_must_allow_it(
        fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture, modes: list[str], one_node: bool, refused: bool) -> None:
    fake.inventory.add_claim(claim("datasets", modes))
    raw = cluster_spec(linear_spec, bucket, moto_endpoint, volumes=[{"claim": "datasets", "mount_path": "/data"}],
                       one_node=one_node)
    path = write_spec(tmp_path, raw)
    code = launcher(["submit", str(path), "--run-id", "rwo", "--server-dry-run"])
    if refused:
        assert code == 2
        line = one_line_error(capsys)
        assert f"persistentvolumeclaim datasets is {modes[0]}" in line and "ReadWriteMany" in line, line
        assert not fake.dry_runs
    else:
        assert code == 0, capsys.readouterr().err


def test_a_missing_claim_is_refused(fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict,
                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = cluster_spec(linear_spec, bucket, moto_endpoint, volumes=[{"claim": "nope", "mount_path": "/data"}])
    assert launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "x", "--server-dry-run"]) == 2
    assert "persistentvolumeclaim nope not found in namespace landscape" in one_line_error(capsys)


# -- 4. pod shapes against common nodes ------------------------------------------------------

@pytest.mark.slow
def test_a_pod_larger_than_every_node_is_refused_naming_the_largest(
        fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """The old cifar shape (8 CPU / 32Gi a 1-GPU pod) on 8 vCPU / 32 GiB and 4 vCPU / 16 GiB GPU nodes."""
    fake.inventory.nodes = [GPU_8X32, GPU_4X16, CPU_4X16]
    raw = cluster_spec(linear_spec, bucket, moto_endpoint, gpus=1, cpu="8", memory="32Gi")
    assert launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "big", "--server-dry-run"]) == 2
    line = one_line_error(capsys)
    assert "the evaluate pod (cpu 8, ephemeral-storage 25.0Gi, memory 32.0Gi, nvidia.com/gpu 1) fits no node" in line
    assert "the largest that admits it, gpu-8x32, has cpu 8 > 7.91; memory 32.0Gi > 29.0Gi allocatable" in line, line
    assert "lower kubernetes.cpu / memory / gpus" in line and not fake.dry_runs
    # --no-preflight: the user knows better; the server checks the objects as before
    assert launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "big", "--server-dry-run",
                     "--no-preflight"]) == 0


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("cifar10-*.yaml")), ids=lambda p: p.name)
def test_the_cifar_examples_fit_common_gpu_nodes(example: Path) -> None:
    """Each example's evaluate pod fits a 4 vCPU / 16 GiB and an 8 vCPU / 32 GiB 1-GPU node, and eight of them
    fit an 8-GPU node's CPUs, memory and 100 GB boot disk; prepare and merge fit the CPU node."""
    spec = load_spec(example, check_files=False)
    objects = render_run(spec, "ex", parse_kubernetes(spec.kubernetes))
    pods = {stage_of(o): o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Job"}
    nodes = [NodeFacts.from_api(n) for n in COMMON_NODES]
    for name in ("gpu-8x32", "gpu-4x16", "gpu-8gpu"):
        assert name in fit("evaluate", pods["evaluate"], nodes).fitting, name
    for stage in ("prepare", "merge"):
        assert fit(stage, pods[stage], nodes).fitting == ("cpu-4x16",), stage  # and off the GPU nodes
    eight = {r: v * 8 for r, v in fit("evaluate", pods["evaluate"], nodes).requests.items()}
    big = NodeFacts.from_api(GPU_8GPU)
    assert all(v <= big.allocatable[r] for r, v in eight.items()), eight


# -- 5. an eviction for exceeding disk --------------------------------------------------------

def evict_at_first_checkpoint(fake: FakeCluster, evicted: list[str], message: str, reason: str, grace: float,
                              before: Callable[[], None] = lambda: None) -> Callable[[str, str, dict], str]:
    """A storage proxy's decision (s3server.FlakyProxy) that evicts the shard's running pod when its first
    checkpoint segment is PUT, before the PUT is answered: the pod is then mid-way through its points
    whatever the machine's load (it cannot finish before SIGTERM arrives), and the segment is stored.
    ``before`` runs first (what the node looks like at the eviction). SIGKILL follows ``grace`` seconds
    after SIGTERM, from a thread: the pod's own SIGTERM handling goes through this proxy too."""

    def decide(method: str, path: str, headers) -> str:
        if method == "PUT" and "/shards/shard-0-of-1.partial-" in path and not evicted:
            evicted.append(next(p["metadata"]["name"] for p in fake.of("pods")
                                if stage_of(p) == "evaluate" and p["status"].get("phase") == "Running"))
            before()
            fake.evict(evicted[0], message, reason=reason, grace=grace, block=False)
        return OK

    return decide


@pytest.mark.slow
def test_an_over_disk_eviction_fails_the_shard_within_one_retry_saying_why(
        fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """The kubelet evicts the shard's pod (DisruptionTarget, TerminationByKubelet) with its disk full; the
    one retry of the index reads why and fails it (exit 2), instead of being retried until the deadline."""
    filler = fake.work_dir / "emptydir" / "tmp" / "filler"

    def fill_the_disk() -> None:
        # the pod's /tmp emptyDir past its limit (a sparse file: its size counts, as the kubelet's du would)
        with open(filler, "wb") as handle:
            handle.truncate(3 * 2**30)

    evicted: list[str] = []
    decide = evict_at_first_checkpoint(fake, evicted, "Pod ephemeral local storage usage exceeds the total limit "
                                       "of containers 3Gi.", "TerminationByKubelet", grace=5, before=fill_the_disk)
    with FlakyProxy(moto_endpoint, decide) as proxy:
        raw = cluster_spec(linear_spec, bucket, proxy.url, shards=1, tmp_size="1Gi", cache_size="1Gi")
        code = launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "full", "--wait", "--interval", "0.5"])
    filler.unlink()
    err = capsys.readouterr().err
    assert code == 1, (err, fake.logs)
    pods = [p for p in fake.of("pods") if stage_of(p) == "evaluate"]
    assert len(evicted) == 1 and len(pods) == 2, [p["metadata"]["name"] for p in pods]  # the evicted pod, one retry
    evaluate = evicted[0]
    retry = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"] != evaluate)
    assert "stopped for ephemeral storage: the pod used 3.0 GiB of its 3.0 GiB limit" in fake.logs[retry]
    assert "stopped for ephemeral storage" in fake.logs[evaluate]
    job = next(j for j in fake.of("jobs") if stage_of(j) == "evaluate")
    assert job["status"]["failedIndexes"] == "0"


@pytest.mark.slow
def test_a_preempted_shard_is_still_retried(fake: FakeCluster, bucket: str, moto_endpoint: str,
                                            linear_spec: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Evicted mid-way for a preemption (DisruptionTarget, PreemptionByScheduler), the shard's pod stops on
    SIGTERM (exit 143) saying nothing about its disk, and the index is retried to the end of the run."""
    evicted: list[str] = []
    decide = evict_at_first_checkpoint(fake, evicted, "Preempted in order to admit critical pod",
                                       "PreemptionByScheduler", grace=10)
    with FlakyProxy(moto_endpoint, decide) as proxy:
        raw = cluster_spec(linear_spec, bucket, proxy.url, shards=1)
        raw["plot"] = {"formats": ["vtp"]}  # the run's end is under test, not its figures
        code = launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "pre", "--wait", "--interval", "0.5"])
    assert code == 0, (capsys.readouterr().err, fake.logs)
    pods = [p for p in fake.of("pods") if stage_of(p) == "evaluate"]
    assert len(evicted) == 1 and len(pods) == 2, [p["metadata"]["name"] for p in pods]  # the evicted pod, one retry
    first = next(p for p in pods if p["metadata"]["name"] == evicted[0])
    assert first["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    log = fake.logs[evicted[0]]
    assert "stopped by SIGTERM" in log and "stopped for ephemeral storage" not in log, log


@pytest.mark.slow
def test_prepare_refuses_inputs_larger_than_its_cache(fake: FakeCluster, bucket: str, moto_endpoint: str,
                                                      linear_spec: dict, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from storage_testing import s3_client

    s3_client(moto_endpoint).put_object(Bucket=bucket, Key="inputs/a.pt", Body=(tmp_path / "a.pt").read_bytes())
    raw = cluster_spec(linear_spec, bucket, moto_endpoint, cache_size="1Ki")
    raw["model"] = {**raw["model"], "checkpoint": f"s3://{bucket}/inputs/a.pt"}
    code = launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "tiny", "--wait", "--interval", "0.5"])
    err = capsys.readouterr().err
    assert code == 1, err
    prepare = next(p for p in fake.of("pods") if stage_of(p) == "prepare")
    assert "kubernetes.cache_size: the inputs take" in fake.logs[prepare["metadata"]["name"]]
    assert [stage_of(p) for p in fake.of("pods")] == ["prepare"], fake.logs  # exit 2: not retried, nothing released


# -- 6. merge under Kueue -----------------------------------------------------------------------

@pytest.mark.slow
def test_under_kueue_merge_is_admitted_only_after_every_shard(
        fake: FakeCluster, bucket: str, moto_endpoint: str, linear_spec: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """Merge holds neither a pod nor quota while the shards run: Kueue admits it once every shard is in storage."""
    from storage_testing import s3_client

    client = s3_client(moto_endpoint)
    shards_at: dict[str, list[str]] = {}
    fake.kueue.on_admit = lambda key: shards_at.setdefault(key[1], sorted(
        o["Key"].rsplit("/", 1)[-1] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
        if o["Key"].endswith("-of-2.h5")))
    ready_cluster(fake)
    fake.inventory.nodes = [node("cpu", "16", "64Gi", "200Gi")]
    raw = cluster_spec(linear_spec, bucket, moto_endpoint, shards=2, kueue_queue="team-a", memory="4Gi",
                       shm_size="1Gi")
    raw["plot"] = {"formats": ["vtp"]}  # when merge is admitted is under test, not its figures
    code = launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "kq", "--wait", "--interval", "0.5"])
    assert code == 0, (capsys.readouterr().err, fake.logs)
    jobs = {stage_of(j): j for j in fake.of("jobs")}
    assert [name for _, name in fake.kueue.admissions] == ["kq-prepare", "kq-evaluate", "kq-merge"]
    assert shards_at["kq-evaluate"] == []
    assert shards_at["kq-merge"] == [f"shard-{i}-of-2.h5" for i in range(2)], shards_at
    assert jobs["merge"]["spec"]["activeDeadlineSeconds"] == 3600  # its own work, counted from its release
    assert len([p for p in fake.of("pods") if stage_of(p) == "merge"]) == 1


# -- 7. prepare and merge off GPU nodes ---------------------------------------------------------

def test_prepare_and_merge_stay_off_gpu_nodes_unless_allowed(tmp_path: Path, linear_spec: dict) -> None:
    from conftest import spec_from

    untainted_gpu = NodeFacts.from_api(node("gpu", "32", "128Gi", "500Gi", gpus=4))
    cpu = NodeFacts.from_api(node("cpu", "8", "32Gi", "100Gi"))
    gke = NodeFacts.from_api(node("gke", "32", "128Gi", "500Gi",
                                  labels={"cloud.google.com/gke-accelerator": "nvidia-l4"}))
    for allowed in (False, True):
        linear_spec["kubernetes"] = {"gpus": 1, "light_pods_on_gpu_nodes": allowed}
        linear_spec["storage"] = "s3://bucket/runs"
        spec = spec_from(tmp_path, linear_spec)
        objects = render_run(spec, "p", parse_kubernetes(spec.kubernetes))
        for job in (o for o in objects if o["kind"] == "Job" and stage_of(o) in ("prepare", "merge")):
            where = fit(stage_of(job), job["spec"]["template"]["spec"], [untainted_gpu, cpu, gke]).fitting
            assert where == (("gpu", "cpu", "gke") if allowed else ("cpu",)), (allowed, where)


# -- 8. polling is O(1) in the shards ------------------------------------------------------------

def requests_per_poll(tmp_path: Path, linear_spec: dict, shards: int) -> dict[str, int]:
    """A run of ``shards`` shards mid-way (each with progress, a tally and checkpoint segments), and the
    storage requests one poll of each reader makes."""
    from conftest import spec_from
    from landscape_job.run.records import ProgressRecord
    from landscape_job.run.shards import progress_key, segment_key
    from landscape_job.run.tally import TallyWriter
    from landscape_job.storage import run_storage
    from launcher.api import Run
    from launcher.backends.local import LocalBackend
    from launcher.commands.cluster_run import read_progress
    from launcher.backends.local import read_stored_status

    raw = dict(linear_spec, compute={**linear_spec["compute"], "shards": shards}, storage=str(tmp_path / f"s{shards}"),
               grid={"x": "-1:1:64", "y": "-1:1:64"})
    spec = spec_from(tmp_path, raw)
    run = run_storage(spec.storage, "r")
    run.put("spec.yaml", spec.to_yaml().encode())
    for shard in range(shards):
        progress = ProgressRecord(shard=shard, num_shards=shards, done=3, total=5, state="running", rate=1.5,
                                  host="node", device="cuda:0")
        run.put(progress_key(shard, shards), progress.to_json())
        TallyWriter(run, shard, shards).write(progress)
        for first in range(3):
            run.put(segment_key(shard, shards, first), b"segment")
    counts = {}
    counting = Counting(run)
    assert sum(p.done for p in read_progress(counting, shards).values()) == 3 * shards
    counts["launcher (submit --wait), status"] = len(counting.calls)
    counting = Counting(run)
    assert read_stored_status("r", counting).progress[0].done == 3
    counts["status / wait of a stored run"] = len(counting.calls)
    handle = Run(spec, "r", LocalBackend())
    handle.storage = counting = Counting(run)
    assert handle._points_done() == 3 * shards
    counts["Python handle"] = len(counting.calls)
    return counts


@pytest.mark.slow
def test_a_poll_makes_the_same_requests_at_8_and_256_shards(tmp_path: Path, linear_spec: dict) -> None:
    small, large = requests_per_poll(tmp_path, linear_spec, 8), requests_per_poll(tmp_path, linear_spec, 256)
    assert small == large, (small, large)
    assert small["launcher (submit --wait), status"] == 1 and small["Python handle"] == 1
    print(json.dumps({"8": small, "256": large}))


# -- 9. operations ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_doctor_on_a_ready_and_a_broken_cluster(fake: FakeCluster, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    example = yaml.safe_load((REPO / "examples" / "cifar10-resnet56.yaml").read_text())
    # the example as it was before it was sized for common nodes: 8 CPUs and 32 GiB a 1-GPU pod
    example["kubernetes"] = {**example["kubernetes"], "kueue_queue": "team-a", "runtime_class": "nvidia",
                             "cpu": "8", "memory": "32Gi"}
    path = write_spec(tmp_path, example, "cifar.yaml")
    ready_cluster(fake)
    assert launcher(["doctor", str(path)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "not ready" not in out and "ready      queue team-a" in out and "fit evaluate" in out
    assert launcher(["doctor", str(path), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["ready"] is True
    fake.inventory.claims.clear(), fake.kueue.cluster_queues.clear(), fake.inventory.runtime_classes.clear()
    broken_cluster(fake)
    assert launcher(["doctor", str(path)]) == 1
    out = capsys.readouterr().out
    for expected in ("RuntimeClass nvidia does not exist", "is ReadWriteOnce", "does not cover",
                     "not ready  fit evaluate"):
        assert expected in out, out


@pytest.mark.slow
def test_doctor_says_a_cluster_older_than_1_29_is_not_ready(fake: FakeCluster, capsys: pytest.CaptureFixture) -> None:
    """Before 1.29 the Jobs' backoffLimitPerIndex and podReplacementPolicy are off by default (a server drops
    them): doctor's version line says so, and it exits 1; 1.29 itself is ready."""
    fake.inventory.version = (1, 28)
    assert launcher(["doctor"]) == 1
    captured = capsys.readouterr()
    assert check_line(captured.out, "version") == (
        "not ready version Kubernetes v1.28.0 is older than 1.29: the Jobs' backoffLimitPerIndex and "
        "podReplacementPolicy need 1.29 or newer"), captured.out
    assert "not ready: see the lines above" in captured.err
    assert launcher(["doctor", "-o", "json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ready"] is False
    assert [c for c in answer["checks"] if c["name"] == "version"] == [{
        "name": "version", "state": "not ready", "stalls": True,
        "detail": "Kubernetes v1.28.0 is older than 1.29: the Jobs' backoffLimitPerIndex and podReplacementPolicy "
                  "need 1.29 or newer"}]
    fake.inventory.version = (1, 29)  # the oldest that has them on
    assert launcher(["doctor"]) == 0
    assert check_line(capsys.readouterr().out, "version") == "ready version Kubernetes v1.29.0"


def test_submit_refuses_a_cluster_older_than_1_29_before_any_object(
        fake: FakeCluster, tmp_path: Path, bucket: str, moto_endpoint: str, linear_spec: dict,
        capsys: pytest.CaptureFixture) -> None:
    """The version check ``stalls`` (the server would drop the Jobs' per-index backoff and replacement policy and
    run something else): submit's preflight refuses with doctor's line, before its dry run."""
    fake.inventory.version = (1, 28)
    path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint))
    assert launcher(["submit", str(path), "--run-id", "old", "--server-dry-run"]) == 2
    assert one_line_error(capsys) == ("launcher: error: preflight: Kubernetes v1.28.0 is older than 1.29: the Jobs' "
                                      "backoffLimitPerIndex and podReplacementPolicy need 1.29 or newer "
                                      "(--no-preflight submits anyway)")
    assert not fake.dry_runs and created(fake) == []
    fake.inventory.version = (1, 29)
    assert launcher(["submit", str(path), "--run-id", "old", "--server-dry-run"]) == 0, capsys.readouterr().err


def check_line(out: str, name: str) -> str:
    """Doctor's line for the check ``name``, its columns' padding collapsed."""
    lines = [" ".join(line.split()) for line in out.splitlines() if f" {name} " in line]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.slow
def test_doctor_skips_what_the_account_may_not_read(fake: FakeCluster, tmp_path: Path, bucket: str,
                                                    moto_endpoint: str, linear_spec: dict,
                                                    capsys: pytest.CaptureFixture) -> None:
    fake.inventory.cluster_reads.clear()
    assert launcher(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "skipped    nodes" in out
    raw = cluster_spec(linear_spec, bucket, moto_endpoint, gpus=1, cpu="64")  # fits no node, but none readable
    assert launcher(["submit", str(write_spec(tmp_path, raw)), "--run-id", "blind", "--server-dry-run"]) == 0
    assert "preflight: not checked (not readable with your account): nodes" in capsys.readouterr().err


@pytest.mark.slow
def test_the_fake_job_controller_backs_off_between_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          aws_env: None, bucket: str, moto_endpoint: str,
                                                          linear_spec: dict) -> None:
    """A counted failure delays the index's next pod by base x 2^(failures-1); the fake models it for the tests
    that need the real controller's pace (tests/support/fake_jobs.py)."""
    starts: list[float] = []

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int:
        if stage_of(pod) != "prepare":
            return 0
        starts.append(time.monotonic())
        return 1 if len(starts) < 3 else 0

    with FakeCluster(tmp_path / "cluster", runner=runner) as fake:
        fake.backoff_seconds = 0.3
        fake.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        path = write_spec(tmp_path, cluster_spec(linear_spec, bucket, moto_endpoint))
        assert launcher(["submit", str(path), "--run-id", "boff", "--no-preflight"]) == 0
        fake.wait_idle()
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.3 and starts[2] - starts[1] >= 0.6, starts
