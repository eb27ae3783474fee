"""The memory plan (issue 23, item 7): model + θ* + directions + activations counted on the meta
device, and ``validate`` / ``estimate`` refusing a shard that cannot fit ``kubernetes.gpu_memory``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import spec_from, write_spec
from landscape_job.base.errors import UserError
from landscape_job.checks.memory_plan import check_fits, plan_memory
from landscape_job.runtime.memory import CUDA_OVERHEAD_BYTES, LiveBytes, MiB
from launcher.cli import main as launcher
from test_seeded_directions import BENCHMARKS, SIZE, _lm_spec

from lm_models import gpt  # noqa: E402 - on sys.path through test_seeded_directions


def test_the_plan_counts_what_the_evaluator_holds(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, _lm_spec(tmp_path))
    plan = plan_memory(spec)
    model = gpt(**SIZE)
    params = sum(p.numel() for p in model.parameters())
    assert plan.parameters == params and plan.weight_bytes == 4 and plan.directions == 2
    assert plan.resident_bytes == 4 * params * 4  # model, θ* copy, x and y
    # Activations of one sample, counted on real tensors here: the meta forward counts the same
    # shapes (the CPU's attention kernel keeps a few scratch bytes more).
    with torch.no_grad(), LiveBytes() as live:
        logits = model(torch.zeros(1, SIZE["context"]))
    assert plan.per_sample_bytes == pytest.approx(live.peak + 2 * logits.numel() * 4, rel=0.05)
    assert plan.peak_bytes(10) == plan.resident_bytes + 10 * plan.per_sample_bytes


def test_half_weights_halve_the_resident_bytes(tmp_path: Path) -> None:
    raw = _lm_spec(tmp_path)
    full = plan_memory(spec_from(tmp_path, raw))
    raw["compute"]["weights"] = "bf16"
    half = plan_memory(spec_from(tmp_path, raw))
    assert half.weight_bytes == 2 and 2 * half.resident_bytes == full.resident_bytes


def test_a_shard_that_cannot_fit_is_refused_with_the_largest_batch(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, _lm_spec(tmp_path))
    plan = plan_memory(spec)
    total = CUDA_OVERHEAD_BYTES + plan.resident_bytes + 5 * plan.per_sample_bytes + plan.per_sample_bytes // 2
    assert plan.largest_batch(total) == 5  # room for 5.5 samples
    check_fits(spec, plan, total + 8 * plan.per_sample_bytes, "kubernetes.gpu_memory X")  # batch 8 fits
    with pytest.raises(UserError, match=r"^kubernetes.gpu_memory X: a shard needs about .* at batch 8 .*"
                                        r"the largest batch that fits is 5: set compute.batch_size: 5$"):
        check_fits(spec, plan, total, "kubernetes.gpu_memory X")
    with pytest.raises(UserError, match="not even batch 1 fits: use compute.weights: bf16"):
        check_fits(spec, plan, CUDA_OVERHEAD_BYTES + plan.resident_bytes, "kubernetes.gpu_memory X")


@pytest.mark.slow
def test_launcher_validate_refuses_in_one_line(tmp_path: Path, capsys) -> None:
    raw = _lm_spec(tmp_path)
    raw["compute"]["batch_size"] = 4096
    raw["kubernetes"] = {"gpu_memory": f"{(CUDA_OVERHEAD_BYTES + 4 * MiB) // MiB}Mi"}
    path = write_spec(tmp_path, raw)
    assert launcher(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "kubernetes.gpu_memory 1028Mi: a shard needs about" in err
    assert "set compute.batch_size:" in err
    raw["compute"]["batch_size"] = 4
    write_spec(tmp_path, raw)
    assert launcher(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "memory plan (counted on the meta device): peak" in out and "at batch 4 × 8" in out
    assert launcher(["validate", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"]
    assert BENCHMARKS.is_dir()
