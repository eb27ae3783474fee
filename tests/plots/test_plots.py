"""Plots of surface files: the files written, that they are real images, orientation,
divergent values, and the user errors for bad options and non-surface files."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest

from landscape_job import plots
from landscape_job.base.errors import UserError
from landscape_job.plots import draw1d, draw2d, fields
from landscape_job.plots import PlotOptions, plot_surface

NX, NY = 21, 13  # deliberately not square
LOSS_STEMS = ("loss_2d_contour", "loss_2d_contourf", "loss_2d_heat", "loss_3d_surface")


def write_surface(path: Path, x, y=None, attrs=None, **metrics) -> Path:
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.asarray(x, dtype=np.float64)
        if y is not None:
            f["ycoordinates"] = np.asarray(y, dtype=np.float64)
        for name, values in metrics.items():
            f[name] = np.asarray(values, dtype=np.float64)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def grid(nx=NX, ny=NY):
    x = np.linspace(-1.0, 1.0, nx)
    y = np.linspace(-0.5, 0.5, ny)
    X, Y = np.meshgrid(x, y)  # (ny, nx): Z[j, i] = f(x[i], y[j])
    return x, y, X, Y


def bowl_surface(tmp_path: Path, splits=("train", "test")) -> Path:
    x, y, X, Y = grid()
    metrics = {}
    for k, split in enumerate(splits):
        loss = X**2 + 3 * Y**2 + 0.1 + 0.2 * k
        metrics[f"{split}_loss"] = loss
        metrics[f"{split}_acc"] = 100 - loss
    attrs = {"name": "bowl", "arch": "resnet56", "dataset": "cifar10", "xlabel": "δ", "ylabel": "η"}
    return write_surface(tmp_path / "surface.h5", x, y, attrs=attrs, **metrics)


def assert_real_png(path: Path, figsize, dpi: int) -> np.ndarray:
    image = mpimg.imread(path)
    expected = (round(figsize[1] * dpi), round(figsize[0] * dpi))
    assert image.shape[:2] == expected, f"{path.name}: {image.shape[:2]} != {expected}"
    rgb = image[..., :3].reshape(-1, 3)
    assert np.ptp(rgb, axis=0).max() > 0.5, f"{path.name} is blank"
    assert len(np.unique(np.round(rgb * 255).astype(int), axis=0)) > 20, f"{path.name} has almost no content"
    return image


# --------------------------------------------------------------------------- 2-D


@pytest.mark.slow
def test_2d_writes_every_plot_for_each_split_as_real_pngs(tmp_path):
    dpi = 40
    out = tmp_path / "plots"
    written = plot_surface(bowl_surface(tmp_path), out, PlotOptions(dpi=dpi, formats=("png",)))

    stems = [f"{split}_{stem}" for split in ("train", "test") for stem in LOSS_STEMS]
    stems += ["train_acc_2d_contourf", "test_acc_2d_contourf"]
    expected = sorted(out / f"{stem}.png" for stem in stems)
    assert written == expected
    assert sorted(out.iterdir()) == expected
    for path in written:
        assert_real_png(path, plots.FIGSIZE_3D if "3d" in path.name else plots.FIGSIZE_2D, dpi)


@pytest.mark.slow
def test_2d_only_the_splits_present_in_every_requested_format(tmp_path):
    x, y, X, Y = grid()
    path = write_surface(tmp_path / "s.h5", x, y, train_loss=X**2 + Y**2)  # no acc, no test split
    out = tmp_path / "out"
    written = plot_surface(path, out, PlotOptions(dpi=40))  # default formats: png and pdf
    assert written == sorted(out / f"train_{stem}.{fmt}" for stem in LOSS_STEMS for fmt in ("png", "pdf"))
    for p in written:
        if p.suffix == ".pdf":
            assert p.read_bytes()[:4] == b"%PDF"
            assert p.stat().st_size > 2000
        else:
            assert_real_png(p, plots.FIGSIZE_3D if "3d" in p.name else plots.FIGSIZE_2D, 40)


@pytest.mark.slow
def test_2d_nan_inf_and_divergent_points_plot_and_are_clipped(tmp_path):
    x, y, X, Y = grid()
    loss = X**2 + 3 * Y**2 + 0.1
    loss[0, 0], loss[3, 4], loss[-1, -1] = np.nan, np.inf, 1e6  # diverged points
    acc = 100 - np.minimum(loss, 100)
    acc[0, 0] = np.nan
    # The default vmax ignores the 1e6 spike (it would flatten every contour into one).
    lo, hi = plots.loss_range(loss)
    assert lo == pytest.approx(0.1)
    assert 3 < hi < 10
    # Linear scale is covered above; log10 also masks the non-positive loss added here.
    loss[5, 5] = 0.0
    path = write_surface(tmp_path / "s.h5", x, y, train_loss=loss, train_acc=acc)
    written = plot_surface(path, tmp_path / "out", PlotOptions(formats=("png",), dpi=40, log=True))
    assert len(written) == 5
    for p in written:
        assert_real_png(p, plots.FIGSIZE_3D if "3d" in p.name else plots.FIGSIZE_2D, 40)


def test_all_nan_split_gets_placeholder_plots_not_a_crash(tmp_path):
    x, y, X, Y = grid()
    path = write_surface(tmp_path / "s.h5", x, y, test_loss=np.full_like(X, np.nan), test_acc=X * 0 + 50)
    written = plot_surface(path, tmp_path / "out", PlotOptions(formats=("png",), dpi=40))
    assert {p.stem for p in written} == {f"test_{s}" for s in LOSS_STEMS} | {"test_acc_2d_contourf"}


# --------------------------------------------------------------------------- orientation


def test_heatmap_image_keeps_x_horizontal_and_y_vertical():
    x, y, X, Y = grid()
    array, extent = plots.heatmap_image(x, y, X)  # f = x
    assert array.shape == (NY, NX)
    assert np.all(np.diff(array, axis=1) > 0)  # increases left to right in every row
    assert np.all(np.diff(array, axis=0) == 0)
    dx, dy = x[1] - x[0], y[1] - y[0]
    assert extent == pytest.approx((-1 - dx / 2, 1 + dx / 2, -0.5 - dy / 2, 0.5 + dy / 2))
    array, _ = plots.heatmap_image(x, y, Y)  # f = y: with origin="lower", row 0 is the bottom
    assert np.all(np.diff(array, axis=0) > 0)
    with pytest.raises(ValueError):
        plots.heatmap_image(x, y, X.T)  # the transposed (nx, ny) layout is refused


def _axes_pixels(fig) -> tuple[np.ndarray, object]:
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255
    ax = fig.axes[0]
    return rgba, ax.get_window_extent()


def _luminance(pixels: np.ndarray) -> float:
    return float((pixels @ np.array([0.2126, 0.7152, 0.0722])).mean())


@pytest.mark.parametrize("varies_with", ["x", "y"])
def test_rendered_heatmap_is_dark_where_loss_is_low(tmp_path, varies_with):
    x, y, X, Y = grid()
    loss = X + 2 if varies_with == "x" else Y + 2
    path = write_surface(tmp_path / "s.h5", x, y, train_loss=loss)
    surface = plots.load_surface(path)
    field = fields.loss_field(surface, surface.metrics["train_loss"], PlotOptions())
    fig = draw2d.fig_heat(surface, field, "t", dpi=60)
    rgba, box = _axes_pixels(fig)
    height = rgba.shape[0]
    # Pixel rows count from the top; the display box from the bottom.
    top, bottom = height - int(box.y1) + 3, height - int(box.y0) - 3
    left, right = int(box.x0) + 3, int(box.x1) - 3
    inside = rgba[top:bottom, left:right]
    h, w = inside.shape[:2]
    if varies_with == "x":
        low, high = inside[:, : w // 8], inside[:, -w // 8 :]
        across = inside[:, 2 * w // 3 - 2 : 2 * w // 3 + 2]  # off the centre, where θ* is marked
        # Columns are uniform: every row of a column has the same colour.
        assert np.ptp(across[5:-5], axis=0).max() < 0.05
    else:
        low, high = inside[-h // 8 :], inside[: h // 8]
    # viridis: low values dark purple, high values bright yellow.
    assert _luminance(low) < 0.2 < 0.7 < _luminance(high)


# --------------------------------------------------------------------------- 1-D


@pytest.mark.slow
def test_1d_with_nan_and_inf_plots_both_files(tmp_path):
    x = np.linspace(-1, 1, 31)
    loss = x**2 + 0.05
    loss[0], loss[5], loss[-1] = np.inf, np.nan, 1e8
    acc = 100 - 50 * x**2
    acc[7] = np.nan
    path = write_surface(tmp_path / "s.h5", x, train_loss=loss, train_acc=acc, test_loss=loss + 0.2,
                         attrs={"arch": "vgg9", "dataset": "cifar10", "direction_type": "interpolate"})
    dpi = 50
    written = plot_surface(path, tmp_path / "out", PlotOptions(formats=("png",), dpi=dpi))
    assert [p.name for p in written] == ["1d_loss.png", "1d_loss_log.png"]
    for p in written:
        assert_real_png(p, plots.FIGSIZE_1D, dpi)


def test_1d_loss_axis_is_log_only_in_the_log_plot(tmp_path):
    x = np.linspace(0, 1, 11)
    path = write_surface(tmp_path / "s.h5", x, train_loss=np.exp(5 * x), train_acc=100 - x)
    surface = plots.load_surface(path)
    linear = draw1d.plot_1d(surface, PlotOptions(), log=False)
    logged = draw1d.plot_1d(surface, PlotOptions(), log=True)
    assert linear.axes[0].get_yscale() == "linear"
    assert logged.axes[0].get_yscale() == "log"
    assert linear.axes[1].get_ylim() == (0, 100)  # accuracy axis in percent


def test_single_row_2d_surface_is_plotted_as_1d(tmp_path):
    x = np.linspace(-1, 1, 9)
    path = write_surface(tmp_path / "s.h5", x, [0.0], train_loss=(x**2)[None, :])
    written = plot_surface(path, tmp_path / "out", PlotOptions(formats=("png",), dpi=40))
    assert [p.name for p in written] == ["1d_loss.png", "1d_loss_log.png"]


# --------------------------------------------------------------------------- options, files


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"vmin": 2.0, "vmax": 1.0}, "plot.vmin"),
        ({"vmin": 1.0, "vmax": 1.0}, "plot.vmin"),
        ({"vlevel": 0.0}, "plot.vlevel"),
        ({"vlevel": -0.5}, "plot.vlevel"),
        ({"vmax": float("nan")}, "plot.vmax"),
        ({"formats": ("png", "gif")}, "plot.formats"),
        ({"formats": ()}, "plot.formats"),
        ({"log": True, "vmin": 0.0}, "plot.vmin"),
        ({"dpi": 0}, "plot.dpi"),
    ],
)
def test_bad_options_are_user_errors_naming_the_key(kwargs, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        PlotOptions(**kwargs)


def test_options_that_leave_no_range_are_user_errors(tmp_path):
    x, y, X, Y = grid()
    path = write_surface(tmp_path / "s.h5", x, y, train_loss=X**2)  # loss in [0, 1]
    with pytest.raises(UserError, match=r"plot\.vmin"):
        plot_surface(path, tmp_path / "a", PlotOptions(vmin=5.0, formats=("png",)))
    with pytest.raises(UserError, match=r"plot\.vlevel"):
        plot_surface(path, tmp_path / "b", PlotOptions(vlevel=1e-6, formats=("png",)))


def test_formats_are_normalised():
    assert PlotOptions(formats=("PNG", ".pdf", "png")).formats == ("png", "pdf")


def test_a_file_that_is_not_a_surface_is_a_user_error_naming_it(tmp_path):
    no_coords = tmp_path / "directions.h5"
    with h5py.File(no_coords, "w") as f:
        f["xdirection/0"] = np.zeros(3)
    with pytest.raises(UserError, match="directions.h5.*xcoordinates"):
        plot_surface(no_coords, tmp_path / "out")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(UserError, match="notes.h5"):
        plot_surface(text, tmp_path / "out")
    with pytest.raises(UserError, match="missing.h5"):
        plot_surface(tmp_path / "missing.h5", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_transposed_metric_is_refused(tmp_path):
    x, y, X, Y = grid()
    path = write_surface(tmp_path / "s.h5", x, y, train_loss=X.T)  # (nx, ny): the paper's bug
    with pytest.raises(UserError, match="transposed"):
        plot_surface(path, tmp_path / "out")


def test_no_pyplot_figures_or_rc_changes_leak(tmp_path):
    import matplotlib.pyplot as plt

    before = dict(matplotlib.rcParams)
    open_before = plt.get_fignums()
    x = np.linspace(-1, 1, 5)
    path = write_surface(tmp_path / "s.h5", x, train_loss=x**2, test_loss=x**2 + 1)
    plot_surface(path, tmp_path / "out", PlotOptions(formats=("png",), dpi=30))
    assert plt.get_fignums() == open_before
    assert dict(matplotlib.rcParams) == before


# --------------------------------------------------------------------------- ranges, levels


def test_default_vmax_keeps_a_bowl_and_clips_a_spike():
    bowl = np.linspace(0.0, 1.0, 101) ** 2 * 4 + 0.1  # median far above the minimum
    assert plots.loss_range(bowl) == (pytest.approx(0.1), pytest.approx(4.1))
    spiky = np.concatenate([bowl, [1e4, 1e30]])
    lo, hi = plots.loss_range(spiky)
    assert lo == pytest.approx(0.1)
    assert hi == pytest.approx(0.1 + 5 * (np.median(spiky) - 0.1))
    assert plots.loss_range(np.array([np.nan, np.inf])) is None
    # The user's bounds win.
    assert plots.loss_range(spiky, 0.5, 3.0) == (0.5, 3.0)
    lo, hi = plots.loss_range(spiky, log=True)
    robust = 0.1 + 5 * (np.median(spiky) - 0.1)  # in loss units, also for log plots
    assert (lo, hi) == (pytest.approx(math.log10(0.1)), pytest.approx(math.log10(robust)))


def test_default_levels_are_round_and_about_thirty():
    levels = plots.contour_levels(0.1, 4.1)
    step = np.diff(levels)
    assert np.allclose(step, step[0]) and step[0] in (0.1, 0.2, 0.25, 0.5)
    assert 8 <= len(levels) <= 31
    assert np.allclose(levels / step[0], np.round(levels / step[0]))  # multiples of the step
    assert levels[0] >= 0.1 and levels[-1] <= 4.1
    fill = plots.contour_levels(0.1, 4.1, fill=True)
    assert fill[0] <= 0.1 and fill[-1] >= 4.1
    # A user's vmin anchors the levels, as in the paper's arange(vmin, vmax, vlevel).
    assert plots.contour_levels(0.3, 2.0, 0.5, anchor=0.3) == pytest.approx([0.3, 0.8, 1.3, 1.8])


def test_log_levels_are_round_loss_values():
    levels = plots.log_contour_levels(math.log10(0.02), math.log10(10))
    values = 10.0**levels
    assert 6 <= len(values) <= 31
    mantissas = values / 10.0 ** np.floor(np.log10(values) + 1e-9)
    assert set(np.round(mantissas, 6)) <= {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9}


def test_1d_range_keeps_an_interpolation_barrier_but_clips_divergence() -> None:
    """Most of an interpolation sits in the two minima; the barrier between them must stay in view."""
    from landscape_job.plots import curve_top

    alpha = np.linspace(-0.5, 1.5, 81)
    curve = 0.05 + 1.4 * np.exp(-((alpha - 0.5) / 0.12) ** 2) + 0.5 * np.clip(np.abs(alpha - 0.5) - 0.9, 0, None)
    assert curve_top(curve) == pytest.approx(curve.max())
    diverging = curve.copy()
    diverging[-1] = 1e6
    assert curve_top(diverging) < 1e2


def test_a_large_grid_is_drawn_thinned_with_its_ends(tmp_path):
    """Above MAX_DRAWN lines a side the figures draw every k-th line (both ends kept); the
    values drawn are the surface's own at those lines."""
    from landscape_job.plots.figures import MAX_DRAWN, drawn
    from landscape_job.surface.file import load_surface

    x, y = np.linspace(-1, 1, 2 * MAX_DRAWN + 7), np.linspace(-1, 1, 5)
    loss = np.add.outer(y, x) ** 2
    surface = load_surface(write_surface(tmp_path / "big.h5", x, y, train_loss=loss))
    thin = drawn(surface)
    assert len(thin.x) <= MAX_DRAWN and thin.x[0] == x[0] and thin.x[-1] == x[-1]
    np.testing.assert_array_equal(thin.y, y)
    columns = np.searchsorted(x, thin.x)
    np.testing.assert_array_equal(thin.metrics["train_loss"], loss[:, columns])
    small = load_surface(write_surface(tmp_path / "small.h5", *grid()[:2], train_loss=np.ones((NY, NX))))
    assert drawn(small) is small
