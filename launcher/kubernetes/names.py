"""The names and labels of a run's Kubernetes objects, computed from the run id alone.

Deterministic, so submit, status, cancel and the pods themselves find the same objects
without asking the API server.
"""

from __future__ import annotations

import hashlib
import re
import time

from landscape_job.base.errors import UserError

RUN_LABEL = "landscape.run"
STAGE_LABEL = "landscape.stage"
MAX_NAME = 63
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def object_name(run_id: str, suffix: str, limit: int = MAX_NAME) -> str:
    """``<run>-<suffix>``, or ``<run prefix>-<hash>-<suffix>`` where that is longer than ``limit``.

    Deterministic, so the submit, status and cancel commands recompute the same names.
    """
    name = f"{run_id}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{run_id[:keep].rstrip('-')}-{digest}-{suffix}"


def object_names(run_id: str, shards: int) -> dict[str, str]:
    """The names of a run's objects: ``spec`` (the ConfigMap), one Job a stage, and ``pods``
    (the Role and RoleBinding of the run's pods, ``launcher.kubernetes.gate``).

    The evaluate Job's name leaves room for ``-<index>``: an Indexed Job's pods get the
    host name ``<job>-<index>``, which must be a DNS label of at most 63 characters.
    """
    index_room = 1 + len(str(max(shards - 1, 0)))
    return {"spec": object_name(run_id, "spec"),
            "prepare": object_name(run_id, "prepare"),
            "evaluate": object_name(run_id, "evaluate", MAX_NAME - index_room),
            "merge": object_name(run_id, "merge"),
            "pods": object_name(run_id, "pods")}


def run_selector(run_id: str) -> str:
    """The label selector of every object and pod of a run."""
    return f"{RUN_LABEL}={run_id}"


def check_run_id(run_id: str) -> None:
    if len(run_id) > MAX_NAME or not _RUN_ID.match(run_id):
        raise UserError(f"--run-id: expected at most {MAX_NAME} lowercase letters, digits or '-', starting and "
                        f"ending with a letter or digit (it is a Kubernetes label value); got {run_id!r}")


def default_run_id(name: str, now: float | None = None) -> str:
    """``<name>-<UTC time>``: sortable, readable, and short enough for Kubernetes names.

    ``launcher.local.runner.new_run_id`` adds a suffix when storage already holds that run.
    """
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"
