"""PCA directions from a trajectory: the plane, the projection and the variance, against numpy."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import save_cnn_checkpoint, save_linear_checkpoint, spec_from, run_all
from landscape_job import plots
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.base.errors import UserError
from landscape_job.models import build_model
from landscape_job.surface.pca import build_pca, project
from landscape_job.plots import draw2d, fields
from landscape_job.spec.sections import DirectionsSpec
from launcher.local.runner import open_run

#: In-plane coefficients (a_e, b_e) of the synthetic trajectory, in training order.
PLANE_COEFS = [(1.2, -0.8), (0.9, 0.3), (0.5, 0.6), (0.2, 0.1)]


def _cnn(path: Path) -> torch.nn.Module:
    model = build_model("cnn", 4, (1, 8, 8), {"channels": [4, 6]})
    load_into(model, load_state_dict(path), str(path))
    return model.eval()


def _plane(model: torch.nn.Module, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two random directions over every parameter, biases and BN included."""
    g = torch.Generator().manual_seed(seed)
    u = {n: 0.1 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    v = {n: 0.1 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    return u, v


def _write_trajectory(folder: Path, final: Path, u: dict, v: dict, coefs) -> list[str]:
    """Checkpoints θ_final + a·u + b·v (float32, as training would save them)."""
    state = load_state_dict(final)
    paths = []
    for e, (a, b) in enumerate(coefs):
        moved = {k: (t + a * u[k] + b * v[k]) if k in u else t.clone() for k, t in state.items()}
        path = folder / f"epoch_{e + 1}.pt"
        torch.save({"state_dict": moved}, path)
        paths.append(str(path))
    return paths


def _flat(tensors, keep) -> np.ndarray:
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t, k in zip(tensors, keep) if k])


