"""Sharded equals unsharded, point for point, and merge refuses what does not belong."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import checkpointed_points, run_all, spec_from
from landscape_job import stages
from landscape_job.base.errors import StageError
from landscape_job.spec.grid import Axis, Grid
from landscape_job.run.files import read_manifest
from landscape_job.run.shards import shard_key
from launcher.local.runner import open_run

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _surface(tmp_path: Path, spec_raw: dict, run_id: str) -> dict[str, np.ndarray]:
    spec = spec_from(tmp_path, spec_raw)
    run_all(open_run(spec, run_id), spec.compute.shards)
    with h5py.File(tmp_path / "runs" / run_id / "surface.h5") as f:
        return {m: f[m][()] for m in METRICS}


@pytest.mark.slow
@pytest.mark.parametrize("grid", [{"x": "-1:1:5", "y": "-1:1:5"}, {"x": "-1:1:7", "y": "-0.5:1:4"}, {"x": "-1:2:9"}],
                         ids=["square", "non-square", "1-D"])
def test_sharded_equals_unsharded(tmp_path: Path, linear_spec: dict, grid: dict) -> None:
    linear_spec["grid"] = grid
    linear_spec["compute"]["precision"] = "fp32"
    results = {}
    for shards in (1, 3, 7):
        linear_spec["compute"]["shards"] = shards
        results[shards] = _surface(tmp_path, linear_spec, f"s{shards}")
    for shards in (3, 7):
        for metric in METRICS:
            np.testing.assert_array_equal(results[shards][metric], results[1][metric], err_msg=f"{shards} {metric}")
    assert np.isfinite(results[1]["train_loss"]).all()


def test_shard_ranges_partition_the_grid() -> None:
    grid = Grid(Axis(-1, 1, 13), Axis(0, 1, 7))
    for n in (1, 2, 5, 13, 91):
        ranges = [grid.shard_range(i, n) for i in range(n)]
        flat = [p for r in ranges for p in r]
        assert flat == list(range(grid.size))
        assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_coordinates_follow_row_major_layout() -> None:
    grid = Grid(Axis(0, 4, 5), Axis(10, 12, 3))
    a, b = grid.coordinates(np.arange(grid.size))
    assert a.reshape(grid.shape)[2, 3] == 3.0 and b.reshape(grid.shape)[2, 3] == 12.0


@pytest.fixture
def three_shard_run(tmp_path: Path, linear_spec: dict):
    linear_spec["compute"]["shards"] = 3
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "m")
    run_all(run, 3)
    return run, spec


@pytest.mark.slow
def test_merge_names_a_missing_shard(three_shard_run) -> None:
    run, _ = three_shard_run
    run.delete(shard_key(1, 3))
    with pytest.raises(StageError, match=r"1 of 3 shards missing: 1 .*shard-1-of-3\.h5"):
        stages.merge(run, log=lambda _: None, plots=False)


@pytest.mark.slow
def test_merge_names_a_truncated_shard(three_shard_run) -> None:
    run, _ = three_shard_run
    data = run.get(shard_key(2, 3))
    run.put(shard_key(2, 3), data[: len(data) // 2])
    with pytest.raises(StageError, match=r"shard-2-of-3\.h5: unreadable or truncated"):
        stages.merge(run, log=lambda _: None, plots=False)


@pytest.mark.slow
def test_merge_names_a_shard_from_another_spec(tmp_path: Path, three_shard_run, linear_spec: dict) -> None:
    run, _ = three_shard_run
    linear_spec["compute"]["shards"] = 3
    linear_spec["directions"]["seed"] = 99
    other = spec_from(tmp_path, linear_spec)
    other_run = open_run(other, "other")
    run_all(other_run, 3)
    run.put(shard_key(0, 3), other_run.get(shard_key(0, 3)))
    with pytest.raises(StageError, match=r"shard-0-of-3\.h5 was computed for another spec"):
        stages.merge(run, log=lambda _: None, plots=False)


def test_merge_detects_a_corrupted_value(three_shard_run) -> None:
    """Flip one stored value: the checksum names the shard."""
    from landscape_job.run.shards import read_shard, shard_bytes

    run, _ = three_shard_run
    key = shard_key(1, 3)
    data = read_shard(run.get(key), key)
    checksum = data.checksum()
    data.metrics["train_loss"][0] += 1.0
    # The changed value, stored under the checksum of the original values.
    buffer = io.BytesIO(shard_bytes(data))
    with h5py.File(buffer, "r+") as f:
        f.attrs["checksum"] = checksum
    run.put(key, buffer.getvalue())
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5: checksum mismatch"):
        stages.merge(run, log=lambda _: None, plots=False)


@pytest.mark.slow
def test_merge_refuses_a_duplicated_point(three_shard_run) -> None:
    from landscape_job.run.shards import read_shard, shard_bytes

    run, _ = three_shard_run
    key = shard_key(0, 3)
    data = read_shard(run.get(key), key)
    data.indices[1] = data.indices[0]
    run.put(key, shard_bytes(data))
    with pytest.raises(StageError, match=r"shard-0-of-3\.h5 holds a point more than once"):
        stages.merge(run, log=lambda _: None, plots=False)


@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_checkpoint(tmp_path: Path, linear_spec: dict) -> None:
    """A worker stopped after 7 points resumes from its last checkpoint (every 3) and
    yields the same surface as an uninterrupted run."""
    linear_spec["compute"].update(checkpoint_every=3, checkpoint_adapt=False)  # exactly every 3
    reference = _surface(tmp_path, linear_spec, "whole")
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "killed")
    stages.prepare(run, log=lambda _: None)

    import landscape_job.surface.evaluator as evaluator_module

    original = evaluator_module.Evaluator.evaluate
    calls = {"n": 0}

    def dying(self, a, b=0.0):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # the "kill" lands while point 8 is being computed
        return original(self, a, b)

    evaluator_module.Evaluator.evaluate = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            stages.evaluate(run, 0, log=lambda _: None)
    finally:
        evaluator_module.Evaluator.evaluate = original
    assert checkpointed_points(run, 0, 1) == 6  # checkpoints after points 3 and 6

    messages: list[str] = []
    stats = stages.evaluate(run, 0, log=messages.append)
    assert stats.points_resumed == 6 and stats.points_computed == spec.grid.size - 6
    assert stats.attempts == 2  # the killed worker and this one
    assert any("6 already done" in m for m in messages)
    report = stages.merge(run, log=lambda _: None, plots=False)
    assert report["retries"] == 1 and report["shards"][0]["attempts"] == 2
    with h5py.File(tmp_path / "runs/killed/surface.h5") as f:
        for metric in METRICS:
            np.testing.assert_array_equal(f[metric][()], reference[metric])
    assert checkpointed_points(run, 0, 1) == 0 and not run.list("shards/shard-0-of-1.partial")


@pytest.mark.slow
def test_a_rerun_of_a_complete_shard_does_nothing(three_shard_run) -> None:
    run, _ = three_shard_run
    before = run.get(shard_key(1, 3))
    messages: list[str] = []
    stages.evaluate(run, 1, log=messages.append)
    assert run.get(shard_key(1, 3)) == before
    assert "already complete" in messages[0]


@pytest.mark.slow
def test_stages_started_together_chain_through_storage(tmp_path: Path, linear_spec: dict) -> None:
    """As on a cluster: merge and evaluate start before prepare; they wait, then finish."""
    import threading

    linear_spec["compute"]["shards"] = 2
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "together")
    quiet = lambda _msg: None  # noqa: E731
    results: dict[str, object] = {}
    workers = [threading.Thread(target=lambda: results.setdefault("merge", stages.merge(run, quiet, False, 60))),
               *(threading.Thread(target=lambda i=i: results.setdefault(i, stages.evaluate(run, i, quiet, wait_seconds=60)))
                 for i in range(2))]
    for worker in workers:
        worker.start()
    import time

    time.sleep(0.5)
    assert not run.exists("surface.h5")
    stages.prepare(run, quiet)
    for worker in workers:
        worker.join(timeout=60)
    assert run.exists("surface.h5") and set(results) == {"merge", 0, 1}


def test_merge_gives_up_after_its_deadline_naming_the_missing(three_shard_run) -> None:
    run, _ = three_shard_run
    run.delete(shard_key(2, 3))
    with pytest.raises(StageError, match=r"gave up after 0.3s waiting for the evaluate stage's shards: 1 missing .*shard-2-of-3"):
        stages.merge(run, log=lambda _: None, plots=False, wait_seconds=0.3)


def test_a_shard_finished_twice_keeps_the_first_copy(three_shard_run) -> None:
    """Two attempts of one shard (a pod presumed lost came back): the second finds the
    shard written, compares values, and leaves the first copy in place."""
    run, _ = three_shard_run
    key = shard_key(1, 3)
    first = run.get(key)
    assert run.put_if_absent(key, b"other bytes") is False and run.get(key) == first
    run.delete(key)
    assert run.put_if_absent(key, first) is True and run.get(key) == first


def test_prepare_seeds_the_spec_from_a_mounted_file(tmp_path: Path, linear_spec: dict) -> None:
    """Manifests applied with kubectl carry the spec only in their ConfigMap."""
    from landscape_job.storage import open_storage

    spec = spec_from(tmp_path, linear_spec)
    mounted = tmp_path / "spec.yaml"
    mounted.write_text(spec.to_yaml())
    run = open_storage(str(tmp_path / "runs" / "applied"))
    stages.prepare(run, log=lambda _: None, spec_file=str(mounted))
    stages.evaluate(run, 0, log=lambda _: None)
    stages.merge(run, log=lambda _: None, plots=False)
    assert run.exists("surface.h5")
    other = spec_from(tmp_path, {**linear_spec, "directions": {**linear_spec["directions"], "seed": 5}})
    mounted.write_text(other.to_yaml())
    with pytest.raises(StageError, match="holds a different spec"):
        stages.prepare(run, log=lambda _: None, spec_file=str(mounted))


def test_a_runs_direction_file_reproduces_its_surface(tmp_path: Path, linear_spec: dict) -> None:
    """type: file with the directions.h5 of an earlier run gives that run's surface exactly.

    This also checks that the normalised spec of a file-direction run re-reads (the stages
    parse spec.yaml from storage).
    """
    first = _surface(tmp_path, linear_spec, "random")
    linear_spec["directions"] = {"type": "file", "file": str(tmp_path / "runs" / "random" / "directions.h5")}
    again = _surface(tmp_path, linear_spec, "from-file")
    for metric in METRICS:
        np.testing.assert_array_equal(again[metric], first[metric], err_msg=metric)


class _CountingStorage:
    """A run's storage that counts the bytes written under each kind of key."""

    def __init__(self, run):
        self.run, self.url, self.written = run, run.url, {}

    def put(self, key: str, data: bytes) -> None:
        kind = "checkpoint" if ".partial" in key else key
        self.written[kind] = self.written.get(kind, 0) + len(data)
        self.run.put(key, data)

    def __getattr__(self, name):
        return getattr(self.run, name)


