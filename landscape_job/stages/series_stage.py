"""A series run's prepare and merge (its evaluate is the surface's, with ``series_evaluator``).

prepare lists the checkpoints once, checks that each fits the architecture, records
each file's sha256 and the series' identity (``series_hash``, the manifest's
``direction_hash`` slot, which every shard carries and merge checks) and the tensors
the Hessian is taken over. merge verifies the shards as for a surface
(``merge_stage.collect_shards``: every checkpoint once, each shard of this run), writes
``series.h5``, the figures, the viewer page and ``report.json`` with the edge-of-
stability numbers (``eos_summary``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import landscape_job
from landscape_job.checkpoints import load_into, load_state_dict
from landscape_job.inputs import Fetcher, file_sha256, localize
from landscape_job.records import Manifest
from landscape_job.series import SERIES_KEY, Series, load_series, series_bytes
from landscape_job.series_evaluator import layer_names
from landscape_job.spec import Spec
from landscape_job.stages.centre import build_centre_model
from landscape_job.stages.pinned import record_inputs, verify_inputs
from landscape_job.stages.run_files import MANIFEST_KEY, REPORT_KEY, SPEC_KEY, Log, read_manifest, wait_for
from landscape_job.shards import QUARANTINE_PREFIX, shard_key
from landscape_job.storage import Storage

#: "At the edge of stability": λmax within this fraction of (2 + 2β)/η.
EOS_BAND = 0.2


def series_hash(checkpoints: dict[str, str], steps: list[int]) -> str:
    """The series' identity: its checkpoints' sha256s in step order, and the steps."""
    return hashlib.sha256(json.dumps([list(checkpoints.items()), steps]).encode()).hexdigest()


def prepare_series(run: Storage, spec: Spec, log: Log) -> Manifest:
    """Lists, checks and pins the checkpoints; writes the manifest (kept when it is this spec's)."""
    assert spec.series is not None
    if run.exists(MANIFEST_KEY):
        kept = read_manifest(run)
        if kept.spec_hash == spec.hash:
            verify_inputs(spec, localize(spec), kept, "prepare")
            log(f"prepare: series manifest already present for this spec ({str(kept.direction_hash)[:12]}); keeping it")
            return kept
    started = time.time()
    local = localize(spec)
    model = build_centre_model(local)
    fetcher = Fetcher(s3_options=spec.storage.options)
    hashes: dict[str, str] = {}
    for i, url in enumerate(spec.series.checkpoints):
        where = f"series.checkpoints[{i}]"
        path = fetcher.file(url, where, spec.pins.get(url))
        load_into(copy.deepcopy(model), load_state_dict(path), f"{where} {url}")  # fits the architecture
        hashes[url] = file_sha256(path)
    pinned, data_files = record_inputs(spec, local)
    steps = list(spec.series.steps)
    layers = layer_names(model, spec)
    params = dict(model.named_parameters())
    manifest = Manifest(
        run=run.url, spec_hash=spec.hash, direction_hash=series_hash(hashes, steps), dir_type=None,
        tensors=len(layers), parameters=sum(params[n].numel() for n in layers),
        checkpoints={**pinned, **hashes}, code_version=landscape_job.__version__, torch_version=torch.__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), prepare_seconds=round(time.time() - started, 3),
        data_files=data_files or None,
        series={"checkpoints": list(spec.series.checkpoints), "steps": steps, "layer_names": layers,
                "lr": spec.series.lr, "momentum": spec.series.momentum, "threshold": spec.series.threshold})
    run.put(MANIFEST_KEY, manifest.to_json())
    log(f"prepare: series of {len(steps)} checkpoints (steps {steps[0]}..{steps[-1]}), {len(layers)} tensors "
        f"({manifest.parameters:,} values); threshold (2 + 2β)/η = {spec.series.threshold:.6g}")
    return manifest


