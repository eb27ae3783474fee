"""The prepare stage: builds the directions once for the whole run and records the run's manifest.

Rerunnable: directions and a manifest that already match the spec are kept, so a
prepare pod that is restarted (or a run that is resubmitted) does not change the
directions the shards were computed with.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

import landscape_job
from landscape_job.base.errors import StageError, UserError
from landscape_job.run.files import DIRECTIONS_KEY, MANIFEST_KEY, SPEC_KEY, Log, read_run_spec, stderr_log
from landscape_job.run.pinned import record_inputs, verify_inputs
from landscape_job.run.records import Manifest
from landscape_job.series.prepare import prepare_series
from landscape_job.spec.localize import check_cache_fits, localize
from landscape_job.spec.parse import spec_from_yaml
from landscape_job.spec.sections import Spec
from landscape_job.storage import Storage
from landscape_job.surface.centre import build_centre_model
from landscape_job.surface.curvature import centre_analysis, hessian_split
from landscape_job.surface.direction_builders import BuildContext, BuiltDirections, build
from landscape_job.surface.directions import direction_file_bytes
from landscape_job.runtime.disk import CACHE_LIMIT_ENV


def seed_spec(run: Storage, spec_file: str) -> None:
    """Puts the spec from a file (the run's mounted ConfigMap) into storage, if none is there.

    The launcher writes spec.yaml before it creates the Jobs; manifests applied with
    kubectl have only the ConfigMap, and this makes them work the same. A different spec
    already in storage is refused: the run id is taken.
    """
    try:
        text = Path(spec_file).read_text()
    except OSError as err:
        raise UserError(f"LANDSCAPE_SPEC_FILE: cannot read {spec_file}: {err.strerror}") from None
    incoming = spec_from_yaml(text, spec_file)
    if run.put_if_absent(SPEC_KEY, text.encode()):
        return
    if read_run_spec(run).hash != incoming.hash:
        raise StageError(f"{run.url}/{SPEC_KEY} holds a different spec than {spec_file}; use a new run id")


def prepare(run: Storage, log: Log = stderr_log, spec_file: str | None = None) -> Manifest:
    """Builds the directions once for the whole run and records the run's manifest."""
    if spec_file:
        seed_spec(run, spec_file)
    spec = read_run_spec(run)
    if os.environ.get(CACHE_LIMIT_ENV):  # a cluster pod: its inputs must fit its cache before any download
        check_cache_fits(spec, int(os.environ[CACHE_LIMIT_ENV]))
    if spec.series is not None:
        return prepare_series(run, spec, log)
    kept = _kept_manifest(run, spec, log)
    if kept is not None:
        return kept
    started = time.time()
    local = localize(spec)
    model = build_centre_model(local)
    eigen, hessian_summary = _centre_hessian(local, model) if spec.uses_hessian else (None, None)
    built = build(local.directions, model, BuildContext(two_d=spec.grid.ndim == 2, final=local.model.checkpoint,
                                                        eigen=eigen))
    manifest = _manifest(run, spec, local, built, hessian_summary, started)
    run.put(DIRECTIONS_KEY, direction_file_bytes(built.directions, _direction_attrs(spec, manifest.pca)))
    run.put(MANIFEST_KEY, manifest.to_json())
    _log_prepared(manifest, log)
    return manifest


def _kept_manifest(run: Storage, spec: Spec, log: Log) -> Manifest | None:
    """The manifest already stored for this very spec (its directions beside it), if any."""
    if not (run.exists(MANIFEST_KEY) and run.exists(DIRECTIONS_KEY)):
        return None
    manifest = Manifest.from_json(run.get(MANIFEST_KEY))
    if manifest.spec_hash != spec.hash:
        return None
    verify_inputs(spec, localize(spec), manifest, "prepare")  # a resume reads the same files, or none
    log(f"prepare: directions already present for this spec ({manifest.direction_hash[:12]}); keeping them")
    return manifest


def _manifest(run: Storage, spec: Spec, local: Spec, built: BuiltDirections, hessian: dict | None,
              started: float) -> Manifest:
    directions = built.directions
    pca = (None if built.pca is None else
           {"explained_variance": built.pca.explained_variance, "trajectory": built.pca.trajectory.to_dict()})
    # Keyed by the spec's URL (the provenance), hashed from the fetched, verified copy.
    checkpoints, data_files = record_inputs(spec, local)
    return Manifest(
        run=run.url, spec_hash=spec.hash, direction_hash=directions.hash, dir_type=directions.dir_type,
        tensors=len(directions.x), parameters=sum(t.numel() for t in directions.x),
        cosine_xy=directions.cosine(), checkpoints=checkpoints, seed=spec.directions.seed,
        code_version=landscape_job.__version__, torch_version=torch.__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        prepare_seconds=round(time.time() - started, 3),
        hessian=hessian,
        # Merge draws the path from here: it never needs the trajectory's checkpoints again.
        pca=pca, data_files=data_files or None)


def _direction_attrs(spec: Spec, pca: dict | None) -> dict[str, object]:
    """The direction file's provenance attributes (the PCA's, for tools that read only that file)."""
    attrs: dict[str, object] = {"spec_hash": spec.hash, "seed": spec.directions.seed, "norm": spec.directions.norm,
                                "ignore": spec.directions.ignore, "type": spec.directions.type}
    if pca is not None:
        trajectory = pca["trajectory"]
        attrs.update({"explained_variance": json.dumps(pca["explained_variance"]),
                      "trajectory_names": json.dumps(trajectory["names"]),
                      "trajectory_x": json.dumps(trajectory["x"]),
                      **({"trajectory_y": json.dumps(trajectory["y"])} if trajectory["y"] is not None else {})})
    return attrs


def _log_prepared(manifest: Manifest, log: Log) -> None:
    cosine = "" if manifest.cosine_xy is None else f", cos(x, y) = {manifest.cosine_xy:.2e}"
    log(f"prepare: {manifest.dir_type} directions over {manifest.tensors} tensors "
        f"({manifest.parameters:,} values){cosine}")
    hessian = manifest.hessian
    if hessian is not None:
        trace = hessian["trace"]
        log(f"prepare: Hessian at the centre: λmax (sharpness) = {hessian['max_eig']:.6g}, "
            f"λmin = {hessian['min_eig']:.6g}"
            + ("" if trace is None else f", trace ≈ {trace:.6g} ± {hessian['trace_stderr']:.2g}")
            + f" ({hessian['iterations']} Lanczos steps"
            + ("" if hessian["converged"] else ", NOT converged: raise hessian.iterations") + ")")
        if hessian.get("caution"):
            log(f"prepare: warning: {hessian['caution']}")


def _centre_hessian(spec: Spec, model: nn.Module) -> tuple:
    """Sharpness, λmin and trace at θ* (and the eigen-directions), on the run's device and precision.

    ``auto`` semantics even for ``compute.device: cuda``: the prepare pod may have no GPU,
    and the centre's Hessian is one point, not the grid. Works on a copy, so the model
    that random or target directions are built from is untouched (device, dtype).
    """
    device = torch.device("cuda" if spec.compute.device != "cpu" and torch.cuda.is_available() else "cpu")
    dtype = torch.float64 if spec.compute.precision == "fp64" else torch.float32
    split = hessian_split(spec)
    placed = copy.deepcopy(model).to(device, dtype).eval()
    return centre_analysis(placed, split, spec, two_d=spec.grid.ndim == 2)
