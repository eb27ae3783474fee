"""Shards cover the grid coarse to fine, so a run stopped early previews the whole surface.

The order is checked as arithmetic (a permutation whose prefixes are lattices; the shard
sizes of the contiguous order), and end to end: the same run merged from coarse-to-fine
shards and from contiguous ones (the manifest of an older run) gives bit-identical
datasets; a run stopped at a quarter of its points resumes to the same surface, and its
preview draws the whole grid at a lower resolution.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.figure import Figure

from conftest import run_all, spec_from
from landscape_job import stages
from landscape_job.plots.preview import write_preview
from landscape_job.run.finished import finished_points
from landscape_job.run.records import Manifest
from landscape_job.run.shards import ShardData, read_shard, segment_key, shard_bytes, shard_key
from landscape_job.spec.grid import (COARSE_TO_FINE, CONTIGUOUS, Axis, Grid, axis_levels, refinement_levels,
                                     refinement_order)
from launcher.api import Run
from launcher.backends.local import LocalBackend
from launcher.cli import main as launcher_main
from launcher.local.runner import open_run

QUIET = lambda _msg: None  # noqa: E731

GRIDS = [Grid(Axis(-1, 1, 21), Axis(-1, 1, 21)), Grid(Axis(-1, 1, 13), Axis(0, 1, 7)), Grid(Axis(-1, 2, 9)),
         Grid(Axis(0, 1, 1), Axis(0, 1, 2)), Grid(Axis(-1, 1, 51), Axis(-2, 2, 3))]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 51, 64, 65])
def test_axis_levels_bisect_the_whole_axis(n: int) -> None:
    """The ends are level 0, and each level's indices halve the gaps of the coarser ones."""
    levels = axis_levels(n)
    assert levels[0] == 0 and levels[-1] == 0
    for level in range(int(levels.max()) + 1):
        kept = np.flatnonzero(levels <= level)
        gaps = np.diff(kept)
        assert kept[0] == 0 and kept[-1] == n - 1
        # Nearly even: no gap more than twice another (the lattice spans the axis evenly).
        assert gaps.size == 0 or gaps.max() <= max(2 * gaps.min(), 2)
    assert np.all(np.diff(np.flatnonzero(levels <= levels.max())) == 1) or n == 1


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g.nx}x{g.ny}")
def test_refinement_order_is_a_permutation_whose_levels_are_lattices(grid: Grid) -> None:
    order = refinement_order(grid)
    assert sorted(order.tolist()) == list(range(grid.size))
    levels = refinement_levels(grid)[order]
    assert np.all(np.diff(levels) >= 0)  # coarse to fine
    lx, ly = axis_levels(grid.nx), axis_levels(grid.ny)
    for level in range(int(levels.max()) + 1):
        prefix = set(order[: int(np.sum(levels <= level))].tolist())
        lattice = {j * grid.nx + i for j in np.flatnonzero(ly <= level) for i in np.flatnonzero(lx <= level)}
        assert prefix == lattice


@pytest.mark.slow
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g.nx}x{g.ny}")
@pytest.mark.parametrize("order", [CONTIGUOUS, COARSE_TO_FINE, None])
def test_shards_partition_the_grid_with_the_contiguous_sizes(grid: Grid, order) -> None:
    for n in {1, 2, 3, 7, grid.size}:
        points = [grid.shard_points(i, n, order) for i in range(n)]
        assert sorted(np.concatenate(points).tolist()) == list(range(grid.size))
        assert [len(p) for p in points] == [len(grid.shard_range(i, n)) for i in range(n)]
        for i, owned in enumerate(points):
            assert np.all(grid.shard_of(owned, n, order) == i)


