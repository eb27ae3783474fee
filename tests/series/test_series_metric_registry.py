"""A per-checkpoint metric added in one place goes all the way.

Three metrics of their own computation are declared and registered here, in this module
only (``SeriesMetric(source="own", compute=...)``): the mean prediction entropy of each
split (``split``), the norm of all weights (``scalar``) and of each tensor the Hessian is
taken over (``layers``). The spec accepts their choices, the real series evaluator computes
them on two shards, merge stacks them into ``series.h5`` and the page labels them; the
values are checked against numpy on each checkpoint's own weights.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SYNTHETIC, run_all, save_linear_checkpoint, spec_from
from landscape_job.base.errors import UserError
from landscape_job.datasets.builtin import load_split
from landscape_job.series.file import load_series
from landscape_job.series.page import series_payload
from landscape_job.spec import series_metrics
from landscape_job.spec.sections import DataSpec
from landscape_job.spec.series_metrics import SeriesMetric
from launcher.local.runner import open_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _entropy(at) -> float:
    """The split's mean entropy of the predicted class distribution (nats)."""
    with torch.no_grad():
        logits = at.model(at.split.inputs.to(next(at.model.parameters())))
    return float(-(F.softmax(logits, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1).mean())


def _weight_norm(at) -> float:
    return float(torch.sqrt(sum((p.detach() ** 2).sum() for p in at.model.parameters())))


def _tensor_norms(at) -> list[float]:
    return [float(p.detach().norm()) for p in at.model.parameters()]  # hessian.ignore: none, every tensor


OWN = (
    SeriesMetric("entropy", "entropy", "prediction entropy", "split", "own", unit="nats", compute=_entropy),
    SeriesMetric("weight_norm", "weights", "‖θ‖", "scalar", "own", compute=_weight_norm),
    SeriesMetric("tensor_norms", "weights", "‖θ‖ per tensor", "layers", "own", compute=_tensor_norms),
)


@pytest.fixture
def own_metrics():
    for metric in OWN:
        series_metrics.register(metric)
    yield OWN
    for metric in OWN:
        series_metrics.unregister(metric.key)


def _raw(tmp_path: Path, metrics: list[str]) -> dict:
    (tmp_path / "ck").mkdir(exist_ok=True)
    for step, seed in ((0, 0), (10, 1), (20, 2)):
        save_linear_checkpoint(tmp_path / "ck" / f"step_{step}.pt", seed, hidden=[5])
    return {
        "name": "own", "model": {"arch": "mlp", "kwargs": {"hidden": [5]}},
        "data": {"dataset": "synthetic", "options": dict(SYNTHETIC)},
        "series": {"checkpoints": "ck/step_*.pt", "lr": 0.5, "metrics": metrics},
        "hessian": {"ignore": "none"},
        "compute": {"shards": 2, "precision": "fp64", "batch_size": 32},
        "storage": "runs",
    }


def _numpy_entropy(X: np.ndarray, state: list[np.ndarray]) -> float:
    W1, b1, W2, b2 = state
    logits = np.maximum(X @ W1.T + b1, 0) @ W2.T + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(np.exp(log_p) * log_p).sum(axis=1).mean())


@pytest.mark.slow
def test_a_registered_series_metric_is_computed_stored_and_labelled(tmp_path: Path, own_metrics) -> None:
    spec = spec_from(tmp_path, _raw(tmp_path, ["loss", "entropy", "weights"]))
    assert spec.series.metrics == ("loss", "entropy", "weights")
    run_all(open_run(spec, "own"), spec.compute.shards)
    root = tmp_path / "runs/own"
    with h5py.File(root / "series.h5") as f:
        data = {k: f[k][()] for k in f if k != "checkpoint"}
    assert {"train_entropy", "test_entropy", "weight_norm", "tensor_norms", "train_loss"} <= set(data)
    assert data["tensor_norms"].shape == (3, 4) and data["weight_norm"].shape == (3,)

    # Independent truth: numpy on each checkpoint's own weights and the data sets.
    inputs = {s: load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), s).inputs.double().numpy()
              for s in ("train", "test")}
    for row, step in enumerate(data["step"]):
        state = [t.double().numpy() for t in
                 torch.load(tmp_path / "ck" / f"step_{step}.pt", weights_only=True)["state_dict"].values()]
        norms = [np.linalg.norm(t) for t in state]
        np.testing.assert_allclose(data["tensor_norms"][row], norms, rtol=1e-12)
        assert data["weight_norm"][row] == pytest.approx(np.sqrt(sum(n ** 2 for n in norms)), rel=1e-12)
        for split, X in inputs.items():
            assert data[f"{split}_entropy"][row] == pytest.approx(_numpy_entropy(X, state), rel=1e-10), (split, step)

    fields = series_payload(load_series(root / "series.h5"))["fields"]
    assert fields["test_entropy"]["label"] == "test prediction entropy (nats)"
    assert fields["tensor_norms"]["label"] == "‖θ‖ per tensor" and fields["tensor_norms"]["columns"]


def test_an_unregistered_choice_is_refused_and_a_registered_one_accepted(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["loss", "entropy"])
    with pytest.raises(UserError, match=r"series\.metrics\[1\]: expected one of .*; got 'entropy'"):
        spec_from(tmp_path, raw)
    series_metrics.register(OWN[0])
    assert spec_from(tmp_path, raw).series.metrics == ("loss", "entropy")


def test_a_computation_is_declared_with_source_own_and_gives_its_rows_width(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source 'own'"):
        SeriesMetric("x", "x", "x", "scalar", "lanczos", compute=_weight_norm)
    with pytest.raises(ValueError, match="source 'own'"):
        SeriesMetric("x", "x", "x", "scalar", "own")
    from landscape_job.series.probe import Checkpoint, own_columns
    from landscape_job.spec.sections import HessianSpec
    from landscape_job.spec.series import SeriesSpec

    model = torch.nn.Linear(2, 3).double()
    split = load_split(DataSpec(dataset="synthetic", options={**SYNTHETIC, "shape": [2]}), "test")
    at = Checkpoint(model, [split], split, SeriesSpec(checkpoints=("x",), lr=0.1, top_k=3),
                    HessianSpec(ignore="none"), "cross_entropy", 8)
    three = SeriesMetric("three", "three", "three", "top_k", "own", compute=lambda _at: [3.0, 2.0, 1.0])
    assert own_columns(three, at) == {"three[0]": 3.0, "three[1]": 2.0, "three[2]": 1.0}
    two = SeriesMetric("two", "two", "two", "top_k", "own", compute=lambda _at: [3.0, 2.0])
    # The metric's code, not a passing fault: one line, exit 2 (UserError), never retried.
    with pytest.raises(UserError, match="^series metric two: compute gave 2 values; a top_k row has 3"):
        own_columns(two, at)
