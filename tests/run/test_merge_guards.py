"""merge's shard checks on hand-made shards: no model, no evaluation, milliseconds each.

test_sharding.py reaches the same refusals through real runs; these are the fast ones
``make mutation`` runs against every mutant of ``collect_shards`` (docs/testing.md).
Each shard here is well formed (a valid checksum) unless the test breaks it, so only the
check under test can refuse it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import spec_from
from landscape_job.base.errors import StageError
from landscape_job.run.records import ShardRecord
from landscape_job.run import shards
from landscape_job.run.shards import ShardData, read_shard, segment_key, segment_prefix, shard_bytes, shard_key
from landscape_job.run.collect import collect_shards
from landscape_job.storage import open_storage

DIRECTIONS = "d" * 64
SHARDS = 3


@pytest.fixture
def spec(tmp_path: Path, linear_spec: dict):
    linear_spec["compute"]["shards"] = SHARDS
    linear_spec["grid"] = {"x": "-1:1:5", "y": "-1:1:4"}  # 20 points: shards of 7, 7, 6
    return spec_from(tmp_path, linear_spec)


def _values(points) -> dict[str, np.ndarray]:
    """Each point's made-up values, distinct per point and metric."""
    p = np.asarray(list(points), dtype=np.float64)
    return {"train_loss": p + 0.25, "test_acc": 100 - p}


def _put(run, spec, i: int, points=None, values=None, **attrs) -> None:
    points = list(spec.grid.shard_range(i, SHARDS)) if points is None else list(points)
    record = ShardRecord(spec_hash=spec.hash, direction_hash=DIRECTIONS, shard=i, num_shards=SHARDS, attempts=1)
    run.put(shard_key(i, SHARDS), shard_bytes(ShardData(
        indices=np.array(points, dtype=np.int64), metrics=values or _values(points),
        attrs={**record.to_attrs(), **attrs})))


@pytest.fixture
def run(tmp_path: Path, spec):
    run = open_storage(str(tmp_path / "run"))
    for i in range(SHARDS):
        _put(run, spec, i)
    return run


def test_complete_shards_become_the_flat_surface(run, spec) -> None:
    flat, records = collect_shards(run, spec, DIRECTIONS)
    assert sorted(flat) == ["test_acc", "train_loss"]
    want = _values(range(spec.grid.size))
    for name in flat:
        np.testing.assert_array_equal(flat[name], want[name])
    assert [r.shard for r in records] == [0, 1, 2] and all(r.spec_hash == spec.hash for r in records)


def test_shards_may_hold_their_points_in_any_order(run, spec) -> None:
    points = list(spec.grid.shard_range(1, SHARDS))[::-1]
    _put(run, spec, 1, points)
    flat, _ = collect_shards(run, spec, DIRECTIONS)
    np.testing.assert_array_equal(flat["train_loss"], _values(range(spec.grid.size))["train_loss"])


@pytest.mark.parametrize("gone", [[1], [0, 2]])
def test_missing_shards_are_named(run, spec, gone: list[int]) -> None:
    for i in gone:
        run.delete(shard_key(i, SHARDS))
    listed = ", ".join(map(str, gone))
    with pytest.raises(StageError, match=rf"^merge: {len(gone)} of 3 shards missing: {listed} "
                                         rf"\(expected .*/run/shards/shard-{gone[0]}-of-3\.h5\)$"):
        collect_shards(run, spec, DIRECTIONS)


@pytest.mark.parametrize("shards,cut", [(20, False), (21, True), (25, True)])
def test_a_long_list_of_missing_shards_is_cut_at_twenty(tmp_path: Path, linear_spec: dict, shards: int,
                                                         cut: bool) -> None:
    linear_spec["compute"]["shards"] = shards
    linear_spec["grid"] = {"x": "-1:1:5", "y": "-1:1:6"}
    spec = spec_from(tmp_path, linear_spec)
    run = open_storage(str(tmp_path / "empty"))
    listed = ", ".join(str(i) for i in range(20)) + (" ..." if cut else "")
    with pytest.raises(StageError, match=rf"^merge: {shards} of {shards} shards missing: {listed} \(expected "):
        collect_shards(run, spec, DIRECTIONS)


