"""Memory a user can plan with (issue 18): each shard's peaks in its record and report.json,
``launcher estimate``'s peak against the GPU's memory, the opt-in snapshot.

No GPU here: the CUDA numbers come from one small function each in ``landscape_job.runtime.memory``;
the rest is tested with the CPU's own figures and fake device records.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import run_all, spec_from
from landscape_job import stages
from landscape_job.checks.estimate import MemoryEstimate, describe_memory, estimate_memory
from landscape_job.runtime.memory import GiB, MiB, Fit, LiveBytes, MemorySnapshot, device_total_bytes, peak_host_rss_bytes
from landscape_job.run.records import ShardRecord
from landscape_job.run.shards import ShardData, read_shard, shard_bytes, shard_key
from launcher.cli import main as launcher
from launcher.local.runner import open_run


def test_live_bytes_counts_what_operators_create_once_per_storage() -> None:
    data = torch.randn(4096, 256)  # existed before: its batches are views, not new memory
    layer = torch.nn.Linear(256, 256)
    with torch.no_grad(), LiveBytes() as counted:
        for start in range(0, 4096, 1024):
            out = layer(data[start:start + 1024])
            del out
    one_output = 1024 * 256 * 4
    assert counted.peak == one_output and counted.live == 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16), LiveBytes() as half:
        out = layer(data[:1024])
    # autocast's float16 copies of the input, weight and bias, and the float16 output: all counted.
    assert out.dtype == torch.float16
    assert half.peak == 1024 * 256 * 2 + 256 * 256 * 2 + 256 * 2 + 1024 * 256 * 2


def test_fit_and_the_largest_batch_against_a_gpu() -> None:
    props = SimpleNamespace(total_memory=16 * GiB)  # a V100-16GB's get_device_properties, faked
    total = device_total_bytes(torch.device("cuda"), props)
    assert total == 16 * GiB and device_total_bytes(torch.device("cpu")) is None
    assert Fit(10 * GiB, total).fits and not Fit(15 * GiB + 1, total).fits
    assert "does NOT fit" in Fit(20 * GiB, total).describe("V100")
    est = MemoryEstimate(peak_bytes=3 * GiB, resident_bytes=1 * GiB, working_bytes=2 * GiB, batch_size=1024,
                         precision="fp16", points_per_forward=1, device="cpu", method="counted tensor bytes")
    # 16 GiB - 1 GiB overhead - 1 GiB resident = 14 GiB at 2 MiB per sample.
    assert est.largest_batch(total) == 7168


def test_an_old_shard_without_memory_fields_still_reads() -> None:
    old = {"spec_hash": "s", "direction_hash": "d", "shard": 0, "num_shards": 1, "precision": "fp32"}
    record = ShardRecord.from_attrs(read_shard(shard_bytes(ShardData(np.arange(1), {}, old)), "old").attrs)
    assert record.peak_device_bytes is None and record.batch_size is None and record.precision_reason is None
    assert record.report_entry()["peak_host_rss_bytes"] is None


def test_each_shard_records_its_memory_and_precision_and_the_report_sums_them(tmp_path: Path,
                                                                              linear_spec: dict) -> None:
    linear_spec["compute"].update({"shards": 2, "precision": "auto", "batch_size": "auto", "memory_snapshot": True})
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "mem")
    logs: list[str] = []
    stages.prepare(run, log=lambda _m: None)
    for shard in range(2):
        stages.evaluate(run, shard, log=logs.append)
    report = stages.merge(run, log=lambda _m: None, plots=False)
    record = ShardRecord.from_attrs(read_shard(run.get(shard_key(0, 2)), "s").attrs)
    assert record.precision == "fp32" and record.precision_reason.startswith("auto: fp32 on cpu")
    assert record.batch_size == 1024 and record.oom_halvings == 0 and record.nonfinite_points == 0
    assert record.peak_device_bytes is None  # a CPU has no device memory apart from the host's
    assert record.peak_host_rss_bytes > 10 * MiB and record.peak_host_rss_bytes <= peak_host_rss_bytes()
    assert report["precision"] == "auto" and report["precision_used"] == ["fp32"]
    assert report["memory"]["peak_host_rss_bytes"] > 10 * MiB and report["memory"]["peak_device_bytes"] is None
    assert report["memory"]["batch_sizes"] == [1024] and report["nonfinite_logits_points"] == 0
    assert all("peak_host_rss_bytes" in s for s in report["shards"])
    assert json.loads(run.get("report.json"))["memory"] == report["memory"]
    # The snapshot is CUDA's: on a CPU the stage says so, and stores nothing.
    assert any("memory_snapshot records CUDA allocations only" in line for line in logs)
    assert not any(key.endswith(".memory.pickle") for key in run.list("shards/"))
    assert any("peak device memory not measured, host RSS" in line for line in logs)


def test_speed_and_snapshot_keys_leave_the_hash_alone(tmp_path: Path, linear_spec: dict) -> None:
    plain = spec_from(tmp_path, linear_spec)
    linear_spec["compute"]["memory_snapshot"] = True
    assert spec_from(tmp_path, linear_spec).hash == plain.hash


def test_estimate_memory_on_the_cpu_and_against_a_named_gpu(tmp_path: Path, linear_spec: dict) -> None:
    spec = spec_from(tmp_path, linear_spec)
    est = estimate_memory(spec)
    assert est.method == "counted tensor bytes" and est.batch_size == 32 and est.precision == "fp64"
    assert est.resident_bytes > 0 and est.working_bytes > 0
    assert est.peak_bytes == est.resident_bytes + est.working_bytes
    lines = describe_memory(est, spec, 16 * GiB, "kubernetes.gpu_memory 16Gi")
    assert lines[0].startswith("memory (counted tensor bytes, on cpu): peak")
    assert "fits" in lines[1] and "largest batch that fits kubernetes.gpu_memory 16Gi" in lines[2]
    unknown = describe_memory(est, spec, None, "")
    assert "set kubernetes.gpu_memory" in unknown[-1]


def test_launcher_estimate_prints_the_memory_against_kubernetes_gpu_memory(tmp_path: Path, linear_spec: dict,
                                                                          capsys, monkeypatch) -> None:
    """Only the memory lines are checked here: the estimate's timing is cut to one point, its merge to no
    figure, and the stage start-up it measures in two fresh interpreters (checked in
    test_local_backend.py's estimate test) to nothing."""
    import landscape_job.checks.estimate

    monkeypatch.setattr(landscape_job.checks.estimate, "_startup_seconds", lambda: 0.0)
    linear_spec["kubernetes"] = {"gpu_memory": "16Gi"}
    linear_spec["plot"] = {"formats": ["vtp"]}
    path = tmp_path / "surface.yaml"
    import yaml

    path.write_text(yaml.safe_dump(linear_spec))
    assert launcher(["estimate", str(path), "--points", "1", "--seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "memory (counted tensor bytes, on cpu): peak" in out
    assert "against kubernetes.gpu_memory 16Gi" in out and ": fits" in out


def test_validate_says_what_precision_auto_will_do(tmp_path: Path, linear_spec: dict, capsys) -> None:
    linear_spec["compute"]["precision"] = "auto"
    path = tmp_path / "surface.yaml"
    import yaml

    path.write_text(yaml.safe_dump(linear_spec))
    assert launcher(["validate", str(path), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "#   precision: auto: decided by each worker for its device: bf16 on CUDA with compute capability >= 8.0" \
        in out


def test_the_snapshot_is_off_the_cpu() -> None:
    snapshot = MemorySnapshot(True, torch.device("cpu"))
    assert not snapshot.active and snapshot.dump(Path("/nonexistent/x.pickle")) is False


@pytest.mark.slow
def test_run_all_still_merges_with_the_new_fields(tmp_path: Path, linear_spec: dict) -> None:
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "plain")
    run_all(run, 1)
    report = json.loads(run.get("report.json"))
    assert report["precision_used"] == ["fp64"] and report["memory"]["oom_halvings"] == 0


def test_the_fit_and_the_plan_say_their_numbers_in_full() -> None:
    """The lines validate and estimate print, checked against the arithmetic written out."""
    from landscape_job.runtime.memory import MemoryPlan

    fits = Fit(3 * GiB, 16 * GiB)
    assert fits.describe("V100") == "V100: peak 3,072 MiB + 1,024 MiB CUDA overhead = 25% of 16,384 MiB: fits"
    assert Fit(16 * GiB, 16 * GiB, overhead_bytes=0).fits and Fit(16 * GiB, 16 * GiB, overhead_bytes=0).fraction == 1.0
    assert Fit(20 * GiB, 16 * GiB).describe("T4") == (
        "T4: peak 20,480 MiB + 1,024 MiB CUDA overhead = 131% of 16,384 MiB: does NOT fit; lower "
        "compute.batch_size or points_per_forward, or use batch_size: auto (an OOM in a shard halves the batch, "
        "slower but not failed)")
    plan = MemoryPlan(parameters=MiB, weight_bytes=4, directions=2, per_sample_bytes=3 * MiB, batch_size=8,
                      stacked=0, sample_size=1024)
    # model 4 MiB, held 2 + 2 times; activations 3 MiB a sample
    assert plan.resident_bytes == 16 * MiB and plan.working_bytes(8) == 24 * MiB and plan.peak_bytes() == 40 * MiB
    assert plan.describe() == ("40 MiB = model 4 MiB + θ* copy 4 MiB + 2 direction(s) 8 MiB + activations 24 MiB "
                               "at batch 8 × 1,024")
    assert plan.describe(2000) == ("6,016 MiB = model 4 MiB + θ* copy 4 MiB + 2 direction(s) 8 MiB + activations "
                                   "6,000 MiB at batch 2,000 × 1,024")
    stacked = MemoryPlan(parameters=MiB, weight_bytes=2, directions=1, per_sample_bytes=MiB, batch_size=4, stacked=3)
    # K = 3 stacked parameter sets: 3 model copies more, and 3 forwards' activations per sample
    assert stacked.resident_bytes == 2 * MiB * 6 and stacked.working_bytes(4) == 12 * MiB
    assert stacked.describe() == ("24 MiB = model 2 MiB + θ* copy 2 MiB + 1 direction(s) 2 MiB + 3 stacked point(s) "
                                  "6 MiB + activations 12 MiB at batch 4")
    total = 2 * GiB
    assert stacked.largest_batch(total) == (total - GiB - 12 * MiB) // (3 * MiB)
    assert stacked.largest_batch(total, overhead_bytes=0) == (total - 12 * MiB) // (3 * MiB)
    assert stacked.largest_batch(GiB) == 0  # not even the weights fit
    free = MemoryPlan(parameters=MiB, weight_bytes=4, directions=1, per_sample_bytes=0, batch_size=4)
    assert free.largest_batch(GiB + 12 * MiB) == 1 << 30  # no activations: any batch
    assert free.largest_batch(GiB + 12 * MiB - 1) == 0
    one = MemoryPlan(parameters=MiB, weight_bytes=4, directions=1, per_sample_bytes=1, batch_size=4)
    assert one.largest_batch(GiB + 12 * MiB + 5) == 5  # a byte a sample


def test_a_gpus_memory_and_snapshot_go_through_cuda(monkeypatch) -> None:
    """The CUDA calls themselves, faked: which device they are asked about, and the snapshot's file."""
    asked: list = []
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: asked.append(device) or SimpleNamespace(total_memory=80 * GiB))
    gpu = torch.device("cuda", 1)
    assert device_total_bytes(gpu) == 80 * GiB and asked == [gpu]
    calls: list = []
    monkeypatch.setattr(torch.cuda.memory, "_dump_snapshot", lambda path: calls.append(("dump", path)))
    monkeypatch.setattr(torch.cuda.memory, "_record_memory_history",
                        lambda **kwargs: calls.append(("record", kwargs)))
    snapshot = MemorySnapshot(True, gpu)
    assert snapshot.active and calls == [("record", {"max_entries": 100_000})]
    assert snapshot.dump(Path("/tmp/x.pickle")) is True and not snapshot.active
    assert calls[1:] == [("dump", "/tmp/x.pickle"), ("record", {"enabled": None})]
    assert snapshot.dump(Path("/tmp/x.pickle")) is False and len(calls) == 3


def test_live_bytes_frees_a_storage_only_with_its_last_tensor() -> None:
    x = torch.ones(100)
    with torch.no_grad(), LiveBytes() as nothing:
        torch.empty(1000, device="meta")  # shapes without memory: not counted off the meta estimate
    assert nothing.peak == 0 and nothing.live == 0
    with torch.no_grad(), LiveBytes() as counted:
        a = x * 2  # 400 new bytes
        b = a.view(10, 10)  # the same storage, a second user
        del a
        assert counted.live == 400  # b still holds it
        c = x * 3
        assert counted.peak == 800
        del b, c
    assert counted.live == 0


def test_the_device_peak_is_cudas_own_for_the_device_asked(monkeypatch) -> None:
    from landscape_job.runtime.memory import peak_device_bytes, reset_device_peak

    calls: list = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: calls.append(("sync", device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: calls.append(("peak", device)) or 12345)
    gpu = torch.device("cuda", 1)
    reset_device_peak(gpu)
    assert peak_device_bytes(gpu) == 12345
    assert calls == [("sync", gpu), ("reset", gpu), ("sync", gpu), ("peak", gpu)]
    reset_device_peak(torch.device("cpu"))
    assert peak_device_bytes(torch.device("cpu")) is None and len(calls) == 4
