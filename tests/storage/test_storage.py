"""The storage layer against real endpoints: a folder, and S3 over HTTP (moto's server on 127.0.0.1).

Every S3 test talks HTTP to a real server process thread, never an in-process mock of
boto3, and a proxy in between injects the failures a real object store and network have.
"""

from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import run_all, spec_from, write_spec
from landscape_job.base.errors import StageError, UserError
from landscape_job.storage import (STORAGE_OPTIONS_ENV, NotFound, h5_bytes, open_h5, open_storage, run_storage,
                                   storage_options_from_env)
from landscape_job.storage.location import StorageLocation
from landscape_job.storage.files import FileStorage
from landscape_job.storage.retry import BACKOFF_ENV, RetryPolicy
from landscape_job.storage.s3 import S3Storage
from launcher.local.runner import open_run
from storage_testing import aws_env, bucket, new_bucket, s3_options, surface_datasets  # noqa: F401 (fixtures)
from s3server import (DROP, DROP_AFTER, NOT_IMPLEMENTED, OK, SLOWDOWN, TRUNCATE, FlakyProxy, closed_port,
                      first_conditional_puts, put_directly, seeded_faults)


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(base URL, options) of an empty storage of each kind."""
    if request.param == "file":
        return "file://" + str(tmp_path / "store"), {}
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("bucket")
    return f"s3://{bucket}/runs", s3_options(endpoint)


@pytest.fixture
def store(backend: tuple[str, dict[str, str]]):
    base, options = backend
    return run_storage(base, "r1", options)


# -- the contract every backend keeps -----------------------------------------------------

class TestContract:
    def test_round_trip(self, store) -> None:
        data = bytes(range(256)) * 33
        store.put("a.bin", data)
        store.put("empty", b"")
        store.put("deep/er/key.json", b"{}")
        assert store.get("a.bin") == data
        assert store.get("empty") == b""
        assert store.get("deep/er/key.json") == b"{}"

    def test_overwrite(self, store) -> None:
        store.put("k", b"first version, longer")
        store.put("k", b"second")
        assert store.get("k") == b"second"
        assert store.list() == ["k"]

    def test_exists(self, store) -> None:
        assert not store.exists("k")
        store.put("k", b"x")
        assert store.exists("k")
        assert not store.exists("k/child")
        assert not store.exists("other")

    def test_missing_key_is_not_found(self, store) -> None:
        with pytest.raises(NotFound):
            store.get("nothing/here.h5")
        with pytest.raises(KeyError):  # NotFound is a KeyError
            store.get("nothing")

    def test_list_is_relative_sorted_and_filtered(self, store) -> None:
        for key in ("spec.yaml", "shards/shard-1-of-2.h5", "shards/shard-0-of-2.h5", "shards2/x", "plots/a.png"):
            store.put(key, key.encode())
        assert store.list() == ["plots/a.png", "shards/shard-0-of-2.h5", "shards/shard-1-of-2.h5", "shards2/x",
                                "spec.yaml"]
        assert store.list("shards/") == ["shards/shard-0-of-2.h5", "shards/shard-1-of-2.h5"]
        assert store.list("shards") == ["shards/shard-0-of-2.h5", "shards/shard-1-of-2.h5", "shards2/x"]
        assert store.list("nope/") == []

    def test_runs_do_not_see_each_other(self, backend) -> None:
        base, options = backend
        a, ab = run_storage(base, "a", options), run_storage(base, "ab", options)
        a.put("spec.yaml", b"a")
        ab.put("spec.yaml", b"ab")
        ab.put("only-in-ab", b"x")
        assert a.list() == ["spec.yaml"]
        assert a.get("spec.yaml") == b"a" and ab.get("spec.yaml") == b"ab"
        assert not a.exists("only-in-ab")
        assert a.url != ab.url and a.url.endswith("/a")

    def test_delete(self, store) -> None:
        store.put("k", b"x")
        store.put("keep", b"y")
        store.delete("k")
        assert not store.exists("k")
        with pytest.raises(NotFound):
            store.get("k")
        store.delete("k")  # deleting what is gone is fine
        assert store.list() == ["keep"]

    def test_keys_stay_inside_the_run(self, store) -> None:
        for key in ("../escape", "/abs", "a/../../b"):
            with pytest.raises(ValueError):
                store.put(key, b"x")

    def test_put_if_absent(self, store) -> None:
        assert store.put_if_absent("claim", b"first") is True
        assert store.put_if_absent("claim", b"second") is False
        assert store.put_if_absent("claim", b"first") is False  # it exists, whoever wrote it
        assert store.get("claim") == b"first"
        store.delete("claim")
        assert store.put_if_absent("claim", b"third") is True
        assert store.get("claim") == b"third"

    def test_h5_round_trip(self, store) -> None:
        values = np.arange(12, dtype=np.float64).reshape(3, 4) / 7

        def write(handle: h5py.File) -> None:
            handle["train_loss"] = values
            handle["xcoordinates"] = np.linspace(-1, 1, 4)
            handle.attrs["spec_hash"] = "abc"

        store.put("surface.h5", h5_bytes(write))
        with open_h5(store.get("surface.h5")) as handle:
            np.testing.assert_array_equal(handle["train_loss"][()], values)
            assert handle["xcoordinates"].shape == (4,)
            assert handle.attrs["spec_hash"] == "abc"

    @pytest.mark.slow
    def test_list_paginates_past_1000(self, store) -> None:
        keys = [f"shards/p-{i:05d}" for i in range(1100)]
        pages: list = []
        if isinstance(store, S3Storage):
            # 1,100 PUTs through moto take 10 s: write them with the server's own backend, then
            # list over HTTP, where S3 answers at most 1,000 keys a page
            put_directly(store.bucket, [f"{store.prefix}/{k}" for k in reversed(keys)], b".")
            _count_calls(store, "ListObjectsV2", pages)
        else:
            for key in reversed(keys):
                store.put(key, b".")
        store.put("spec.yaml", b"s")
        assert store.list("shards/") == keys
        assert len(store.list()) == 1101
        assert len(pages) in (0, 4)  # two pages a listing on S3


# -- S3 specifics -------------------------------------------------------------------------

def _count_calls(storage: S3Storage, operation: str, calls: list) -> None:
    """Records the calls of ``operation`` by either client (single requests, multipart transfers)."""
    for client in (storage.client, storage.transfer_client):
        client.meta.events.register(f"before-parameter-build.s3.{operation}",
                                    lambda params, **_: calls.append((operation, dict(params))))


@pytest.mark.slow
def test_multipart_round_trip(moto_endpoint: str, bucket: str) -> None:
    storage = S3Storage(f"s3://{bucket}/runs/big", s3_options(moto_endpoint), multipart_threshold=5 * 1024 * 1024)
    calls: list = []
    for operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "GetObject"):
        _count_calls(storage, operation, calls)
    data = np.random.default_rng(0).integers(0, 256, 20_000_000, dtype=np.uint8).tobytes()
    storage.put("directions.h5", data)
    names = [c[0] for c in calls]
    assert names.count("UploadPart") == 4 and "CompleteMultipartUpload" in names and "PutObject" not in names
    calls.clear()
    assert storage.get("directions.h5") == data
    ranged = [c for c in calls if c[0] == "GetObject" and "Range" in c[1]]
    assert len(ranged) >= 4, calls  # parallel ranged GETs, each retried on its own
    assert storage.list() == ["directions.h5"]


def test_url_and_options(moto_endpoint: str, bucket: str) -> None:
    storage = open_storage(f"s3://{bucket}/runs/r/", {**s3_options(moto_endpoint), "request_checksum": "when_required",
                                                      "region": "us-east-1"})
    assert isinstance(storage, S3Storage)
    assert storage.url == f"s3://{bucket}/runs/r"
    config = storage.client.meta.config
    assert config.s3 == {"addressing_style": "path"}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.retries["total_max_attempts"] == 1  # storage/retry.py retries every call itself
    assert storage.policy.attempts >= 5
    assert storage.transfer_client.meta.config.retries == {"mode": "standard", "total_max_attempts": storage.policy.attempts}
    storage.put("k", b"v")  # a server that is fine with when_required too
    assert storage.get("k") == b"v"
    bare = open_storage(f"s3://{bucket}", s3_options(moto_endpoint))
    assert bare.list() == ["runs/r/k"]
    with pytest.raises(UserError, match="storage.endpoint"):
        open_storage(f"s3://{bucket}/x", {"endpoint": moto_endpoint})
    with pytest.raises(UserError, match="storage.addressing_style"):
        open_storage(f"s3://{bucket}/x", {"addressing_style": "sideways"})
    for endpoint in ("not a url", "ftp://host", "minio:9000"):
        with pytest.raises(UserError, match="storage.endpoint_url"):
            open_storage(f"s3://{bucket}/x", {"endpoint_url": endpoint})
    with pytest.raises(UserError, match="storage.region"):
        open_storage(f"s3://{bucket}/x", {"region": "us east 1"})
    with pytest.raises(UserError, match="s3://bucket/prefix"):
        open_storage("s3:///no-bucket")
    with pytest.raises(UserError, match="only for s3://"):
        open_storage("file:///tmp/x", {"endpoint_url": moto_endpoint})


def test_endpoint_from_aws_endpoint_url(moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint in the spec: boto3's own AWS_ENDPOINT_URL applies."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    storage = open_storage(f"s3://{bucket}/runs", {"addressing_style": "path"})
    storage.check_access()
    storage.put("k", b"v")
    assert storage.get("k") == b"v"


def test_storage_options_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORAGE_OPTIONS_ENV, raising=False)
    assert storage_options_from_env() == {}
    monkeypatch.setenv(STORAGE_OPTIONS_ENV, '{"endpoint_url": "http://127.0.0.1:9", "addressing_style": "path"}')
    assert storage_options_from_env() == {"endpoint_url": "http://127.0.0.1:9", "addressing_style": "path"}
    for bad in ('{"endpoint_url": ', '["a"]', '{"a": 1}'):
        monkeypatch.setenv(STORAGE_OPTIONS_ENV, bad)
        with pytest.raises(UserError, match=STORAGE_OPTIONS_ENV):
            storage_options_from_env()


# -- check_access: the usual mistakes, one line each --------------------------------------

def _one_line_error(storage: S3Storage) -> str:
    with pytest.raises(UserError) as info:
        storage.check_access()
    message = str(info.value)
    assert "\n" not in message and storage.url in message
    assert "testing" not in message  # never a credential
    return message


def test_check_access_ok(moto_endpoint: str, bucket: str) -> None:
    """An existing bucket passes with one read-only request: a list of at most one key
    under the run's prefix (nothing written, so a read-only credential is enough)."""
    with FlakyProxy(moto_endpoint, lambda method, path, headers: OK) as proxy:
        assert S3Storage(f"s3://{bucket}/runs", s3_options(proxy.url)).check_access() is None
    assert len(proxy.log) == 1, proxy.log
    method, path, action = proxy.log[0]
    query = path.partition("?")[2].split("&")
    assert (method, path.partition("?")[0], action) == ("GET", f"/{bucket}", OK)
    assert {"list-type=2", "max-keys=1"} <= set(query) and any(q.startswith("prefix=runs") for q in query), path