#: How merge ends after moving a bad shard aside: where it went, and what to do.
SET_ASIDE = r"; moved aside to .*/shards/quarantine/shard-{i}-of-3\.h5\.[0-9TZ-]+; resume the run " \
            r"\(evaluate recomputes the shard\), then merge$"


def _set_aside(run, i: int) -> None:
    """The refused shard is no longer in place, and is kept whole under shards/quarantine/."""
    assert not run.exists(shard_key(i, SHARDS))
    kept = [k for k in run.list("shards/quarantine/") if k.startswith(f"shards/quarantine/shard-{i}-of-3.h5.")]
    assert len(kept) == 1, kept


def test_a_shard_of_another_spec_is_refused(run, spec) -> None:
    _put(run, spec, 2, spec_hash="f" * 64)
    with pytest.raises(StageError, match=rf"shard-2-of-3\.h5 was computed for another spec \(spec hash "
                                         rf"ffffffffffff != {spec.hash[:12]}\)" + SET_ASIDE.format(i=2)):
        collect_shards(run, spec, DIRECTIONS, log=lambda _: None)
    _set_aside(run, 2)


def test_a_shard_of_other_directions_is_refused(run, spec) -> None:
    _put(run, spec, 0, direction_hash="e" * 64)
    with pytest.raises(StageError, match=r"^merge: .*shard-0-of-3\.h5 was computed with other directions"
                                         + SET_ASIDE.format(i=0)):
        collect_shards(run, spec, DIRECTIONS, log=lambda _: None)
    _set_aside(run, 0)


@pytest.mark.parametrize("shard,foreign", [(0, 7), (2, 0), (1, 19)])
def test_a_point_outside_the_shard_s_range_is_refused(run, spec, shard: int, foreign: int) -> None:
    own = list(spec.grid.shard_range(shard, SHARDS))
    _put(run, spec, shard, [*own, foreign])
    with pytest.raises(StageError, match=rf"shard-{shard}-of-3\.h5 holds points outside its range: \[{foreign}\]$"):
        collect_shards(run, spec, DIRECTIONS)


def test_at_most_five_stray_points_are_listed(run, spec) -> None:
    _put(run, spec, 0, [*spec.grid.shard_range(0, SHARDS), *range(10, 17)])
    with pytest.raises(StageError, match=r"holds points outside its range: \[10, 11, 12, 13, 14\]$"):
        collect_shards(run, spec, DIRECTIONS)


def test_a_point_held_twice_is_refused(run, spec) -> None:
    own = list(spec.grid.shard_range(1, SHARDS))
    _put(run, spec, 1, [*own, own[3]])
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5 holds a point more than once$"):
        collect_shards(run, spec, DIRECTIONS)


@pytest.mark.parametrize("shard,dropped", [(0, [0]), (1, [9, 10]), (2, [19])])
def test_points_a_shard_lacks_are_named(run, spec, shard: int, dropped: list[int]) -> None:
    own = [p for p in spec.grid.shard_range(shard, SHARDS) if p not in dropped]
    _put(run, spec, shard, own)
    with pytest.raises(StageError, match=rf"^merge: {len(dropped)} grid points missing, e\.g\. flat index "
                                         rf"{dropped[0]}; incomplete shards: \[{shard}\]$"):
        collect_shards(run, spec, DIRECTIONS)


def test_every_incomplete_shard_is_named(run, spec) -> None:
    _put(run, spec, 0, list(spec.grid.shard_range(0, SHARDS))[1:])
    _put(run, spec, 2, list(spec.grid.shard_range(2, SHARDS))[:-1])
    with pytest.raises(StageError, match=r"2 grid points missing, e\.g\. flat index 0; incomplete shards: \[0, 2\]$"):
        collect_shards(run, spec, DIRECTIONS)


