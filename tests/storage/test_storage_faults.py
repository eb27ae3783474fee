"""S3 storage through a proxy that fails requests on the wire, one kind of fault at a time.

Each test puts ``tests/support/s3server.FlakyProxy`` between the client and moto's server on
127.0.0.1: the faults are real HTTP (a 500, a reset, a body shorter than its
``Content-Length``, an answer later than the read timeout), never a mock of boto3.
"""

from __future__ import annotations

import pytest

from landscape_job.base.errors import StageError
from landscape_job.storage import NotFound
from landscape_job.storage.retry import (ATTEMPTS_ENV, BACKOFF_ENV, BACKOFF_MAX_ENV, READ_TIMEOUT_ENV, RetryPolicy,
                                         fault_of)
from landscape_job.storage.s3 import S3Storage
from s3server import (CUT_RESET, DROP_AFTER, FAULTS, FLIP, OK, RESET_AFTER, SLOW, TIMEOUT, TRUNCATE, FaultPlan, FlakyProxy,
                      first_conditional_puts)
from storage_testing import aws_env, bucket, s3_options  # noqa: F401 - fixtures

#: The client's read timeout in these tests; the proxy's TIMEOUT answers come later than this.
READ_TIMEOUT = 0.5


@pytest.fixture
def short_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short backoff and read timeout, through the environment as a stage would get them."""
    monkeypatch.setenv(BACKOFF_ENV, "0.01")
    monkeypatch.setenv(BACKOFF_MAX_ENV, "0.05")
    monkeypatch.setenv(READ_TIMEOUT_ENV, str(READ_TIMEOUT))
    monkeypatch.setenv(ATTEMPTS_ENV, "6")


def _first_of_each(kind: str):
    """Fails the first request of every (method, path) in ``kind``; later ones pass."""
    seen: set[tuple[str, str]] = set()

    def decide(method: str, path: str, headers) -> str:
        if (method, path) in seen:
            return OK
        seen.add((method, path))
        return kind

    return decide


def _proxy(endpoint: str, decide) -> FlakyProxy:
    return FlakyProxy(endpoint, decide, slow=READ_TIMEOUT / 4, timeout=READ_TIMEOUT + 0.4)


def test_a_cut_404_body_is_retried_not_a_traceback(moto_endpoint: str, bucket: str, short_clock: None) -> None:
    """Issue 13, point 1: the launcher's progress poll read a missing progress file through a proxy
    that cut the 404's body and reset the connection; botocore raised urllib3's ProtocolError while
    reading the error answer itself, unmapped and unretried."""
    with _proxy(moto_endpoint, _first_of_each(CUT_RESET)) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/r", s3_options(proxy.url))
        with pytest.raises(NotFound):
            storage.get("shards/shard-0-of-4.progress.json")
        storage.put("spec.yaml", b"name: x\n")
        assert storage.get("spec.yaml") == b"name: x\n"
        assert storage.list() == ["spec.yaml"]
    assert proxy.counts[CUT_RESET] >= 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAULTS + (FLIP,))
def test_every_call_rides_out_each_kind_of_fault(kind: str, moto_endpoint: str, bucket: str,
                                                short_clock: None) -> None:
    data = bytes(range(256)) * 40
    with _proxy(moto_endpoint, _first_of_each(kind)) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/r", s3_options(proxy.url))
        storage.put("a.h5", data)
        assert storage.get("a.h5") == data
        assert storage.exists("a.h5") and not storage.exists("b.h5")
        with pytest.raises(NotFound):
            storage.get("b.h5")
        assert storage.list() == ["a.h5"]
        assert storage.put_if_absent("c.h5", b"claim") is True
        assert storage.put_if_absent("a.h5", b"other") is False
        storage.delete("a.h5")
        assert storage.list() == ["c.h5"] and storage.get("c.h5") == b"claim"
    assert proxy.counts[kind] >= 5


@pytest.mark.parametrize("kind", [DROP_AFTER, RESET_AFTER, TIMEOUT, TRUNCATE, CUT_RESET])
def test_a_conditional_write_whose_answer_was_lost_is_ours(kind: str, moto_endpoint: str, bucket: str,
                                                            short_clock: None) -> None:
    """The first conditional PUT lands but its answer is lost (dropped, reset, too late, cut):
    the retry's 412 must not read as "someone else was first" when the bytes are ours."""
    plan = {"final.h5": [kind], "taken.h5": [kind]}

    with _proxy(moto_endpoint, first_conditional_puts(plan)) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/c", s3_options(proxy.url))
        assert storage.put_if_absent("shards/final.h5", b"mine") is True
        storage.put("shards/taken.h5", b"theirs")
        assert storage.put_if_absent("shards/taken.h5", b"mine") is False  # 412 on the first attempt: theirs
        assert storage.get("shards/final.h5") == b"mine" and storage.get("shards/taken.h5") == b"theirs"
    assert proxy.counts[kind] == 2


