"""fp16 and ``precision: auto``, and batches that shrink instead of failing (issue 18).

Everything here runs on the CPU: fp16 autocast runs there too (slowly), the precision
decision is a function of the device's capability tuple, and an out-of-memory error is
raised by a model that refuses batches above a size, as a full GPU would.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import save_cnn_checkpoint
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.datasets.builtin import Split, load_split
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.directions import Directions
from landscape_job.base.errors import UserError
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.evaluator_setup import CPU_AUTO_BATCH, resolve_batch_size
from landscape_job.models import build_model
from landscape_job.runtime.precision import resolve_precision
from landscape_job.spec.sections import ComputeSpec, DataSpec, DirectionsSpec, HessianSpec
from landscape_job.spec.parse import parse_spec

OPTIONS = {"shape": [1, 8, 8], "classes": 4, "train_size": 300, "test_size": 50, "seed": 4}
POINTS = [(0.0, 0.0), (0.3, -0.2), (-0.7, 0.5), (1.0, 1.0)]

#: The largest relative loss deviation of fp16 (CPU autocast) from fp32 measured: 3.07e-3 with
#: benchmarks/precision_deviation.py on the demo's digits CNN (121 of its 31x31 grid points,
#: corners included) and 1.01e-3 with benchmarks/evaluator_speed.py on ResNet-20
#: (docs/performance.md); rounded up.
FP16_DEVIATION = 3.1e-3


def _cnn(path: Path) -> nn.Module:
    model = build_model("cnn", 4, (1, 8, 8), {"channels": [4, 6]})
    load_into(model, load_state_dict(path), str(path))
    return model.eval()


def _setup(tmp_path: Path) -> tuple[Path, Split, Directions]:
    path = save_cnn_checkpoint(tmp_path / "a.pt", seed=0)
    split = load_split(DataSpec(dataset="synthetic", options=OPTIONS), "train")
    directions = build_directions(DirectionsSpec(type="random", seed=3), _cnn(path), two_d=True)
    return path, split, directions


# -- fp16 --------------------------------------------------------------------------------


def test_fp16_surface_stays_within_the_measured_deviation_of_fp32(tmp_path: Path) -> None:
    path, split, directions = _setup(tmp_path)
    fp32 = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="fp32"))
    fp16 = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="fp16"))
    low, full = fp16.evaluate_many(POINTS), fp32.evaluate_many(POINTS)
    for point, a, b in zip(POINTS, low, full):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=FP16_DEVIATION), point
    # fp16 really ran: a no-op autocast would pass the bound trivially.
    assert any(a["train_loss"] != b["train_loss"] for a, b in zip(low, full))
    assert fp16.nonfinite == [] and fp16.precision == "fp16"


def test_fp16_stacked_points_equal_one_point_at_a_time_within_rounding(tmp_path: Path) -> None:
    path, split, directions = _setup(tmp_path)
    single = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="fp16", points_per_forward=1))
    stacked = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="fp16", points_per_forward=3))
    for a, b in zip(single.evaluate_many(POINTS), stacked.evaluate_many(POINTS)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=FP16_DEVIATION)


class _Scaled(nn.Module):
    """Logits = scale · (W x): a large enough scale (set by the direction) overflows fp16's 65504."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)
        torch.manual_seed(0)
        nn.init.normal_(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_non_finite_fp16_logits_are_reported_per_point_and_not_averaged() -> None:
    model = _Scaled()
    split = Split(torch.randn(40, 6, generator=torch.Generator().manual_seed(1)),
                  torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(2)), 3, "train")
    # Along x the weights grow 1e5-fold by a = 1: every logit leaves fp16's range there.
    x = [model.linear.weight.detach() * 1e5, torch.zeros(3)]
    directions = Directions(dir_type="weights", names=["linear.weight", "linear.bias"], x=x, y=[torch.zeros_like(t) for t in x])
    for k in (1, 2):
        evaluator = Evaluator(model, directions, [split], compute=ComputeSpec(precision="fp16", points_per_forward=k))
        near, far = evaluator.evaluate_many([(0.0, 0.0), (1.0, 0.0)])
        assert math.isfinite(near["train_loss"]) and math.isfinite(near["train_acc"])
        # Not a mean over an inf, not an accuracy over garbage: NaN, and the point is named.
        assert math.isnan(far["train_loss"]) and math.isnan(far["train_acc"])
        assert evaluator.nonfinite == [(1.0, 0.0, 40)]
    # fp32 has the range: the same point is finite there, and nothing is reported.
    fp32 = Evaluator(model, directions, [split], compute=ComputeSpec(precision="fp32"))
    assert math.isfinite(fp32.evaluate(1.0, 0.0)["train_loss"]) and fp32.nonfinite == []


