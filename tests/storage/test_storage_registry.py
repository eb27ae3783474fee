"""A storage backend is one class and one registry line: a toy ``mem://`` store runs a whole surface.

The toy keeps objects in a dict; registered under its scheme, the spec accepts
``mem://...`` as storage, ``launcher.local.runner.open_run`` creates the run there and the pod
entrypoint (``landscape-job --run mem://... prepare|evaluate|merge``) opens it from the
URL alone, and the surface equals the one computed with ``file://`` storage, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_all, spec_from
from landscape_job import cli
from landscape_job.storage import location
from landscape_job.base.errors import UserError
from landscape_job.storage.location import StorageLocation
from landscape_job.storage import NotFound, open_storage
from landscape_job.storage.base import check_key
from launcher.local.runner import open_run
from storage_testing import surface_datasets


class MemStorage:
    """Whole objects in a dict shared by every instance, keyed by the run's URL and the key."""

    objects: dict[str, bytes] = {}

    def __init__(self, where: StorageLocation):
        self.url = where.url
        self._root = where.url + "/"

    def put(self, key: str, data: bytes) -> None:
        self.objects[self._root + check_key(key)] = bytes(data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if self.exists(key):
            return False
        self.put(key, data)
        return True

    def get(self, key: str) -> bytes:
        try:
            return self.objects[self._root + check_key(key)]
        except KeyError:
            raise NotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._root + check_key(key) in self.objects

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k[len(self._root):] for k in self.objects if k.startswith(self._root + prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(self._root + check_key(key), None)


@pytest.fixture
def mem_backend(monkeypatch: pytest.MonkeyPatch):
    """The one registry line, for this test only."""
    monkeypatch.setitem(location.BACKENDS, "mem", MemStorage)
    monkeypatch.setattr(MemStorage, "objects", {})
    return MemStorage


@pytest.mark.slow
def test_a_surface_on_a_registered_toy_backend_equals_file(tmp_path: Path, linear_spec: dict, mem_backend,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(location.STORAGE_OPTIONS_ENV, raising=False)
    monkeypatch.delenv(location.RUN_ENV, raising=False)
    linear_spec["compute"]["shards"] = 2
    file_spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(file_spec, "ref"), 2)
    expected = surface_datasets((tmp_path / "runs" / "ref" / "surface.h5").read_bytes())

    mem_spec = spec_from(tmp_path, {**linear_spec, "storage": "mem://lab/runs/"})
    assert mem_spec.storage == StorageLocation("mem://lab/runs")
    assert mem_spec.hash == file_spec.hash
    run = open_run(mem_spec, "r1")
    assert isinstance(run, MemStorage) and run.url == "mem://lab/runs/r1"
    # the pod entrypoint, in-process: it finds the run from its URL alone
    for stage in (["prepare"], ["evaluate", "--shard", "0"], ["evaluate", "--shard", "1"], ["merge", "--no-plots"]):
        assert cli.main(["--run", run.url, *stage]) == 0, stage

    got = surface_datasets(open_storage("mem://lab/runs/r1").get("surface.h5"))
    assert set(got) == set(expected) and "train_loss" in got
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert {"spec.yaml", "manifest.json", "directions.h5", "shards/shard-0-of-2.h5", "surface.h5"} <= set(run.list())
    assert all(key.startswith("mem://lab/runs/r1/") for key in MemStorage.objects)
    assert not (tmp_path / "runs" / "r1").exists()


def test_an_unregistered_scheme_is_refused_where_the_spec_is_read(tmp_path: Path, linear_spec: dict) -> None:
    with pytest.raises(UserError, match=r"^storage: expected a folder, file:///path or s3://bucket/prefix; "
                                        r"got 'mem://lab/runs'$"):
        spec_from(tmp_path, {**linear_spec, "storage": "mem://lab/runs"})


def test_a_registered_scheme_takes_no_s3_options_and_needs_a_location(mem_backend) -> None:
    with pytest.raises(UserError, match=r"^storage.region: only for s3:// storage$"):
        StorageLocation.from_spec({"url": "mem://lab", "region": "eu-west-1"}, Path("/"))
    for bare in ("mem://", "mem:///"):
        with pytest.raises(UserError, match=rf"^storage: expected mem://<location>, got '{bare}'$"):
            StorageLocation.parse(bare)
    assert StorageLocation.parse("mem://X/").url == "mem://X"  # a one-letter location is one


def test_a_url_s_options_reach_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """``open_storage(url, options)``: the backend gets the location with the options, not the URL alone."""
    opened: list[StorageLocation] = []
    monkeypatch.setitem(location.BACKENDS, "s3", opened.append)
    open_storage("s3://bucket/runs/", {"region": "eu-west-1", "addressing_style": "path"})
    assert opened == [StorageLocation("s3://bucket/runs",
                                      location.StorageOptions(region="eu-west-1", addressing_style="path"))]
