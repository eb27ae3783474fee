"""The evaluator against independent truth: a softmax regression's loss, computed in numpy."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import SYNTHETIC, run_all, spec_from
from landscape_job.datasets.builtin import load_split
from landscape_job.surface.directions import parse_direction_file
from landscape_job.spec.sections import DataSpec
from launcher.local.runner import open_run


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


@pytest.mark.slow
@pytest.mark.parametrize("points_per_forward", [1, 4], ids=["K=1", "K=4"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_every_grid_point_matches_numpy(tmp_path: Path, linear_spec: dict, loss: str, points_per_forward: int) -> None:
    """K = 4 takes the stacked-points path (one vmapped forward for 4 points), which
    ``points_per_forward: auto`` picks on a GPU: every loss must match numpy there too."""
    linear_spec["loss"] = loss
    linear_spec["compute"]["points_per_forward"] = points_per_forward
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
            data = load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), split)
            X, labels = data.inputs.double().numpy(), data.labels.numpy()
            for j, yv in enumerate(ys):
                for i, xv in enumerate(xs):
                    want_loss, want_acc = _softmax_regression(
                        X, labels, W + xv * dWx + yv * dWy, b + xv * dbx + yv * dby, loss)
                    assert surface[f"{split}_loss"][j, i] == pytest.approx(want_loss, rel=1e-6, abs=1e-12)
                    assert surface[f"{split}_acc"][j, i] == pytest.approx(want_acc)


@pytest.mark.slow
def test_surface_varies_and_centre_is_the_checkpoint(tmp_path: Path, linear_spec: dict) -> None:
    """The centre (0, 0) is θ* itself; a real surface is not flat."""
    linear_spec["grid"] = {"x": "-1:1:3", "y": "-1:1:3"}
    spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(spec, "centre"), 1)
    data = load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), "train")
    state = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    W, b = (t.double().numpy() for t in state.values())
    centre, _ = _softmax_regression(data.inputs.double().numpy(), data.labels.numpy(), W, b, "cross_entropy")
    with h5py.File(tmp_path / "runs/centre/surface.h5") as surface:
        loss = surface["train_loss"][()]
    assert loss[1, 1] == pytest.approx(centre, rel=1e-9)
    assert np.ptp(loss) > 0.1


@pytest.mark.slow
def test_interpolation_endpoints_reproduce_each_checkpoints_own_loss(tmp_path: Path, linear_spec: dict) -> None:
    """α = 0 is the first model, α = 1 the second, BN running statistics included (states)."""
    import torch.nn.functional as F

    from conftest import save_cnn_checkpoint
    from landscape_job.models.checkpoints import load_into, load_state_dict
    from landscape_job.models import build_model

    options = {"shape": [1, 8, 8], "classes": 4, "train_size": 64, "test_size": 32, "seed": 1}
    save_cnn_checkpoint(tmp_path / "cnn-a.pt", seed=0)
    save_cnn_checkpoint(tmp_path / "cnn-b.pt", seed=1)
    linear_spec.update(model={"arch": "cnn", "checkpoint": "cnn-a.pt", "kwargs": {"channels": [4, 6]}},
                       data={"dataset": "synthetic", "options": options},
                       directions={"type": "interpolate", "targets": ["cnn-b.pt"]},
                       grid={"x": "0:1:3"})
    spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(spec, "interp"), 1)
    with h5py.File(tmp_path / "runs/interp/surface.h5") as surface:
        losses = {split: surface[f"{split}_loss"][()] for split in ("train", "test")}
    for end, checkpoint in ((0, "cnn-a.pt"), (2, "cnn-b.pt")):
        model = build_model("cnn", 4, (1, 8, 8), {"channels": [4, 6]})
        load_into(model, load_state_dict(tmp_path / checkpoint), checkpoint)
        model = model.double().eval()
        for split in ("train", "test"):
            data = load_split(DataSpec(dataset="synthetic", options=options), split)
            with torch.no_grad():
                own = F.cross_entropy(model(data.inputs.double()), data.labels).item()
            assert losses[split][end] == pytest.approx(own, rel=1e-9), (checkpoint, split)
    assert losses["train"][1] != pytest.approx(losses["train"][0], rel=1e-3)  # the midpoint is elsewhere


def test_divergent_points_are_recorded_not_fatal(tmp_path: Path, linear_spec: dict) -> None:
    """Weights of 1e30 in two layers overflow float32: the loss is inf/NaN and is kept as such."""
    from conftest import save_linear_checkpoint

    save_linear_checkpoint(tmp_path / "deep.pt", seed=0, hidden=[8])
    linear_spec["model"] = {"arch": "mlp", "checkpoint": "deep.pt", "kwargs": {"hidden": [8]}}
    linear_spec["grid"] = {"x": "-1e30:1e30:3"}
    linear_spec["compute"]["precision"] = "fp32"
    spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(spec, "diverge"), 1)
    with h5py.File(tmp_path / "runs/diverge/surface.h5") as surface:
        loss = surface["train_loss"][()]
    assert np.isfinite(loss[1]) and not np.isfinite(loss[0]) and not np.isfinite(loss[2])
    report = __import__("json").loads((tmp_path / "runs/diverge/report.json").read_text())
    assert report["summary"]["train_loss"]["non_finite_points"] == 2