@pytest.mark.slow
def test_the_hessian_is_taken_in_fp32_under_fp16() -> None:
    """No autocast around the Lanczos probe: a second derivative through fp16 rounding is noise."""
    torch.manual_seed(0)
    split = Split(torch.randn(64, 6), torch.randint(0, 3, (64,)), 3, "train")

    def run(precision: str) -> dict[str, float]:
        torch.manual_seed(0)
        model = build_model("mlp", 3, (6,), {"hidden": [5]}).eval()
        directions = build_directions(DirectionsSpec(type="random", seed=1), model, two_d=True)
        evaluator = Evaluator(model, directions, [split], compute=ComputeSpec(precision=precision),
                              metrics=("loss", "hessian"), hessian=HessianSpec(iterations=20), hessian_split=split)
        assert evaluator.curvature is not None and all(
            p.dtype == torch.float32 for p in evaluator.curvature.model.parameters())
        return evaluator.evaluate(0.2, -0.1)

    fp16, fp32 = run("fp16"), run("fp32")
    assert fp16["max_eig"] == fp32["max_eig"] and fp16["min_eig"] == fp32["min_eig"]
    assert fp16["train_loss"] != fp32["train_loss"]


# -- auto, and bf16 where it is not native ------------------------------------------------


@pytest.mark.parametrize("asked, device, capability, chosen", [
    ("auto", "cpu", None, "fp32"),
    ("auto", "cuda", (9, 0), "bf16"),   # H100
    ("auto", "cuda", (8, 0), "bf16"),   # A100
    ("auto", "cuda", (8, 9), "bf16"),   # L4
    ("auto", "cuda", (7, 5), "fp16"),   # T4
    ("auto", "cuda", (7, 0), "fp16"),   # V100
    ("fp16", "cuda", (7, 0), "fp16"),
    ("bf16", "cuda", (8, 0), "bf16"),
    ("bf16", "cpu", None, "bf16"),      # allowed (slow; docs/performance.md says so)
    ("fp32", "cuda", (7, 0), "fp32"),
])
def test_precision_auto_follows_the_device(asked: str, device: str, capability, chosen: str) -> None:
    choice = resolve_precision(asked, device, capability)
    assert choice.precision == chosen
    assert choice.reason.startswith("auto:") == (asked == "auto")


def test_bf16_on_a_gpu_without_native_bf16_is_one_line() -> None:
    with pytest.raises(UserError) as err:
        resolve_precision("bf16", "cuda", (7, 0))
    message = str(err.value)
    assert message.startswith("compute.precision: bf16 is not native on this GPU (compute capability 7.0")
    assert "use fp16 or auto" in message and "\n" not in message


def test_the_evaluator_resolves_auto_on_the_cpu(tmp_path: Path) -> None:
    path, split, directions = _setup(tmp_path)
    evaluator = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="auto", batch_size="auto"))
    assert evaluator.precision == "fp32" and evaluator.precision_choice.reason.startswith("auto: fp32 on cpu")
    assert evaluator.batch_size == CPU_AUTO_BATCH == resolve_batch_size("auto", "cpu")
    assert resolve_batch_size(300, "cuda") == 300


def _raw(precision: str | None = None, batch_size: int | str | None = None) -> dict:
    compute: dict = {"shards": 16}
    if precision is not None:
        compute["precision"] = precision
    if batch_size is not None:
        compute["batch_size"] = batch_size
    return {"name": "pinned", "model": {"arch": "resnet56", "checkpoint": "/data/model.t7"},
            "data": {"dataset": "cifar10", "root": "/data/cifar10"},
            "grid": {"x": "-1:1:51", "y": "-1:1:51"}, "compute": compute}


def test_fp16_and_auto_have_their_own_spec_hash_and_old_hashes_stay() -> None:
    hashes = {p: parse_spec(_raw(p), base_dir=Path("/"), check_files=False).hash
              for p in ("fp32", "tf32", "bf16", "fp16", "fp64", "auto")}
    assert len(set(hashes.values())) == len(hashes)
    # The pinned hash of the first release (tests/spec/test_spec.py) is unchanged by the new choices.
    assert hashes["bf16"] == "3e464f4f41f4b5f4fdffa14be4536b40757cc1f87b070010304770752b6260c9"
    assert parse_spec(_raw("fp32", 1024), base_dir=Path("/"), check_files=False).hash == hashes["fp32"]


def test_batch_size_auto_is_accepted_and_nonsense_is_one_line() -> None:
    spec = parse_spec(_raw(batch_size="auto"), base_dir=Path("/"), check_files=False)
    assert spec.compute.batch_size == "auto"
    with pytest.raises(UserError, match=r"^compute.batch_size: expected auto or a positive integer, got a string 'big'$"):
        parse_spec(_raw(batch_size="big"), base_dir=Path("/"), check_files=False)


# -- out of memory: halve the batch, keep going -------------------------------------------


