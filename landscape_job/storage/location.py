"""Where a run's results live: a storage URL and its options, parsed and checked in one place.

A location arrives in several forms - the spec's ``storage`` value (a URL or a mapping
with ``url`` and the S3 options), ``--storage``, a pod's ``$LANDSCAPE_RUN`` with
``$LANDSCAPE_STORAGE_OPTIONS``, a run's URL given to ``launcher pull`` - and every form is
read here into one :class:`StorageLocation`, so a URL means the same thing, and a mistake
gets the same one line, wherever it was written. The spec, both storage backends, the
inputs fetcher and the launcher take the parsed location; none of them parses a URL.

This module sits on the bottom floor (standard library and ``landscape_job.base.errors``
only): the spec checks its storage at parse time without importing boto3 or h5py.
It also holds the backend registry, by name: a scheme is valid exactly when some backend
is registered for it, and the backend's module is imported only when a run opens it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from landscape_job.base.errors import UserError, shown
from landscape_job.base.schema import Section, type_name

FILE = "file"
S3 = "s3"
FILE_PREFIX = "file://"
S3_PREFIX = "s3://"

#: How a stage learns its run's location: the run's URL ...
RUN_ENV = "LANDSCAPE_RUN"
#: ... and the spec's storage options, as a JSON object (a pod is given the run's URL only).
STORAGE_OPTIONS_ENV = "LANDSCAPE_STORAGE_OPTIONS"

#: Storage backends by URL scheme: ``"module:Class"``, imported when a run opens such a
#: location (so a ``file://`` run never imports boto3), or the class itself. A backend is
#: a class whose constructor takes a :class:`StorageLocation` and which keeps
#: ``landscape_job.storage.Storage``. Adding one: its class and one line here (or
#: :func:`register_backend`).
BACKENDS: dict[str, str | type] = {
    FILE: "landscape_job.storage.files:FileStorage",
    S3: "landscape_job.storage.s3:S3Storage",
}


def register_backend(scheme: str, backend: str | type) -> None:
    """Makes ``scheme://...`` a valid storage URL, opened by ``backend`` (``"module:Class"`` or a class)."""
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError(f"not a URL scheme: {shown(scheme)}")
    BACKENDS[scheme] = backend


_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_]{0,254}$")
#: Words that mark a key of the storage mapping as a credential, which never goes in a spec.
_CREDENTIAL_WORDS = ("secret", "access_key", "password", "token")
#: A run id: one folder name under the storage base (a Kubernetes run's id is stricter still).
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: S3's limit on a key's length, in bytes; a folder's own limits are looser.
MAX_KEY_BYTES = 1024


class InvalidKey(UserError, ValueError):
    """A storage key or run id that would leave the run (or its storage), or that no store takes."""


def _shown(value: str, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_run_id(run_id: str, what: str = "run id") -> str:
    """A run id as every command takes it: one folder name, never ``..``, ``/`` or a control character.

    The one check, for ``submit --run-id``, ``--run`` URLs joined from a base, ``pull`` and
    every other way a run id reaches storage (:meth:`StorageLocation.join`).
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidKey(f"{what}: expected up to 128 letters, digits, '.', '_' or '-', starting with a letter "
                         f"or digit (one folder name inside the storage); got {_shown(str(run_id))}")
    return run_id


def check_key(key: str) -> str:
    """A storage key as every backend takes it: relative, and staying inside the run.

    Refused: empty, absolute, a ``.`` or ``..`` or empty segment, a backslash, a control
    character, more than S3's 1,024 bytes. One line naming the key.
    """
    segments = key.split("/") if isinstance(key, str) else [""]
    if (not key or key.startswith("/") or any(part in ("", ".", "..") for part in segments)
            or "\\" in key or any(ord(c) < 32 or ord(c) == 127 for c in key)
            or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES):
        raise InvalidKey(f"storage key {_shown(str(key))}: must be relative and stay inside the run "
                         f"(no '..', '.', empty or absolute parts, no backslash or control character)")
    return key


def local_path(url: str) -> str:
    """A ``file://`` URL or a plain path as the plain path: the one place ``file://`` is taken off."""
    return url[len(FILE_PREFIX):] if url.startswith(FILE_PREFIX) else url


def file_url(path: Path) -> str:
    """The ``file://`` URL of an absolute path."""
    return FILE_PREFIX + str(path)


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``, checked; any mistake is one line."""
    rest = url[len(S3_PREFIX):]
    if not url.startswith(S3_PREFIX) or not rest or rest.startswith("/"):
        raise UserError(f"storage: expected s3://bucket/prefix, got {shown(url)}")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise UserError(f"storage: {shown(url)} does not start with a valid bucket name; expected s3://bucket/prefix")
    prefix = prefix.strip("/")
    if ".." in prefix.split("/"):
        raise UserError(f"storage: {shown(url)}: '..' is not allowed in an S3 prefix")
    return bucket, prefix


@dataclass(frozen=True)
class StorageOptions:
    """The options of the spec's storage mapping besides ``url``: today only S3 storage has any.

    Unset options are ``None``, so boto3's own configuration (``AWS_ENDPOINT_URL``,
    ``AWS_REGION``, a profile) applies. Credentials are never among them.
    """

    #: The S3 endpoint, e.g. ``http://minio.minio:9000``.
    endpoint_url: str | None = None
    #: The bucket's region.
    region: str | None = None
    #: ``auto`` | ``path`` | ``virtual``; most self-hosted stores need ``path``.
    addressing_style: str | None = None
    #: ``when_supported`` (boto3's default) or ``when_required``, for servers that reject
    #: boto3's default checksums.
    request_checksum: str | None = None

    #: The option names, in the order the spec writes them.
    NAMES: ClassVar[tuple[str, ...]] = ("endpoint_url", "region", "addressing_style", "request_checksum")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None, url: str) -> StorageOptions:
        """The options that are set, checked: a typo is a user error, not a silent default."""
        chosen = {k: str(v) for k, v in (options or {}).items() if v not in (None, "")}
        for key in chosen:
            if key not in cls.NAMES:
                raise UserError(f"storage.{key}: unknown S3 option for {url}; "
                                f"expected one of {', '.join(cls.NAMES)}")
        endpoint = chosen.get("endpoint_url")
        if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
            raise UserError(f"storage.endpoint_url: expected http(s)://host[:port], got {shown(endpoint)}")
        if chosen.get("addressing_style", "auto") not in ("auto", "path", "virtual"):
            raise UserError(f"storage.addressing_style: expected one of auto, path, virtual; "
                            f"got {shown(chosen['addressing_style'])}")
        if chosen.get("request_checksum", "when_supported") not in ("when_supported", "when_required"):
            raise UserError(f"storage.request_checksum: expected when_supported or when_required; "
                            f"got {shown(chosen['request_checksum'])}")
        return cls(**chosen)

    def as_dict(self) -> dict[str, str]:
        """The options that are set, in the spec's order: what ``spec.yaml`` writes after ``url``."""
        return {name: value for name in self.NAMES if (value := getattr(self, name)) is not None}

    def to_json(self) -> str:
        """The options as a stage reads them back from ``$LANDSCAPE_STORAGE_OPTIONS``."""
        return json.dumps(self.as_dict(), sort_keys=True)

    def __bool__(self) -> bool:
        return any(getattr(self, name) is not None for name in self.NAMES)


