"""examples/notebook.ipynb executed headless in a fresh kernel (nbclient), as a user's Jupyter runs it.

A fresh kernel with no ``%matplotlib`` line and no MPLBACKEND: every figure must reach the
saved outputs as image/png, every result as text/html, and the progress line must end at
100% (the saved notebook keeps the last state of a display id, not tqdm's first 0%)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# One xdist worker runs this file's tests (make test: --dist loadgroup), so the notebook is executed once
# (~15 s of CPU), not once on each worker that gets one of them.
pytestmark = pytest.mark.xdist_group("notebook")


@pytest.fixture(scope="module")
def executed() -> "nbformat.NotebookNode":
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # a user's kernel: matplotlib's own default
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(EXAMPLES))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute(env=env)
    return notebook


def _code(notebook, marker: str):
    return next(c for c in notebook.cells if c.cell_type == "code" and marker in c.source)


def _mimes(cell) -> list[str]:
    return [m for out in cell.outputs if out.output_type in ("display_data", "execute_result") for m in out.data]


@pytest.mark.slow
def test_no_cell_sets_up_matplotlib(executed) -> None:
    code = [c.source for c in executed.cells if c.cell_type == "code"]
    assert code and not any("%matplotlib" in s or "matplotlib.use" in s or "MPLBACKEND" in s for s in code)


def test_results_show_as_html_and_figures_as_png(executed) -> None:
    plane = _code(executed, "plane = ls.plane")
    assert "text/html" in _mimes(plane) and "<iframe" in _result(plane)["text/html"]
    figures = _code(executed, "plane.plot()")
    # A 2-D plane with train and test splits: 4 loss figures and 1 accuracy figure per split.
    assert _mimes(figures).count("image/png") == 10
    assert _mimes(_code(executed, "curve.plot()")).count("image/png") == 1
    assert _mimes(_code(executed, "ls.compare(")).count("image/png") == 1
    curvature = _result(_code(executed, "ls.hessian("))
    assert "text/html" in curvature and "data:image/png;base64" in curvature["text/html"]
    assert "left out by ignore=biasbn" in curvature["text/html"]


def _result(cell) -> dict:
    return next(out.data for out in cell.outputs if out.output_type == "execute_result")


def test_the_saved_progress_line_reads_100_percent(executed) -> None:
    plane = _code(executed, "plane = ls.plane")
    lines = [out.data["text/html"] for out in plane.outputs
             if out.output_type == "display_data" and "text/html" in out.data and "<progress" in out.data["text/html"]]
    assert lines, "no progress line in the saved outputs"
    assert re.search(r"100%\s+49/49", lines[-1]), lines[-1]
