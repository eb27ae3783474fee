"""The merge stage: checks every shard, writes surface.h5, the plots and report.json.

Merge trusts nothing it reads: each shard must carry this run's spec and direction
hashes, hold only its own points, each once, and pass its checksum, and together the
shards must cover the grid. Anything else is named (the missing or foreign shard, the
missing points), never merged.
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

import landscape_job
from landscape_job.spec.direction_types import direction_type
from landscape_job.base.errors import StageError
from landscape_job.surface.interpolation import interpolation_summary
from landscape_job.spec.metrics import describe as describe_metric
from landscape_job.run.records import Manifest, ShardRecord
from landscape_job.run.shards import QUARANTINE_PREFIX, read_shard, shard_key
from landscape_job.spec.sections import Spec
from landscape_job.series.merge import merge_series
from landscape_job.run.files import (MANIFEST_KEY, REPORT_KEY, SPEC_KEY, SURFACE_KEY, Log, quarantine,
                                            read_manifest, read_run_spec, stderr_log, store_plots, wait_for)
from landscape_job.storage import Storage
from landscape_job.surface.file import surface_bytes


def collect_shards(run: Storage, spec: Spec, direction_hash: str,
                   log: Log = stderr_log) -> tuple[dict[str, np.ndarray], list[ShardRecord]]:
    """All shards' values as flat arrays; refuses missing, foreign, damaged or overlapping shards.

    A damaged or foreign shard is moved aside (``shards/quarantine/``, kept for inspection)
    before the refusal, so the next evaluate of that shard (a resume) recomputes it
    instead of the run refusing until someone deletes it by hand.
    """
    num_shards = spec.compute.shards
    present = set(run.list("shards/"))  # one listing, not a request per shard
    missing = [i for i in range(num_shards) if shard_key(i, num_shards) not in present]
    if missing:
        listed = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise StageError(f"merge: {len(missing)} of {num_shards} shards missing: {listed} "
                         f"(expected {run.url}/{shard_key(missing[0], num_shards)})")
    flat: dict[str, np.ndarray] = {}
    seen = np.zeros(spec.grid.size, dtype=np.int64)
    stats = []
    keys = [shard_key(i, num_shards) for i in range(num_shards)]
    # Fetched a few at a time (on S3 each is a round trip), checked in order as they come.
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        raws = pool.map(run.get, keys)
        for i, (key, raw) in enumerate(zip(keys, raws)):
            try:
                data = read_shard(raw, f"{run.url}/{key}")
            except StageError as err:
                _set_aside(run, key, f"merge: {err}", log)
            _check_shard(run, spec, direction_hash, i, key, data, flat, seen, stats, log)
    absent = np.flatnonzero(seen == 0)
    if absent.size:
        owners = sorted({i for i in range(num_shards) for p in absent[:100] if p in spec.grid.shard_range(i, num_shards)})
        raise StageError(f"merge: {absent.size} grid points missing, e.g. flat index {absent[0]}; "
                         f"incomplete shards: {owners}")
    return flat, stats


def _set_aside(run: Storage, key: str, why: str, log: Log) -> None:
    """Moves a bad shard aside and stops the merge with one line saying where it went and what to do."""
    moved = quarantine(run, key, why, log)
    raise StageError(f"{why}; moved aside to {run.url}/{moved}; resume the run (evaluate recomputes the shard), "
                     "then merge")


#: Shards fetched at once by merge.
FETCH_THREADS = 8


def _check_shard(run: Storage, spec: Spec, direction_hash: str, i: int, key: str, data, flat: dict[str, np.ndarray],
                 seen: np.ndarray, stats: list[ShardRecord], log: Log) -> None:
    """Adds shard ``i``'s values to ``flat``; a foreign shard is set aside, one out of place refused."""
    source = f"{run.url}/{key}"
    record = ShardRecord.from_attrs(data.attrs)
    if record.spec_hash != spec.hash:
        _set_aside(run, key, f"merge: {source} was computed for another spec (spec hash "
                             f"{str(record.spec_hash)[:12]} != {spec.hash[:12]})", log)
    if record.direction_hash != direction_hash:
        _set_aside(run, key, f"merge: {source} was computed with other directions", log)
    allowed = spec.grid.shard_range(i, spec.compute.shards)
    stray = data.indices[(data.indices < allowed.start) | (data.indices >= allowed.stop)]
    if stray.size:
        raise StageError(f"merge: {source} holds points outside its range: {stray[:5].tolist()}")
    if len(np.unique(data.indices)) != len(data.indices):
        raise StageError(f"merge: {source} holds a point more than once")
    for name, values in data.metrics.items():
        flat.setdefault(name, np.full(spec.grid.size, np.nan))[data.indices] = values
    seen[data.indices] += 1
    stats.append(record)


