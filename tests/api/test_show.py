"""``.show()`` of a result, in and out of a notebook, and the tail-index figure's Gaussian line (issue 25).

The notebook test (test_notebook.py) sees what a kernel shows for a bare result in a cell; these see the
other way to show one, the explicit call: in a kernel it displays the result and its figures wherever in
the cell it stands, elsewhere it writes the viewer page and opens it in the browser.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from landscape_job import api as ls
from landscape_job.api import result
from landscape_job.series.file import series_bytes


@pytest.fixture(scope="module")
def plane() -> ls.Landscape:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    return ls.plane(model, (x, y), x="-1:1:3", y="-1:1:3", metrics=["loss"], progress=False)


def _series(tmp_path: Path) -> ls.Series:
    path = tmp_path / "series.h5"
    path.write_bytes(series_bytes(np.array([0, 10, 20]), ["a", "b", "c"],
                                  {"train_loss": np.array([1.0, 0.5, 0.2]), "tail_index": np.array([1.2, 1.5, 1.4])},
                                  {"name": "s", "lr": 0.1, "threshold": 20.0}))
    return ls.Series.load(path)


def test_outside_a_notebook_show_opens_the_viewer_page_in_the_browser(plane, tmp_path, monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    for shown, name in ((plane, "surface.html"), (_series(tmp_path), "series.html")):
        path = shown.show()
        assert path.name == name and opened[-1] == path.as_uri()
        assert path.read_text(encoding="utf-8") == shown.viewer_html()
    assert len(opened) == 2


def test_in_a_notebook_show_displays_the_result_and_its_figures(plane, tmp_path, monkeypatch) -> None:
    import IPython.display

    shown: list[tuple] = []
    monkeypatch.setattr(result, "in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.append(objs))
    monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail(f"a browser opened in a notebook: {url}"))
    series = _series(tmp_path)
    for item in (plane, series):
        assert item.show() is None
    assert [objs[0] for objs in shown] == [plane, series]
    assert set(shown[0][1]) == set(plane.plot()) and set(shown[1][1]) == set(series.plot())


def test_the_tail_index_figure_marks_the_gaussian_limit(tmp_path) -> None:
    """α = 2 is where the gradient noise is Gaussian (the stable laws' upper limit): a labelled line at 2,
    inside the axes even when every α is well below it."""
    from landscape_job.series.figures import tail_index_figure

    series = _series(tmp_path).series
    ax = tail_index_figure(series).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    gaussian = [line for label, line in lines.items() if label.startswith("α = 2")]
    assert len(gaussian) == 1 and np.all(np.asarray(gaussian[0].get_ydata(), dtype=float) == 2.0)
    np.testing.assert_array_equal(lines["all coordinates"].get_ydata(), [1.2, 1.5, 1.4])
    bottom, top = ax.get_ylim()
    assert bottom == 0.0 and top > 2.0
