"""Where a run lives: one narrow interface over whole objects, keyed relative to a run prefix.

Stages chain through storage, not through the launcher, so every write is a whole,
atomic object: a reader sees the old object or the new one, never half of either.
The ``file://`` backend does this with a temporary file and ``os.replace`` in the same
folder. Keys use ``/`` whatever the backend.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Protocol

import h5py

from landscape_job.errors import UserError


class NotFound(KeyError):
    """The key does not exist in the run's storage."""


class Storage(Protocol):
    """A run's prefix in some object store."""

    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...


def _read_umask() -> int:
    """The process's umask; reading it means setting it, so it is read once, at import."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class FileStorage:
    """A folder on a local or mounted file system."""

    def __init__(self, root: Path):
        self.root = root
        self.url = "file://" + str(root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"storage key must be relative and stay inside the run: {key!r}")
        return self.root / key

    def _write_temp(self, path: Path, data: bytes) -> str:
        """The bytes, synced, in a hidden file beside ``path``: moved or linked into place whole."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp makes the file private (0600); a result is an ordinary file, readable
            # as the umask allows (a shared folder, a web server serving surface.html).
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Creates the object only if the key is free; True if this call wrote it.

        The bytes go to a temporary file first and are then hard-linked into place:
        ``link`` fails if the name exists, so exactly one writer wins and no reader ever
        sees a partial object.
        """
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


#: How a pod learns the spec's storage options (it is given the run's URL only): a JSON object.
STORAGE_OPTIONS_ENV = "LANDSCAPE_STORAGE_OPTIONS"


def open_storage(url: str, options: Mapping[str, str] | None = None) -> Storage:
    """The storage for a URL: ``s3://bucket/prefix``, ``file:///path`` or a plain path.

    ``options`` are the spec's storage options (``landscape_job.spec.STORAGE_OPTIONS``);
    only ``s3://`` storage has any.
    """
    if url.startswith("s3:"):
        from landscape_job.s3 import S3Storage  # boto3 only for those who use S3

        return S3Storage(url, options)  # which refuses s3:/x or s3:///x, naming the URL
    if any(v not in (None, "") for v in (options or {}).values()):
        raise UserError(f"storage.{next(k for k, v in options.items() if v not in (None, ''))}: "
                        f"only for s3:// storage, not {url}")
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"storage: {path} exists and is not a folder")
    return FileStorage(path)


def run_storage(base_url: str, run_id: str, options: Mapping[str, str] | None = None) -> Storage:
    """The storage prefix of one run under a base URL."""
    return open_storage(base_url.rstrip("/") + "/" + run_id, options)


def storage_options_from_env() -> dict[str, str]:
    """The storage options in ``$LANDSCAPE_STORAGE_OPTIONS`` (a JSON object), or none."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
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


def h5_bytes(write: Callable[[h5py.File], None]) -> bytes:
    """Builds an HDF5 file in memory, so it can be stored as one atomic object."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write(handle)
    return buffer.getvalue()


def open_h5(data: bytes) -> h5py.File:
    """Opens HDF5 bytes read from storage."""
    return h5py.File(io.BytesIO(data), "r")


def h5_attrs(handle: h5py.File) -> dict[str, object]:
    """A file's attributes with byte strings decoded (h5py returns either, by how they were written)."""
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}
