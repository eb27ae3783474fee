"""The evaluator's fast path (device-resident data, in-place foreach perturbation) equals a
plain reference: a fresh model per point loaded with θ* + aδ + bη, a DataLoader, the
paper's mean-times-batch-size accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from conftest import save_cnn_checkpoint
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.datasets.builtin import Split, load_split
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.directions import named_tensors
from landscape_job.surface.evaluator import Evaluator
from landscape_job.models import build_model
from landscape_job.spec.sections import ComputeSpec, DataSpec, DirectionsSpec

OPTIONS = {"shape": [1, 8, 8], "classes": 4, "train_size": 300, "test_size": 50, "seed": 4}
POINTS = [(0.0, 0.0), (0.3, -0.2), (-0.7, 0.5), (1.0, 1.0)]


def _model(path: Path) -> torch.nn.Module:
    model = build_model("cnn", 4, (1, 8, 8), {"channels": [4, 6]})
    load_into(model, load_state_dict(path), str(path))
    return model.eval()


def _plain_loss(path: Path, dir_type: str, directions, a: float, b: float, split: Split) -> float:
    model = _model(path)
    named = named_tensors(model, dir_type)
    state = model.state_dict()
    for (name, centre), dx, dy in zip(named, directions.x, directions.y):
        if torch.is_floating_point(centre):
            state[name] = centre + a * dx + b * dy
    model.load_state_dict(state)
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, labels in DataLoader(TensorDataset(split.inputs, split.labels), batch_size=64):
            total += F.cross_entropy(model(inputs), labels).item() * len(labels)
            count += len(labels)
    return total / count


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_fast_path_equals_plain_path_in_fp32(tmp_path: Path, dir_type: str) -> None:
    path = save_cnn_checkpoint(tmp_path / "a.pt", seed=0)
    split = load_split(DataSpec(dataset="synthetic", options=OPTIONS), "train")
    directions = build_directions(DirectionsSpec(type="random", dir_type=dir_type, ignore="none", seed=3),
                                  _model(path), two_d=True)
    evaluator = Evaluator(_model(path), directions, [split], compute=ComputeSpec(precision="fp32", batch_size=128))
    for a, b in POINTS:
        fast = evaluator.evaluate(a, b)["train_loss"]
        assert fast == pytest.approx(_plain_loss(path, dir_type, directions, a, b, split), rel=1e-6), (a, b)


def test_bf16_stays_close_to_fp32(tmp_path: Path) -> None:
    """bf16 keeps 8 bits of mantissa: the loss moves by at most the deviation that
    benchmarks/evaluator_speed.py printed for ResNet-20 (1.7e-3, docs/performance.md)."""
    path = save_cnn_checkpoint(tmp_path / "a.pt", seed=0)
    split = load_split(DataSpec(dataset="synthetic", options=OPTIONS), "train")
    directions = build_directions(DirectionsSpec(type="random", seed=3), _model(path), two_d=True)
    fp32 = Evaluator(_model(path), directions, [split], compute=ComputeSpec(precision="fp32"))
    bf16 = Evaluator(_model(path), directions, [split], compute=ComputeSpec(precision="bf16"))
    for a, b in POINTS:
        reference = fp32.evaluate(a, b)["train_loss"]
        assert bf16.evaluate(a, b)["train_loss"] == pytest.approx(reference, rel=1.7e-3), (a, b)
