"""Where a run lives: one narrow interface over whole objects, keyed relative to a run prefix.

Stages chain through storage, not through the launcher, so every write is a whole,
atomic object: a reader sees the old object or the new one, never half of either.
The ``file://`` backend does this with a temporary file and ``os.replace`` in the same
folder. Keys use ``/`` whatever the backend.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable, Protocol

import h5py

from landscape_job.errors import UserError


class NotFound(KeyError):
    """The key does not exist in the run's storage."""


class Storage(Protocol):
    """A run's prefix in some object store."""

    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...


class FileStorage:
    """A folder on a local or mounted file system."""

    def __init__(self, root: Path):
        self.root = root
        self.url = "file://" + str(root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"storage key must be relative and stay inside the run: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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


def open_storage(url: str) -> Storage:
    """The storage for a URL: ``file:///path`` or a plain path."""
    if url.startswith("s3://"):
        raise UserError(f"storage: s3:// is not supported yet ({url}); use a folder or file:///path")
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"storage: {path} exists and is not a folder")
    return FileStorage(path)


def run_storage(base_url: str, run_id: str) -> Storage:
    """The storage prefix of one run under a base URL."""
    return open_storage(base_url.rstrip("/") + "/" + run_id)


def h5_bytes(write: Callable[[h5py.File], None]) -> bytes:
    """Builds an HDF5 file in memory, so it can be stored as one atomic object."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write(handle)
    return buffer.getvalue()


def open_h5(data: bytes) -> h5py.File:
    """Opens HDF5 bytes read from storage."""
    return h5py.File(io.BytesIO(data), "r")