NO_OPTIONS = StorageOptions()


@dataclass(frozen=True)
class StorageLocation:
    """A storage URL with its options, checked: ``file:///abs/path``, ``s3://bucket/prefix``, ...

    Build one with :meth:`parse`, :meth:`from_spec` or :meth:`from_env`; the
    constructor itself checks nothing. ``url`` is normalised: a folder is an absolute
    ``file://`` URL, any other URL has no trailing ``/``.
    """

    url: str
    options: StorageOptions = NO_OPTIONS

    # -- reading ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, url: str, options: Mapping[str, Any] | StorageOptions | None = None,
              base_dir: Path | None = None) -> StorageLocation:
        """A URL or a folder (relative: to ``base_dir``, else the current folder) with its options.

        Options are only for S3 storage; naming one for any other kind is a mistake.
        """
        if "\x00" in url:  # no path or URL holds one; os.path would raise ValueError, not name the key
            raise UserError(f"storage: {shown(url)} holds a NUL character")
        scheme = _scheme_of(url)
        given = options.as_dict() if isinstance(options, StorageOptions) else dict(options or {})
        if scheme != S3:
            chosen = next((k for k, v in given.items() if v not in (None, "")), None)
            if chosen is not None:
                raise UserError(f"storage.{chosen}: only for s3:// storage")
        if scheme == FILE:
            path = Path(local_path(url)).expanduser()
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            return cls(file_url(_storage_folder(path.resolve(), url)))
        if scheme == S3:
            split_s3_url(url)
        elif not url.partition("://")[2].strip("/"):
            raise UserError(f"storage: expected {scheme}://<location>, got {shown(url)}")
        return cls(url.rstrip("/"), StorageOptions.from_mapping(given, url))

    @classmethod
    def of(cls, where: StorageLocation | str, options: Mapping[str, Any] | None = None) -> StorageLocation:
        """``where`` if it is parsed already, else the URL parsed with its ``options``.

        For the functions that take either; a parsed location carries its own options.
        """
        if not isinstance(where, StorageLocation):
            return cls.parse(where, options)
        if options is not None:
            raise TypeError("the options of a StorageLocation are part of it; give them there")
        return where

    @classmethod
    def from_spec(cls, raw: object, base_dir: Path, override: str | None = None) -> StorageLocation:
        """The spec's ``storage`` value: a URL or folder, or a mapping with ``url`` and the S3 options.

        Relative folders are taken against ``base_dir`` (the spec's folder); an
        ``override`` (``--storage``) replaces the URL, keeps the mapping's options and is
        taken against the current folder. No storage at all means ``./runs``. Credentials
        are refused: they come from the environment or a Kubernetes Secret.
        """
        url, options = _read_spec_value(raw)
        if override is not None:
            return cls.parse(override, options, Path.cwd())
        if url is None:
            return cls(file_url(Path.cwd() / "runs"), options)
        return cls.parse(url, options, base_dir)

    @classmethod
    def from_env(cls, url: str | None = None, environ: Mapping[str, str] | None = None) -> StorageLocation:
        """A stage's run location: ``url`` (``--run``) or ``$LANDSCAPE_RUN``, with ``$LANDSCAPE_STORAGE_OPTIONS``."""
        environ = os.environ if environ is None else environ
        if url is None:
            url = environ.get(RUN_ENV)
        if not url:
            raise UserError("--run: give the run's storage prefix or set LANDSCAPE_RUN")
        return cls.parse(url, storage_options_from_env(environ))

    # -- using ------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return _scheme_of(self.url)

    @property
    def path(self) -> Path:
        """The folder of a ``file://`` location."""
        if self.scheme != FILE:
            raise ValueError(f"not a folder: {self.url}")
        return Path(local_path(self.url))

    def join(self, run_id: str) -> StorageLocation:
        """The location of one run under this base location; the run id is checked (:func:`check_run_id`)."""
        return StorageLocation.parse(self.url.rstrip("/") + "/" + check_run_id(run_id), self.options)

    def moved_to(self, url: str, base_dir: Path | None = None) -> StorageLocation:
        """Another base URL with these options where it takes them (S3), without where it does not.

        For looking a run up under another base (``--storage`` of ``status`` and ``pull``),
        where the spec's S3 options should follow an S3 URL and not stand in a folder's way.
        """
        return StorageLocation.parse(url, self.options if _scheme_of(url) == S3 else None, base_dir)

    def to_spec(self) -> str | dict[str, str]:
        """The spec's ``storage`` value: the URL, or the mapping form when options are set."""
        return {"url": self.url, **self.options.as_dict()} if self.options else self.url

    def env(self) -> dict[str, str]:
        """What a stage needs to open this location (:meth:`from_env` reads it back)."""
        return {RUN_ENV: self.url, STORAGE_OPTIONS_ENV: self.options.to_json()}

    def __str__(self) -> str:
        return self.url


