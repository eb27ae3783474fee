"""A series run's merge: verified shards -> ``series.h5``, the figures and page, ``report.json``.

The shards are checked as a surface's (``run.collect``: every checkpoint once, each shard
of this run and of this series' checkpoints); the report
carries the edge-of-stability numbers (``eos_summary``). No torch here, as in the
surface's merge: a merge pod only reads HDF5 and draws.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

import landscape_job
from landscape_job.run.collect import collect_shards, wait_for_shards
from landscape_job.run.files import SPEC_KEY, Log, read_manifest, store_plots, write_report
from landscape_job.run.records import Manifest
from landscape_job.run.shards import QUARANTINE_PREFIX
from landscape_job.series.file import SERIES_KEY, Series, load_series, series_bytes
from landscape_job.spec.outputs import split_outputs
from landscape_job.spec.sections import Spec
from landscape_job.storage import Storage

#: "At the edge of stability": λmax within this fraction of (2 + 2β)/η.
EOS_BAND = 0.2


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


def merge_series(run: Storage, spec: Spec, log: Log, plots: bool = True,
                 wait_seconds: float = 0.0, abort: Callable[[], str | None] | None = None,
                 earlier: list[str] | None = None) -> dict:
    """Verified shards -> series.h5, the figures and viewer, report.json (last; ``earlier``: the outputs an
    earlier merge's report listed, ``run.files.withdraw_report``)."""
    assert spec.series is not None
    started = time.time()
    if wait_seconds > 0:
        wait_for_shards(run, spec, wait_seconds, log, abort)
    manifest = read_manifest(run)
    flat, stats = collect_shards(run, spec, str(manifest.direction_hash), log, manifest.shard_order)
    layers = list((manifest.series or {}).get("layer_names", []))
    run.put(SERIES_KEY, series_bytes(np.asarray(spec.series.steps), list(spec.series.checkpoints), flat,
                                     _attrs(spec, manifest), layer_names=layers))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / SERIES_KEY
        local.write_bytes(run.get(SERIES_KEY))
        series = load_series(local)
        plot_keys = _write_figures(run, series, spec, Path(tmp)) if plots else []
    report = _report(run, spec, manifest, series, stats, plot_keys, started)
    write_report(run, report, earlier or [])
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
            "noise_batch_size": spec.series.noise_batch_size, "noise_estimator": spec.series.noise_estimator,
            "density_steps": spec.hessian.density_steps, "density_probes": spec.hessian.density_probes,
            "plot_steps": json.dumps(list(spec.series.plot_steps))}


def _write_figures(run: Storage, series: Series, spec: Spec, tmp: Path) -> list[str]:
    """The figures in ``plot.formats``' figure formats and, where it names html (or is unset), the page."""
    from landscape_job.plots.options import PlotOptions
    from landscape_job.series.figures import plot_series
    from landscape_job.series.page import write_series_html

    assert spec.series is not None
    figures, exports = split_outputs(spec.plot.formats)
    options = PlotOptions.from_spec(spec.plot, formats=figures or None)
    written = plot_series(series, tmp / "plots", plot_steps=spec.series.plot_steps, options=options) if figures else []
    if "html" in exports:
        written.append(write_series_html(series, tmp / "plots" / "series.html"))
    return store_plots(run, written)


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
        # Which tensors the Hessian, the gradient, the noise and the density are taken over.
        "hessian": {"split": spec.hessian.split, "ignore": spec.hessian.ignore, "tensors": series.layer_names,
                    "note": "hessian.ignore: biasbn (the default) leaves out every tensor of dim <= 1 (biases, "
                            "BatchNorm); ignore: none takes them all" if spec.hessian.ignore == "biasbn" else
                            "every parameter tensor"},
        **({"trace": {"min": float(np.nanmin(trace)), "max": float(np.nanmax(trace))}}
           if (trace := series.data.get("trace")) is not None and np.isfinite(trace).any() else {}),
        "compute_seconds": compute_s,
        "provenance": manifest.provenance(),
        "outputs": [SERIES_KEY, *plot_keys],
        **({"quarantined": quarantined} if (quarantined := sorted(run.list(QUARANTINE_PREFIX))) else {}),
        "merge_seconds": round(time.time() - started, 3),
        "spec": SPEC_KEY,
    }
