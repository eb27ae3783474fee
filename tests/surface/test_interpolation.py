"""The interpolation summary (monotonicity, barrier) on curves whose answer is known in closed form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import spec_from, run_all
from landscape_job import plots
from landscape_job.spec.grid import Axis, Grid
from landscape_job.surface.interpolation import curve_summary, interpolation_summary
from landscape_job.plots import draw1d
from landscape_job.surface.file import surface_bytes
from launcher.local.runner import open_run

#: α from -0.5 to 1.5 in steps of 1/8: holds 0, 1 and 3/8 exactly.
ALPHAS = np.linspace(-0.5, 1.5, 17)


def barrier_curve(a: np.ndarray) -> np.ndarray:
    """L(0) = 2, L(1) = 1, maximum 2.5625 at α = 3/8: a barrier of 0.5625 above the higher end.

    Outside [0, 1] it shoots up, which the summary must ignore.
    """
    return 2 * (1 - a) + a + 4 * a * (1 - a) + 50 * np.clip(-a, 0, None) + 50 * np.clip(a - 1, 0, None)


def test_known_barrier_height_and_location() -> None:
    s = curve_summary(ALPHAS, barrier_curve(ALPHAS))
    assert s["barrier_height"] == pytest.approx(0.5625, abs=1e-12)
    assert s["barrier_alpha"] == pytest.approx(0.375, abs=1e-12)
    assert s["max_loss"] == pytest.approx(2.5625, abs=1e-12)
    assert (s["loss_at_0"], s["loss_at_1"]) == (pytest.approx(2.0), pytest.approx(1.0))
    assert s["monotonic_decreasing"] is False and s["monotonic_increasing"] is False


def test_monotone_curves_have_no_barrier_and_the_right_flag() -> None:
    down = curve_summary(ALPHAS, np.exp(-3 * ALPHAS) + 10 * (ALPHAS > 1))  # a rise after α = 1 does not count
    assert down["monotonic_decreasing"] is True and down["monotonic_increasing"] is False
    assert down["barrier_height"] == 0.0 and down["barrier_alpha"] is None
    up = curve_summary(ALPHAS, ALPHAS ** 2)  # falls before α = 0, rises on [0, 1]
    assert up["monotonic_increasing"] is True and up["monotonic_decreasing"] is False
    assert up["barrier_height"] == 0.0 and up["barrier_alpha"] is None


def test_a_bump_smaller_than_the_noise_tolerance_is_not_a_barrier_but_a_real_one_is() -> None:
    a = np.linspace(0, 1, 11)
    flat = np.full_like(a, 2.0)
    flat[5] += 1e-8
    s = curve_summary(a, flat)
    assert s["monotonic_decreasing"] and s["monotonic_increasing"] and s["barrier_alpha"] is None
    flat[5] += 1e-3
    s = curve_summary(a, flat)
    assert s["barrier_alpha"] == 0.5 and s["barrier_height"] == pytest.approx(1e-3 + 1e-8)
    assert not s["monotonic_decreasing"] and not s["monotonic_increasing"]


def test_grid_without_exact_endpoints_uses_the_nearest_points_and_says_so() -> None:
    a = np.linspace(-0.04, 1.06, 12)  # -0.04, 0.06, ..., 0.96, 1.06: nearest are -0.04 and 0.96
    summary = interpolation_summary(a, {"train_loss": 1 - a, "test_loss": barrier_curve(a)})
    assert summary["endpoints_exact"] is False and "nearest grid points" in summary["note"]
    assert summary["alpha_0"] == pytest.approx(-0.04) and summary["alpha_1"] == pytest.approx(0.96)
    assert summary["train"]["monotonic_decreasing"] is True
    exact = interpolation_summary(ALPHAS, {"train_loss": barrier_curve(ALPHAS)})
    assert exact["endpoints_exact"] is True and "note" not in exact and "test" not in exact


def test_non_finite_loss_on_the_segment_leaves_every_judgement_open() -> None:
    loss = barrier_curve(ALPHAS)
    loss[8] = np.nan
    s = curve_summary(ALPHAS, loss)
    assert s["non_finite_points"] == 1
    assert s["barrier_height"] is None and s["monotonic_decreasing"] is None


def test_1d_plot_marks_the_barrier_where_it_is(tmp_path: Path) -> None:
    grid = Grid(Axis.parse("-0.5:1.5:17", "grid.x"), None)
    flat = {"train_loss": barrier_curve(ALPHAS), "test_loss": np.exp(-ALPHAS)}
    path = tmp_path / "surface.h5"
    path.write_bytes(surface_bytes(grid, flat, {"direction_type": "interpolate"}))
    surface = plots.load_surface(path)
    for log in (False, True):
        fig = draw1d.plot_1d(surface, plots.PlotOptions(), log=log)
        # A barrier's label says its height ("train barrier 2.31"): keyed by the words before it.
        lines = {" ".join(line.get_label().split()[:2]): line for line in fig.axes[0].get_lines()}
        assert "test barrier" not in lines  # monotone: nothing to mark
        np.testing.assert_allclose(lines["train barrier"].get_xdata(), [0.375])
        np.testing.assert_allclose(lines["train barrier"].get_ydata(), [2.5625])
    # A random-direction 1-D surface is not an interpolation: no barrier mark.
    path.write_bytes(surface_bytes(grid, flat, {"direction_type": "random"}))
    fig = draw1d.plot_1d(plots.load_surface(path), plots.PlotOptions(), log=False)
    assert not [line for line in fig.axes[0].get_lines() if "barrier" in line.get_label()]


def test_interpolation_run_reports_the_summary_of_its_own_surface(tmp_path: Path, linear_spec: dict) -> None:
    linear_spec["directions"] = {"type": "interpolate", "targets": ["b.pt"]}
    linear_spec["grid"] = {"x": "-0.5:1.5:9"}
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "interp")
    run_all(run, spec.compute.shards)
    report = json.loads((tmp_path / "runs/interp/report.json").read_text())
    surface = plots.load_surface(tmp_path / "runs/interp/surface.h5")
    summary = report["interpolation"]
    assert summary["endpoints_exact"] is True and (summary["alpha_0"], summary["alpha_1"]) == (0.0, 1.0)
    for split in ("train", "test"):
        loss = surface.metrics[f"{split}_loss"]
        assert summary[split] == curve_summary(surface.x, loss)
        segment = loss[2:7]  # α = 0, 0.25, ..., 1
        assert summary[split]["barrier_height"] == pytest.approx(segment.max() - max(segment[0], segment[-1]))
        assert summary[split]["loss_at_0"] == loss[2] and summary[split]["loss_at_1"] == loss[6]
