"""Self-healing resume (issue 13, point 5): a damaged or foreign shard or partial is moved aside,
kept for inspection, named in the report, and recomputed; a changed directions.h5 is refused
with the way out. Before: a shard with 8 flipped bytes was a traceback in merge, and a
foreign shard made resume refuse forever until the user deleted files by hand."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_all, spec_from
from landscape_job import stages
from landscape_job.base.errors import StageError
from landscape_job.run.shards import partial_key, shard_key
from launcher.local.runner import open_run

QUIET = lambda _m: None  # noqa: E731


def _surface(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["train_loss"][()]


@pytest.fixture
def finished(tmp_path: Path, linear_spec: dict):
    linear_spec["compute"]["shards"] = 2
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "r")
    run_all(run, 2)
    return spec, run, tmp_path / "runs" / "r", _surface(tmp_path / "runs" / "r" / "surface.h5")


def _flip(path: Path, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(5)
    for at in rng.choice(np.arange(len(data) // 3, len(data)), count, replace=False):
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_shard_with_flipped_bytes_is_set_aside_by_merge_and_recomputed(finished) -> None:
    spec, run, folder, surface = finished
    _flip(folder / shard_key(1, 2))
    with pytest.raises(StageError, match=r"moved aside to .*shards/quarantine/shard-1-of-2.h5\..*resume the run"):
        stages.merge(run, log=QUIET, plots=False)
    assert not (folder / shard_key(1, 2)).exists()
    stages.evaluate(run, 1, log=QUIET)  # the resume recomputes it
    report = stages.merge(run, log=QUIET, plots=False)
    assert np.array_equal(_surface(folder / "surface.h5"), surface)
    assert len(report["quarantined"]) == 1 and report["quarantined"][0].startswith("shards/quarantine/shard-1-of-2.h5.")
    assert (folder / report["quarantined"][0]).is_file()  # kept for inspection
    assert json.loads((folder / "report.json").read_text())["quarantined"] == report["quarantined"]


@pytest.mark.slow
def test_a_damaged_final_shard_is_recomputed_by_evaluate(finished) -> None:
    spec, run, folder, surface = finished
    _flip(folder / shard_key(0, 2))
    stages.evaluate(run, 0, log=QUIET)
    stages.merge(run, log=QUIET, plots=False)
    assert np.array_equal(_surface(folder / "surface.h5"), surface)
    assert len(list((folder / "shards" / "quarantine").iterdir())) == 1


@pytest.mark.slow
def test_a_foreign_final_shard_is_recomputed_not_refused_forever(tmp_path: Path, linear_spec: dict, finished) -> None:
    spec, run, folder, surface = finished
    other_spec = dict(linear_spec, directions={**linear_spec["directions"], "seed": 8})
    (tmp_path / "other").mkdir()
    for name in ("a.pt", "b.pt", "c.pt"):
        (tmp_path / "other" / name).write_bytes((tmp_path / name).read_bytes())
    other = open_run(spec_from(tmp_path / "other", other_spec), "o")
    run_all(other, 2)
    (folder / shard_key(0, 2)).write_bytes((tmp_path / "other/runs/o" / shard_key(0, 2)).read_bytes())
    stages.evaluate(run, 0, log=QUIET)
    stages.merge(run, log=QUIET, plots=False)
    assert np.array_equal(_surface(folder / "surface.h5"), surface)


@pytest.mark.slow
def test_a_damaged_or_foreign_partial_is_moved_aside(finished) -> None:
    spec, run, folder, surface = finished
    (folder / shard_key(1, 2)).rename(folder / partial_key(1, 2))  # a complete partial ...
    _flip(folder / partial_key(1, 2))  # ... damaged
    logs: list[str] = []
    stages.evaluate(run, 1, log=logs.append)
    assert any("moved" in m and "quarantine/shard-1-of-2.partial.h5." in m for m in logs), logs
    stages.merge(run, log=QUIET, plots=False)
    assert np.array_equal(_surface(folder / "surface.h5"), surface)


def test_a_changed_directions_file_is_refused_with_the_way_out(finished) -> None:
    spec, run, folder, surface = finished
    (folder / shard_key(1, 2)).unlink()
    with h5py.File(folder / "directions.h5", "r+") as f:
        f["xdirection/0"][0, 0] += 1.0
    with pytest.raises(StageError, match=r"directions.h5 was changed after prepare .*restore the directions.h5 "
                                         r"prepare wrote, or start a new run"):
        stages.evaluate(run, 1, log=QUIET)
    (folder / "directions.h5").write_bytes(b"not hdf5")
    with pytest.raises(StageError, match=r"not an HDF5 direction file; restore"):
        stages.evaluate(run, 1, log=QUIET)
