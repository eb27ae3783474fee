"""``precision: fp64`` is float64 end to end (issue 13, point 6).

A softmax regression whose weights, data and directions all need float64 (none of their
values is a float32 number): the surface must agree with the closed form, computed in
numpy float64, to 1e-13. Before, the direction file was read as float32, the tensors
data cast to float32 and the model built in float32 and widened: an error of ~1e-8.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from conftest import run_all, spec_from
from landscape_job.models import build_model
from launcher.local.runner import open_run


def _log_softmax_loss(X: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    logits = X @ W.T + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def _not_float32(values: np.ndarray) -> None:
    assert (values.astype(np.float32).astype(np.float64) != values).all()


def test_fp64_surface_matches_the_closed_form_to_1e_13(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    features, classes = 6, 3
    data = {}
    (tmp_path / "data").mkdir()
    for split, n in (("train", 64), ("test", 32)):
        X = 1.0 + rng.standard_normal((n, features)) * 1e-3  # small differences on a large offset
        y = rng.integers(0, classes, n).astype(np.int64)
        _not_float32(X)
        np.savez(tmp_path / "data" / f"{split}.npz", inputs=X, labels=y)
        data[split] = (X, y)

    model = build_model("mlp", classes, (features,), {"hidden": []}).double()
    state = {k: torch.from_numpy(rng.standard_normal(tuple(v.shape))) for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "theta.pt")
    W, b = (state[k].numpy() for k in model.state_dict())

    directions = {g: [rng.standard_normal(tuple(v.shape)) for v in state.values()] for g in ("xdirection", "ydirection")}
    with h5py.File(tmp_path / "dirs.h5", "w") as f:
        for group, tensors in directions.items():
            for i, t in enumerate(tensors):
                _not_float32(t)
                f.create_dataset(f"{group}/{i}", data=t)

    spec = spec_from(tmp_path, {
        "name": "fp64", "model": {"arch": "mlp", "checkpoint": "theta.pt", "kwargs": {"hidden": []}},
        "data": {"dataset": "tensors", "root": "data", "classes": classes},
        "directions": {"type": "file", "file": "dirs.h5"},
        "grid": {"x": "-1:1:3", "y": "-0.5:0.5:3"},
        "compute": {"shards": 2, "precision": "fp64", "batch_size": 16}, "storage": "runs"})
    run = open_run(spec, "fp64")
    run_all(run, spec.compute.shards)

    (dWx, dbx), (dWy, dby) = directions["xdirection"], directions["ydirection"]
    worst = 0.0
    with h5py.File(tmp_path / "runs/fp64/surface.h5") as surface:
        xs, ys = surface["xcoordinates"][()], surface["ycoordinates"][()]
        with h5py.File(tmp_path / "runs/fp64/directions.h5") as stored:
            assert stored["xdirection/0"].dtype == np.float64  # stored as float64, read back as float64
            assert np.array_equal(stored["xdirection/0"][()], dWx)
        for split, (X, y) in data.items():
            for j, yv in enumerate(ys):
                for i, xv in enumerate(xs):
                    want = _log_softmax_loss(X, y, W + xv * dWx + yv * dWy, b + xv * dbx + yv * dby)
                    worst = max(worst, abs(float(surface[f"{split}_loss"][j, i]) - want))
    print(f"fp64 closed form: max |error| = {worst:.3g}")
    assert worst < 1e-13, worst