def eos_summary(steps: np.ndarray, sharpness: np.ndarray, threshold: float, band: float = EOS_BAND) -> dict:
    """The edge-of-stability numbers: λmax before, at and after it first reaches the threshold.

    ``start``: λmax at the first checkpoint; ``reached_at_step``: the first step whose λmax
    rises to the threshold from below (the first step, if it starts above and never comes
    back from below: a step size unstable from the start); ``before``: λmax at the
    checkpoint before it (the end of progressive sharpening); ``at``: λmax there; ``after``: the median λmax from there on;
    ``last_third``: λmax's range over the last third of the checkpoints and the fraction
    of them within ``band`` of the threshold (the edge of stability).
    """
    finite = np.isfinite(sharpness)
    if not finite.any():
        return {"threshold": threshold, "reached": False}
    above = finite & (sharpness >= threshold)
    crossings = np.flatnonzero(above[1:] & finite[:-1] & ~above[:-1]) + 1  # from below to at/above
    reached = crossings if crossings.size else np.flatnonzero(above)
    tail = sharpness[len(sharpness) - max(1, len(sharpness) // 3):]
    tail = tail[np.isfinite(tail)]
    out: dict[str, object] = {
        "threshold": threshold, "band": band, "reached": bool(reached.size),
        "start": float(sharpness[np.flatnonzero(finite)[0]]), "max": float(np.nanmax(sharpness)),
        "max_at_step": int(steps[int(np.nanargmax(sharpness))]),
        "last_third": {"min": float(tail.min()), "max": float(tail.max()), "median": float(np.median(tail)),
                       "within_band": float(np.mean(np.abs(tail - threshold) <= band * threshold))},
    }
    if reached.size:
        first = int(reached[0])
        out.update({"reached_at_step": int(steps[first]), "at": float(sharpness[first]),
                    "before": float(sharpness[first - 1]) if first > 0 else None,
                    "after": float(np.nanmedian(sharpness[first:]))})
    return out


def merge_series(run: Storage, spec: Spec, log: Log, collect: Callable, plots: bool = True,
                 wait_seconds: float = 0.0, abort: Callable[[], str | None] | None = None) -> dict:
    """Verified shards -> series.h5, the figures and viewer, report.json.

    ``collect``: ``merge_stage.collect_shards``, passed in by the merge stage that calls
    this (so the two modules import each other in one direction only).
    """
    assert spec.series is not None
    started = time.time()
    if wait_seconds > 0:
        shards = [shard_key(i, spec.compute.shards) for i in range(spec.compute.shards)]
        wait_for(run, [MANIFEST_KEY, *shards], wait_seconds, "the evaluate stage's shards", log, abort=abort)
    manifest = read_manifest(run)
    flat, stats = collect(run, spec, str(manifest.direction_hash), log)
    layers = list((manifest.series or {}).get("layer_names", []))
    run.put(SERIES_KEY, series_bytes(np.asarray(spec.series.steps), list(spec.series.checkpoints), flat,
                                     _attrs(spec, manifest), layer_names=layers))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / SERIES_KEY
        local.write_bytes(run.get(SERIES_KEY))
        series = load_series(local)
        plot_keys = _write_figures(run, series, spec, Path(tmp)) if plots else []
    report = _report(run, spec, manifest, series, stats, plot_keys, started)
    run.put(REPORT_KEY, json.dumps(report, indent=2).encode())
    eos = report["edge_of_stability"]
    log(f"merge: {len(series.steps)} checkpoints from {spec.compute.shards} shards -> {run.url}/{SERIES_KEY}, "
        f"{len(plot_keys)} plots" + (f"; λmax {eos['start']:.4g} at the start, {eos['max']:.4g} at most, "
                                     f"threshold {eos['threshold']:.4g}" if "start" in eos else ""))
    return report


def _attrs(spec: Spec, manifest: Manifest) -> dict[str, object]:
    assert spec.series is not None
    return {"name": spec.name, "spec_hash": spec.hash, "series_hash": manifest.direction_hash,
            "code_version": landscape_job.__version__, "arch": spec.model.arch, "dataset": spec.data.dataset,
            "loss": spec.loss, "precision": "fp64" if spec.compute.precision == "fp64" else "fp32",
            "lr": spec.series.lr, "momentum": spec.series.momentum, "threshold": spec.series.threshold,
            "top_k": spec.series.top_k, "hessian_split": spec.hessian.split, "hessian_ignore": spec.hessian.ignore,
            "noise_batch_size": spec.series.noise_batch_size, "plot_steps": json.dumps(list(spec.series.plot_steps))}


def _write_figures(run: Storage, series: Series, spec: Spec, tmp: Path) -> list[str]:
    from landscape_job.plots.series_figures import plot_series
    from landscape_job.series_viewer import write_series_html

    assert spec.series is not None
    written = plot_series(series, tmp / "plots", plot_steps=spec.series.plot_steps)
    written.append(write_series_html(series, tmp / "plots" / "series.html"))
    keys = []
    for path in written:
        key = f"plots/{path.name}"
        run.put(key, path.read_bytes())
        keys.append(key)
    return keys


def _report(run: Storage, spec: Spec, manifest: Manifest, series: Series, stats: list, plot_keys: list[str],
            started: float) -> dict:
    compute_s = sum(float(s.elapsed_s or 0.0) for s in stats)
    alpha = series.data.get("tail_index")
    return {
        "run": run.url, "name": spec.name, "kind": "series", "spec_hash": spec.hash,
        "checkpoints": len(series.steps), "steps": [int(s) for s in series.steps],
        "edge_of_stability": eos_summary(series.steps, series.sharpness, series.threshold),
        **({"tail_index": {"min": float(np.nanmin(alpha)), "max": float(np.nanmax(alpha))}}
           if alpha is not None and np.isfinite(alpha).any() else {}),
        "shards": [s.report_entry() for s in stats],
        "retries": sum(int(s.attempts if s.attempts is not None else 1) - 1 for s in stats),
        "hessian_unconverged": sum(int(s.hessian_unconverged or 0) for s in stats),
        "compute_seconds": compute_s,
        "provenance": manifest.provenance(),
        "outputs": [SERIES_KEY, *plot_keys],
        **({"quarantined": quarantined} if (quarantined := sorted(run.list(QUARANTINE_PREFIX))) else {}),
        "merge_seconds": round(time.time() - started, 3),
        "spec": SPEC_KEY,
    }
