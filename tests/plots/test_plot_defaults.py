"""The plots' defaults show the basin: levels down into the minimum, log where the loss spans
decades, θ* marked, titles from the spec, nothing cut off, a clipping arrow only when clipped.

The bowl below is shaped like the digits demo's surface (minimum 0.0118 at θ*, about 20 at
the corners): its linear levels 1, 2, .. leave the basin one blank ring, which is what
these tests guard against.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from landscape_job.base.errors import UserError
from landscape_job.plots import PlotOptions, draw1d, draw2d, fields, load_surface, plot_surface
from landscape_job.plots.figures import figures
from landscape_job.plots.levels import AUTO_LOG_DECADES, spans_decades
from landscape_job.plots.style import RC, outside_figure
from landscape_job.spec.titles import checked_title, subject
from test_plots import write_surface

MINIMUM = 0.0118


def bowl(x, y):
    """A demo-like basin: 0.0118 at the origin, quadratic near it, about 20 at the corners."""
    r2 = x**2 + 1.3 * y**2
    return MINIMUM + 9.0 * r2 + 2.5 * r2**2


def bowl_surface(tmp_path: Path, attrs=None, n: int = 31):
    x = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(x, x)
    path = write_surface(tmp_path / "surface.h5", x, x, attrs=attrs or {"arch": "cnn", "dataset": "digits",
                                                                "xlabel": "x (random direction, filter-normalised)",
                                                                "ylabel": "y (random direction, filter-normalised)"},
                 train_loss=bowl(X, Y))
    return load_surface(path)


def closed_around_origin(segments) -> bool:
    """Whether one of a level's contour lines is a closed loop with θ* = (0, 0) inside."""
    for seg in segments:
        if len(seg) > 3 and np.allclose(seg[0], seg[-1], atol=1e-9) and MplPath(seg).contains_point((0.0, 0.0)):
            return True
    return False


def test_default_levels_reach_down_into_the_basin_with_closed_contours(tmp_path):
    surface = bowl_surface(tmp_path)
    z = surface.metrics["train_loss"]
    field = fields.loss_field(surface, z, PlotOptions())
    assert field.log  # 0.0118 .. ~20: three decades
    levels = 10.0 ** field.line_levels
    neighbourhood = float(np.quantile(z, 0.05))  # the lowest 5% of the grid: the basin around θ*
    basin = levels[(levels > z.min()) & (levels < neighbourhood)]
    assert len(basin) >= 4, levels
    # Drawn by matplotlib, the basin's levels are closed loops around θ*, not one blank ring.
    with matplotlib.rc_context(RC):
        fig = draw2d.fig_contour(surface, field, "t", dpi=40)
    cs = next(c for c in fig.axes[0].collections if hasattr(c, "allsegs"))
    around = [lv for lv, segs in zip(cs.levels, cs.allsegs) if 10.0**lv < neighbourhood and closed_around_origin(segs)]
    assert len(around) >= 4, around
    # What the old default did, and what a forced linear scale still does: nothing below 1.
    linear = fields.loss_field(surface, z, PlotOptions(log=False))
    assert not linear.log and linear.line_levels[0] >= 1.0 > neighbourhood


def test_log_is_chosen_only_when_the_range_spans_decades_and_no_linear_vlevel_is_given():
    x = np.linspace(-1, 1, 41)
    wide = MINIMUM + x**2  # 0.0118 .. 1.0118: 1.9 decades
    assert not spans_decades(wide) and AUTO_LOG_DECADES == 2.0
    deep = 0.005 + x**2  # 2.3 decades
    assert spans_decades(deep)
    assert PlotOptions().log_for(deep) and not PlotOptions(log=False).log_for(deep)
    assert not PlotOptions(vlevel=0.1).log_for(deep)  # the paper's linear spacing
    assert PlotOptions(log=True).log_for(wide)
    assert not spans_decades(x**2)  # a zero: no log of it
    assert not spans_decades(np.full(5, np.nan))
    assert not PlotOptions(vmin=0.5).log_for(deep)  # the user's range is under two decades
    with pytest.raises(UserError, match=r"plot\.log"):
        PlotOptions(log="yes")


