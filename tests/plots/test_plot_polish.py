"""Figure details a reader notices: contour labels inside the frame, the barrier said where no
curve runs, the 3-D surface inside its box, the lowest loss marked when it is not θ*, α = 1
marked on an interpolation."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from landscape_job.plots import PlotOptions, draw1d, draw2d, fields, load_surface
from landscape_job.plots.style import MINIMUM_LABEL, RC, TARGET_LABEL, off_centre_minimum
from test_plots import write_surface


def _surface(tmp_path: Path, loss: np.ndarray, x: np.ndarray, attrs=None):
    return load_surface(write_surface(tmp_path / "s.h5", x, x, attrs=attrs or {}, train_loss=loss))


def _loss_field(surface):
    return fields.loss_field(surface, surface.metrics["train_loss"], PlotOptions(log=False))


def test_contour_labels_lie_inside_the_frame(tmp_path: Path) -> None:
    """Straight level lines run into the frame; matplotlib labels one of them across it (cut in
    half at this size): no label may stick out of the axes."""
    x = np.linspace(-1, 1, 41)
    X, Y = np.meshgrid(x, x)
    surface = _surface(tmp_path, 2 + X + 0 * Y, x)
    with matplotlib.rc_context(RC):
        fig = draw2d.fig_contour(surface, _loss_field(surface), "t", dpi=60)
        fig.canvas.draw()
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        frame = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text() and t.get_text() not in ("θ*", MINIMUM_LABEL)]
        assert labels, "the figure lost its contour labels"
        for text in labels:
            box = text.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                text.get_text()


def test_the_barrier_is_said_in_the_legend_not_on_the_accuracy_curve(tmp_path: Path) -> None:
    x = np.linspace(-0.5, 1.5, 41)
    bump = 0.2 + 2.0 * np.exp(-((x - 0.5) ** 2) / 0.02)  # the barrier at α = 0.5
    path = write_surface(tmp_path / "i.h5", x, attrs={"direction_type": "interpolate"},
                         train_loss=bump, train_acc=100 - 30 * bump)
    with matplotlib.rc_context(RC):
        fig = draw1d.plot_1d(load_surface(path), PlotOptions(), log=False)
        fig.canvas.draw()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "train barrier 2" in legend, legend
    assert not any("barrier" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_alpha_one_is_marked_on_an_interpolation_only(tmp_path: Path) -> None:
    x = np.linspace(-0.5, 1.5, 21)
    for kind, marked in (("interpolate", True), ("random", False)):
        path = write_surface(tmp_path / f"{kind}.h5", x, attrs={"direction_type": kind}, train_loss=1 + x**2)
        with matplotlib.rc_context(RC):
            fig = draw1d.plot_1d(load_surface(path), PlotOptions(), log=False)
        ax = fig.axes[0]
        lines = [line for line in ax.lines if line.get_gid() == "target"]
        labels = [t.get_text() for t in ax.texts]
        assert (TARGET_LABEL in labels) == marked
        assert len(lines) == int(marked)
        if marked:
            assert list(lines[0].get_xdata()) == [1.0, 1.0]


def test_the_3d_surface_stays_inside_its_z_box(tmp_path: Path) -> None:
    """A spike far above the range's top is cut away: no vertex above the box's lid."""
    x = np.linspace(-1, 1, 31)
    X, Y = np.meshgrid(x, x)
    surface = _surface(tmp_path, 0.05 + np.exp(3 * (X**2 + Y**2)), x)
    with matplotlib.rc_context(RC):
        field = _loss_field(surface)
        assert field.hi < float(np.nanmax(surface.metrics["train_loss"]))  # the range clips the spike
        fig = draw2d.fig_3d(surface, field, "t", dpi=50)
    ax = fig.axes[0]
    lo, hi = ax.get_zlim()
    polys = [c for c in ax.collections if isinstance(c, Poly3DCollection)]
    # Every polygon's vertices in data units (a polygon with fewer corners is padded: those are invalid).
    z = np.concatenate([c._faces[:, :, 2][~np.asarray(c._invalid_vertices, dtype=bool)
                                           .reshape(c._faces.shape[:2])] if np.ndim(c._invalid_vertices)
                        else c._faces[:, :, 2].ravel() for c in polys])
    assert z.size and float(np.nanmax(z)) <= hi + 1e-9 and float(np.nanmin(z)) >= lo - 1e-9
    flat_lid = np.isclose(z, hi).mean()
    assert flat_lid < 0.01, f"{flat_lid:.0%} of the surface lies on the lid"


def test_the_lowest_loss_is_marked_when_it_is_not_theta_star(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x)
    assert off_centre_minimum(x, x, X**2 + Y**2) is None  # θ* is the minimum: nothing to say
    off = (X - 0.4) ** 2 + (Y + 0.6) ** 2
    assert off_centre_minimum(x, x, off) == (x[14], x[4]) and np.allclose((x[14], x[4]), (0.4, -0.6))
    surface = _surface(tmp_path, 1 + off, x)
    with matplotlib.rc_context(RC):
        for draw in (draw2d.fig_contour, draw2d.fig_heat):
            fig = draw(surface, _loss_field(surface), "t", dpi=50)
            ax = fig.axes[0]
            marks = [line for line in ax.lines if line.get_label() == MINIMUM_LABEL]
            assert len(marks) == 1, draw.__name__
            assert (float(marks[0].get_xdata()[0]), float(marks[0].get_ydata()[0])) == (x[14], x[4])
        centred = _surface(tmp_path, 1 + X**2 + Y**2, x)
        fig = draw2d.fig_contourf(centred, _loss_field(centred), "t", 50, "viridis")
        assert not [line for line in fig.axes[0].lines if line.get_label() == MINIMUM_LABEL]