@pytest.mark.slow
def test_checkpoint_bytes_per_point_do_not_grow_with_the_shard(tmp_path: Path, linear_spec: dict) -> None:
    """A checkpoint writes only the points new since the previous one: ten times the points
    cost ten times the checkpoint bytes, not a hundred (each save rewrote all points before)."""
    linear_spec["compute"].update(checkpoint_every=10, checkpoint_adapt=False, checkpoint_seconds=3600)
    per_point = {}
    for size in (40, 400):
        linear_spec["grid"] = {"x": f"-1:1:{size}"}
        spec = spec_from(tmp_path, linear_spec)
        run = _CountingStorage(open_run(spec, f"n{size}"))
        stages.prepare(run, log=lambda _: None)
        stages.evaluate(run, 0, log=lambda _: None)
        per_point[size] = run.written["checkpoint"] / size
        assert checkpointed_points(run, 0, 1) == 0  # the segments are gone once the shard is written
    assert per_point[400] <= 1.1 * per_point[40], per_point


def test_a_checkpoint_from_before_segments_is_resumed(tmp_path: Path, linear_spec: dict) -> None:
    """A whole ``.partial.h5`` (the format before segments) still counts as done points."""
    from landscape_job.run.shards import ShardData, partial_key, read_shard, shard_bytes

    reference = _surface(tmp_path, linear_spec, "whole")
    spec = spec_from(tmp_path, linear_spec)
    whole = read_shard((tmp_path / "runs/whole" / shard_key(0, 1)).read_bytes(), "whole")
    run = open_run(spec, "old")
    stages.prepare(run, log=lambda _: None)
    old = ShardData(indices=whole.indices[:6], metrics={k: v[:6] for k, v in whole.metrics.items()},
                    attrs=whole.attrs)
    run.put(partial_key(0, 1), shard_bytes(old))
    stats = stages.evaluate(run, 0, log=lambda _: None)
    assert stats.points_resumed == 6 and not run.exists(partial_key(0, 1))
    stages.merge(run, log=lambda _: None, plots=False)
    with h5py.File(tmp_path / "runs/old/surface.h5") as f:
        for metric in METRICS:
            np.testing.assert_array_equal(f[metric][()], reference[metric])


