"""The three stages of a run, chained through storage: prepare, evaluate (one call per shard), merge.

Each stage reads what it needs from the run's prefix and writes whole objects back,
so a stage can be rerun at any time: prepare keeps directions that already match the
spec, evaluate resumes from its last checkpoint (or exits at once if its shard is
complete), merge rebuilds the surface from the shards.

One module per stage; the prefix's keys and the reading of the spec and manifest are
``landscape_job.run.files``'s (re-exported here), the model and evaluator at θ* are
``landscape_job.surface.centre``'s. The names below are the package's interface; the pod
entrypoint, the launcher and the tests import them from here.
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names
from landscape_job.run.files import (
    DIRECTIONS_KEY,
    MANIFEST_KEY,
    REPORT_KEY,
    SERIES_KEY,
    SPEC_KEY,
    SURFACE_KEY,
    Log,
    read_manifest,
    read_run_spec,
    stderr_log,
    wait_for,
)

#: Each name's module, imported on first use: the merge stage and the launcher need no
#: torch (1.5-5 s to import), so ``from landscape_job import stages`` must not bring it.
_LAZY = {
    "evaluate": "evaluate_stage", "merge": "merge_stage",
    "write_plots": "merge_stage", "prepare": "prepare_stage", "seed_spec": "prepare_stage",
}

if TYPE_CHECKING:
    from landscape_job.stages.evaluate_stage import evaluate
    from landscape_job.stages.merge_stage import merge, write_plots
    from landscape_job.stages.prepare_stage import prepare, seed_spec

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "DIRECTIONS_KEY", "MANIFEST_KEY", "REPORT_KEY", "SERIES_KEY", "SPEC_KEY", "SURFACE_KEY", "Log",
    "evaluate",
    "merge", "prepare", "read_manifest", "read_run_spec", "seed_spec", "stderr_log", "wait_for",
    "write_plots",
]
