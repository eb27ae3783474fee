"""Comparison figures (issue 25): several runs on one axis or side by side on ONE colour scale,
in the figure (plots.compare), ``launcher plot --overlay``, ``ls.compare`` and the comparison page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.contour import QuadContourSet

from landscape_job import api as ls
from landscape_job.outputs.viewer import compare_payload
from landscape_job.plots import PlotOptions
from landscape_job.plots.compare import compare_figure, run_labels
from landscape_job.plots.levels import contour_levels, loss_range
from landscape_job.surface.file import load_surface
from launcher.cli import main as launcher
from test_plots import write_surface


def _plane(path: Path, scale: float, name: str) -> Path:
    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    X, Y = np.meshgrid(x, y)
    loss = scale * (X ** 2 + Y ** 2) + 0.5
    return write_surface(path, x, y, attrs={"name": name}, train_loss=loss, test_loss=loss + 0.1,
                         train_acc=100 - loss, test_acc=99 - loss)


def _curve(path: Path, shift: float, name: str) -> Path:
    x = np.linspace(-0.5, 1.5, 11)
    return write_surface(path, x, attrs={"name": name}, train_loss=(x - shift) ** 2 + 0.1,
                         test_loss=(x - shift) ** 2 + 0.2)


def test_planes_share_one_colour_scale_taken_over_all_runs(tmp_path: Path) -> None:
    a = load_surface(_plane(tmp_path / "a.h5", 1.0, "sgd"))
    b = load_surface(_plane(tmp_path / "b.h5", 4.0, "sam"))
    fig = compare_figure([a, b], options=PlotOptions(log=False))
    sets = [c for ax in fig.axes for c in ax.get_children() if isinstance(c, QuadContourSet) and c.filled]
    assert len(sets) == 2
    assert np.array_equal(sets[0].levels, sets[1].levels)
    assert sets[0].norm.vmin == sets[1].norm.vmin and sets[0].norm.vmax == sets[1].norm.vmax
    # The scale is the one a single figure of both runs' values would get (the loss rules, computed here anew).
    lo, hi = loss_range(np.concatenate([a.metrics["train_loss"].ravel(), b.metrics["train_loss"].ravel()]))
    np.testing.assert_allclose(sets[0].levels, contour_levels(lo, hi, fill=True))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["sgd", "sam"]
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 1


def test_curves_overlay_on_one_axis_labelled_from_the_runs(tmp_path: Path) -> None:
    runs = [load_surface(_curve(tmp_path / f"{i}.h5", shift, "interp")) for i, shift in enumerate((0.0, 0.5, 1.0))]
    fig = compare_figure(runs)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]
    assert len(lines) == 6  # three runs x (train, test)
    assert {line.get_label() for line in lines} == {f"interp #{i}, {s}" for i in (1, 2, 3) for s in ("train", "test")}
    np.testing.assert_array_equal(lines[0].get_ydata(), runs[0].metrics["train_loss"])


def test_repeated_names_take_their_folders(tmp_path: Path) -> None:
    (tmp_path / "sgd").mkdir()
    (tmp_path / "sam").mkdir()
    runs = [load_surface(_curve(tmp_path / d / "surface.h5", 0.0, "notebook")) for d in ("sgd", "sam")]
    assert run_labels(runs) == ["notebook (sgd)", "notebook (sam)"]


@pytest.mark.slow
def test_launcher_plot_overlay_writes_the_figure_and_the_page(tmp_path: Path, capsys) -> None:
    a, b = _plane(tmp_path / "a.h5", 1.0, "sgd"), _plane(tmp_path / "b.h5", 4.0, "sam")
    out = tmp_path / "cmp"
    assert launcher(["plot", str(a), str(b), "--overlay", "-o", str(out), "--labels", "SGD,SAM"]) == 0
    assert {p.name for p in out.iterdir()} == {"compare.png", "compare.pdf", "compare.html"}
    page = (out / "compare.html").read_text()
    data = json.loads(re.search(r'<script id="compare-data" type="application/json">(.*?)</script>', page, re.S)
                      .group(1))
    assert [r["label"] for r in data["runs"]] == ["SGD", "SAM"]
    fields_lo = compare_payload([load_surface(a), load_surface(b)])["lo"]
    assert data["lo"] == fields_lo and data["hi"] > data["lo"]
    # Two files without --overlay, a mix of curves and planes: one line each, exit 2.
    assert launcher(["plot", str(a), str(b)]) == 2
    c = _curve(tmp_path / "c.h5", 0.0, "line")
    assert launcher(["plot", str(a), str(c), "--overlay", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "add --overlay" in err and "mix 1-D curves and 2-D surfaces" in err


def test_the_api_compares_landscapes_and_files(tmp_path: Path) -> None:
    a = ls.Landscape.load(_curve(tmp_path / "a.h5", 0.0, "a"))
    fig = ls.compare([a, tmp_path / "a.h5"], labels=["mem", "file"], page=tmp_path / "c.html")
    assert (tmp_path / "c.html").is_file() and fig._repr_png_().startswith(b"\x89PNG")