#: The faults no call can get through. (A slow answer arrives; a plain cut body after a
#: complete status line is taken at its status where botocore reads the body itself: a
#: 404 is a 404 however short its XML, and an empty PUT answer carries nothing to verify.)
HARD_FAULTS = tuple(k for k in FAULTS if k not in (SLOW, TRUNCATE))


@pytest.mark.slow
def test_a_fault_that_outlasts_the_budget_is_one_line(moto_endpoint: str, bucket: str, short_clock: None) -> None:
    with _proxy(moto_endpoint, FaultPlan(seed=1, rate=1.0, kinds=HARD_FAULTS)) as proxy:
        storage = S3Storage(f"s3://{bucket}/runs/down", s3_options(proxy.url))
        for call in (lambda: storage.get("shards/shard-0-of-2.h5"), lambda: storage.put("x", b"1"),
                     lambda: storage.list(), lambda: storage.exists("x"), lambda: storage.put_if_absent("y", b"2")):
            with pytest.raises(StageError) as info:
                call()
            message = str(info.value)
            assert "\n" not in message and "still failing after 6 attempts" in message
            assert message.startswith(f"s3://{bucket}/runs/down: ")
    assert proxy.counts[OK] == 0 and sum(proxy.counts.values()) == 30


def test_retry_policy_from_env() -> None:
    from landscape_job.base.errors import UserError

    policy = RetryPolicy.from_env({ATTEMPTS_ENV: "3", BACKOFF_ENV: "0.2", READ_TIMEOUT_ENV: "2.5"}, attempts=10)
    assert (policy.attempts, policy.backoff, policy.read_timeout, policy.backoff_max) == (3, 0.2, 2.5, 20.0)
    assert RetryPolicy.from_env({}, attempts=7).attempts == 7
    for bad in ({ATTEMPTS_ENV: "0"}, {ATTEMPTS_ENV: "2.5"}, {BACKOFF_ENV: "nan"}, {READ_TIMEOUT_ENV: "1e9"}):
        with pytest.raises(UserError, match=next(iter(bad))):
            RetryPolicy.from_env(bad)
    delays = [policy.delay(n) for n in range(1, 40)]
    assert all(0 <= d <= policy.backoff_max for d in delays)
    assert fault_of(ValueError("x")) is None and fault_of(ConnectionResetError()) == "ConnectionResetError"


@pytest.mark.slow
def test_s3_inputs_are_fetched_through_faults(moto_endpoint: str, bucket: str, short_clock: None, tmp_path) -> None:
    """The inputs fetcher (a checkpoint, a data folder in S3) retries as the run's storage does."""
    from pathlib import Path

    from landscape_job.inputs.fetch import Fetcher
    from landscape_job.storage.location import StorageOptions

    direct = S3Storage(f"s3://{bucket}", s3_options(moto_endpoint))
    direct.put("in/model.pt", b"weights" * 1000)
    direct.put("in/ds/a.bin", b"a" * 300)
    direct.put("in/ds/sub/b.bin", b"b" * 500)
    for kind in FAULTS:
        with _proxy(moto_endpoint, _first_of_each(kind)) as proxy:
            fetcher = Fetcher(cache=tmp_path / kind, s3_options=StorageOptions(**s3_options(proxy.url)))
            assert Path(fetcher.file(f"s3://{bucket}/in/model.pt", "model.checkpoint")).read_bytes() == \
                b"weights" * 1000
            root = Path(fetcher.folder(f"s3://{bucket}/in/ds", "data.root"))
            assert (root / "sub" / "b.bin").read_bytes() == b"b" * 500 and (root / "a.bin").read_bytes() == b"a" * 300
        assert proxy.counts[kind] >= 3, (kind, proxy.counts)