#: Kernel and device trees: a folder there is never a place for a run's files.
_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


def _storage_folder(path: Path, url: str) -> Path:
    """``path`` (resolved) when it can be a run's folder: not a file, not in /proc, /sys or /dev."""
    if any(path == tree or tree in path.parents for tree in _SYSTEM_TREES):
        raise UserError(f"storage: {shown(url)} is under {path.parts[0]}{path.parts[1]}, a system tree; "
                        "name a folder of your own")
    try:
        if path.exists() and not path.is_dir():
            raise UserError(f"storage: {shown(url)} is a file, not a folder; name a folder for the runs")
    except OSError as err:
        raise UserError(f"storage: {shown(url)}: cannot use it as a folder ({err.strerror})") from None
    return path


def _scheme_of(url: str) -> str:
    """The registered scheme of a storage URL; a plain path is a folder. Anything else is a mistake."""
    if url.startswith("s3:") and not url.startswith(S3_PREFIX):
        raise UserError(f"storage: expected s3://bucket/prefix, got {shown(url)}")
    if "://" not in url:
        return FILE
    scheme = url.partition("://")[0]
    if scheme not in BACKENDS:
        raise UserError(f"storage: expected a folder, file:///path or s3://bucket/prefix; got {shown(url)}")
    return scheme


def storage_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The storage options in ``$LANDSCAPE_STORAGE_OPTIONS`` (a JSON object of strings), or none.

    Only their form is checked here; :meth:`StorageLocation.parse` checks them against the URL.
    """
    raw = (os.environ if environ is None else environ).get(STORAGE_OPTIONS_ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise UserError(f"{STORAGE_OPTIONS_ENV}: not valid JSON ({err.msg} at character {err.pos}); "
                        f'expected an object such as {{"endpoint_url": "http://minio:9000"}}') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UserError(f"{STORAGE_OPTIONS_ENV}: expected a JSON object of strings, "
                        f'such as {{"endpoint_url": "http://minio:9000"}}')
    return value


def _read_spec_value(raw: object) -> tuple[str | None, StorageOptions]:
    """The URL and the options of a spec's ``storage``; the mapping is read as any spec section."""
    if raw is None or isinstance(raw, str):
        return raw, NO_OPTIONS
    if not isinstance(raw, dict):
        raise UserError(f"storage: expected a string, got {type_name(raw)}"
                        + ("" if isinstance(raw, bool) else f" {shown(raw)}"))
    section = Section(raw, "storage")
    url = section.get("url", str)
    options = {name: value for name in StorageOptions.NAMES if (value := section.get(name, str, None)) is not None}
    for key in raw:
        if any(word in str(key).lower() for word in _CREDENTIAL_WORDS):
            raise UserError(f"storage.{key}: credentials never go in the spec; set AWS_ACCESS_KEY_ID/"
                            f"AWS_SECRET_ACCESS_KEY in the environment or name a Kubernetes Secret")
    section.finish()
    return url, StorageOptions.from_mapping(options, url)