def test_a_damaged_shard_is_named(run, spec) -> None:
    raw = run.get(shard_key(1, SHARDS))
    run.put(shard_key(1, SHARDS), raw[:100])
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5: unreadable or truncated shard.*" + SET_ASIDE.format(i=1)):
        collect_shards(run, spec, DIRECTIONS, log=lambda _: None)
    _set_aside(run, 1)


@pytest.mark.parametrize("metric", ["train_loss", "test_acc"])
def test_a_changed_value_under_the_old_checksum_is_named(run, spec, metric: str) -> None:
    """The checksum covers every metric's values, not only the indices."""
    key = shard_key(1, SHARDS)
    points = list(spec.grid.shard_range(1, SHARDS))
    values = _values(points)
    original = ShardData(indices=np.array(points, dtype=np.int64), metrics=values).checksum()
    values[metric][2] += 0.5
    _put(run, spec, 1, points, values)
    _edit_attrs(run, key, lambda attrs: attrs.__setitem__("checksum", original))
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5: checksum mismatch; the shard is corrupted"
                                         + SET_ASIDE.format(i=1)):
        collect_shards(run, spec, DIRECTIONS, log=lambda _: None)
    _set_aside(run, 1)


def test_a_shard_without_a_checksum_is_named(run, spec) -> None:
    """No writer makes one, but a shard stripped of its checksum is refused in one line, not a KeyError."""
    _edit_attrs(run, shard_key(1, SHARDS), lambda attrs: attrs.__delitem__("checksum"))
    logged: list[str] = []
    with pytest.raises(StageError, match=r"shard-1-of-3\.h5: checksum mismatch; the shard is corrupted"
                                         + SET_ASIDE.format(i=1)):
        collect_shards(run, spec, DIRECTIONS, log=logged.append)
    _set_aside(run, 1)
    # The merge pod's log says where the shard went and why.
    assert len(logged) == 1 and re.fullmatch(
        rf"moved {re.escape(run.url)}/shards/shard-1-of-3\.h5 aside to shards/quarantine/shard-1-of-3\.h5\.\S+: "
        rf"merge: {re.escape(run.url)}/shards/shard-1-of-3\.h5: checksum mismatch; the shard is corrupted", logged[0])


def _edit_attrs(run, key: str, edit) -> None:
    """Rewrites a stored shard's HDF5 attributes in place (``edit`` gets h5py's attribute set)."""
    buffer = io.BytesIO(run.get(key))
    with h5py.File(buffer, "r+") as f:
        edit(f.attrs)
    run.put(key, buffer.getvalue())


@pytest.mark.parametrize("shard,num_shards", [(0, 1), (3, 12)])
def test_a_shard_s_checkpoint_segments_are_listed_under_its_own_prefix(shard: int, num_shards: int) -> None:
    """Resume finds a shard's checkpoint segments by listing ``segment_prefix``: a segment's key
    must fall under its own shard's prefix and no other's, and sort by its first point."""
    key = segment_key(shard, num_shards, 42)
    assert key == f"shards/shard-{shard}-of-{num_shards}.partial-000000000042.h5"
    assert key.startswith(segment_prefix(shard, num_shards))
    assert not key.startswith(segment_prefix(shard + 1, num_shards))
    assert key < segment_key(shard, num_shards, 1000)


def test_a_shard_reader_s_error_is_named_and_cut_at_200_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    """h5py's reason is shown (it says what is wrong with the file), but never unbounded."""
    def unreadable(raw: bytes):
        raise OSError("x" * 500)

    monkeypatch.setattr(shards, "open_h5", unreadable)
    with pytest.raises(StageError) as caught:
        read_shard(b"", "s3://b/r/shards/shard-0-of-1.h5")
    assert str(caught.value) == f"s3://b/r/shards/shard-0-of-1.h5: unreadable or truncated shard ({'x' * 200})"