def test_theta_star_is_marked_on_the_flat_maps_and_the_curves(tmp_path):
    surface = bowl_surface(tmp_path)
    field = fields.loss_field(surface, surface.metrics["train_loss"], PlotOptions())
    with matplotlib.rc_context(RC):
        for draw in (draw2d.fig_contour, draw2d.fig_heat):
            ax = draw(surface, field, "t", dpi=40).axes[0]
            marks = [line for line in ax.lines if line.get_label() == "θ*"]
            assert len(marks) == 1 and list(marks[0].get_xydata()[0]) == [0.0, 0.0]
            assert any(t.get_text() == "θ*" for t in ax.texts)
        # A PCA plane: the path ends at θ* (the final model), whose end star then stands for it.
        pca = load_surface(write_surface(tmp_path / "pca.h5", surface.x, surface.y, train_loss=surface.metrics["train_loss"],
                                 trajectory_x=[0.8, 0.3, 0.0], trajectory_y=[0.5, 0.2, 0.0],
                                 attrs={"trajectory_names": '["a", "b", "c"]', "explained_variance": "[0.9, 0.1]"}))
        ax = draw2d.fig_contour(pca, field, "t", dpi=40).axes[0]
        assert [line.get_label() for line in ax.lines if line.get_label().startswith(("θ*", "trajectory end"))] == [
            "trajectory end"]
        assert any(t.get_text() == "θ*" for t in ax.texts)
        x = np.linspace(-0.5, 1.5, 9)
        curve = load_surface(write_surface(tmp_path / "c.h5", x, train_loss=(x - 0.2) ** 2 + 0.1))
        ax = draw1d.plot_1d(curve, PlotOptions(), log=False).axes[0]
        assert any(np.allclose(line.get_xdata(), 0.0) and line.get_linestyle() == ":" for line in ax.lines)
        # A grid that does not hold θ* gets no marker.
        far = load_surface(write_surface(tmp_path / "far.h5", x + 1, train_loss=x**2 + 0.1))
        assert not any(t.get_text() == "θ*" for t in draw1d.plot_1d(far, PlotOptions(), log=False).axes[0].texts)


@pytest.mark.slow
def test_titles_come_from_the_spec_or_read_well(tmp_path):
    refs = {"arch": "python:pkg.mod:build", "dataset": "python:pkg.mod:load", "name": "two-moons"}
    assert subject(refs) == "two-moons"
    assert subject({"arch": "cnn", "dataset": "digits", "name": "x"}) == "cnn on digits"
    assert subject({**refs, "title": "BN-MLP, seed 3"}) == "BN-MLP, seed 3"
    surface = bowl_surface(tmp_path, attrs=refs)
    out = plot_surface(surface.path, tmp_path / "out", PlotOptions(formats=("svg",), dpi=30, title="My  run"))
    svg = (tmp_path / "out" / "train_loss_2d_contour.svg").read_text()
    assert "train loss — My run" in svg and "python:pkg" not in svg and len(out) == 4
    drawn = dict(figures(load_surface(surface.path), PlotOptions(title="My run")))
    assert drawn["train_loss_2d_contour"].axes[0].get_title() == "train loss — My run"
    assert checked_title("two\n lines") == "two lines"
    for bad in ("x" * 81, "red \x1b[31m", "", 3):
        with pytest.raises(UserError, match=r"plot\.title"):
            checked_title(bad)


def test_the_spec_declares_plot_title_and_checks_it_when_read(tmp_path, linear_spec):
    from conftest import spec_from

    spec = spec_from(tmp_path, {**linear_spec, "plot": {"title": " digits,  seed 0 "}})
    assert spec.plot.title == "digits, seed 0" and spec.plot.log is None
    assert PlotOptions.from_spec(spec.plot).title == "digits, seed 0"
    with pytest.raises(UserError, match=r"plot\.title"):
        spec_from(tmp_path, {**linear_spec, "plot": {"title": "t" * 500}})


def test_the_3d_figure_keeps_every_label_inside(tmp_path):
    surface = bowl_surface(tmp_path)
    with matplotlib.rc_context(RC):
        field = fields.loss_field(surface, surface.metrics["train_loss"], PlotOptions(log=False))
        fig = draw2d.fig_3d(surface, field, "train loss — a long title for a small figure", dpi=60)
        assert outside_figure(fig) == []
        # The check itself sees a label pushed out.
        fig.axes[0].set_xlabel("a label far too long to fit " * 6)
        fig.canvas.draw()
        assert outside_figure(fig) != []


@pytest.mark.parametrize("spike, arrow", [(False, "neither"), (True, "max")])
def test_the_heat_map_draws_a_clipping_arrow_only_when_values_are_clipped(tmp_path, spike, arrow):
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x)
    loss = 1.0 + X**2 + Y**2
    if spike:
        loss[0, 0] = 1e4  # above the robust top: drawn in the top colour
    surface = load_surface(write_surface(tmp_path / "s.h5", x, x, train_loss=loss))
    field = fields.loss_field(surface, loss, PlotOptions())
    with matplotlib.rc_context(RC):
        fig = draw2d.fig_heat(surface, field, "t", dpi=40)
    assert fig.axes[1].get_label() == "<colorbar>"
    colorbar = fig.axes[1]._colorbar
    assert colorbar.extend == arrow
    assert (float(np.nanmax(field.values)) > field.hi) == spike and math.isfinite(field.hi)


def test_the_viewer_starts_on_the_scale_the_figures_chose(tmp_path):
    from landscape_job.outputs.viewer import viewer_payload

    surface = bowl_surface(tmp_path)
    assert viewer_payload(surface)["log"] is True
    assert viewer_payload(surface, options=PlotOptions(log=False))["log"] is False
    assert viewer_payload(surface, options=PlotOptions(vlevel=1.0))["log"] is False
    payload = viewer_payload(surface, options=PlotOptions(title="basin"))
    assert (payload["title"], payload["subtitle"]) == ("basin", "cnn on digits")


