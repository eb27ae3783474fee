"""What only a GPU can show (issue 18): run by ``benchmarks/gpu_check.sh``; skipped without CUDA.

The CPU tests hold the same logic with fakes (tests/runtime/test_precision.py, tests/runtime/test_memory.py);
these check that CUDA agrees: the precision ``auto`` picks for this device, fp16 and bf16
within the bounds measured on the CPU, a measured device peak, a real OOM halved, the snapshot.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from conftest import save_cnn_checkpoint
from landscape_job.datasets.builtin import load_split
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.evaluator import Evaluator
from landscape_job.runtime.memory import MemorySnapshot, peak_device_bytes, reset_device_peak
from landscape_job.runtime.precision import BF16_CAPABILITY, device_capability
from landscape_job.spec.sections import ComputeSpec, DataSpec, DirectionsSpec
from test_precision import FP16_DEVIATION, OPTIONS, POINTS, _cnn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _evaluator(tmp_path: Path, **compute) -> Evaluator:
    path = tmp_path / "a.pt"
    if not path.exists():
        save_cnn_checkpoint(path, seed=0)
    split = load_split(DataSpec(dataset="synthetic", options=OPTIONS), "train")
    directions = build_directions(DirectionsSpec(type="random", seed=3), _cnn(path), two_d=True)
    return Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(**compute), device=CUDA)


def test_auto_picks_the_precision_this_gpu_runs_natively(tmp_path: Path) -> None:
    evaluator = _evaluator(tmp_path, precision="auto")
    native = device_capability(CUDA) >= BF16_CAPABILITY
    assert evaluator.precision == ("bf16" if native else "fp16"), evaluator.precision_choice


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precisions_on_cuda_stay_near_fp32(tmp_path: Path, precision: str) -> None:
    if precision == "bf16" and device_capability(CUDA) < BF16_CAPABILITY:
        pytest.skip("bf16 is refused before Ampere")
    low = _evaluator(tmp_path, precision=precision).evaluate_many(POINTS)
    full = _evaluator(tmp_path, precision="fp32").evaluate_many(POINTS)
    bound = FP16_DEVIATION if precision == "fp16" else 1.7e-3  # bf16: tests/surface/test_speed.py BF16_DEVIATION
    for a, b in zip(low, full):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=bound)


def test_the_device_peak_is_measured(tmp_path: Path) -> None:
    evaluator = _evaluator(tmp_path, precision="fp32")
    evaluator.warm_up()
    reset_device_peak(CUDA)
    evaluator.evaluate(0.1, 0.2)
    assert peak_device_bytes(CUDA) >= evaluator.resident_bytes() > 0


def test_batch_size_auto_fits_and_matches_a_fixed_batch(tmp_path: Path) -> None:
    auto = _evaluator(tmp_path, precision="fp32", batch_size="auto")
    values = auto.evaluate_many(POINTS)
    assert auto.batch_size >= 300  # the whole split of this small model fits
    fixed = _evaluator(tmp_path, precision="fp32", batch_size=128).evaluate_many(POINTS)
    for a, b in zip(values, fixed):
        assert a == pytest.approx(b, rel=1e-6)


def test_the_memory_snapshot_is_a_pickle_the_visualiser_reads(tmp_path: Path) -> None:
    snapshot = MemorySnapshot(True, CUDA)
    _evaluator(tmp_path, precision="fp32").evaluate(0.0, 0.0)
    assert snapshot.dump(tmp_path / "s.pickle")
    assert "segments" in pickle.loads((tmp_path / "s.pickle").read_bytes())


def test_a_pod_that_requested_a_gpu_computes_on_it(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    """The pod side of LANDSCAPE_REQUIRE_GPU on a real GPU: the check passes and the shard is computed on CUDA."""
    import os
    import subprocess
    import sys

    from conftest import spec_from
    from landscape_job import stages
    from landscape_job.surface.evaluator_setup import resolve_device
    from landscape_job.runtime.gpu import REQUIRE_GPU_ENV, cuda_problem
    from landscape_job.run.records import ShardRecord
    from landscape_job.run.shards import read_shard, shard_key
    from launcher.local.runner import open_run

    monkeypatch.setenv(REQUIRE_GPU_ENV, "1")
    assert cuda_problem() is None and resolve_device("auto").type == "cuda"
    run = open_run(spec_from(tmp_path, linear_spec), "gpu-pod")
    stages.prepare(run, log=lambda _: None)
    result = subprocess.run([sys.executable, "-m", "landscape_job.cli", "--run", run.url, "evaluate", "--shard", "0"],
                            env={**os.environ, REQUIRE_GPU_ENV: "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = ShardRecord.from_attrs(read_shard(run.get(shard_key(0, 1)), "shard").attrs)
    assert record.device.startswith("cuda"), record.device
