"""The retry loop and its fault classifier, without a network (``landscape_job.storage.retry``).

test_storage_faults.py drives the same loop through moto and a fault-injecting proxy; these
call it directly, so every branch (the budget, the pause, a server's hint, the one-line
message, each kind of fault) is checked where mutation testing can run it (docs/testing.md).
"""

from __future__ import annotations

import http.client
import random

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from urllib3.exceptions import ProtocolError

from landscape_job.base.errors import StageError, UserError
from landscape_job.storage.retry import Corrupt, RetryPolicy, fault_of, retrying


class Flaky(Exception):
    """A transient fault for the loop (the classifier below names it)."""


def classify(err: BaseException) -> str | None:
    return f"flaky {err}" if isinstance(err, Flaky) else None


def failing(times: int, value: str = "done"):
    """A call that raises Flaky on its first ``times`` attempts, recording the attempt numbers."""
    seen: list[int] = []

    def call(attempt: int) -> str:
        seen.append(attempt)
        if len(seen) <= times:
            raise Flaky(attempt)
        return value

    return call, seen


def test_defaults_are_the_documented_ones() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.backoff, policy.backoff_max, policy.connect_timeout, policy.read_timeout) \
        == (10, 0.5, 20.0, 10.0, 60.0)


def test_transient_faults_are_retried_until_the_call_returns() -> None:
    call, seen = failing(2)
    pauses: list[float] = []
    policy = RetryPolicy(attempts=3, backoff=0.25, backoff_max=0.3)
    assert retrying(call, "x", policy, pauses.append, classify=classify) == "done"
    assert seen == [1, 2, 3]
    assert len(pauses) == 2
    assert 0 <= pauses[0] <= 0.25 and 0 <= pauses[1] <= 0.3


def test_a_fault_that_is_not_transient_propagates_at_once() -> None:
    def call(attempt: int) -> str:
        raise KeyError("mine")

    pauses: list[float] = []
    with pytest.raises(KeyError, match="mine"):
        retrying(call, "x", RetryPolicy(attempts=5), pauses.append, classify=classify)
    assert pauses == []


def test_a_spent_budget_is_one_line_naming_the_call_and_the_last_fault() -> None:
    call, seen = failing(99)
    pauses: list[float] = []
    with pytest.raises(StageError) as info:
        retrying(call, "s3://b/run: put x", RetryPolicy(attempts=3, backoff=0.0), pauses.append, classify=classify)
    assert seen == [1, 2, 3] and pauses == [0.0, 0.0]
    assert str(info.value) == ("s3://b/run: put x: still failing after 3 attempts over 0 s (last: flaky 3); "
                               "the object store or the network is failing, try again later")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_two_attempts_are_plural() -> None:
    call, _ = failing(99)
    with pytest.raises(StageError, match=r"^x: still failing after 2 attempts over 0 s \(last: flaky 2\); "):
        retrying(call, "x", RetryPolicy(attempts=2, backoff=0.0), lambda _: None, classify=classify)


def test_a_budget_of_one_attempt_says_attempt_and_names_the_culprit() -> None:
    call, seen = failing(99)
    pauses: list[float] = []
    with pytest.raises(StageError) as info:
        retrying(call, "GET model.pt", RetryPolicy(attempts=1), pauses.append, classify=classify, culprit="the web server")
    assert seen == [1] and pauses == []
    assert str(info.value) == ("GET model.pt: still failing after 1 attempt over 0 s (last: flaky 1); "
                               "the web server is failing, try again later")


def test_the_last_fault_is_shown_on_one_line_of_at_most_120_characters() -> None:
    def call_raising(text: str):
        def call(attempt: int) -> str:
            raise Flaky(text)
        return call

    def message(text: str) -> str:
        with pytest.raises(StageError) as info:
            retrying(call_raising(text), "x", RetryPolicy(attempts=1), classify=classify)
        return str(info.value).split("(last: ", 1)[1].split("); ", 1)[0]

    assert message("a\n  b\tc") == "flaky a b c"
    exact = "y" * (120 - len("flaky "))
    assert message(exact) == "flaky " + exact
    long = message(exact + "z")
    assert len(long) == 120 and long == ("flaky " + exact)[:117] + "..."


def test_a_wait_hint_lengthens_the_pause_but_never_beyond_backoff_max() -> None:
    class Later(Flaky):
        def __init__(self, seconds: float | None):
            super().__init__("later")
            self.seconds = seconds

    hints = iter([3.0, 1000.0, None])

    def call(attempt: int) -> str:
        if attempt <= 3:
            raise Later(next(hints))
        return "done"

    pauses: list[float] = []
    policy = RetryPolicy(attempts=4, backoff=0.001, backoff_max=10.0)
    assert retrying(call, "x", policy, pauses.append, classify=classify,
                    wait_hint=lambda err: err.seconds) == "done"  # type: ignore[attr-defined]
    assert pauses[0] == pytest.approx(3.0) and pauses[1] == pytest.approx(10.0)
    assert 0 <= pauses[2] <= 0.004  # no hint: the jittered backoff alone