def _axis_labels(spec: Spec, pca: dict | None = None) -> tuple[str, str]:
    variance = pca["explained_variance"] if pca is not None else None
    return direction_type(spec.directions.type).axis_labels(spec.directions.norm, variance)


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


def _surface_trajectory(pca: dict | None) -> dict | None:
    """The manifest's PCA entry in the shape ``surface_bytes`` stores."""
    if pca is None:
        return None
    path = pca["trajectory"]
    return {"x": path["x"], "y": path["y"], "names": path["names"], "explained_variance": pca["explained_variance"]}


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
    if spec.series is not None:
        return merge_series(run, spec, log, collect_shards, plots=plots, wait_seconds=wait_seconds, abort=abort)
    if wait_seconds > 0:
        shards = [shard_key(i, spec.compute.shards) for i in range(spec.compute.shards)]
        wait_for(run, [MANIFEST_KEY, *shards], wait_seconds, "the evaluate stage's shards", log, abort=abort)
    manifest = read_manifest(run)
    flat, stats = collect_shards(run, spec, manifest.direction_hash, log)
    run.put(SURFACE_KEY, surface_file(spec, manifest, flat))
    plot_keys = write_plots(run, spec) if plots else []
    report = _report(run, spec, manifest, flat, stats, plot_keys, started, log)
    run.put(REPORT_KEY, json.dumps(report, indent=2).encode())
    log(f"merge: {spec.grid.size} points from {spec.compute.shards} shards -> {run.url}/{SURFACE_KEY}, "
        f"{len(plot_keys)} plots")
    return report


def surface_file(spec: Spec, manifest: Manifest, flat: dict[str, np.ndarray]) -> bytes:
    """surface.h5 of a run's values (by flat point index) with its provenance and PCA path.

    The one writer of a run's surface: the merge stage stores it, the Python API
    (``landscape_job.api.compute``) keeps it in memory, so both give the same file.
    """
    return surface_bytes(spec.grid, flat, _surface_attrs(spec, manifest), trajectory=_surface_trajectory(manifest.pca))


def _surface_attrs(spec: Spec, manifest: Manifest) -> dict[str, object]:
    """surface.h5's provenance attributes (the paper's tools ignore them; ours label the plots with them)."""
    xlabel, ylabel = _axis_labels(spec, manifest.pca)
    attrs = {"name": spec.name, "spec_hash": spec.hash, "direction_hash": manifest.direction_hash,
             "code_version": landscape_job.__version__, "precision": spec.compute.precision,
             "arch": spec.model.arch, "dataset": spec.data.dataset, "loss": spec.loss,
             "direction_type": spec.directions.type, "dir_type": manifest.dir_type,
             "norm": spec.directions.norm, "ignore": spec.directions.ignore, "seed": spec.directions.seed,
             "xlabel": xlabel, "ylabel": ylabel, "cosine_xy": manifest.cosine_xy, "title": spec.plot.title}
    hessian = manifest.hessian
    if hessian is not None:
        attrs.update({"sharpness": hessian["sharpness"], "hessian_trace": hessian["trace"],
                      "hessian_split": hessian["split"], "hessian_ignore": hessian["ignore"]})
    return attrs


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