class _FullGpu(nn.Module):
    """The test CNN, but a batch above ``limit`` raises CUDA's out-of-memory error, as a full GPU does."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit
        self.refused = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            self.refused += 1
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated): batch {x.shape[0]} > {self.limit}")
        return self.inner(x)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2])
def test_an_out_of_memory_batch_is_halved_and_the_surface_is_the_exact_fp32_one(tmp_path: Path, k: int) -> None:
    path, split, directions = _setup(tmp_path)
    full = _FullGpu(_cnn(path), limit=80)
    wrapped = Directions(directions.dir_type, [f"inner.{n}" for n in directions.names], directions.x, directions.y)
    evaluator = Evaluator(full, wrapped, [split], compute=ComputeSpec(precision="fp32", batch_size=300,
                                                                      points_per_forward=k))
    values = evaluator.evaluate_many(POINTS)
    assert evaluator.batch_size == 75 and evaluator.oom_halvings == 2 and full.refused >= 2
    # Exactly the surface a run at the batch that fits computes, bit for bit ...
    fitting = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="fp32", batch_size=75,
                                                                           points_per_forward=k))
    assert values == fitting.evaluate_many(POINTS)
    # ... and the asked-for batch's surface up to float rounding (the exact mean either way).
    asked = Evaluator(_cnn(path), directions, [split], compute=ComputeSpec(precision="fp32", batch_size=300,
                                                                         points_per_forward=k))
    for a, b in zip(values, asked.evaluate_many(POINTS)):
        assert a == pytest.approx(b, rel=1e-6)


def test_out_of_memory_at_batch_one_still_fails(tmp_path: Path) -> None:
    path, split, directions = _setup(tmp_path)
    wrapped = Directions(directions.dir_type, [f"inner.{n}" for n in directions.names], directions.x, directions.y)
    evaluator = Evaluator(_FullGpu(_cnn(path), limit=0), wrapped, [split], compute=ComputeSpec(batch_size=4))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        evaluator.evaluate(0.0, 0.0)
    assert evaluator.batch_size == 1


# -- the GPU check's table rows (the part of benchmarks/gpu_check.sh a CPU can run) ----------


def _gpu_rows():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_rows.py"
    spec = importlib.util.spec_from_file_location("gpu_rows", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: benchmarks/evaluator_speed.py's output for ResNet-20 in fp16 on this project's CPU (docs/performance.md).
SPEED_OUTPUT = """machine: x86_64, torch 2.14.1+cu130, threads 2, device cpu
model resnet20, 200 images 3x32x32, precision fp16
evaluator: 1 point(s) per forward, data resident, channels_last False, compile off
bare forward by batch size (median of 2 after a warm-up): 100: 14.7701s
ceiling (batch 100, median of 2 interleaved): 50.7659 s/pass
evaluator: 51.0819 s/point = 0.02 points/s
ratio evaluator/ceiling: 1.006
peak memory: 739 MiB
largest relative loss deviation from fp32: 1.01e-03
"""


def test_gpu_check_rows_from_the_benchmark_output() -> None:
    rows = _gpu_rows()
    assert rows.row(SPEED_OUTPUT, "ResNet-20, T4", "fp16") == \
        "| ResNet-20, T4 | fp16 | 50.7659 | 51.0819 | 1.006 | 1.01e-03 | 739 MiB |"
    fp32 = SPEED_OUTPUT.replace("largest relative loss deviation from fp32: 1.01e-03\n", "")
    assert rows.row(fp32, "m", "fp32") == "| m | fp32 | 50.7659 | 51.0819 | 1.006 | (reference) | 739 MiB |"
    refused = "precision refused: compute.precision: bf16 is not native on this GPU (compute capability 7.0; ...)\n"
    assert rows.row(refused, "m", "bf16").startswith("| m | bf16 | refused: compute.precision: bf16 is not native")
    assert "failed (no ceiling" in rows.row("Traceback ...", "m", "fp16")


def test_the_dtype_and_the_reasons_each_choice_gives(monkeypatch) -> None:
    from landscape_job.base.errors import UserError
    from landscape_job.runtime.precision import compute_dtype, device_capability, resolve_precision

    assert compute_dtype("fp64") == torch.float64 and compute_dtype("fp64", "bf16") == torch.float64
    assert compute_dtype("bf16") == torch.float32 and compute_dtype("fp32", "bf16") == torch.bfloat16
    assert compute_dtype("fp16", "fp16") == torch.float16 and compute_dtype("tf32", "int8") == torch.float32
    assert resolve_precision("fp16", "cuda", (7, 0)).reason == "as the spec says"
    assert resolve_precision("auto", "cpu", None).reason == \
        "auto: fp32 on cpu (reduced precision is slower on CPUs without bf16/fp16 hardware)"
    with pytest.raises(UserError) as info:
        resolve_precision("bf16", "cuda", (7, 5))
    assert str(info.value) == ("compute.precision: bf16 is not native on this GPU (compute capability 7.5; bf16 needs "
                               "8.0, Ampere or later) and would run many times slower; use fp16 or auto")
    asked: list = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: asked.append(device) or [8, 9])
    gpu = torch.device("cuda", 2)
    assert device_capability(gpu) == (8, 9) and asked == [gpu]
    assert device_capability(torch.device("cpu")) is None and len(asked) == 1