def test_check_access_missing_bucket(moto_endpoint: str, aws_env: None) -> None:
    message = _one_line_error(S3Storage("s3://no-such-bucket-here/runs", s3_options(moto_endpoint)))
    assert "'no-such-bucket-here' does not exist" in message and "create it" in message


def test_check_access_unreachable_endpoint(aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    message = _one_line_error(S3Storage("s3://bucket/runs", s3_options(endpoint)))
    assert time.monotonic() - started < 10
    assert "cannot reach" in message and endpoint in message and "endpoint_url" in message


def test_check_access_no_credentials(moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    storage = S3Storage("s3://bucket/runs", s3_options(moto_endpoint))
    message = _one_line_error(storage)
    assert "no S3 credentials" in message and "AWS_ACCESS_KEY_ID" in message
    with pytest.raises(UserError, match="no S3 credentials"):  # and in a stage, too
        storage.get("spec.yaml")


def test_missing_bucket_in_a_stage_is_a_user_error(moto_endpoint: str, aws_env: None) -> None:
    storage = S3Storage("s3://no-such-bucket-here/runs", s3_options(moto_endpoint))
    with pytest.raises(UserError, match="does not exist"):
        storage.get("spec.yaml")  # not NotFound: the bucket, not the key, is missing
    with pytest.raises(UserError, match="does not exist"):
        storage.put("spec.yaml", b"x")


def test_unreachable_endpoint_in_a_stage_is_a_stage_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("landscape_job.storage.s3.MAX_ATTEMPTS", 2)
    monkeypatch.setattr("landscape_job.storage.s3.CONNECT_TIMEOUT", 1.0)
    storage = S3Storage("s3://bucket/runs", s3_options(f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(StageError, match="put k: still failing after 2 attempts .*EndpointConnectionError"):
        storage.put("k", b"x")


# -- a flaky endpoint ---------------------------------------------------------------------

@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The real retry loop on a short clock (as the environment sets it); records the delays."""
    delays: list[float] = []
    original = RetryPolicy.delay

    def delay(self, attempt):
        value = original(self, attempt)
        delays.append(value)
        return value

    monkeypatch.setenv(BACKOFF_ENV, "0.01")
    monkeypatch.setattr(RetryPolicy, "delay", delay)
    return delays


@pytest.mark.slow
def test_flaky_endpoint(moto_endpoint: str, bucket: str, fast_backoff: list[float]) -> None:
    with FlakyProxy(moto_endpoint, seeded_faults(seed=2024)) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/flaky", s3_options(proxy.url))
        rng = np.random.default_rng(5)
        for i in range(25):
            data = rng.integers(0, 256, int(rng.integers(0, 50_000)), dtype=np.uint8).tobytes()
            storage.put(f"shards/{i}.h5", data)
            assert storage.get(f"shards/{i}.h5") == data
        assert storage.list("shards/") == sorted(f"shards/{i}.h5" for i in range(25))
    assert not proxy._thread.is_alive()
    # the plan did hit: throttling, dropped connections either side of the server, cut bodies
    assert proxy.counts[SLOWDOWN] >= 10 and proxy.counts[DROP] >= 2 and proxy.counts[DROP_AFTER] >= 1
    assert proxy.counts[TRUNCATE] >= 1 and proxy.counts[OK] >= 51
    assert len(fast_backoff) >= proxy.counts[SLOWDOWN] + proxy.counts[DROP]


def test_put_if_absent_after_a_lost_response(moto_endpoint: str, bucket: str, fast_backoff: list[float]) -> None:
    """A conditional PUT whose first attempt fails is retried; a 412 then means "ours" only if the bytes are ours."""
    plan = {"final.h5": [DROP_AFTER], "taken.h5": [SLOWDOWN]}  # the first conditional PUT of each key

    with FlakyProxy(moto_endpoint, first_conditional_puts(plan)) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/c", s3_options(proxy.url))
        # the PUT lands but its answer is lost; the retry gets 412; the stored bytes are ours
        assert storage.put_if_absent("shards/final.h5", b"mine") is True
        # someone else's object; our first attempt is throttled, the retry gets 412: not ours
        storage.put("shards/taken.h5", b"theirs")
        assert storage.put_if_absent("shards/taken.h5", b"mine") is False
        assert storage.put_if_absent("shards/final.h5", b"mine") is False  # no retry: plainly there already
        assert storage.put_if_absent("shards/final.h5", b"other") is False
        assert storage.get("shards/final.h5") == b"mine" and storage.get("shards/taken.h5") == b"theirs"
    assert proxy.counts[DROP_AFTER] == 1 and proxy.counts[SLOWDOWN] == 1


def test_put_if_absent_without_conditional_writes(moto_endpoint: str, bucket: str) -> None:
    """A server that answers 501 to If-None-Match: HEAD then PUT instead."""
    def decide(method, path, headers):
        return NOT_IMPLEMENTED if headers.get("If-None-Match") else OK

    with FlakyProxy(moto_endpoint, decide) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/old", s3_options(proxy.url))
        assert storage.put_if_absent("claim", b"first") is True
        assert storage.conditional_writes is False
        assert storage.put_if_absent("claim", b"second") is False
        assert storage.get("claim") == b"first"
    assert proxy.counts[NOT_IMPLEMENTED] == 1  # asked once, remembered


def test_concurrent_put_if_absent_has_one_winner(moto_endpoint: str, bucket: str) -> None:
    storage = S3Storage(f"s3://{bucket}/runs/race", s3_options(moto_endpoint))
    barrier = threading.Barrier(6)

    def claim(i: int) -> bool:
        barrier.wait()
        return storage.put_if_absent("lock", str(i).encode())

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(claim, range(6)))
    assert results.count(True) == 1
    assert storage.get("lock") == str(results.index(True)).encode()


# -- the whole pipeline on S3 -------------------------------------------------------------

def _assert_same_surface(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert {"xcoordinates", "train_loss", "test_acc"} <= set(a) and set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.slow
def test_pipeline_on_s3_equals_file(tmp_path: Path, linear_spec: dict, moto_endpoint: str, bucket: str) -> None:
    linear_spec["compute"]["shards"] = 2
    file_spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(file_spec, "e2e"), 2)
    expected = surface_datasets((tmp_path / "runs" / "e2e" / "surface.h5").read_bytes())

    s3_raw = {**linear_spec, "storage": {"url": f"s3://{bucket}/runs", **s3_options(moto_endpoint)}}
    s3_spec = spec_from(tmp_path, s3_raw)
    assert s3_spec.hash == file_spec.hash
    run = open_run(s3_spec, "e2e")
    assert run.url == f"s3://{bucket}/runs/e2e"
    run_all(run, 2)
    _assert_same_surface(surface_datasets(run.get("surface.h5")), expected)
    assert {"spec.yaml", "manifest.json", "directions.h5", "shards/shard-0-of-2.h5", "shards/shard-1-of-2.h5",
            "surface.h5", "report.json"} <= set(run.list())


@pytest.mark.slow
def test_local_backend_submit_on_s3(tmp_path: Path, linear_spec: dict, moto_endpoint: str, bucket: str,
                                    capsys: pytest.CaptureFixture) -> None:
    """``launcher submit --local``: the stages run as subprocesses that find S3 from the environment."""
    from launcher.cli import main

    linear_spec["grid"] = {"x": "-1:1:5"}  # 1-D: a quick run
    linear_spec["plot"] = {"formats": ["html"]}  # a 1-D surface's page under plots/, no figure to draw
    file_spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(file_spec, "x"), 1)
    expected = surface_datasets((tmp_path / "runs" / "x" / "surface.h5").read_bytes())

    s3_raw = {**linear_spec, "storage": {"url": f"s3://{bucket}/runs", **s3_options(moto_endpoint)}}
    path = write_spec(tmp_path, s3_raw, "s3.yaml")
    assert main(["submit", str(path), "--local", "--run-id", "x"]) == 0, capsys.readouterr().err
    run = run_storage(f"s3://{bucket}/runs", "x", s3_options(moto_endpoint))
    _assert_same_surface(surface_datasets(run.get("surface.h5")), expected)
    keys = run.list()
    assert "logs/prepare.log" in keys and "logs/merge.log" in keys and any(k.startswith("plots/") for k in keys)
    assert yaml.safe_load(run.get("spec.yaml"))["name"] == "linear"


def test_submit_local_checks_the_bucket_before_anything(moto_endpoint: str, aws_env: None, tmp_path: Path,
                                                         linear_spec: dict, capsys) -> None:
    from conftest import write_spec
    from launcher.cli import main as launcher

    linear_spec["storage"] = {"url": "s3://missing-bucket/runs", **s3_options(moto_endpoint)}
    assert launcher(["submit", str(write_spec(tmp_path, linear_spec)), "--local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "s3://missing-bucket/runs" in err and "does not exist" in err


@pytest.mark.slow
def test_pipeline_through_a_flaky_endpoint_equals_file(tmp_path: Path, linear_spec: dict, moto_endpoint: str,
                                                         bucket: str, fast_backoff: list[float],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole run (prepare, 3 shards with checkpoints, merge) through a proxy that throttles,
    drops or cuts ~45% of requests: the merged surface is identical to the file:// one."""
    linear_spec["compute"].update(shards=3, checkpoint_every=2)
    file_spec = spec_from(tmp_path, linear_spec)
    run_all(open_run(file_spec, "flaky"), 3)
    expected = surface_datasets((tmp_path / "runs" / "flaky" / "surface.h5").read_bytes())

    # ~45% of requests fail, so a request meets 10 failures in a row about once in 2,000; the run now
    # makes enough requests (the progress tally) that the default budget of 10 attempts can be spent.
    monkeypatch.setenv("LANDSCAPE_S3_ATTEMPTS", "20")
    with FlakyProxy(moto_endpoint, seeded_faults(seed=7)) as proxy:
        s3_raw = {**linear_spec, "storage": {"url": f"s3://{bucket}/runs", **s3_options(proxy.url)}}
        run = open_run(spec_from(tmp_path, s3_raw), "flaky")
        run_all(run, 3)
        got = surface_datasets(run.get("surface.h5"))
    _assert_same_surface(got, expected)
    assert proxy.counts[SLOWDOWN] >= 10 and proxy.counts[DROP] >= 2


@pytest.mark.parametrize("url", ["s3://", "s3:/nope", "s3:///nope"])
def test_an_s3_url_without_a_bucket_is_refused_not_taken_for_a_folder(url: str) -> None:
    with pytest.raises(UserError, match="bucket"):
        run_storage(url, "run")


class TestFileStorage:
    """``file://`` beyond the contract: how a write is made whole (in ``make mutation``'s selection)."""

    def test_results_are_readable_as_the_umask_allows(self, tmp_path: Path) -> None:
        """Results are ordinary files (0644 under umask 022), not mkstemp's private 0600."""
        from landscape_job.storage import files

        run = open_storage(str(tmp_path / "run"))
        run.put("surface.h5", b"x")
        assert run.put_if_absent("plots/surface.html", b"<html>")
        expected = 0o666 & ~files._UMASK
        for key in ("surface.h5", "plots/surface.html"):
            assert (tmp_path / "run" / key).stat().st_mode & 0o777 == expected, key

    def test_a_write_in_progress_is_not_listed(self, tmp_path: Path) -> None:
        """A put writes a hidden temporary file beside the key first (moved into place
        whole); a writer killed before the move leaves it behind. It is not an object."""
        store = open_storage(str(tmp_path / "run"))
        store.put("shards/shard-0-of-2.h5", b"whole")
        (tmp_path / "run/shards/.shard-1-of-2.h5.x1y2.tmp").write_bytes(b"half")
        assert store.list() == ["shards/shard-0-of-2.h5"]
        assert store.list("shards/") == ["shards/shard-0-of-2.h5"]

    def test_the_bytes_are_moved_into_place_from_a_hidden_file_beside_the_key(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Beside it: ``os.replace`` is atomic only within one file system. Hidden and named
        ``.<name>.<random>.tmp``: what ``list`` skips and what a person recognises."""
        moves: list[tuple[str, str]] = []
        replace = os.replace

        def spy(src, dst) -> None:
            moves.append((str(src), str(dst)))
            replace(src, dst)

        monkeypatch.setattr(os, "replace", spy)
        open_storage(str(tmp_path / "run")).put("shards/shard-0-of-2.h5", b"whole")
        [(src, dst)] = moves
        assert dst == str(tmp_path / "run/shards/shard-0-of-2.h5")
        assert Path(src).parent == Path(dst).parent
        assert re.fullmatch(r"\.shard-0-of-2\.h5\.[^/]+\.tmp", Path(src).name), src

    def test_a_put_that_cannot_move_its_file_into_place_leaves_nothing(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(src, dst) -> None:
            raise PermissionError(13, "Permission denied", str(dst))

        store = open_storage(str(tmp_path / "run"))
        monkeypatch.setattr(os, "replace", refuse)
        with pytest.raises(PermissionError, match="Permission denied"):
            store.put("surface.h5", b"x")
        assert [p.name for p in (tmp_path / "run").iterdir()] == []

    def test_a_write_that_fails_leaves_nothing(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A full disk at fsync: one line naming the object (base.diskspace), no temporary file behind."""
        from landscape_job.base.diskspace import NoSpace

        def full(fd: int) -> None:
            raise OSError(28, "No space left on device")

        store = open_storage(str(tmp_path / "run"))
        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(NoSpace, match="no space left on device writing .*shard-0-of-1.h5: 1 bytes needed"):
            store.put("shards/shard-0-of-1.h5", b"x")
        assert list((tmp_path / "run/shards").iterdir()) == []

    def test_an_existing_folder_is_opened_a_file_is_refused(self, tmp_path: Path) -> None:
        open_storage(str(tmp_path / "run")).put("spec.yaml", b"a: 1")
        assert open_storage(str(tmp_path / "run")).get("spec.yaml") == b"a: 1"
        location = StorageLocation.parse(str(tmp_path / "plain"))  # which refuses a file in its own words
        (tmp_path / "plain").write_bytes(b"")  # a file where the folder was to be
        with pytest.raises(UserError) as caught:
            FileStorage(location)
        assert str(caught.value) == f"storage: {tmp_path / 'plain'} exists and is not a folder"
