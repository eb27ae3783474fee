"""Regression (issue 15, point 3): float targets, MSE or a python: loss, and custom metrics.

A linear model's squared error along θ* + α·d + β·e is a quadratic in (α, β) that numpy
computes exactly from X, y and the run's own direction file: the surface must match it
to 1e-10 in fp64. Accuracy is skipped with a note; a metric from the user's code is
computed per split like a built-in one (here the mean absolute error, also in closed form).
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import run_all, spec_from, write_spec
from landscape_job.spec import metrics as registry
from landscape_job.storage import run_storage
from launcher.cli import main as launcher

MODULE = '''
import torch
from torch import nn

def linear(inputs=5, outputs=1):
    return nn.Linear(inputs, outputs)

def mae(outputs, targets):          # one value per sample
    return (outputs.reshape(len(targets), -1) - targets.reshape(len(targets), -1)).abs().mean(dim=1)
mae.better = "min"

def half_mse(outputs, targets):     # a batch mean, as torch's losses return
    return 0.5 * ((outputs.reshape(targets.shape) - targets) ** 2).mean()
'''


@pytest.fixture(autouse=True)
def _forget_python_metrics():
    """A python: metric stays registered in its process (a pod runs one spec); tests run many."""
    before = {m.key for m in registry.registered()}
    yield
    for metric in registry.registered():
        if metric.key not in before:
            registry.unregister(metric.key)


def _data(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, k))
    y = x @ w + 0.3 * rng.normal(size=(n, k)) + 0.5
    return x, (y[:, 0] if k == 1 else y)


@pytest.fixture
def regression(tmp_path: Path) -> dict:
    """Least squares θ* (fitted on train) of a linear model, float64 targets in train.pt / test.pt."""
    (tmp_path / "lsj_regression.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "data").mkdir()
    for split, seed in (("train", 0), ("test", 1)):
        x, y = _data(80 if split == "train" else 30, 5, 1, seed)
        torch.save({"inputs": torch.from_numpy(x), "labels": torch.from_numpy(y)}, tmp_path / "data" / f"{split}.pt")
    x, y = _data(80, 5, 1, 0)
    design = np.c_[x, np.ones(len(x))]
    theta = np.linalg.lstsq(design, y, rcond=None)[0]
    torch.save({"weight": torch.from_numpy(theta[:5]).reshape(1, 5), "bias": torch.from_numpy(theta[5:])},
               tmp_path / "theta.pt")
    return {
        "name": "regression",
        "model": {"arch": "python:lsj_regression:linear", "checkpoint": "theta.pt"},
        "data": {"dataset": "tensors", "root": "data"},
        "loss": "mse",
        "metrics": ["loss", "accuracy"],
        "directions": {"type": "random", "seed": 3, "ignore": "none"},
        "grid": {"x": "-1:1:7", "y": "-0.5:1.5:5"},
        "compute": {"precision": "fp64", "batch_size": 32},
        "python": {"path": [str(tmp_path)]},
        "storage": "runs",
    }


def _run(tmp_path: Path, raw: dict, run_id: str) -> tuple[dict[str, np.ndarray], h5py.File]:
    spec = spec_from(tmp_path, raw)
    run = run_storage(spec.storage, run_id)
    run.put("spec.yaml", spec.to_yaml().encode())
    run_all(run, shards=2 if raw["compute"].get("shards") == 2 else 1)
    folder = tmp_path / "runs" / run_id
    with h5py.File(folder / "surface.h5") as f:
        surface = {k: f[k][()] for k in f}
    with h5py.File(folder / "directions.h5") as f:
        dirs = {axis: [f[axis][str(i)][()] for i in range(2)] for axis in ("xdirection", "ydirection") if axis in f}
    return surface, dirs


def _residuals(tmp_path: Path, split: str, dirs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """r0, a, c with residual(α, β) = r0 + α·a + β·c: the model is linear in its parameters."""
    data = torch.load(tmp_path / "data" / f"{split}.pt", weights_only=True)
    x, y = data["inputs"].numpy(), data["labels"].numpy()
    theta = torch.load(tmp_path / "theta.pt", weights_only=True)
    w, b = theta["weight"].numpy()[0], theta["bias"].numpy()[0]
    (dw, db), (ew, eb) = dirs["xdirection"], dirs["ydirection"]
    return x @ w + b - y, x @ dw[0] + db[0], x @ ew[0] + eb[0]


def test_mse_surface_of_linear_regression_is_the_closed_form_quadratic(tmp_path, regression) -> None:
    regression["metrics"] = ["loss", "accuracy", "python:lsj_regression:mae"]
    surface, dirs = _run(tmp_path, regression, "r")
    assert "train_acc" not in surface and "test_acc" not in surface  # skipped: targets are not classes
    alpha, beta = np.meshgrid(surface["xcoordinates"], surface["ycoordinates"])  # Z[j, i] = f(x[i], y[j])
    for split in ("train", "test"):
        r0, a, c = _residuals(tmp_path, split, dirs)
        # mean_i (r0 + α a + β c)²: the quadratic's six coefficients, from the data alone.
        quad = (np.mean(r0 ** 2) + 2 * alpha * np.mean(r0 * a) + 2 * beta * np.mean(r0 * c)
                + alpha ** 2 * np.mean(a * a) + 2 * alpha * beta * np.mean(a * c) + beta ** 2 * np.mean(c * c))
        np.testing.assert_allclose(surface[f"{split}_loss"], quad, rtol=0, atol=1e-10)
        residual = r0[None, None, :] + alpha[..., None] * a + beta[..., None] * c
        np.testing.assert_allclose(surface[f"{split}_mae"], np.abs(residual).mean(axis=2), rtol=0, atol=1e-10)
    # θ* is the least-squares fit on train: no point of the grid has a lower train loss.
    centre = (np.argmin(np.abs(surface["ycoordinates"])), np.argmin(np.abs(surface["xcoordinates"])))
    assert surface["train_loss"].min() == pytest.approx(surface["train_loss"][centre])


def test_a_python_loss_and_wide_targets(tmp_path, regression) -> None:
    """A batch-mean python: loss on (N, 2) targets is half the built-in MSE's per-output mean."""
    for split, seed in (("train", 0), ("test", 1)):
        x, y = _data(40, 5, 2, seed)
        torch.save({"inputs": torch.from_numpy(x), "labels": torch.from_numpy(y)}, tmp_path / "data" / f"{split}.pt")
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(5, 2).double().state_dict(), tmp_path / "theta.pt")
    regression["model"]["kwargs"] = {"outputs": 2}
    regression["metrics"] = ["loss"]
    regression["grid"] = {"x": "-1:1:5"}
    mse, _ = _run(tmp_path, regression, "mse")
    regression["loss"] = "python:lsj_regression:half_mse"
    half, _ = _run(tmp_path, regression, "half")
    np.testing.assert_allclose(half["train_loss"], 0.5 * mse["train_loss"], rtol=1e-12)