class _RequestCountingStorage:
    """An in-memory run that counts requests; shard 0 appears at the ``appear_at``-th request."""

    url = "mem://run"

    def __init__(self, keys: list[str], appear_at: int):
        self.keys, self.appear_at, self.requests = set(keys), appear_at, []

    def _request(self, request: tuple[str, str]) -> None:
        self.requests.append(request)
        if len(self.requests) == self.appear_at:
            self.keys.add(shard_key(0, 100))

    def exists(self, key: str) -> bool:
        self._request(("exists", key))
        return key in self.keys

    def list(self, prefix: str = "") -> list[str]:
        self._request(("list", prefix))
        return sorted(k for k in self.keys if k.startswith(prefix))


def test_waiting_for_many_shards_costs_one_request_per_poll(monkeypatch) -> None:
    """merge --wait at 100 shards: one LIST for the first poll, while 99 are missing, never a
    HEAD per shard; then only the one still missing is asked for."""
    from landscape_job.run import files as run_files

    monkeypatch.setattr(run_files.time, "sleep", lambda _s: None)
    keys = [shard_key(i, 100) for i in range(100)]
    run = _RequestCountingStorage(keys[1:], appear_at=4)
    run_files.wait_for(run, keys, 60, "the shards", lambda _m: None)
    assert run.requests == [("list", "shards/")] + [("exists", keys[0])] * 3


