"""The input cache: one folder per machine (or pod) for what a stage fetches or installs.

Fetched inputs (:mod:`landscape_job.inputs.fetch`) and the spec's pip requirements
(:func:`landscape_job.base.pyref.activate`) both live here, so the folder is named in one
place below both of them: a pod's root file system is read-only, and a stage that runs
twice in the same pod (or a local rerun) finds its earlier downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LANDSCAPE_CACHE_DIR"


def cache_dir() -> Path:
    """Where fetched inputs live: ``$LANDSCAPE_CACHE_DIR``, else ``~/.cache/landscape``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "landscape"
