"""The merge stage: checks every shard, writes surface.h5, the plots and report.json.

Merge trusts nothing it reads: each shard must carry this run's spec and direction
hashes, hold only its own points, each once, and pass its checksum, and together the
shards must cover the grid. Anything else is named (the missing or foreign shard, the
missing points), never merged.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from landscape_job.base.diskspace import NoSpace, check_room
from landscape_job.run.collect import collect_shards, wait_for_shards
from landscape_job.run.files import (
    SPEC_KEY,
    SURFACE_KEY,
    Log,
    read_manifest,
    read_run_spec,
    stderr_log,
    store_plots,
    wait_for,
    withdraw_report,
    write_report,
)
from landscape_job.run.records import Manifest, ShardRecord
from landscape_job.run.shards import QUARANTINE_PREFIX
from landscape_job.series.merge import merge_series
from landscape_job.spec.direction_types import direction_type
from landscape_job.spec.metrics import describe as describe_metric
from landscape_job.spec.sections import Spec
from landscape_job.storage import Storage
from landscape_job.surface.provenance import surface_file
from landscape_job.surface.interpolation import interpolation_summary


def _summary(spec: Spec, flat: dict[str, np.ndarray]) -> dict:
    """Per metric: its non-finite points, and its best value and where (the registry's
    ``better``: min or max), or its range for a metric with no better end (curvature)."""
    summary = {}
    for name, values in flat.items():
        finite = np.isfinite(values)
        entry: dict[str, object] = {"non_finite_points": int((~finite).sum())}
        better = describe_metric(name).metric.better
        if finite.any() and better is None:
            entry.update({"min": float(np.nanmin(values[finite])), "max": float(np.nanmax(values[finite]))})
        elif finite.any():
            best = int(np.nanargmin(np.where(finite, values, np.inf)) if better == "min"
                       else np.nanargmax(np.where(finite, values, -np.inf)))
            a, b = spec.grid.coordinates(np.array([best]))
            entry.update({"best": float(values[best]), "at": [float(a[0]), float(b[0])][: spec.grid.ndim]})
        summary[name] = entry
    return summary


def merge(run: Storage, log: Log = stderr_log, plots: bool = True, wait_seconds: float = 0.0,
          abort: Callable[[], str | None] | None = None) -> dict:
    """Verifies and merges the shards into surface.h5, then writes the plots and report.json.

    ``wait_seconds`` waits that long for every shard to appear (the merge pod starts with
    the evaluate pods); without it, missing shards fail at once, named.
    """
    started = time.time()
    if wait_seconds > 0:
        wait_for(run, [SPEC_KEY], wait_seconds, "the run's spec", log)
    spec = read_run_spec(run)
    earlier = withdraw_report(run)  # a merge run again: not Complete until this one's report is written
    if spec.series is not None:
        return merge_series(run, spec, log, plots=plots, wait_seconds=wait_seconds, abort=abort, earlier=earlier)
    if wait_seconds > 0:
        wait_for_shards(run, spec, wait_seconds, log, abort)
    manifest = read_manifest(run)
    flat, stats = collect_shards(run, spec, manifest.direction_hash, log, manifest.shard_order)
    surface = surface_file(spec, manifest, flat)
    check_merge_room(run, len(surface), plots)
    run.put(SURFACE_KEY, surface)
    plot_keys = write_plots(run, spec) if plots else []
    report = _report(run, spec, manifest, flat, stats, plot_keys, started, log)
    write_report(run, report, earlier)
    log(f"merge: {spec.grid.size} points from {spec.compute.shards} shards -> {run.url}/{SURFACE_KEY}, "
        f"{len(plot_keys)} plots")
    return report


#: merge's outputs beside surface.h5, estimated from its size: the figures, surface.vtp and surface.html
#: hold the same values a few times over (html as JSON text), plus a fixed part (the viewer's script, the
#: figures' images). Measured on the examples: below 3x + 3 MiB.
PLOTS_FACTOR, PLOTS_FIXED = 3, 3 << 20


def check_merge_room(run: Storage, surface_bytes: int, plots: bool) -> None:
    """Merge estimates its outputs' size before writing any: a folder storage with less free space
    is one line, exit 1, with nothing written (``base.diskspace``); other storages report no free space."""
    needed = surface_bytes + (PLOTS_FACTOR * surface_bytes + PLOTS_FIXED if plots else 0)
    free = getattr(run, "free_bytes", lambda: None)()
    if free is not None and free < needed:
        raise NoSpace(f"{run.url}/{SURFACE_KEY} and plots/", needed, free=free)
    # The figures are drawn in a local temporary folder first (tempfile's), then stored.
    if plots:
        check_room(tempfile.gettempdir(), PLOTS_FACTOR * surface_bytes + PLOTS_FIXED + surface_bytes,
                   "merge's figures, drawn here before they are stored")


def _precision_and_memory(stats: list[ShardRecord], log: Log) -> dict[str, object]:
    """The precision the shards really used (``auto`` decides per worker) and why, and the run's
    memory: the largest shard peaks, OOM halvings, fp16-overflowed points. Shards from before
    these were recorded count as unknown (left out)."""
    used = sorted({s.precision for s in stats if s.precision})
    if len(used) > 1:
        log(f"merge: warning: the shards were computed in different precisions ({', '.join(used)}): "
            "precision auto on a mix of GPU generations; the surface may show seams between shards")
    peaks = [s.peak_device_bytes for s in stats if s.peak_device_bytes is not None]
    rss = [s.peak_host_rss_bytes for s in stats if s.peak_host_rss_bytes is not None]
    return {
        "precision_used": used,
        "precision_reasons": sorted({s.precision_reason for s in stats if s.precision_reason}),
        "memory": {"peak_device_bytes": max(peaks) if peaks else None,
                   "peak_host_rss_bytes": max(rss) if rss else None,
                   "batch_sizes": sorted({s.batch_size for s in stats if s.batch_size is not None}),
                   "oom_halvings": sum(int(s.oom_halvings or 0) for s in stats)},
        "nonfinite_logits_points": sum(int(s.nonfinite_points or 0) for s in stats),
    }


def _report(run: Storage, spec: Spec, manifest: Manifest, flat: dict[str, np.ndarray], stats: list[ShardRecord],
            plot_keys: list[str], started: float, log: Log = stderr_log) -> dict:
    """report.json: timings, per-shard stats, the surface's summary and the run's provenance."""
    pca, hessian = manifest.pca, manifest.hessian
    compute_s = sum(float(s.elapsed_s or 0.0) for s in stats)
    return {
        "run": run.url, "name": spec.name, "spec_hash": spec.hash,
        "grid": {"x": str(spec.grid.x), "y": str(spec.grid.y) if spec.grid.y else None, "points": spec.grid.size},
        "precision": spec.compute.precision,
        **_precision_and_memory(stats, log),
        "shards": [s.report_entry() for s in stats],
        "retries": sum(int(s.attempts if s.attempts is not None else 1) - 1 for s in stats),
        "compute_seconds": compute_s,
        "compile_seconds": sum(float(s.compile_seconds or 0.0) for s in stats),
        "points_per_second": spec.grid.size / compute_s if compute_s else None,
        "summary": _summary(spec, flat),
        **({"pca": pca} if pca is not None else {}),
        **({"interpolation": interpolation_summary(spec.grid.x.values(), flat)}
           if direction_type(spec.directions.type).reports_interpolation else {}),
        "provenance": manifest.provenance(),
        **({"hessian": {**hessian, "unconverged_points": sum(int(s.hessian_unconverged or 0) for s in stats)}}
           if hessian is not None else {}),
        "outputs": [SURFACE_KEY, *plot_keys],
        # Damaged or foreign shards and partials moved aside and recomputed, kept for inspection.
        **({"quarantined": quarantined} if (quarantined := sorted(run.list(QUARANTINE_PREFIX))) else {}),
        "merge_seconds": round(time.time() - started, 3),
    }


def write_plots(run: Storage, spec: Spec) -> list[str]:
    """Renders the surface's plots locally and stores each under plots/.

    Beside the figures: ``surface.html`` (the offline viewer) and, for 2-D, ``surface.vtp``;
    ``plot.formats`` chooses among them (at 10^6 points the PDFs cost most of a merge).
    """
    from landscape_job.outputs.exports import write_outputs

    with tempfile.TemporaryDirectory() as tmp:
        surface = Path(tmp) / SURFACE_KEY
        surface.write_bytes(run.get(SURFACE_KEY))
        return store_plots(run, write_outputs(surface, Path(tmp) / "plots", spec.plot))
