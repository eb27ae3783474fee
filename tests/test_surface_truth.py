"""The evaluator against independent truth: a softmax regression's loss, computed in numpy."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import SYNTHETIC, run_all, spec_from
from landscape_job.data import load_split
from landscape_job.directions import parse_direction_file
from launcher.local import open_run


def _softmax_regression(X: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, loss: str) -> tuple[float, float]:
    logits = X @ W.T + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    if loss == "cross_entropy":
        value = -log_probs[np.arange(len(y)), y].mean()
    else:
        one_hot = np.eye(W.shape[0])[y]
        value = ((np.exp(log_probs) - one_hot) ** 2).mean(axis=1).mean()
    return float(value), float((logits.argmax(axis=1) == y).mean() * 100)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_every_grid_point_matches_numpy(tmp_path: Path, linear_spec: dict, loss: str) -> None:
    linear_spec["loss"] = loss
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "truth")
    run_all(run, spec.compute.shards)

    x_dir, y_dir, _ = parse_direction_file((tmp_path / "runs/truth/directions.h5").read_bytes(), "directions")
    state = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    W, b = (t.double().numpy() for t in state.values())  # parameters() order: weight, bias
    dWx, dbx, dWy, dby = (t.double().numpy() for t in (*x_dir, *y_dir))

    with h5py.File(tmp_path / "runs/truth/surface.h5") as surface:
        xs, ys = surface["xcoordinates"][()], surface["ycoordinates"][()]
        assert surface["train_loss"].shape == (len(ys), len(xs)) == (4, 5)
        for split in ("train", "test"):
            data = load_split("synthetic", split, options=SYNTHETIC)
            X, labels = data.inputs.double().numpy(), data.labels.numpy()
            for j, yv in enumerate(ys):
                for i, xv in enumerate(xs):
                    want_loss, want_acc = _softmax_regression(
                        X, labels, W + xv * dWx + yv * dWy, b + xv * dbx + yv * dby, loss)
                    assert surface[f"{split}_loss"][j, i] == pytest.approx(want_loss, rel=1e-6, abs=1e-12)
                    assert surface[f"{split}_acc"][j, i] == pytest.approx(want_acc)


def test_surface_varies_and_centre_is_the_checkpoint(tmp_path: Path, linear_spec: dict) -> None:
    """The centre (0, 0) is θ* itself; a real surface is not flat."""
    linear_spec["grid"] = {"x": "-1:1:3", "y": "-1:1:3"}
    spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(spec, "centre"), 1)
    data = load_split("synthetic", "train", options=SYNTHETIC)
    state = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    W, b = (t.double().numpy() for t in state.values())
    centre, _ = _softmax_regression(data.inputs.double().numpy(), data.labels.numpy(), W, b, "cross_entropy")
    with h5py.File(tmp_path / "runs/centre/surface.h5") as surface:
        loss = surface["train_loss"][()]
    assert loss[1, 1] == pytest.approx(centre, rel=1e-9)
    assert np.ptp(loss) > 0.1
