"""The speed options change how fast the numbers come, not the numbers.

K points per vmapped forward equal K = 1 (BatchNorm with running statistics, both
direction types, a point count that is not a multiple of K, through the stages with
checkpointing and resume); streamed data equals resident data exactly; channels_last
equals the default layout; the spec keys are validated and kept out of the spec hash.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import checkpointed_points, run_all, spec_from
from landscape_job import stages
from landscape_job.datasets.builtin import load_split
from landscape_job.surface.direction_builders import build_directions
from landscape_job.base.errors import UserError
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.evaluator_setup import decide_channels_last
from landscape_job.surface.feed import decide_resident
from landscape_job.models import build_model
from landscape_job.spec.sections import ComputeSpec, DataSpec, DirectionsSpec
from launcher.local.runner import open_run

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
IMAGES = {"shape": [3, 8, 8], "classes": 4, "train_size": 70, "test_size": 20, "seed": 5}
#: 7 points: K = 3 leaves a group of one, K = 4 a group of three.
POINTS = [(0.0, 0.0), (0.4, -0.3), (-0.8, 0.5), (1.0, 1.0), (-0.2, -0.9), (0.6, 0.1), (0.05, 0.7)]


def _resnet(seed: int = 0) -> torch.nn.Module:
    """ResNet-20 with non-trivial BatchNorm running statistics (random ones are 0 and 1)."""
    torch.manual_seed(seed)
    model = build_model("resnet20", IMAGES["classes"], tuple(IMAGES["shape"]))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *IMAGES["shape"]) * 1.5 + 0.3)
    return model.eval()


def _evaluator(dir_type: str, **options) -> Evaluator:
    model = _resnet()
    directions = build_directions(DirectionsSpec(type="random", dir_type=dir_type, ignore="none", seed=3),
                                  model, two_d=True)
    splits = [load_split(DataSpec(dataset="synthetic", options=IMAGES), name) for name in ("train", "test")]
    return Evaluator(model, directions, splits, compute=ComputeSpec(precision="fp32", batch_size=32, **options))


def _assert_close(got: list[dict], want: list[dict], rel: float) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.keys() == w.keys()
        for name in w:
            if name.endswith("_acc"):
                # A sample whose top two logits tie to ~1e-7 could flip; none do on this data.
                assert g[name] == w[name], (i, name)
            else:
                # nan_ok: dir_type states moves BN running variances, which can go negative.
                assert g[name] == pytest.approx(w[name], rel=rel, nan_ok=True), (i, name)


@pytest.mark.slow
@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_stacked_points_equal_one_point_at_a_time_with_batchnorm(dir_type: str) -> None:
    reference = _evaluator(dir_type, points_per_forward=1).evaluate_many(POINTS)
    for k in (3, 4):
        stacked = _evaluator(dir_type, points_per_forward=k)
        _assert_close(stacked.evaluate_many(POINTS), reference, rel=1e-6)
    # The evaluator's model is back at θ* afterwards: the centre point still matches.
    assert stacked.evaluate(0.0, 0.0)["train_loss"] == pytest.approx(reference[0]["train_loss"], rel=1e-6)
    # The points differ from each other, so a group that evaluated one point K times would fail.
    finite = [r["train_loss"] for r in reference if np.isfinite(r["train_loss"])]
    assert len(finite) >= 5 and len({round(v, 5) for v in finite}) == len(finite)


def test_auto_points_per_forward_is_one_on_cpu() -> None:
    evaluator = _evaluator("weights")
    evaluator.warm_up()
    assert evaluator.points_per_forward == 1


@pytest.mark.slow
def test_streamed_data_equals_resident_data_exactly() -> None:
    for k in (1, 3):
        resident = _evaluator("weights", points_per_forward=k, data_on_device=True)
        streamed = _evaluator("weights", points_per_forward=k, data_on_device=False)
        assert resident.data_resident and not streamed.data_resident
        assert streamed.evaluate_many(POINTS) == resident.evaluate_many(POINTS)


@pytest.mark.slow
def test_channels_last_equals_the_default_layout() -> None:
    default = _evaluator("states", channels_last=False)
    nhwc = _evaluator("states", channels_last=True)
    assert nhwc.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_close(nhwc.evaluate_many(POINTS[:4]), default.evaluate_many(POINTS[:4]), rel=1e-6)


def test_auto_rules() -> None:
    assert decide_resident("auto", 10**9, None)  # host memory: always resident
    assert decide_resident("auto", 4 * 2**30, 10 * 2**30)
    assert not decide_resident("auto", 6 * 2**30, 10 * 2**30)  # leaves too little for activations
    assert decide_resident(True, 10**12, 1) and not decide_resident(False, 1, 10**12)
    assert decide_channels_last("auto", "cuda", 4, True)
    assert not decide_channels_last("auto", "cpu", 4, True)
    assert not decide_channels_last("auto", "cuda", 2, False)
    assert decide_channels_last(True, "cpu", 4, True)


def _surface(tmp_path: Path, raw: dict, run_id: str) -> dict[str, np.ndarray]:
    spec = spec_from(tmp_path, raw)
    run_all(open_run(spec, run_id), spec.compute.shards)
    with h5py.File(tmp_path / "runs" / run_id / "surface.h5") as f:
        return {m: f[m][()] for m in METRICS}


@pytest.mark.slow
def test_stages_group_points_and_give_the_same_surface(tmp_path: Path, linear_spec: dict) -> None:
    """20 points in 3 shards (7, 7, 6) at K = 4: every shard ends on a short group."""
    linear_spec["compute"].update({"precision": "fp32", "shards": 3})
    reference = _surface(tmp_path, linear_spec, "k1")
    # Streamed data and channels_last (a no-op for 2-D inputs) ride along: they must not break a plain MLP.
    linear_spec["compute"].update({"points_per_forward": 4, "data_on_device": False, "channels_last": True})
    stacked = _surface(tmp_path, linear_spec, "k4")
    for metric in METRICS:
        np.testing.assert_allclose(stacked[metric], reference[metric], rtol=1e-6, err_msg=metric)
    report = __import__("json").loads((tmp_path / "runs/k4/report.json").read_text())
    assert {s["points_per_forward"] for s in report["shards"]} == {4}
    assert {s["compile_seconds"] for s in report["shards"]} == {0.0} and report["compile_seconds"] == 0.0


@pytest.mark.slow
def test_stacked_worker_resumes_from_its_checkpoint(tmp_path: Path, linear_spec: dict) -> None:
    """K = 4, checkpoint every 3 points: a worker killed in its third group has saved after
    each of the first two groups (8 points), and the resumed shard equals an unbroken run."""
    from landscape_job.surface.evaluator import Evaluator as EvaluatorClass

    linear_spec["compute"].update({"precision": "fp32", "checkpoint_every": 3, "points_per_forward": 4,
                                   "checkpoint_adapt": False})
    reference = _surface(tmp_path, linear_spec, "whole")
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "killed")
    stages.prepare(run, log=lambda _: None)
    original = EvaluatorClass.evaluate_many
    calls = {"n": 0}

    def dying(self, points):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, points)

    EvaluatorClass.evaluate_many = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            stages.evaluate(run, 0, log=lambda _: None)
    finally:
        EvaluatorClass.evaluate_many = original
    assert checkpointed_points(run, 0, 1) == 8
    stats = stages.evaluate(run, 0, log=lambda _: None)
    assert stats.points_resumed == 8 and stats.points_computed == spec.grid.size - 8
    stages.merge(run, log=lambda _: None, plots=False)
    with h5py.File(tmp_path / "runs/killed/surface.h5") as f:
        for metric in METRICS:
            np.testing.assert_array_equal(f[metric][()], reference[metric])


@pytest.mark.parametrize("key, value, message", [
    ("points_per_forward", 0, r"compute\.points_per_forward: expected auto or a positive integer, got an integer 0"),
    ("points_per_forward", "many", r"compute\.points_per_forward: expected auto or a positive integer"),
    ("points_per_forward", True, r"compute\.points_per_forward: expected auto or a positive integer, got a boolean"),
    ("data_on_device", "yes", r"compute\.data_on_device: expected auto, true or false, got a string 'yes'"),
    ("channels_last", 1, r"compute\.channels_last: expected auto, true or false"),
    ("compile", "auto", r"compute\.compile: expected a boolean"),
])
def test_bad_speed_keys_are_named(tmp_path: Path, linear_spec: dict, key: str, value, message: str) -> None:
    linear_spec["compute"][key] = value
    with pytest.raises(UserError, match=message):
        spec_from(tmp_path, linear_spec)


def test_speed_keys_round_trip_and_stay_out_of_the_hash(tmp_path: Path, linear_spec: dict) -> None:
    plain = spec_from(tmp_path, linear_spec)
    assert plain.compute.points_per_forward == "auto" and plain.compute.data_on_device == "auto"
    assert plain.compute.channels_last == "auto" and plain.compute.compile is False
    linear_spec["compute"].update({"points_per_forward": 8, "data_on_device": False, "channels_last": True,
                                   "compile": True})
    fast = spec_from(tmp_path, linear_spec)
    assert fast.compute.points_per_forward == 8 and fast.compute.data_on_device is False
    assert spec_from(tmp_path, fast.to_dict()).to_dict() == fast.to_dict()
    assert fast.hash == plain.hash  # a run may resume or re-shard with other speed settings
    linear_spec["compute"]["precision"] = "fp32"
    assert spec_from(tmp_path, linear_spec).hash != plain.hash  # precision changes the numbers


@pytest.mark.slow
def test_compiled_forward_gives_the_same_losses() -> None:
    """torch.compile must see θ change in place between points (a compiled graph that froze
    the parameters would return the centre's loss everywhere); compile time is measured apart."""
    torch.manual_seed(0)
    options = {"shape": [6], "classes": 3, "train_size": 40, "test_size": 10, "seed": 3}
    split = load_split(DataSpec(dataset="synthetic", options=options), "train")

    def evaluator(compile: bool) -> Evaluator:
        torch.manual_seed(0)
        model = build_model("mlp", 3, (6,), {"hidden": []}).eval()
        directions = build_directions(DirectionsSpec(type="random", seed=3, ignore="none"), model, two_d=True)
        return Evaluator(model, directions, [split],
                         compute=ComputeSpec(precision="fp32", batch_size=20, points_per_forward=1, compile=compile))

    compiled = evaluator(True)
    compiled.warm_up()
    assert compiled.compile_seconds > 0
    _assert_close(compiled.evaluate_many(POINTS[:4]), evaluator(False).evaluate_many(POINTS[:4]), rel=1e-6)


#: The largest relative loss deviation of bf16 from fp32 that benchmarks/evaluator_speed.py
#: printed for ResNet-20 (docs/performance.md); bf16 must stay within it on the test models too.
BF16_DEVIATION = 1.7e-3


@pytest.mark.slow
def test_bf16_stacked_points_stay_within_the_benchmarked_deviation(tmp_path: Path) -> None:
    from conftest import save_cnn_checkpoint
    from landscape_job.models.checkpoints import load_into, load_state_dict

    path = save_cnn_checkpoint(tmp_path / "a.pt", seed=0)
    split = load_split(DataSpec(dataset="synthetic", options={"shape": [1, 8, 8], "classes": 4, "train_size": 300,
                                                      "test_size": 50, "seed": 4}), "train")

    def evaluator(precision: str) -> Evaluator:
        model = build_model("cnn", 4, (1, 8, 8), {"channels": [4, 6]})
        load_into(model, load_state_dict(path), str(path))
        directions = build_directions(DirectionsSpec(type="random", seed=3), model.eval(), two_d=True)
        return Evaluator(model, directions, [split],
                         compute=ComputeSpec(precision=precision, batch_size=128, points_per_forward=3))

    fp32 = evaluator("fp32").evaluate_many(POINTS)
    bf16 = evaluator("bf16").evaluate_many(POINTS)
    for i, (low, full) in enumerate(zip(bf16, fp32)):
        assert low["train_loss"] == pytest.approx(full["train_loss"], rel=BF16_DEVIATION), i
    # bf16 really ran: its losses differ from fp32's (a no-op autocast would pass the bound trivially).
    assert any(low["train_loss"] != full["train_loss"] for low, full in zip(bf16, fp32))


@pytest.mark.slow
def test_stacked_points_keep_the_specs_metrics_and_the_hessian(tmp_path: Path, linear_spec: dict) -> None:
    """K > 1 groups only the forward passes: metrics: [loss, hessian] gives the K = 1 surface, no accuracy."""
    linear_spec["compute"].update({"precision": "fp64", "shards": 2})
    linear_spec["grid"] = {"x": "-1:1:3", "y": "-1:1:3"}
    linear_spec["metrics"] = ["loss", "hessian"]
    linear_spec["hessian"] = {"trace_samples": 0}
    names = ("train_loss", "test_loss", "max_eig", "min_eig")
    surfaces = {}
    for k in (1, 4):
        linear_spec["compute"]["points_per_forward"] = k
        spec = spec_from(tmp_path, linear_spec)
        run_all(open_run(spec, f"k{k}"), spec.compute.shards)
        with h5py.File(tmp_path / "runs" / f"k{k}" / "surface.h5") as f:
            assert "train_acc" not in f and "test_acc" not in f
            surfaces[k] = {m: f[m][()] for m in names}
    for m in names:
        np.testing.assert_allclose(surfaces[4][m], surfaces[1][m], rtol=1e-9, err_msg=m)
    assert np.all(surfaces[1]["max_eig"] > 0)