def test_the_delay_is_full_jitter_below_a_doubling_bound_capped_at_backoff_max() -> None:
    random.seed(7)
    policy = RetryPolicy(backoff=1.0, backoff_max=5.0)
    for attempt, bound in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        draws = [policy.delay(attempt) for _ in range(400)]
        assert min(draws) >= 0 and max(draws) <= bound
        assert max(draws) > 0.95 * bound and min(draws) < 0.05 * bound  # uniform over [0, bound]


def test_the_policy_reads_its_variables_under_a_prefix_with_bounds() -> None:
    policy = RetryPolicy.from_env({"LANDSCAPE_HTTP_ATTEMPTS": " 4 ", "LANDSCAPE_HTTP_BACKOFF_MAX": "7.5",
                                   "LANDSCAPE_HTTP_CONNECT_TIMEOUT": "3", "LANDSCAPE_S3_ATTEMPTS": "9"},
                                  prefix="LANDSCAPE_HTTP", backoff=2.0)
    assert (policy.attempts, policy.backoff, policy.backoff_max, policy.connect_timeout, policy.read_timeout) \
        == (4, 2.0, 7.5, 3.0, 60.0)
    assert isinstance(policy.attempts, int)
    # the edges: attempts 1..3600, backoff from 0, timeouts from 0.01
    edges = {"LANDSCAPE_S3_ATTEMPTS": "1", "LANDSCAPE_S3_BACKOFF": "0", "LANDSCAPE_S3_BACKOFF_MAX": "3600",
             "LANDSCAPE_S3_READ_TIMEOUT": "0.01", "LANDSCAPE_S3_CONNECT_TIMEOUT": ""}
    policy = RetryPolicy.from_env(edges)
    assert (policy.attempts, policy.backoff, policy.backoff_max, policy.read_timeout, policy.connect_timeout) \
        == (1, 0.0, 3600.0, 0.01, 10.0)
    for name, raw, expected in (
            ("LANDSCAPE_S3_ATTEMPTS", "3601", "an integer from 1 to 3600, got '3601'"),
            ("LANDSCAPE_S3_ATTEMPTS", "0", "an integer from 1 to 3600, got '0'"),
            ("LANDSCAPE_S3_ATTEMPTS", "two", "an integer from 1 to 3600, got 'two'"),
            ("LANDSCAPE_S3_BACKOFF", "-0.1", "a number of seconds from 0 to 3600, got '-0.1'"),
            ("LANDSCAPE_S3_BACKOFF", "inf", "a number of seconds from 0 to 3600, got 'inf'"),
            ("LANDSCAPE_S3_CONNECT_TIMEOUT", "0", "a number of seconds from 0.01 to 3600, got '0'"),
            ("LANDSCAPE_S3_READ_TIMEOUT", "3600.5", "a number of seconds from 0.01 to 3600, got '3600.5'")):
        with pytest.raises(UserError) as info:
            RetryPolicy.from_env({name: raw})
        assert str(info.value) == f"{name}: expected {expected}"


def test_the_policy_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDSCAPE_S3_ATTEMPTS", "2")
    assert RetryPolicy.from_env().attempts == 2


def client_error(code: str, status: int | None) -> ClientError:
    response: dict = {"Error": {"Code": code, "Message": "m"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "GetObject")


@pytest.mark.parametrize("code,status,expected", [
    ("SlowDown", 503, "SlowDown 503"),
    ("SlowDown", None, "SlowDown 0"),  # the code alone says "again"
    ("RequestTimeout", 400, "RequestTimeout 400"),
    ("", 500, "HTTP 500"),
    ("", 502, "HTTP 502"),
    ("Whatever", 408, "Whatever 408"),
    ("Whatever", 429, "Whatever 429"),
    ("NotImplemented", 501, None),
    ("NoSuchKey", 404, None),
    ("AccessDenied", 403, None),
    ("PreconditionFailed", 412, None),
    ("Whatever", 499, None),
])
def test_client_errors_are_transient_by_code_or_status(code: str, status: int | None, expected: str | None) -> None:
    assert fault_of(client_error(code, status)) == expected


def test_a_client_error_without_a_code_is_named_by_its_status() -> None:
    assert fault_of(ClientError({"ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")) == "HTTP 503"
    assert fault_of(ClientError({"Error": {"Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                                "GetObject")) == "HTTP 500"


def test_other_faults_are_named_by_their_kind() -> None:
    assert fault_of(Corrupt("short body: 3 of 10 bytes")) == "corrupt body (short body: 3 of 10 bytes)"
    assert fault_of(EndpointConnectionError(endpoint_url="http://x")) == "EndpointConnectionError"
    assert fault_of(ReadTimeoutError(endpoint_url="http://x")) == "ReadTimeoutError"
    assert fault_of(NoCredentialsError()) is None  # botocore's own, not passing
    assert fault_of(ProtocolError("cut")) == "ProtocolError"
    assert fault_of(http.client.IncompleteRead(b"x", 3)) == "IncompleteRead"
    assert fault_of(ConnectionResetError()) == "ConnectionResetError"
    assert fault_of(TimeoutError()) == "TimeoutError"
    assert fault_of(type("S3UploadFailedError", (Exception,), {})()) == "S3UploadFailedError"
    assert fault_of(type("RetriesExceededError", (Exception,), {})()) == "RetriesExceededError"
    assert fault_of(ValueError("x")) is None and fault_of(OSError("disk")) is None
