"""What every storage backend keeps: whole objects, keyed relative to a run's prefix.

Stages chain through storage, not through the launcher, so every write is a whole,
atomic object: a reader sees the old object or the new one, never half of either.
Keys use ``/`` whatever the backend. HDF5 files (directions, shards, the surface) are
built and read in memory for the same reason: they travel as one object.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Callable, Protocol

# The one check of keys and run ids lives with the location; backends take it from here.
from landscape_job.storage.location import InvalidKey, check_key  # noqa: F401 - re-exported

if TYPE_CHECKING:  # h5py (~25 ms) where an HDF5 file is built or read: the spec, which imports this folder, needs none
    import h5py


class NotFound(KeyError):
    """The key does not exist in the run's storage."""


class Storage(Protocol):
    """A run's prefix in some object store.

    A backend is a class whose constructor takes a ``landscape_job.storage.location.StorageLocation``
    and which keeps this protocol; ``landscape_job.storage.location.BACKENDS`` names it by scheme.
    """

    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...


def h5_bytes(write: Callable[[h5py.File], None]) -> bytes:
    """Builds an HDF5 file in memory, so it can be stored as one atomic object."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write(handle)
    return buffer.getvalue()


def open_h5(data: bytes) -> h5py.File:
    """Opens HDF5 bytes read from storage."""
    import h5py

    return h5py.File(io.BytesIO(data), "r")


def h5_attrs(handle: h5py.File) -> dict[str, object]:
    """A file's attributes with byte strings decoded (h5py returns either, by how they were written)."""
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}
