"""Where a run lives: one narrow interface over whole objects, keyed relative to a run prefix.

:func:`open_storage` turns a :class:`~landscape_job.storage.location.StorageLocation` into the
backend its scheme names in ``landscape_job.storage.location.BACKENDS``; a backend's module is
imported only then, so a ``file://`` run never imports boto3. The contract every
backend keeps is :class:`Storage` (``base.py``); the backends are ``files.py``
(``file://``) and ``s3.py`` (``s3://``).
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping

from landscape_job.storage.location import BACKENDS, STORAGE_OPTIONS_ENV, StorageLocation, storage_options_from_env
from landscape_job.storage.base import NotFound, Storage, h5_attrs, h5_bytes, open_h5

__all__ = ["NotFound", "STORAGE_OPTIONS_ENV", "Storage", "StorageLocation", "backend_for", "h5_attrs", "h5_bytes",
           "open_h5", "open_storage", "run_storage", "storage_options_from_env"]


def backend_for(scheme: str) -> Callable[[StorageLocation], Storage]:
    """The backend class registered for a scheme (``location.BACKENDS``), imported on first use."""
    backend = BACKENDS[scheme]
    if isinstance(backend, str):
        module, _, name = backend.partition(":")
        backend = getattr(importlib.import_module(module), name)
    return backend


def open_storage(location: StorageLocation | str, options: Mapping[str, str] | None = None) -> Storage:
    """The storage at a location; a URL (``s3://bucket/prefix``, ``file:///path``, a folder) is parsed first.

    ``options`` go with a URL only (the spec's storage options, see
    ``landscape_job.storage.location.StorageOptions``); a parsed location carries its own.
    """
    location = StorageLocation.of(location, options)
    return backend_for(location.scheme)(location)


def run_storage(base: StorageLocation | str, run_id: str, options: Mapping[str, str] | None = None) -> Storage:
    """The storage prefix of one run under a base location (or base URL with its options)."""
    return open_storage(StorageLocation.of(base, options).join(run_id))