def test_train_and_test_share_the_scale_the_surface_chose(tmp_path):
    """A test loss that alone spans under two decades is drawn in log with its train loss."""
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x)
    train, test = bowl(X, Y), 0.5 + bowl(X, Y)  # test alone: 0.51 .. ~20, 1.6 decades
    assert not spans_decades(test) and spans_decades(train)
    surface = load_surface(write_surface(tmp_path / "s.h5", x, x, train_loss=train, test_loss=test))
    assert fields.loss_field(surface, test, PlotOptions()).log
    assert fields.loss_field(surface, train, PlotOptions()).log
    assert not fields.loss_field(surface, test, PlotOptions(log=False)).log


def test_a_constant_surface_gets_a_range_five_percent_either_side() -> None:
    """A flat surface (all one loss) still has a colour range: ±5 % of the value, at least ±0.001."""
    from landscape_job.plots.levels import loss_range

    assert loss_range(np.full(5, 10.0)) == pytest.approx((9.5, 10.5), rel=1e-12)
    assert loss_range(np.full(5, -4.0)) == pytest.approx((-4.2, -3.8), rel=1e-12)
    assert loss_range(np.zeros(4)) == pytest.approx((-1e-3, 1e-3), rel=1e-12)
    assert loss_range(np.full(3, 0.01)) == pytest.approx((0.009, 0.011), rel=1e-12)  # the floor, not 5 %
    assert loss_range(np.full(3, 100.0), log=True) == pytest.approx((1.9, 2.1), rel=1e-12)  # log10 units
    assert loss_range(np.array([1.0, 2.0])) == (1.0, 2.0)  # not flat: untouched


def test_the_heatmap_cells_are_centred_on_their_grid_points_even_alone() -> None:
    """extent: half a step beyond the first and last points; a single column or row gets a width of 1."""
    from landscape_job.plots.levels import heatmap_image

    _, extent = heatmap_image(np.array([3.0]), np.array([0.0, 1.0]), np.zeros((2, 1)))
    assert extent == (2.5, 3.5, -0.5, 1.5)
    _, extent = heatmap_image(np.array([0.0, 4.0]), np.array([-1.0]), np.zeros((1, 2)))
    assert extent == (-2.0, 6.0, -1.5, -0.5)
    with pytest.raises(ValueError, match=r"^z has shape \(3, 2\), expected \(ny, nx\) = \(2, 3\)$"):
        heatmap_image(np.zeros(3), np.zeros(2), np.zeros((3, 2)))


def test_a_grid_is_uniform_within_a_millionth_of_its_step() -> None:
    from landscape_job.plots.levels import is_uniform

    assert is_uniform(np.array([0.0, 1.0])) and is_uniform(np.array([7.0]))  # too short to be anything else
    assert is_uniform(np.linspace(-1, 1, 51))
    assert not is_uniform(np.array([0.0, 1.0, 2.5])) and not is_uniform(np.array([0.0, 1.0, 5.0]))
    assert not is_uniform(np.array([0.0, 1.0, 2.0 + 5e-6]))  # steps 5e-6 apart: beyond rtol 1e-6
    assert not is_uniform(np.array([0.0, 1e-9, 2.5e-9]))  # tiny steps: no absolute 1e-8 slack
    assert not is_uniform(np.array([0.0, 1e-7, 2e-7 + 1.5e-12]))  # atol is 1e-12 below |v| = 1
    assert is_uniform(1e6 + np.array([0.0, 1e-3, 2e-3 + 5e-7]))  # atol grows with |v|: 1e-12 · 1e6


def test_level_decimals_tell_adjacent_levels_apart() -> None:
    from landscape_job.plots.levels import level_decimals

    assert level_decimals(np.array([1.0])) == 2
    assert level_decimals(np.array([0.5, 1.0])) == 1
    assert level_decimals(np.array([1.0, 2.0, 3.0])) == 0
    assert level_decimals(np.array([0.25, 0.5, 0.75])) == 2
    assert level_decimals(np.array([0.0, 1e-5, 2e-5])) == 4  # at most 4


def test_a_curves_top_is_its_max_unless_a_divergence_towers_over_its_90th_percentile() -> None:
    from landscape_job.plots.levels import CURVE_P90_FACTOR, curve_top

    diverging = np.concatenate([np.linspace(0.0, 1.0, 101), [1e6, np.inf, np.nan]])
    finite = diverging[np.isfinite(diverging)]
    assert curve_top(diverging) == pytest.approx(CURVE_P90_FACTOR * float(np.percentile(finite, 90)), rel=1e-12)
    assert curve_top(np.array([-3.0, -2.0, -1.0])) == -1.0  # p90 <= 0: the maximum
    assert curve_top(np.array([0.0] * 10 + [5.0])) == 5.0  # p90 = 0 exactly
