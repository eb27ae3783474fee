"""A surface made in memory (``surface_from_values``, the Python API's result) is the surface its
file reads back as (``surface_from_bytes(surface_bytes(...))``): every array bit for bit, every
attribute, the fields' order, the labels, the PCA path, a collapsed grid, NaN and infinities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from landscape_job.spec.grid import Axis, Grid
from landscape_job.surface.file import Surface, surface_bytes, surface_from_bytes, surface_from_values

RNG = np.random.default_rng(7)
#: Every kind of value the provenance attributes hold (str, int, float, bool, NumPy scalars, None left out).
ATTRS = {"name": "notebook", "seed": 3, "cosine_xy": 0.1234567890123, "tiny": 1e-20, "huge": 3.5e17,
         "negative": -2.0, "whole": 2.0, "perturbed": True, "half": np.float32(0.1), "count": np.int64(-5),
         "title": None, "xlabel": "δ (filter-normalised)", "unicode": "λmax ≈ 2/η"}


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _assert_same(memory: Surface, read: Surface) -> None:
    for f in dataclasses.fields(Surface):
        assert _same(getattr(memory, f.name), getattr(read, f.name)), f.name


def _values(n: int) -> np.ndarray:
    v = RNG.standard_normal(n) * 10.0 ** RNG.integers(-30, 30, n)
    v[::5] = np.nan
    v[1::7] = np.inf
    return v


@pytest.mark.parametrize("grid, trajectory", [
    (Grid(Axis(-1, 1, 5), Axis(-0.5, 0.25, 3)), None),
    (Grid(Axis(-1, 1, 7)), None),
    (Grid(Axis(-1, 1, 5), Axis(0, 0, 1)), None),  # one row: read as the 1-D curve along x
    (Grid(Axis(0.5, 0.5, 1), Axis(-1, 1, 4)), None),  # one column: the curve along y
    (Grid(Axis(-1, 1, 5), Axis(-1, 1, 5)), {"x": [0.1, -0.2, 0.0], "y": [0.3, 0.4, 0.0], "names": ["a", "b", "θ*"],
                                            "explained_variance": [0.6, 0.3]}),
    (Grid(Axis(-1, 1, 5)), {"x": [0.1, 0.0], "y": None, "names": ["a", "final"], "explained_variance": [0.9]}),
])
def test_a_surface_in_memory_is_its_file_read_back(grid: Grid, trajectory: dict | None) -> None:
    # Registered metrics out of the registry's order and fields no metric declares, to test the order too.
    names = ["test_acc", "zeta_custom", "train_loss", "alpha_custom", "max_eig", "train_acc"]
    flat = {name: _values(grid.size) for name in names}
    read = surface_from_bytes(surface_bytes(grid, flat, ATTRS, trajectory), "<notebook: surface.h5>")
    memory = surface_from_values(grid, flat, ATTRS, trajectory, "<notebook: surface.h5>")
    _assert_same(memory, read)
    assert list(memory.metrics)[:2] == ["train_loss", "train_acc"]  # not vacuous: ordered, and values read
    assert np.isnan(memory.metrics["train_loss"]).any() and not np.isinf(memory.metrics["train_loss"]).any()


def test_the_surface_in_memory_copies_what_it_was_given() -> None:
    grid = Grid(Axis(-1, 1, 3))
    flat = {"train_loss": np.array([1.0, 2.0, 3.0])}
    memory = surface_from_values(grid, flat, {"name": "n"})
    flat["train_loss"][0] = 99.0
    assert memory.metrics["train_loss"][0] == 1.0
