"""Transient storage faults and the one retry loop every S3 call goes through.

Object stores and the networks in front of them fail in passing: 500 and 503 (SlowDown)
answers, 429, a connection reset before or after the server acted, a body cut short
(``Content-Length`` promised, fewer bytes sent), an answer slower than the read timeout.
botocore retries only some of these: a body that breaks off while botocore itself reads
it (every non-streaming answer, error answers included) surfaces as a bare
``urllib3.exceptions.ProtocolError``, and a streamed body's faults surface only when the
caller reads. So the S3 backend turns botocore's own retries off and runs every request,
body read and verification included, through :func:`retrying`: one budget, exponential
backoff with full jitter, the same for every kind of fault.

The budget and the timeouts come from the environment when set (the stages inherit the
launcher's), so a test or an impatient user can shorten them:

* ``LANDSCAPE_S3_ATTEMPTS``: attempts per call, the first included (default 10)
* ``LANDSCAPE_S3_BACKOFF``: the first backoff's upper bound in seconds (default 0.5),
  doubling with each attempt up to ``LANDSCAPE_S3_BACKOFF_MAX`` (default 20)
* ``LANDSCAPE_S3_CONNECT_TIMEOUT`` and ``LANDSCAPE_S3_READ_TIMEOUT`` in seconds
  (defaults 10 and 60)

The same policy and loop serve the web inputs (:mod:`landscape_job.inputs.web`), with their own
classifier of faults and their own variables (``LANDSCAPE_HTTP_ATTEMPTS``, ...): one model of
"how often, how patiently", two vocabularies of what a passing fault looks like.
"""

from __future__ import annotations

import http.client
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from landscape_job.base.errors import StageError, UserError

T = TypeVar("T")

ATTEMPTS_ENV = "LANDSCAPE_S3_ATTEMPTS"
BACKOFF_ENV = "LANDSCAPE_S3_BACKOFF"
BACKOFF_MAX_ENV = "LANDSCAPE_S3_BACKOFF_MAX"
CONNECT_TIMEOUT_ENV = "LANDSCAPE_S3_CONNECT_TIMEOUT"
READ_TIMEOUT_ENV = "LANDSCAPE_S3_READ_TIMEOUT"

#: S3 error codes that mean "try again" whatever the HTTP status says.
_RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
                "TooManyRequests", "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded",
                "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
                "ConditionalRequestConflict", "OperationAborted", "PriorRequestNotComplete"}


class Corrupt(Exception):
    """A body that arrived, but not as promised (short, long, or not matching its checksum)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried."""

    attempts: int = 10
    backoff: float = 0.5
    backoff_max: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, prefix: str = "LANDSCAPE_S3",
                 **defaults: float) -> RetryPolicy:
        """The defaults given, each replaced by its environment variable (``<prefix>_ATTEMPTS``, ...) when set."""
        environ = os.environ if environ is None else environ
        base = cls(**defaults)  # type: ignore[arg-type]
        values = {}
        for field, integer in (("attempts", True), ("backoff", False), ("backoff_max", False),
                               ("connect_timeout", False), ("read_timeout", False)):
            name = f"{prefix}_{field.upper()}"
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                value = math.nan
            low = 1 if integer else (0.0 if field.startswith("backoff") else 0.01)
            if not (math.isfinite(value) and low <= value <= 3600):
                raise UserError(f"{name}: expected a{'n integer' if integer else ' number of seconds'} "
                                f"from {low:g} to 3600, got {raw[:40]!r}")
            values[field] = value
        return cls(**{**base.__dict__, **values})

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based): full jitter below a doubling bound."""
        return random.uniform(0, min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))


def fault_of(err: BaseException) -> str | None:
    """A short name for a transient fault (worth another attempt), or None for anything else."""
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError,
                                     FlexibleChecksumError, HTTPClientError, IncompleteReadError,
                                     ResponseStreamingError)
    from botocore.parsers import ResponseParserError
    from urllib3.exceptions import HTTPError as URLLib3Error

    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _RETRY_CODES or status in (408, 429) or (status >= 500 and status != 501):
            return f"{code or 'HTTP'} {status}".strip()
        return None
    if isinstance(err, Corrupt):
        return f"corrupt body ({err})"
    if isinstance(err, (BotoConnectionError, HTTPClientError, ResponseStreamingError, IncompleteReadError,
                        ResponseParserError, FlexibleChecksumError)):
        return type(err).__name__
    if isinstance(err, BotoCoreError):
        return None
    if isinstance(err, (URLLib3Error, http.client.HTTPException, ConnectionError, TimeoutError)):
        return type(err).__name__
    # s3transfer's wrappers around a part that kept failing
    if type(err).__name__ in ("S3UploadFailedError", "RetriesExceededError"):
        return type(err).__name__
    return None


def retrying(call: Callable[[int], T], what: str, policy: RetryPolicy,
             sleep: Callable[[float], None] = time.sleep, *,
             classify: Callable[[BaseException], str | None] = fault_of,
             wait_hint: Callable[[BaseException], float | None] | None = None,
             culprit: str = "the object store or the network") -> T:
    """``call(attempt)`` until it returns, retrying transient faults within the policy's budget.

    ``classify`` names a transient fault (None: not transient); ``wait_hint`` may ask for a
    longer pause after a fault (a server's Retry-After), never beyond ``backoff_max``.
    Anything not transient propagates as it is. When the budget is spent: a one-line
    ``StageError`` naming ``what`` and the last fault (exit 1: a later resume may succeed).
    """
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call(attempt)
        except Exception as err:  # noqa: BLE001 - classified right here
            fault = classify(err)
            if fault is None:
                raise
            if attempt == policy.attempts:
                raise StageError(f"{what}: still failing after {attempt} attempt{'s' if attempt > 1 else ''} "
                                 f"over {time.monotonic() - started:.0f} s (last: {_one_line(fault)}); "
                                 f"{culprit} is failing, try again later") from None
            hint = wait_hint(err) if wait_hint is not None else None
        pause = policy.delay(attempt)
        if hint is not None:
            pause = max(pause, min(hint, policy.backoff_max))
        sleep(pause)
    raise AssertionError("unreachable")


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