def _principal_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the row spans of a and b."""
    qa, _ = np.linalg.qr(a.T)
    qb, _ = np.linalg.qr(b.T)
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


@pytest.mark.parametrize("ignore", ["none", "biasbn"])
def test_directions_span_the_trajectory_plane_and_coordinates_are_exact(tmp_path: Path, ignore: str) -> None:
    final = save_cnn_checkpoint(tmp_path / "final.pt", seed=0)
    model = _cnn(final)
    u, v = _plane(model, seed=1)
    spec = DirectionsSpec(type="pca", dir_type="weights", norm="none", ignore=ignore,
                          trajectory=tuple(_write_trajectory(tmp_path, final, u, v, PLANE_COEFS)))
    plane = build_pca(spec, model, two_d=True, final=str(final))

    params = list(model.named_parameters())
    # biasbn: the biases and BN parameters move, but are left out of the plane.
    keep = [p.dim() > 1 or ignore == "none" for _, p in params]
    for t, k in zip(plane.directions.x + plane.directions.y, keep * 2):
        assert k or torch.count_nonzero(t) == 0
    U = np.stack([_flat([u[n] for n, _ in params], keep), _flat([v[n] for n, _ in params], keep)])
    D = np.stack([_flat(plane.directions.x, keep), _flat(plane.directions.y, keep)])
    assert _principal_cosines(U, D) == pytest.approx([1.0, 1.0], abs=1e-6)

    # Independent truth: [u v] = [x y] M, so (a, b) in the u, v basis is M @ (a, b) in x, y.
    M = np.linalg.lstsq(D.T, U.T, rcond=None)[0]
    expected = np.array([M @ np.array(ab) for ab in [*PLANE_COEFS, (0.0, 0.0)]])
    got = np.stack([plane.trajectory.x, plane.trajectory.y], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert plane.trajectory.names == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt", "epoch_4.pt", "final.pt"]
    assert max(plane.trajectory.residual) < 1e-5
    # The plane explains everything; PC2 carries a real share of it.
    assert sum(plane.explained_variance) == pytest.approx(1.0, abs=1e-9)
    assert plane.explained_variance[1] > 0.01

    # A checkpoint off the trajectory but in the plane projects to its exact coordinates.
    point = _flat([0.3 * u[n] - 0.7 * v[n] for n, _ in params], keep)
    coords, residual = project(point[None, :].astype(np.float32), D.astype(np.float32))
    np.testing.assert_allclose(coords[0], M @ np.array([0.3, -0.7]), atol=1e-5)
    assert residual[0] < 1e-5


def test_projection_is_exact_for_filter_normalised_non_orthogonal_directions(tmp_path: Path) -> None:
    final = save_cnn_checkpoint(tmp_path / "final.pt", seed=0)
    model = _cnn(final)
    u, v = _plane(model, seed=2)
    paths = _write_trajectory(tmp_path, final, u, v, PLANE_COEFS)
    spec = DirectionsSpec(type="pca", norm="filter", ignore="biasbn", trajectory=tuple(paths))
    plane = build_pca(spec, model, two_d=True, final=str(final))
    keep = [p.dim() > 1 for p in model.parameters()]
    x, y = _flat(plane.directions.x, keep), _flat(plane.directions.y, keep)
    assert abs(x @ y) / np.linalg.norm(x) / np.linalg.norm(y) > 1e-3  # really not orthogonal
    # Filter normalisation bends the plane, so check against the least squares truth in numpy.
    for path, cx, cy in zip(paths, plane.trajectory.x, plane.trajectory.y):
        moved = load_state_dict(path)
        d = _flat([moved[n].double() - p.detach().double() for n, p in model.named_parameters()], keep)
        truth = np.linalg.lstsq(np.stack([x, y]).T, d, rcond=None)[0]
        np.testing.assert_allclose([cx, cy], truth, rtol=1e-6, atol=1e-7)


def test_explained_variance_and_directions_match_numpy_svd(tmp_path: Path) -> None:
    final = save_cnn_checkpoint(tmp_path / "final.pt", seed=0)
    model = _cnn(final)
    state = load_state_dict(final)
    g = torch.Generator().manual_seed(5)
    paths = []
    for e in range(5):  # a trajectory in general position: every direction has some variance
        moved = {k: t + 0.05 * (5 - e) * torch.randn(t.shape, generator=g) if t.is_floating_point() else t
                 for k, t in state.items()}
        paths.append(tmp_path / f"e{e}.pt")
        torch.save(moved, paths[-1])
    spec = DirectionsSpec(type="pca", norm="none", ignore="biasbn", trajectory=tuple(map(str, paths)))
    plane = build_pca(spec, model, two_d=True, final=str(final))

    params = list(model.named_parameters())
    keep = [p.dim() > 1 for _, p in params]
    rows = np.stack([_flat([load_state_dict(p)[n].double() - w.detach().double() for n, w in params], keep)
                     for p in paths])
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    np.testing.assert_allclose(plane.explained_variance, (s[:2] ** 2) / np.sum(s ** 2), rtol=1e-6)
    for got, want in zip((plane.directions.x, plane.directions.y), vt[:2]):
        assert abs(_flat(got, keep) @ want) == pytest.approx(1.0, abs=1e-6)  # unit, and the same up to sign


def test_one_dimensional_pca_takes_the_first_component(tmp_path: Path) -> None:
    final = save_cnn_checkpoint(tmp_path / "final.pt", seed=0)
    model = _cnn(final)
    u, v = _plane(model, seed=3)
    paths = _write_trajectory(tmp_path, final, u, v, [(1.0, 0.0), (0.5, 0.0)])
    plane = build_pca(DirectionsSpec(type="pca", norm="none", ignore="none", trajectory=tuple(paths)),
                      model, two_d=False, final=str(final))
    assert plane.directions.y is None and plane.trajectory.y is None
    unit_u = _flat([u[n] for n, _ in model.named_parameters()], [True] * len(u))
    x = _flat(plane.directions.x, [True] * len(u))
    assert abs(x @ unit_u) / np.linalg.norm(unit_u) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(np.abs(plane.trajectory.x), [np.linalg.norm(unit_u), 0.5 * np.linalg.norm(unit_u), 0],
                               rtol=1e-5)


def test_a_collinear_trajectory_cannot_make_a_plane(tmp_path: Path) -> None:
    final = save_cnn_checkpoint(tmp_path / "final.pt", seed=0)
    model = _cnn(final)
    u, v = _plane(model, seed=4)
    paths = _write_trajectory(tmp_path, final, u, v, [(1.0, 0.0), (0.5, 0.0)])
    with pytest.raises(UserError, match=r"^directions.trajectory: .* span only one direction"):
        build_pca(DirectionsSpec(type="pca", norm="none", trajectory=tuple(paths)), model, two_d=True,
                  final=str(final))


# --------------------------------------------------------------------------- spec and the whole run


def _linear_trajectory(tmp_path: Path, linear_spec: dict) -> dict:
    """epoch_1, epoch_2 and epoch_10 of a softmax regression ending at a.pt."""
    (tmp_path / "traj").mkdir()
    for e, seed in ((1, 11), (2, 12), (10, 13)):
        save_linear_checkpoint(tmp_path / "traj" / f"epoch_{e}.pt", seed)
    linear_spec["directions"] = {"type": "pca", "trajectory": "traj/epoch_*.pt"}
    linear_spec["grid"] = {"x": "-2:2:5", "y": "-2:2:4"}
    linear_spec["compute"]["shards"] = 2
    return linear_spec


def test_spec_expands_the_glob_in_natural_order_with_pca_defaults(tmp_path: Path, linear_spec: dict) -> None:
    spec = spec_from(tmp_path, _linear_trajectory(tmp_path, linear_spec))
    assert [Path(p).name for p in spec.directions.trajectory] == ["epoch_1.pt", "epoch_2.pt", "epoch_10.pt"]
    d = spec.directions
    assert (d.dir_type, d.norm, d.ignore) == ("weights", "none", "biasbn")
    reparsed = spec_from(tmp_path, spec.to_dict())
    assert reparsed.directions == spec.directions and reparsed.hash == spec.hash


@pytest.mark.parametrize("directions, message", [
    ({"type": "pca", "trajectory": "nothing_*.pt"}, r"^directions.trajectory: no checkpoint file matches .*nothing_\*\.pt$"),
    ({"type": "pca"}, r"^directions.trajectory: type pca needs"),
    ({"type": "pca", "trajectory": ["b.pt"]}, r"^directions.trajectory: a 2-D PCA plot needs at least 2"),
    ({"type": "pca", "trajectory": ["b.pt", "missing.pt"]}, r"^directions.trajectory\[1\]: file not found"),
    ({"type": "random", "trajectory": ["b.pt"]}, r"^directions.trajectory: only used with type: pca"),
])
def test_bad_trajectories_are_one_line_user_errors(tmp_path: Path, linear_spec: dict, directions: dict,
                                                   message: str) -> None:
    linear_spec["directions"] = directions
    with pytest.raises(UserError, match=message):
        spec_from(tmp_path, linear_spec)


@pytest.mark.slow
def test_run_stores_the_projected_path_and_the_plot_draws_it(tmp_path: Path, linear_spec: dict) -> None:
    spec = spec_from(tmp_path, _linear_trajectory(tmp_path, linear_spec))
    run = open_run(spec, "pca")
    run_all(run, spec.compute.shards)
    root = tmp_path / "runs" / "pca"
    manifest = json.loads((root / "manifest.json").read_text())
    pca = manifest["pca"]
    assert pca["trajectory"]["names"] == ["epoch_1.pt", "epoch_2.pt", "epoch_10.pt", "a.pt"]
    with h5py.File(root / "directions.h5") as f:
        assert json.loads(f.attrs["explained_variance"]) == pca["explained_variance"]
        x_dir = [f["xdirection"][str(i)][()] for i in range(2)]
        y_dir = [f["ydirection"][str(i)][()] for i in range(2)]
    assert not x_dir[1].any() and not y_dir[1].any()  # ignore: biasbn, the default
    # The stored coordinates are the least squares ones in the stored float32 directions.
    def weight(path: Path) -> np.ndarray:  # softmax regression: parameters() is (weight, bias)
        return next(iter(load_state_dict(path).values())).double().numpy().ravel()

    w_final = weight(tmp_path / "a.pt")
    basis = np.stack([x_dir[0].ravel(), y_dir[0].ravel()]).astype(np.float64)
    for name, cx, cy in zip(pca["trajectory"]["names"], pca["trajectory"]["x"], pca["trajectory"]["y"]):
        path = tmp_path / ("traj" if name.startswith("epoch") else "") / name
        d = weight(path) - w_final
        np.testing.assert_allclose([cx, cy], np.linalg.lstsq(basis.T, d, rcond=None)[0], atol=1e-6)

    with h5py.File(root / "surface.h5") as f:
        np.testing.assert_array_equal(f["trajectory_x"][()], pca["trajectory"]["x"])
        np.testing.assert_array_equal(f["trajectory_y"][()], pca["trajectory"]["y"])
        assert json.loads(f.attrs["trajectory_names"]) == pca["trajectory"]["names"]
        assert f.attrs["xlabel"] == f"PC1 ({100 * pca['explained_variance'][0]:.1f}% of variance)"
    report = json.loads((root / "report.json").read_text())
    assert report["pca"]["explained_variance"] == pca["explained_variance"]

    surface = plots.load_surface(root / "surface.h5")
    assert surface.trajectory_names == tuple(pca["trajectory"]["names"])
    field = fields.loss_field(surface, surface.metrics["train_loss"], plots.PlotOptions())
    for fig in (draw2d.fig_contour(surface, field, "t", dpi=50), draw2d.fig_heat(surface, field, "t", dpi=50)):
        lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
        np.testing.assert_array_equal(lines["trajectory"].get_xdata(), pca["trajectory"]["x"])
        np.testing.assert_array_equal(lines["trajectory"].get_ydata(), pca["trajectory"]["y"])
        assert lines["trajectory start"].get_xdata()[0] == pca["trajectory"]["x"][0]
        assert lines["trajectory end"].get_ydata()[0] == pca["trajectory"]["y"][-1] == 0.0
