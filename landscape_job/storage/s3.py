"""``s3://bucket/prefix``: a run's storage in S3 or an S3-compatible store (MinIO, Ceph, R2), through boto3.

Options come from the spec's ``storage`` mapping (``landscape_job.location.StorageOptions``),
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

Every write is one whole object: a single ``PutObject`` is atomic in S3, and a multipart
upload (used above the multipart threshold) becomes visible only when it completes, so a
reader sees the old object or the new one, never half of either. ETags are never used as
content hashes (they are not an MD5 for multipart uploads, nor under SSE-KMS, nor on many
S3-compatible stores); wherever content must be compared, the bytes are.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import boto3
import botocore.session
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from s3transfer.exceptions import RetriesExceededError

from landscape_job.errors import StageError, UserError
from landscape_job.location import S3, StorageLocation, StorageOptions, split_s3_url
from landscape_job.storage.base import NotFound, check_key

#: Objects at least this large go up as a multipart upload and come down as parallel
#: ranged GETs: each part is retried on its own instead of the whole object.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: S3's smallest part (all but the last).
_MIN_PART = 5 * 1024 * 1024

#: Attempts per request, the first included: with the standard mode's backoff (1 s base for
#: throttling, doubling, capped at 20 s) this rides out about a minute of throttling.
MAX_ATTEMPTS = 10
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

#: ``check_access`` fails fast: an unreachable endpoint is reported in seconds.
CHECK_CONNECT_TIMEOUT = 3.0
CHECK_READ_TIMEOUT = 10.0
CHECK_ATTEMPTS = 2

#: A GET whose body breaks off mid-stream is not retried by botocore (the response had
#: already begun); ``get`` retries it this many times in all.
_STREAM_ATTEMPTS = 5
#: S3 answers 409 ConditionalRequestConflict to concurrent conditional writes of one key
#: and asks the client to retry.
_CONFLICT_ATTEMPTS = 5

_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "TokenRefreshRequired", "InvalidSecurity"}
_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                 "AuthorizationQueryParametersError"}
_NOT_IMPLEMENTED = {"NotImplemented", "NotImplementedError", "UnsupportedOperation"}
_STREAM_ERRORS = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ConnectionClosedError)


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

    Retries use botocore's ``standard`` mode, not ``adaptive``: standard retries throttling
    (503 SlowDown, 429), 5xx, timeouts and dropped connections with exponential backoff and
    full jitter, the behaviour every AWS SDK shares, and bounds a struggling endpoint with
    its retry quota. ``adaptive`` adds a client-side rate limiter that only helps a client
    that itself sends many requests per second; each of our pods writes an object every few
    seconds at most, and adaptive mode is still marked experimental and can make a call
    wait on the limiter for long, unannounced stretches.
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
        self.client = self._make_client(CONNECT_TIMEOUT, READ_TIMEOUT, MAX_ATTEMPTS)
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
        except (BotoConnectionError, HTTPClientError) as err:
            raise StageError(f"{self.url}: {what}: cannot reach the S3 endpoint {self.endpoint} "
                             f"({type(err).__name__} after {MAX_ATTEMPTS} attempts)") from None
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
        """Writes the whole object; large objects go up in parts, visible only once complete."""
        name = self._key(key)
        with self._errors(f"put {key}"):
            if len(data) >= self.transfer.multipart_threshold:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, name, Config=self.transfer)
            else:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get(self, key: str) -> bytes:
        """The whole object; ``NotFound`` if there is none."""
        name = self._key(key)
        for attempt in range(1, _STREAM_ATTEMPTS + 1):
            with self._errors(f"get {key}", key):
                response = self.client.get_object(Bucket=self.bucket, Key=name)
                body = response["Body"]
                try:
                    if response.get("ContentLength", 0) >= self.transfer.multipart_threshold:
                        body.close()
                        buffer = io.BytesIO()
                        self.client.download_fileobj(self.bucket, name, buffer, Config=self.transfer)
                        return buffer.getvalue()
                    return body.read()
                except _STREAM_ERRORS as err:
                    if attempt == _STREAM_ATTEMPTS:
                        raise StageError(f"{self.url}: get {key}: the download broke off {attempt} times "
                                         f"({type(err).__name__})") from None
                finally:
                    body.close()
            time.sleep(min(0.1 * 2 ** attempt, 5.0))
        raise AssertionError("unreachable")

    def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            with self._errors(f"exists {key}", key):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` relative to the run, sorted; pages through any number of them."""
        keys = []
        with self._errors(f"list {prefix or '(all)'}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root + prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self._root):]
                    if key and not key.endswith("/"):  # skip "folder" markers some tools create
                        keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Removes the object; a missing key is not an error (as in S3 itself)."""
        name = self._key(key)
        with self._errors(f"delete {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Writes the object only if the key does not exist yet; True if this call wrote it.

        Uses a conditional ``PutObject`` (``If-None-Match: *``, atomic in S3, MinIO and recent
        Ceph): 412 means another writer was first -> False. If the request had to be retried
        (its first response lost) and the answer is 412, the stored bytes are compared with
        ``data``: equal bytes mean the earlier attempt landed (or a rival stored the very same
        bytes, which is as good) -> True. Servers that answer
        501/NotImplemented to conditional writes get a HEAD then a PUT instead, which is not
        atomic: two writers racing in the same instant may both see True. Servers that
        silently ignore ``If-None-Match`` cannot be detected and overwrite. One request, so
        at most 5 GiB. ETags are never compared; content is.
        """
        name = self._key(key)
        if self.conditional_writes is not False:
            for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
                try:
                    with self._errors(f"put_if_absent {key}"):
                        try:
                            self.client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
                        except ClientError as err:
                            code, status = _code(err), _status(err)
                            if status == 412 or code == "PreconditionFailed":
                                retried = err.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                                self.conditional_writes = True
                                return bool(retried) and self._holds(key, data)
                            if status == 409 or code == "ConditionalRequestConflict":
                                raise _Conflict() from None
                            if status == 501 or code in _NOT_IMPLEMENTED:
                                self.conditional_writes = False
                                break
                            raise
                    self.conditional_writes = True
                    return True
                except _Conflict:
                    if attempt == _CONFLICT_ATTEMPTS:
                        raise StageError(f"{self.url}: put_if_absent {key}: concurrent writers kept "
                                         f"conflicting ({attempt} attempts)") from None
                    time.sleep(min(0.05 * 2 ** attempt, 2.0))
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
        unreachable endpoint each become a ``UserError`` naming the URL and what to do; it
        uses a short connect timeout and one retry, so a wrong endpoint fails in seconds.
        """
        client = self._make_client(CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT, CHECK_ATTEMPTS)
        try:
            client.list_objects_v2(Bucket=self.bucket, Prefix=self._root, MaxKeys=1)
        except ClientError as err:
            error = self._client_error(err, "access check")
            if isinstance(error, StageError):
                error = UserError(f"storage {self.url}: the S3 endpoint {client.meta.endpoint_url} refused "
                                  f"the access check ({_code(err) or _status(err)}); check storage.endpoint_url "
                                  f"and the bucket")
            raise error from None
        except (NoCredentialsError, PartialCredentialsError):
            raise UserError(self._no_credentials()) from None
        except (BotoConnectionError, HTTPClientError):
            raise UserError(f"storage {self.url}: cannot reach the S3 endpoint {client.meta.endpoint_url}; "
                            f"check storage.endpoint_url (or AWS_ENDPOINT_URL) and the network") from None
        except ParamValidationError as err:
            raise UserError(f"storage {self.url}: {_one_line(err)}") from None


class _Conflict(Exception):
    pass
