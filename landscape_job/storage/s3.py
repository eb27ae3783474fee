"""``s3://bucket/prefix``: a run's storage in S3 or an S3-compatible store (MinIO, Ceph, R2), through boto3.

Options come from the spec's ``storage`` mapping (``landscape_job.storage.location.StorageOptions``),
all optional:

* ``endpoint_url``: the S3 endpoint, e.g. ``http://minio.minio:9000``. Unset, boto3's own
  configuration applies (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, the profile, AWS).
* ``region``: the bucket's region. Unset, boto3's chain applies (``AWS_REGION``,
  ``AWS_DEFAULT_REGION``, the profile).
* ``addressing_style``: ``auto`` | ``path`` | ``virtual``; most self-hosted stores need ``path``.
* ``request_checksum``: ``when_supported`` (boto3's default: a CRC checksum on every upload
  and validated on every download) or ``when_required``, the documented switch for servers
  that reject boto3's default checksums (older MinIO and Ceph RGW answer such uploads
  with 400 or 501).

Credentials come only from boto3's standard chain (environment variables, a profile,
web identity / IRSA, the instance or pod metadata), never from the spec, and are never
written into a message or a log.

Every call is retried as ``storage/retry.py`` says (5xx, SlowDown, 429, resets, bodies cut
short, timeouts; exponential backoff with full jitter; one budget), and every read is
verified before use: its length against ``Content-Length``, and its bytes against the
sha256 every ``put`` stores in the object's metadata (``x-amz-meta-sha256``), where the
object has one.

Every write is one whole object: a single ``PutObject`` is atomic in S3, and a multipart
upload (used above the multipart threshold) becomes visible only when it completes, so a
reader sees the old object or the new one, never half of either. ETags are never used as
content hashes (they are not an MD5 for multipart uploads, nor under SSE-KMS, nor on many
S3-compatible stores); wherever content must be compared, the bytes are.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import boto3
import botocore.session
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionError as BotoConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from s3transfer.exceptions import RetriesExceededError

from landscape_job.base.errors import StageError, UserError
from landscape_job.storage.location import S3, StorageLocation, StorageOptions, check_key, split_s3_url
from landscape_job.storage.base import NotFound
from landscape_job.storage.retry import Corrupt, RetryPolicy, retrying

T = TypeVar("T")

#: Objects at least this large go up as a multipart upload and come down as parallel
#: ranged GETs: each part is retried on its own instead of the whole object.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: S3's smallest part (all but the last).
_MIN_PART = 5 * 1024 * 1024

#: Attempts per call, the first included: with a 0.5 s first backoff, doubling, capped at
#: 20 s, this rides out about a minute of throttling. ``LANDSCAPE_S3_ATTEMPTS`` and the
#: other variables of ``storage/retry.py`` override these.
MAX_ATTEMPTS = 10
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

#: ``check_access`` fails fast: an unreachable endpoint is reported in seconds.
CHECK_CONNECT_TIMEOUT = 3.0
CHECK_READ_TIMEOUT = 10.0
CHECK_ATTEMPTS = 2

#: The metadata key of the sha256 every ``put`` stores with the object.
SHA256_META = "sha256"

_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "TokenRefreshRequired", "InvalidSecurity"}
_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                 "AuthorizationQueryParametersError"}
_NOT_IMPLEMENTED = {"NotImplemented", "NotImplementedError", "UnsupportedOperation"}


_LOADER_LOCK = threading.Lock()
_LOADER = None


def _session() -> boto3.session.Session:
    """A new boto3 session (credentials and configuration resolved afresh) sharing one model loader.

    Each session would otherwise parse S3's service model again (about 0.2 s a client);
    the loader only reads botocore's packaged data files, so sharing it is safe.
    """
    global _LOADER
    core = botocore.session.get_session()
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


def _client_config(options: StorageOptions, connect_timeout: float, read_timeout: float, attempts: int) -> Config:
    """botocore's client configuration for the options.

    ``attempts`` 1 turns botocore's own retries off: the main client's calls are retried by
    ``storage/retry.py``, which also covers what botocore cannot (a body that breaks off
    while botocore reads it, a verification that fails). The client that moves multipart
    objects keeps botocore's ``standard`` mode (exponential backoff, full jitter, a retry
    quota), so each part is retried on its own; ``adaptive`` mode's client-side rate limiter
    only helps a client that sends many requests a second, which no stage does.
    """
    kwargs: dict = {
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "retries": {"mode": "standard", "total_max_attempts": attempts},
        "tcp_keepalive": True,
    }
    if options.addressing_style is not None:
        kwargs["s3"] = {"addressing_style": options.addressing_style}
    if options.request_checksum is not None:
        kwargs["request_checksum_calculation"] = options.request_checksum
        kwargs["response_checksum_validation"] = options.request_checksum
    return Config(**kwargs)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class S3Storage:
    """A run's prefix in a bucket: keys are ``<prefix>/<key>``.

    Opened from a parsed location (as the registry does), or from a URL and its options
    mapping, which are parsed here the same way.
    """

    def __init__(self, location: StorageLocation | str, options: Mapping[str, str] | None = None, *,
                 multipart_threshold: int = MULTIPART_THRESHOLD):
        location = StorageLocation.of(location, options)
        if location.scheme != S3:
            raise UserError(f"storage: expected s3://bucket/prefix, got {location.url!r}")
        self.bucket, self.prefix = split_s3_url(location.url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._root = self.prefix + "/" if self.prefix else ""
        self.options = location.options
        self.policy = RetryPolicy.from_env(attempts=MAX_ATTEMPTS, connect_timeout=CONNECT_TIMEOUT,
                                           read_timeout=READ_TIMEOUT)
        self.client = self._make_client(self.policy.connect_timeout, self.policy.read_timeout, 1)
        self._transfer_client = None
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                       multipart_chunksize=max(multipart_threshold, _MIN_PART),
                                       max_concurrency=4)
        #: None until a conditional write tells whether the server supports them.
        self.conditional_writes: bool | None = None

    # -- the client ---------------------------------------------------------------------

    def _make_client(self, connect_timeout: float, read_timeout: float, attempts: int):
        config = _client_config(self.options, connect_timeout, read_timeout, attempts)
        try:
            # A session of its own: boto3's default session is not safe to share between threads.
            return _session().client(
                "s3", endpoint_url=self.options.endpoint_url, region_name=self.options.region,
                config=config)
        except ValueError as err:  # a malformed endpoint_url or region
            what = "storage.endpoint_url" if "endpoint" in str(err).lower() else "storage.region"
            raise UserError(f"{what}: {_one_line(err)} (storage {self.url})") from None

    @property
    def transfer_client(self):
        """The client for multipart transfers: botocore retries each part itself (made on first use)."""
        if self._transfer_client is None:
            self._transfer_client = self._make_client(self.policy.connect_timeout, self.policy.read_timeout,
                                                      self.policy.attempts)
        return self._transfer_client

    def retried(self, what: str, call: Callable[[int], T]) -> T:
        """``call(attempt)`` with transient faults retried; a one-line ``StageError`` once the budget is spent.

        Other errors propagate untouched (``_errors`` or the caller maps them).
        """
        return retrying(call, f"{self.url}: {what}", self.policy)

    @property
    def endpoint(self) -> str:
        return self.client.meta.endpoint_url

    def _key(self, key: str) -> str:
        return self._root + check_key(key)

    @contextmanager
    def _errors(self, what: str, key: str | None = None) -> Iterator[None]:
        """Turns botocore's exceptions into NotFound, a one-line UserError, or a StageError."""
        try:
            yield
        except ClientError as err:
            if key is not None and _code(err) in _MISSING_KEY:
                raise NotFound(key) from None
            raise self._client_error(err, what) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise UserError(self._no_credentials()) from None
        except (BotoConnectionError, HTTPClientError) as err:  # only when not retried
            raise StageError(f"{self.url}: {what}: cannot reach the S3 endpoint {self.endpoint} "
                             f"({type(err).__name__})") from None
        except ParamValidationError as err:
            raise UserError(f"{self.url}: {what}: {_one_line(err)}") from None
        except (S3UploadFailedError, RetriesExceededError) as err:
            raise StageError(f"{self.url}: {what} failed: {_one_line(err)}") from None

    def _no_credentials(self) -> str:
        return (f"storage {self.url}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                f"(or AWS_PROFILE, or a service account role) in the environment")

    def _client_error(self, err: ClientError, what: str) -> Exception:
        code, status = _code(err), _status(err)
        if code == "NoSuchBucket":
            return UserError(f"storage {self.url}: bucket {self.bucket!r} does not exist at {self.endpoint}; "
                             f"create it or fix the storage URL")
        if code in _CREDENTIAL_CODES:
            return UserError(f"storage {self.url}: the S3 endpoint {self.endpoint} rejected the credentials "
                             f"({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if code in _REGION_CODES or status == 301:
            return UserError(f"storage {self.url}: bucket {self.bucket!r} is in another region or needs another "
                             f"endpoint ({code or status}); set storage.region or storage.endpoint_url")
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return UserError(f"storage {self.url}: access denied ({code or 403}) at {self.endpoint}; the "
                             f"credentials need s3:ListBucket on the bucket and s3:GetObject, s3:PutObject, "
                             f"s3:DeleteObject on {self._root or ''}* (a missing key also reads as 403 "
                             f"without s3:ListBucket)")
        message = _one_line(err.response.get("Error", {}).get("Message", ""))
        return StageError(f"{self.url}: {what} failed: {code or 'HTTP ' + str(status)}"
                          + (f": {message}" if message else ""))

    # -- the Storage protocol -----------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Writes the whole object with its sha256; large objects go up in parts, visible only once complete."""
        name = self._key(key)
        meta = {SHA256_META: hashlib.sha256(data).hexdigest()}

        def attempt(_: int) -> None:
            if len(data) >= self.transfer.multipart_threshold:
                self.transfer_client.upload_fileobj(io.BytesIO(data), self.bucket, name, Config=self.transfer,
                                                    ExtraArgs={"Metadata": meta})
            else:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, Metadata=meta)

        with self._errors(f"put {key}"):
            self.retried(f"put {key}", attempt)

    def get(self, key: str) -> bytes:
        """The whole object, verified (length, and sha256 where stored); ``NotFound`` if there is none."""
        name = self._key(key)

        def attempt(_: int) -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
            body = response["Body"]
            try:
                if response.get("ContentLength") is None:  # S3 always sends it: these headers were cut short
                    raise Corrupt("an answer without Content-Length")
                length = int(response["ContentLength"])
                if length >= self.transfer.multipart_threshold:
                    body.close()
                    buffer = io.BytesIO()
                    self.transfer_client.download_fileobj(self.bucket, name, buffer, Config=self.transfer)
                    data = buffer.getvalue()
                else:
                    data = body.read()
            finally:
                body.close()
            _verify(data, length, (response.get("Metadata") or {}).get(SHA256_META))
            return data

        with self._errors(f"get {key}", key):
            return self.retried(f"get {key}", attempt)

    def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            with self._errors(f"exists {key}", key):
                self.retried(f"exists {key}", lambda _: self.client.head_object(Bucket=self.bucket, Key=name))
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` relative to the run, sorted; pages through any number of them."""
        def attempt(_: int) -> list[str]:
            keys = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root + prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self._root):]
                    if key and not key.endswith("/"):  # skip "folder" markers some tools create
                        keys.append(key)
            return sorted(keys)

        what = f"list {prefix or '(all)'}"
        with self._errors(what):
            return self.retried(what, attempt)

    def delete(self, key: str) -> None:
        """Removes the object; a missing key is not an error (as in S3 itself)."""
        name = self._key(key)
        with self._errors(f"delete {key}"):
            self.retried(f"delete {key}", lambda _: self.client.delete_object(Bucket=self.bucket, Key=name))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Writes the object only if the key does not exist yet; True if this call wrote it.

        Uses a conditional ``PutObject`` (``If-None-Match: *``, atomic in S3, MinIO and recent
        Ceph): 412 means another writer was first -> False. A retried request is the subtle
        case: an earlier attempt may have landed although its answer was lost (a reset, a
        timeout, a 500 after the write), so a 412 after a retry is checked against the stored
        bytes: equal bytes mean the earlier attempt landed (or a rival stored the very same
        bytes, which is as good) -> True. Servers that answer 501/NotImplemented to
        conditional writes get a HEAD then a PUT instead, which is not atomic: two writers
        racing in the same instant may both see True. Servers that silently ignore
        ``If-None-Match`` cannot be detected and overwrite. One request, so at most 5 GiB.
        ETags are never compared; content is.
        """
        name = self._key(key)
        meta = {SHA256_META: hashlib.sha256(data).hexdigest()}

        def attempt(number: int) -> bool | None:
            try:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, Metadata=meta, IfNoneMatch="*")
            except ClientError as err:
                code, status = _code(err), _status(err)
                if status == 412 or code == "PreconditionFailed":
                    self.conditional_writes = True
                    return number > 1 and self._holds(key, data)
                if status == 501 or code in _NOT_IMPLEMENTED:
                    return None
                raise
            self.conditional_writes = True
            return True

        if self.conditional_writes is not False:
            with self._errors(f"put_if_absent {key}"):
                written = self.retried(f"put_if_absent {key}", attempt)
            if written is not None:
                return written
            self.conditional_writes = False
        if self.exists(key):
            return False
        self.put(key, data)
        return True

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self.get(key) == data
        except NotFound:
            return False

    # -- preflight ----------------------------------------------------------------------

    def check_access(self) -> None:
        """One cheap request (a list of at most one key) that turns the usual mistakes into one line.

        Missing bucket, missing or rejected credentials, denied access, wrong region and an
        endpoint nobody answers at (refused, unknown host, connect timeout) each become a
        ``UserError`` naming the URL and what to do, in seconds (a short connect timeout, one
        retry). An endpoint that answers but fails in passing (5xx, SlowDown, resets, cut
        bodies, slow answers) is retried like any call, and is a ``StageError`` (exit 1, try
        again later) once the budget is spent: a flaky store is not the user's mistake.
        """
        client = self._make_client(CHECK_CONNECT_TIMEOUT, min(CHECK_READ_TIMEOUT, self.policy.read_timeout), 1)
        unreachable = 0

        def attempt(_: int) -> None:
            nonlocal unreachable
            try:
                client.list_objects_v2(Bucket=self.bucket, Prefix=self._root, MaxKeys=1)
            except (EndpointConnectionError, ConnectTimeoutError):
                unreachable += 1
                if unreachable >= CHECK_ATTEMPTS:
                    raise _Unreachable() from None
                raise

        try:
            self.retried("access check", attempt)
        except ClientError as err:
            error = self._client_error(err, "access check")
            if isinstance(error, StageError):
                error = UserError(f"storage {self.url}: the S3 endpoint {client.meta.endpoint_url} refused "
                                  f"the access check ({_code(err) or _status(err)}); check storage.endpoint_url "
                                  f"and the bucket")
            raise error from None
        except (NoCredentialsError, PartialCredentialsError):
            raise UserError(self._no_credentials()) from None
        except (_Unreachable, BotoConnectionError, HTTPClientError):
            raise UserError(f"storage {self.url}: cannot reach the S3 endpoint {client.meta.endpoint_url}; "
                            f"check storage.endpoint_url (or AWS_ENDPOINT_URL) and the network") from None
        except ParamValidationError as err:
            raise UserError(f"storage {self.url}: {_one_line(err)}") from None


class _Unreachable(Exception):
    """Nobody answers at the endpoint: a wrong endpoint_url far more often than a passing fault."""


def _verify(data: bytes, length: int, sha256: str | None) -> None:
    """The bytes as the store promised them: ``Content-Length`` many, and the stored sha256 if any."""
    if len(data) != length:
        raise Corrupt(f"{len(data)} bytes of {length}")
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise Corrupt("sha256 mismatch")
