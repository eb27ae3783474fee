"""``file://``: a run's storage in a folder on a local or mounted file system.

Each write is whole and atomic as the storage contract asks: the bytes go to a temporary
file in the same folder, are synced, then moved into place with ``os.replace`` (or
hard-linked, for a write that must not overwrite).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from landscape_job.base.diskspace import free_bytes, is_full, no_space
from landscape_job.base.errors import UserError
from landscape_job.storage.location import StorageLocation, check_key, file_url
from landscape_job.storage.base import NotFound


def _read_umask() -> int:
    """The process's umask; reading it means setting it, so it is read once, at import."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class FileStorage:
    """A folder on a local or mounted file system."""

    def __init__(self, location: StorageLocation):
        root = location.path
        if root.exists() and not root.is_dir():
            raise UserError(f"storage: {root} exists and is not a folder")
        self.root = root
        self.url = file_url(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write_temp(self, path: Path, data: bytes) -> str:
        """The bytes, synced, in a hidden file beside ``path``: moved or linked into place whole.
        A full disk or quota is one line naming ``path`` and the bytes needed (``base.diskspace``)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            if is_full(err):
                raise no_space(err, path, len(data)) from None
            raise
        try:
            # mkstemp makes the file private (0600); a result is an ordinary file, readable
            # as the umask allows (a shared folder, a web server serving surface.html).
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException as err:
            Path(tmp).unlink(missing_ok=True)
            if is_full(err):
                raise no_space(err, path, len(data)) from None
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
        # walk only the folder the prefix names (``progress/of-8/`` need not visit every checkpoint segment)
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def free_bytes(self) -> int | None:
        """Free bytes on the folder's file system (merge checks its outputs fit before writing them)."""
        return free_bytes(self.root)
