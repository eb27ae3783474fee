"""Web inputs (``https://``, loopback ``http://``): what a retry can heal, and what is the user's.

The exit code of a stage tells the Job controller what to do: 2 is the user's mistake and
ends the index or the Job (``podFailurePolicy`` FailIndex/FailJob), 1 is retried. A fetch
of a web input therefore sorts every failure into one of two classes:

Retried here (storage/retry.py's loop and policy), exit 1 once the budget is spent:

* the network: connection refused or reset, a timeout, a TLS handshake cut off, a DNS
  lookup that failed *temporarily* (EAI_AGAIN: the cluster's resolver, not the name);
* a body cut short (fewer bytes than its ``Content-Length``);
* HTTP 408, 425, 429 and every 5xx but 501: the server says "later"; its ``Retry-After``
  is honoured up to the policy's longest backoff;
* HTTP 403 *with* ``Retry-After``: how some hosts (GitHub among them) rate-limit.

The user's mistake, exit 2 at once (a retry sends the same request and gets the same answer):

* HTTP 404 and 410: the URL names nothing;
* HTTP 401 and 403 (without ``Retry-After``): web inputs are fetched without credentials,
  so no later attempt brings one (a Secret mounted late changes nothing here); an expired
  presigned URL stays expired. Private objects belong in ``s3://``, read with the storage
  credentials;
* any other 4xx, and 501: the server will not serve this request;
* a host name DNS says does not exist (EAI_NONAME: an authoritative answer, like a 404);
* a TLS certificate that does not verify, and a malformed URL;
* a body that arrives whole but does not match its sha256 pin (checked by the caller).

The budget: ``LANDSCAPE_HTTP_ATTEMPTS`` (default 6), ``LANDSCAPE_HTTP_BACKOFF`` (1 s, the
first pause's bound, doubling), ``LANDSCAPE_HTTP_BACKOFF_MAX`` (30 s),
``LANDSCAPE_HTTP_READ_TIMEOUT`` (60 s, per connect and per read); about two minutes of
patience in all, so a server restarting or a rate limit passes, a dead one ends the pod.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from landscape_job.base.errors import StageError, UserError
from landscape_job.storage.retry import RetryPolicy, retrying

T = TypeVar("T")

HTTP_ENV_PREFIX = "LANDSCAPE_HTTP"
#: The defaults of the web inputs' retry budget (each overridden by ``LANDSCAPE_HTTP_<FIELD>``).
HTTP_DEFAULTS = {"attempts": 6, "backoff": 1.0, "backoff_max": 30.0, "read_timeout": 60.0}
#: HTTP statuses that mean "later" (every 5xx but 501 Not Implemented is retried too).
RETRY_STATUSES = frozenset({408, 425, 429})
#: How many characters of a URL a message repeats.
URL_CHARS = 200
_BLOCK = 1 << 20


class ShortBody(Exception):
    """A body that ended before its ``Content-Length``: the connection broke, retry."""


def _cut(text: str) -> str:
    """A URL (or a reason quoting one) as a message repeats it: at most ``URL_CHARS`` characters."""
    return text if len(text) <= URL_CHARS else text[:URL_CHARS - 3] + "..."


def http_policy() -> RetryPolicy:
    return RetryPolicy.from_env(prefix=HTTP_ENV_PREFIX, **HTTP_DEFAULTS)


def transient_status(status: int, retry_after: bool) -> bool:
    """Whether an HTTP error status is worth another attempt (see the module's table)."""
    return status in RETRY_STATUSES or (status >= 500 and status != 501) or (status == 403 and retry_after)


def web_fault(err: BaseException) -> str | None:
    """A short name for a fault another attempt may heal, None for one it cannot."""
    if isinstance(err, ValueError):  # a malformed URL (http.client.InvalidURL too), a certificate refused
        return None
    if isinstance(err, urllib.error.HTTPError):
        if transient_status(err.code, err.headers is not None and err.headers.get("Retry-After") is not None):
            return f"HTTP {err.code}"
        return None
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        # A string reason is urllib's own refusal ("no host given", "unknown url type"): no retry changes it.
        return web_fault(reason) if isinstance(reason, BaseException) else None
    if isinstance(err, socket.gaierror):
        return None if err.errno == socket.EAI_NONAME else f"DNS lookup failed ({err})"
    if isinstance(err, ShortBody):
        return f"body cut short ({err})"
    if isinstance(err, (ConnectionError, TimeoutError, socket.timeout, ssl.SSLError, http.client.HTTPException)):
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return None


def retry_after(err: BaseException) -> float | None:
    """A server's ``Retry-After`` in seconds (a number or an HTTP date), None if absent or unreadable."""
    headers = getattr(err, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _final(err: BaseException, url: str, key: str) -> Exception:
    """The one-line error for a failure no retry heals (or the error itself, for anything unforeseen)."""
    where = f"{key}: {_cut(url)}"
    if isinstance(err, urllib.error.HTTPError):
        status = f"answered HTTP {err.code} ({_cut(str(err.reason))})"
        if err.code in (401, 403):
            return UserError(f"{where} {status}; web inputs are fetched without credentials: make the object "
                             "public, use a fresh presigned URL, or put it in s3:// (read with the storage credentials)")
        return UserError(f"{where} {status}; fix the URL")
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, socket.gaierror):
        return UserError(f"{where}: the host does not exist ({reason.strerror}); fix the URL")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return UserError(f"{where}: the server's TLS certificate does not verify ({reason.verify_message}); "
                         "fix the URL or the server's certificate")
    if isinstance(err, ValueError):
        return UserError(f"{where}: not a URL that can be fetched ({_cut(str(err))}); fix the URL")
    if isinstance(err, OSError) and not isinstance(err, urllib.error.URLError):
        # Our side (the cache's disk): not the user's, and perhaps not lasting.
        return StageError(f"{where}: cannot store the download ({err.strerror or err})")
    if isinstance(err, urllib.error.URLError):
        if isinstance(reason, str):  # urllib's own refusal of the URL
            return UserError(f"{where}: cannot fetch ({_cut(reason)}); fix the URL")
        return StageError(f"{where}: cannot fetch ({_cut(str(reason))})")
    return err if isinstance(err, Exception) else StageError(str(err))


@contextlib.contextmanager
def _sorted(url: str, key: str) -> Iterator[None]:
    """After the retries: a failure no retry heals becomes one line, exit 2 (or 1, for our own disk)."""
    try:
        yield
    except (StageError, UserError):
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        raise _final(err, url, key) from None


def _retried(call: Callable[[int], T], url: str, key: str, verb: str) -> T:
    with _sorted(url, key):
        return retrying(call, f"{key}: {verb} {_cut(url)}", http_policy(), classify=web_fault,
                        wait_hint=retry_after, culprit="the web server or the network")


def head(url: str, key: str) -> int | None:
    """The input's size from one HEAD (None if the server does not say); errors sorted as above."""
    timeout = http_policy().read_timeout

    def attempt(_: int) -> int | None:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None

    return _retried(attempt, url, key, "HEAD")


def download(url: str, dest: Path, key: str) -> int:
    """The whole body of ``url`` in ``dest`` (rewritten on each attempt); its size. Errors sorted as above."""
    timeout = http_policy().read_timeout

    def attempt(_: int) -> int:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, _BLOCK)
        size = dest.stat().st_size
        if length and length.isdigit() and size != int(length):
            raise ShortBody(f"{size} of {length} bytes")
        return size

    return _retried(attempt, url, key, "download")