def test_regression_mistakes_and_notes(tmp_path, regression, capsys) -> None:
    torch.save(torch.nn.Linear(5, 3).double().state_dict(), tmp_path / "theta3.pt")
    path = write_spec(tmp_path, regression)
    assert launcher(["validate", str(path)]) == 0
    assert "metrics: accuracy skipped: tensors's labels are float targets, not classes" in capsys.readouterr().err
    for change, said in ((("loss", "cross_entropy"), "loss: cross_entropy needs class labels"),
                         (("metrics", ["accuracy"]), "metrics: accuracy needs class labels"),
                         (("model", {**regression["model"], "checkpoint": "theta3.pt", "kwargs": {"outputs": 3}}),
                          "outputs shape (3,) per sample, but tensors's float targets have 1 value(s)"),
                         (("data", {**regression["data"], "classes": 4}), "data.classes: the labels of tensors are "
                                                                         "float targets")):
        code = launcher(["validate", str(write_spec(tmp_path, {**regression, change[0]: change[1]}))])
        err = capsys.readouterr().err
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_custom_metric_mistakes(tmp_path, regression, capsys) -> None:
    for ref, said in (("python:lsj_regression:nope", "module 'lsj_regression' has no function 'nope'"),
                      ("python:lsj_regression", "must look like python:package.module:function"),
                      ("python:lsj_regression:linear", "metrics: python:lsj_regression:linear raised TypeError")):
        code = launcher(["validate", str(write_spec(tmp_path, {**regression, "metrics": ["loss", ref]}))])
        err = capsys.readouterr().err
        assert code == 2 and said in err and "Traceback" not in err, err


def test_points_per_forward_gives_the_same_regression_surface(tmp_path, regression) -> None:
    regression["grid"] = {"x": "-1:1:5"}
    one, _ = _run(tmp_path, regression, "k1")
    regression["compute"]["points_per_forward"] = 3
    three, _ = _run(tmp_path, regression, "k3")
    np.testing.assert_allclose(three["train_loss"], one["train_loss"], rtol=1e-12)