def test_a_quarter_of_every_shard_is_a_coarse_lattice_over_the_whole_grid() -> None:
    """Each shard's first quarter, together: the 17 x 17 lattice of a 41 x 41 grid, corners included."""
    grid = Grid(Axis(-1, 1, 41), Axis(-1, 1, 41))
    done = np.zeros(grid.size, dtype=bool)
    for i in range(4):
        points = grid.shard_points(i, 4, COARSE_TO_FINE)
        done[points[: len(points) // 4]] = True
    lattice = np.flatnonzero(axis_levels(41) <= 4)
    assert len(lattice) == 17 and lattice[0] == 0 and lattice[-1] == 40
    square = done.reshape(41, 41)
    assert square[np.ix_(lattice, lattice)].all()
    contiguous = np.zeros(grid.size, dtype=bool)
    for i in range(4):
        points = grid.shard_points(i, 4, CONTIGUOUS)
        contiguous[points[: len(points) // 4]] = True
    assert not contiguous.reshape(41, 41)[np.ix_(lattice, lattice)].all()  # the old order: bands only


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}


def _contiguous_run(run) -> None:
    """Makes a prepared run one of before shard orders (its manifest without ``shard_order``)."""
    manifest = Manifest.from_json(run.get("manifest.json"))
    assert manifest.shard_order == COARSE_TO_FINE
    raw = json.loads(manifest.to_json())
    del raw["shard_order"]
    run.put("manifest.json", json.dumps(raw).encode())


@pytest.mark.slow
@pytest.mark.parametrize("grid", [{"x": "-1:1:9", "y": "-1:1:7"}, {"x": "-1:2:11"}], ids=["2-D", "1-D"])
def test_coarse_to_fine_merges_bit_identical_to_contiguous(tmp_path: Path, linear_spec: dict, grid: dict) -> None:
    linear_spec["grid"] = grid
    linear_spec["compute"].update(shards=3, precision="fp32")
    spec = spec_from(tmp_path, linear_spec)
    fine = open_run(spec, "fine")
    run_all(fine, 3)
    old = open_run(spec, "old")
    stages.prepare(old, log=QUIET)
    _contiguous_run(old)
    for shard in range(3):
        stages.evaluate(old, shard, log=QUIET)
    stages.merge(old, log=QUIET, plots=False)
    # The shard files differ (which points, in which order); the surfaces do not.
    assert read_shard(fine.get(shard_key(0, 3)), "f").indices.tolist() != \
        read_shard(old.get(shard_key(0, 3)), "o").indices.tolist()
    got, want = _datasets(tmp_path / "runs/fine/surface.h5"), _datasets(tmp_path / "runs/old/surface.h5")
    assert sorted(got) == sorted(want) and len(got) >= (6 if "y" in grid else 5)  # metrics + coordinates
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _stop_at(run, spec, share: float) -> int:
    """Leaves ``run`` as workers stopped at ``share`` of their points leave it: each shard's first
    points (in its order) as one checkpoint segment, no shard file, no surface. Returns the points kept."""
    kept = 0
    for shard in range(spec.compute.shards):
        data = read_shard(run.get(shard_key(shard, spec.compute.shards)), "shard")
        n = int(round(len(data.indices) * share))
        part = ShardData(indices=data.indices[:n], metrics={k: v[:n] for k, v in data.metrics.items()},
                         attrs=data.attrs)
        run.put(segment_key(shard, spec.compute.shards, int(part.indices[0])), shard_bytes(part))
        run.delete(shard_key(shard, spec.compute.shards))
        kept += n
    for key in ("surface.h5", "report.json"):
        run.delete(key)
    return kept


@pytest.mark.slow
def test_a_run_stopped_at_a_quarter_previews_the_whole_grid_and_resumes_to_the_same_surface(
        tmp_path: Path, linear_spec: dict) -> None:
    linear_spec["grid"] = {"x": "-1:1:21", "y": "-1:1:21"}
    linear_spec["compute"].update(shards=4, precision="fp32")
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "r")
    run_all(run, 4)
    whole = _datasets(tmp_path / "runs/r/surface.h5")
    kept = _stop_at(run, spec, 0.25)
    points = finished_points(run)
    assert points.count == kept and points.objects == 4 and points.skipped == 0
    preview = write_preview(points, tmp_path / "p.png")
    assert preview.shown == (9, 9) and preview.missing == 0  # x, y at 0, 2, 5, 7, 10, 12, 15, 17, 20
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The values the preview drew are the run's own at those points.
    axis = np.flatnonzero(axis_levels(21) <= 3)
    assert axis.tolist() == [0, 2, 5, 7, 10, 12, 15, 17, 20]
    lattice = np.ix_(axis, axis)
    np.testing.assert_array_equal(points.values["train_loss"].reshape(21, 21)[lattice], whole["train_loss"][lattice])
    for shard in range(4):  # resume: only the other three quarters are computed
        stages.evaluate(run, shard, log=QUIET)
    stages.merge(run, log=QUIET, plots=False)
    resumed = _datasets(tmp_path / "runs/r/surface.h5")
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


def test_preview_marks_the_points_a_lost_shard_left_missing(tmp_path: Path, linear_spec: dict) -> None:
    """Shard 1 of 2 never ran: half of every lattice is missing; the preview marks them, not hides them."""
    linear_spec["grid"] = {"x": "-1:1:9", "y": "-1:1:9"}
    linear_spec["compute"].update(shards=2, precision="fp32")
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "r")
    stages.prepare(run, log=QUIET)
    stages.evaluate(run, 0, log=QUIET)
    points = finished_points(run)
    assert points.count == 41
    preview = write_preview(points, tmp_path / "p.png")
    # Every lattice is half done: the finest (the whole 9 x 9 grid) is drawn, shard 1's 40 points marked.
    assert preview.shown == (9, 9) and preview.missing == 40


@pytest.mark.slow
def test_launcher_status_preview_writes_the_png(tmp_path: Path, linear_spec: dict, capsys, monkeypatch) -> None:
    linear_spec["grid"] = {"x": "-1:1:9", "y": "-1:1:9"}
    linear_spec["compute"].update(shards=2, precision="fp32")
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "r")
    run_all(run, 2)
    _stop_at(run, spec, 0.25)
    monkeypatch.chdir(tmp_path)
    assert launcher_main(["status", "r", "--storage", str(tmp_path / "runs"), "--preview"]) == 0
    out = capsys.readouterr().out
    assert "preview: 20 of 81 points finished (25%); train_loss shown at 3 x 3" in out
    assert (tmp_path / "r-preview.png").stat().st_size > 1000
    # The Python handle draws the same figure (and saves it when given a path).
    figure = Run(spec, "r", LocalBackend(str(tmp_path / "runs"))).preview(tmp_path / "api.png")
    assert isinstance(figure, Figure) and "(preview)" in figure.axes[0].get_title()
    assert (tmp_path / "api.png").read_bytes()[:4] == b"\x89PNG"
