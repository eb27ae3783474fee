"""When a run is done: one rule for every backend, every command and the Python handle.

Merge writes the result (``surface.h5`` or ``series.h5``), then the plots, then
``report.json`` last, listing what it wrote under ``outputs``. So a run is Complete when
``report.json`` exists and every output it lists is in storage; before that, however far
merge has got, it is not, and ``pull`` refuses it rather than copy half a result. A merge
that runs again removes the earlier ``report.json`` before it writes anything
(``landscape_job.run.files.withdraw_report``), so a re-merge reads as not Complete too. A
backend's own word (a Job's Complete condition, a process's exit) is asked as well, never
instead.
"""

from __future__ import annotations

import json
from typing import Any, Collection, Mapping

from landscape_job.stages import REPORT_KEY, SERIES_KEY, SURFACE_KEY
from landscape_job.storage import NotFound, Storage

#: The merged result of a surface run, of a series run.
RESULT_KEYS = (SURFACE_KEY, SERIES_KEY)


def missing_outputs(keys: Collection[str], report: Mapping[str, Any] | None = None) -> list[str]:
    """What the run still lacks to be Complete, given its storage ``keys`` and its parsed ``report.json``
    (None: not read; its presence in ``keys`` is then taken as merge's word). Empty: Complete."""
    if REPORT_KEY not in keys:
        result = [] if any(k in keys for k in RESULT_KEYS) else [SURFACE_KEY]
        return [*result, REPORT_KEY]
    outputs = (report or {}).get("outputs")
    listed = [k for k in outputs if isinstance(k, str)] if isinstance(outputs, list) else []
    return [k for k in listed if k not in keys]


def read_report(run: Storage, keys: Collection[str]) -> Mapping[str, Any] | None:
    """The run's ``report.json`` if ``keys`` has it and it parses; None otherwise (a torn or foreign one
    cannot list outputs: then only its presence counts)."""
    if REPORT_KEY not in keys:
        return None
    try:
        parsed = json.loads(run.get(REPORT_KEY))
    except (NotFound, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def run_missing(run: Storage, keys: Collection[str] | None = None) -> list[str]:
    """``missing_outputs`` of the run as its storage holds it now (one listing, one read)."""
    keys = set(run.list()) if keys is None else keys
    return missing_outputs(keys, read_report(run, keys))


def describe_missing(missing: list[str]) -> str:
    """``report.json (merge writes it last)``, ``plots/a.png, plots/b.png``: what a refusal names."""
    words = [f"{k} (merge writes it last)" if k == REPORT_KEY else k for k in missing[:5]]
    return ", ".join(words) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
