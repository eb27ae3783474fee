"""The metric registry: a metric added in one place goes all the way, and unknown fields survive.

A per-split metric registered here (the mean prediction entropy, a batch statistic) is
computed by the real evaluator in both the one-point and the stacked K-point paths,
written to shards, merged, stored in surface.h5, read back by ``load_surface``, summed
up in the report and plotted; its values are checked against numpy on the same model's
logits. A dataset no metric declares is read back, kept and drawn generically.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SYNTHETIC, spec_from
from landscape_job import stages
from landscape_job.spec import metrics
from landscape_job.datasets.builtin import load_split
from landscape_job.surface.directions import parse_direction_file
from landscape_job.base.errors import UserError
from landscape_job.spec.sections import DataSpec
from landscape_job.outputs.exports import write_exports
from landscape_job.plots import PlotOptions, plot_surface
from landscape_job.surface.file import load_surface
from landscape_job.outputs.viewer import viewer_payload
from launcher.local.runner import open_run


def _entropy_sum(logits: torch.Tensor, labels: torch.Tensor, loss_sum) -> torch.Tensor:
    """The batch's summed entropy of the predicted class distribution (nats)."""
    logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
    return -(F.softmax(logits, dim=-1) * F.log_softmax(logits, dim=-1)).sum()


ENTROPY = metrics.Metric("entropy", "entropy", "prediction entropy", per_split=True, unit="nats",
                         statistic=metrics.BatchStatistic(one=_entropy_sum))


@pytest.fixture
def entropy_metric():
    metrics.register(ENTROPY)
    yield ENTROPY
    metrics.unregister(ENTROPY.key)


def _numpy_entropy(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    logits = X @ W.T + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(np.exp(log_p) * log_p).sum(axis=1).mean())


@pytest.mark.slow
@pytest.mark.parametrize("points_per_forward", [1, 3], ids=["one-point", "stacked"])
def test_a_registered_metric_is_computed_merged_stored_read_and_plotted(
        tmp_path: Path, linear_spec: dict, entropy_metric, points_per_forward: int) -> None:
    linear_spec["metrics"] = ["loss", "accuracy", "entropy"]
    linear_spec["compute"].update(shards=2, points_per_forward=points_per_forward)
    linear_spec["plot"] = {"formats": ["png", "html"]}  # the figures and the viewer's labels
    spec = spec_from(tmp_path, linear_spec)
    assert spec.metrics == ("loss", "accuracy", "entropy")
    run = open_run(spec, "entropy")
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    for shard in range(2):
        stages.evaluate(run, shard, log=quiet)
    report = stages.merge(run, log=quiet, plots=True)
    root = tmp_path / "runs/entropy"

    with h5py.File(root / "shards/shard-0-of-2.h5") as shard:
        assert {"train_entropy", "test_entropy"} <= set(shard)
    surface = load_surface(root / "surface.h5")
    assert list(surface.metrics) == ["train_loss", "train_acc", "train_entropy",
                                     "test_loss", "test_acc", "test_entropy"]
    assert all(f.known for f in surface.fields())

    # Independent truth: numpy on the same softmax regression at a few grid points.
    x_dir, y_dir, _ = parse_direction_file((root / "directions.h5").read_bytes(), "directions")
    state = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    W, b = (t.double().numpy() for t in state.values())
    dWx, dbx, dWy, dby = (t.double().numpy() for t in (*x_dir, *y_dir))
    for split in ("train", "test"):
        data = load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), split)
        X = data.inputs.double().numpy()
        values = surface.metrics[f"{split}_entropy"]
        assert values.shape == (len(surface.y), len(surface.x)) and np.ptp(values) > 0
        for j, i in ((0, 0), (1, 3), (3, 4), (2, 2)):
            a, c = surface.x[i], surface.y[j]
            want = _numpy_entropy(X, W + a * dWx + c * dWy, b + a * dbx + c * dby)
            assert values[j, i] == pytest.approx(want, rel=1e-9), (split, i, j)

    # Merge report: no "better" end declared, so a range; plots: a generic figure per split.
    assert set(report["summary"]["train_entropy"]) == {"non_finite_points", "min", "max"}
    assert {"plots/train_entropy_2d_contourf.png", "plots/test_entropy_2d_contourf.png"} <= set(report["outputs"])
    assert "plots/train_loss_2d_contour.png" in report["outputs"]  # the usual figures still there
    html = (root / "plots/surface.html").read_text()
    page = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert page["fields"]["test_entropy"]["label"] == "test prediction entropy"
    assert page["fields"]["test_entropy"]["unit"] == "nats"


