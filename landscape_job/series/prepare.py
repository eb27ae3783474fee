"""A series run's prepare stage (its evaluate is the surface's, with ``series_evaluator``; its merge: ``series_merge``).

prepare lists the checkpoints once, checks that each fits the architecture, records
each file's sha256 and the series' identity (``series_hash``, the manifest's
``direction_hash`` slot, which every shard carries and merge checks) and the tensors
the Hessian is taken over. No directions file: the manifest is the whole output.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time

import torch

import landscape_job
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.inputs.fetch import Fetcher, file_sha256
from landscape_job.spec.localize import localize
from landscape_job.run.records import Manifest
from landscape_job.series.evaluator import layer_names
from landscape_job.spec.sections import Spec
from landscape_job.surface.centre import build_centre_model
from landscape_job.run.pinned import record_inputs, verify_inputs
from landscape_job.run.files import MANIFEST_KEY, Log, read_manifest
from landscape_job.storage import Storage


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