def _rewrite_shard(run, key: str, change) -> None:
    """Reads a shard, lets ``change`` edit it, and stores it with a valid checksum of the
    edited content (so only the guard under test can refuse it)."""
    from landscape_job.run.shards import read_shard, shard_bytes

    data = read_shard(run.get(key), key)
    change(data)
    run.put(key, shard_bytes(data))


@pytest.mark.slow
def test_merge_refuses_a_shard_with_another_s_point(three_shard_run) -> None:
    """Shard 2 also claims shard 0's first point with another value: read last, it would
    silently overwrite the right value, so merge must refuse it, naming the point."""
    run, spec = three_shard_run
    foreign = int(spec.grid.shard_points(0, 3, read_manifest(run).shard_order)[0])

    def claim(data) -> None:
        data.indices = np.append(data.indices, foreign)
        data.metrics = {name: np.append(values, 1e9) for name, values in data.metrics.items()}

    _rewrite_shard(run, shard_key(2, 3), claim)
    run.delete("surface.h5")
    with pytest.raises(StageError, match=rf"shard-2-of-3\.h5 holds points outside its range: \[{foreign}\]$"):
        stages.merge(run, log=lambda _: None, plots=False)
    assert not run.exists("surface.h5")


def test_merge_refuses_a_shard_computed_with_other_directions(three_shard_run) -> None:
    """Same spec hash, other direction hash (directions.h5 rewritten between the shards):
    the values lie along other directions and must not be merged."""
    run, _ = three_shard_run

    def other_directions(data) -> None:
        data.attrs["direction_hash"] = "0" * 64

    _rewrite_shard(run, shard_key(1, 3), other_directions)
    run.delete("surface.h5")
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5 was computed with other directions"):
        stages.merge(run, log=lambda _: None, plots=False)
    assert not run.exists("surface.h5")


@pytest.mark.slow
def test_merge_names_the_grid_points_a_shard_lacks(three_shard_run) -> None:
    """A shard that lost points (its checksum fine) is named with the first missing point."""
    run, spec = three_shard_run
    own = spec.grid.shard_points(1, 3, read_manifest(run).shard_order)  # the run's order: coarse to fine
    dropped = sorted(own[2:4].tolist())

    def drop(data) -> None:
        keep = ~np.isin(data.indices, dropped)
        data.indices = data.indices[keep]
        data.metrics = {name: values[keep] for name, values in data.metrics.items()}

    _rewrite_shard(run, shard_key(1, 3), drop)
    with pytest.raises(StageError, match=rf"^merge: 2 grid points missing, e\.g\. flat index {dropped[0]}; "
                                         r"incomplete shards: \[1\]$"):
        stages.merge(run, log=lambda _: None, plots=False)


def _evaluate_while_another_attempt_finishes(run, shard: int, other: bytes) -> list[str]:
    """Evaluates ``shard`` while "another attempt" stores ``other`` as the finished shard:
    it lands after this attempt has checked that the shard is not complete (when it logs
    its plan), so this attempt meets it only when it writes its own result."""
    key = shard_key(shard, 3)
    messages: list[str] = []

    def log(message: str) -> None:
        messages.append(message)
        if message.startswith(f"evaluate: shard {shard} of 3:"):
            assert not run.exists(key)
            run.put(key, other)

    stages.evaluate(run, shard, log=log)
    return messages


def test_a_shard_finished_twice_with_the_same_values_keeps_the_first_copy(three_shard_run) -> None:
    run, _ = three_shard_run
    key = shard_key(1, 3)
    first = run.get(key)
    run.delete(key)
    messages = _evaluate_while_another_attempt_finishes(run, 1, first)
    assert run.get(key) == first
    assert any("was completed by another attempt with the same values" in m for m in messages)
    stages.merge(run, log=lambda _: None, plots=False)


@pytest.mark.slow
def test_a_shard_finished_twice_with_other_values_fails_the_attempt(three_shard_run) -> None:
    """The first copy's values differ from this attempt's (nondeterminism, or a stale pod
    of another computation): the run is inconsistent, and this attempt says so."""
    from landscape_job.run.shards import read_shard, shard_bytes

    run, _ = three_shard_run
    key = shard_key(1, 3)
    data = read_shard(run.get(key), key)
    data.metrics["train_loss"][0] += 1e-6
    other = shard_bytes(data)
    run.delete(key)
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5 was written by another attempt with different values"):
        _evaluate_while_another_attempt_finishes(run, 1, other)
    assert run.get(key) == other