@pytest.mark.slow
def test_the_stacked_path_matches_the_one_point_path(tmp_path: Path, linear_spec: dict, entropy_metric) -> None:
    """The default stacked form (the one-point statistic, vmapped) gives the same values."""
    linear_spec["metrics"] = ["loss", "entropy"]
    surfaces = {}
    for k in (1, 4):
        linear_spec["compute"]["points_per_forward"] = k
        spec = spec_from(tmp_path, linear_spec)
        run = open_run(spec, f"k{k}")
        stages.prepare(run, log=lambda _m: None)
        stages.evaluate(run, 0, log=lambda _m: None)
        stages.merge(run, log=lambda _m: None, plots=False)
        surfaces[k] = load_surface(tmp_path / f"runs/k{k}/surface.h5").metrics
    assert list(surfaces[1]) == ["train_loss", "train_entropy", "test_loss", "test_entropy"]
    for name in surfaces[1]:
        np.testing.assert_allclose(surfaces[4][name], surfaces[1][name], rtol=1e-12, err_msg=name)


def test_an_unknown_metric_in_a_spec_names_the_registry_choices(tmp_path: Path, linear_spec: dict) -> None:
    linear_spec["metrics"] = ["loss", "entropy"]
    with pytest.raises(UserError, match=r"metrics\[1\]: expected one of loss, accuracy, hessian "
                                        r"or python:package\.module:function; got 'entropy'"):
        spec_from(tmp_path, linear_spec)


def test_registration_refuses_clashes() -> None:
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(metrics.get("loss"))
    with pytest.raises(ValueError, match="another metric's"):
        metrics.register(metrics.Metric("train_loss", "x", "x", per_split=False,
                                        probe=metrics.PointProbe("lanczos", "max_eig")))
    with pytest.raises(ValueError, match="batch statistic"):
        metrics.Metric("margin", "margin", "margin", per_split=True)
    with pytest.raises(ValueError, match="built in"):
        metrics.unregister("acc")
    assert metrics.choices() == ("loss", "accuracy", "hessian")
    assert metrics.dataset_order() == ("train_loss", "train_acc", "test_loss", "test_acc", "max_eig", "min_eig")


def _write(path: Path, x: np.ndarray, y: np.ndarray | None, fields: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = x
        if y is not None:
            f["ycoordinates"] = y
        for name, values in fields.items():
            f[name] = values
    return path


@pytest.mark.slow
def test_an_unknown_dataset_is_kept_and_plotted_generically(tmp_path: Path) -> None:
    x, y = np.linspace(-1, 1, 9), np.linspace(0, 1, 5)
    xx, yy = np.meshgrid(x, y)
    loss = 0.5 + xx**2 + yy**2
    path = _write(tmp_path / "other.h5", x, y, {
        "train_loss": loss, "sharpness_proxy": 3 * xx - yy, "test_margin": loss - 0.2,
        "notes": np.arange(3.0),  # not a per-point field: left unread, never an error
    })
    surface = load_surface(path)
    assert list(surface.metrics) == ["train_loss", "sharpness_proxy", "test_margin"]
    np.testing.assert_array_equal(surface.metrics["sharpness_proxy"], 3 * xx - yy)
    assert surface.unread == ("notes",)
    generic = {f.name: f for f in surface.generic_fields()}
    assert set(generic) == {"sharpness_proxy", "test_margin"}
    assert generic["test_margin"].split == "test" and generic["test_margin"].title == "test margin"

    written = {p.name for p in plot_surface(path, tmp_path / "plots", PlotOptions(formats=("png",), dpi=40))}
    assert {"sharpness_proxy_2d_contourf.png", "test_margin_2d_contourf.png", "train_loss_2d_heat.png"} <= written
    exported = write_exports(path, tmp_path / "plots", options=PlotOptions())
    assert 'Name="sharpness_proxy"' in (tmp_path / "plots/surface.vtp").read_text()
    payload = viewer_payload(load_surface(path))
    assert payload["fields"]["sharpness_proxy"]["split"] is None
    assert payload["fields"]["test_margin"]["split"] == "test" and len(exported) == 2


def test_an_unknown_dataset_on_a_1d_surface_gets_a_curve(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 7)
    path = _write(tmp_path / "curve.h5", x, None, {"train_loss": 1 + x, "train_margin": x, "test_margin": x / 2})
    written = {p.name for p in plot_surface(path, tmp_path / "plots", PlotOptions(formats=("png",), dpi=40))}
    assert written == {"1d_loss.png", "1d_loss_log.png", "1d_margin.png"}


def test_a_registered_metric_of_the_wrong_shape_is_still_an_error(tmp_path: Path) -> None:
    x, y = np.linspace(-1, 1, 4), np.linspace(0, 1, 3)
    path = _write(tmp_path / "bad.h5", x, y, {"train_loss": np.zeros((4, 3))})
    with pytest.raises(UserError, match=r"'train_loss' has shape \(4, 3\), expected \(3, 4\).*transposed"):
        load_surface(path)
