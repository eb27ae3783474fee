"""The three stages of a run, chained through storage: prepare, evaluate (one call per shard), merge.

Each stage reads what it needs from the run's prefix and writes whole objects back,
so a stage can be rerun at any time: prepare keeps directions that already match the
spec, evaluate resumes from its last checkpoint (or exits at once if its shard is
complete), merge rebuilds the surface from the shards.
"""

from __future__ import annotations

import copy
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import landscape_job
from landscape_job.checkpoints import load_into, load_state_dict
from landscape_job.curvature import centre_analysis, hessian_split
from landscape_job.data import Split, dataset_info, load_split
from landscape_job.directions import Directions, build_directions, direction_file_bytes, load_directions
from landscape_job.errors import StageError, UserError
from landscape_job.evaluator import Evaluator, resolve_device
from landscape_job.interpolation import interpolation_summary
from landscape_job.inputs import file_sha256, localize
from landscape_job.models import build_model
from landscape_job.shards import ShardData, partial_key, progress_key, read_shard, shard_bytes, shard_key
from landscape_job.spec import Spec, spec_from_yaml
from landscape_job.storage import NotFound, Storage
from landscape_job.surface import surface_bytes

SPEC_KEY = "spec.yaml"
MANIFEST_KEY = "manifest.json"
DIRECTIONS_KEY = "directions.h5"
SURFACE_KEY = "surface.h5"
REPORT_KEY = "report.json"

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_run_spec(run: Storage) -> Spec:
    try:
        text = run.get(SPEC_KEY).decode()
    except NotFound:
        raise UserError(f"{run.url}: no {SPEC_KEY}; is this a run prefix? (submit a spec first)") from None
    return spec_from_yaml(text, f"{run.url}/{SPEC_KEY}")


def _read_json(run: Storage, key: str, hint: str) -> dict:
    try:
        return json.loads(run.get(key))
    except NotFound:
        raise StageError(f"{run.url}/{key} is missing; {hint}") from None


def build_centre_model(spec: Spec) -> nn.Module:
    """The model at θ*, on the CPU; ``spec`` must be localized (its inputs local paths)."""
    d = spec.data
    input_shape, num_classes = dataset_info(d.dataset, d.options, root=d.root, classes=d.classes)
    model = build_model(spec.model.arch, num_classes, input_shape, spec.model.kwargs)
    load_into(model, load_state_dict(spec.model.checkpoint), spec.model.checkpoint)
    return model.eval()


def load_splits(spec: Spec) -> list[Split]:
    return [load_split(spec.data, name) for name in spec.data.splits]


def check_outputs(model: nn.Module, split: Split, spec: Spec) -> None:
    """The model's outputs on two samples fit the data set's classes (and a python: loss takes them).

    Run by the launcher's preflight and again by every shard before its first point, so a
    data set whose labels do not fit the model is one line naming it, never a traceback
    from inside the loss.
    """
    from landscape_job.custom_data import is_custom
    from landscape_job.evaluator import batch_loss_sum
    from landscape_job.pyref import one_line

    sample = split.inputs[:2].to(next(iter(model.parameters()), torch.empty(0)).dtype)
    try:
        with torch.no_grad():
            outputs = model(sample)
    except Exception as e:  # noqa: BLE001 - the user's model on the user's data
        raise UserError(f"model.arch: {spec.model.arch} fails on {spec.data.dataset} samples of shape "
                        f"{tuple(split.inputs.shape[1:])} ({one_line(e)})") from None
    if outputs.ndim != 2 or outputs.shape[1] != split.num_classes:
        if is_custom(spec.data.dataset):
            raise UserError(f"data.dataset: {spec.data.dataset} has {split.num_classes} classes but model.arch "
                            f"{spec.model.arch} outputs shape {tuple(outputs.shape[1:])} per sample; set data.classes "
                            f"to the model's output count or fix the labels")
        raise UserError(f"model.arch: {spec.model.arch} outputs shape {tuple(outputs.shape[1:])} per sample, "
                        f"but {spec.data.dataset} has {split.num_classes} classes")
    if spec.loss.startswith("python:"):
        with torch.no_grad():
            batch_loss_sum(outputs.float(), split.labels[:2], spec.loss)


def _checkpoint_inputs(spec: Spec) -> list[str]:
    return [spec.model.checkpoint, *spec.directions.targets, *spec.directions.trajectory,
            *([spec.directions.file] if spec.directions.file else [])]


def build_evaluator(spec: Spec, directions: Directions, device: torch.device,
                    model: nn.Module | None = None) -> Evaluator:
    """The evaluator of a run's spec at θ*, as every evaluate pod (and the estimate) builds it.

    Inputs are fetched (or found in the cache) first, and the model's outputs are checked
    against the data set's classes, so a mismatch is one line before the first point.
    ``model``: the centre model, when the caller has built it already (the estimate builds
    it for its directions); the evaluator takes it over.
    """
    local = localize(spec)
    model, splits = model if model is not None else build_centre_model(local), load_splits(local)
    check_outputs(model, splits[0], local)
    return Evaluator(model, directions, splits, compute=spec.compute, device=device, loss=spec.loss,
                     metrics=spec.metrics, hessian=spec.hessian,
                     hessian_split=hessian_split(local) if "hessian" in spec.metrics else None)


def describe_evaluator(evaluator: Evaluator) -> str:
    """One log phrase with the speed settings in effect, so a slow run can be explained."""
    compiled = f", compiled in {evaluator.compile_seconds:.1f}s" if evaluator.compile_seconds else ""
    return (f"{evaluator.points_per_forward or 1} point(s) per forward, data "
            f"{'on the device' if evaluator.data_resident else 'streamed from host memory'}"
            f"{', channels_last' if evaluator.channels_last else ''}{compiled}")


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


def prepare(run: Storage, log: Log = _stderr, spec_file: str | None = None) -> dict:
    """Builds the directions once for the whole run and records the run's manifest."""
    if spec_file:
        seed_spec(run, spec_file)
    spec = read_run_spec(run)
    if run.exists(MANIFEST_KEY) and run.exists(DIRECTIONS_KEY):
        manifest = json.loads(run.get(MANIFEST_KEY))
        if manifest.get("spec_hash") == spec.hash:
            log(f"prepare: directions already present for this spec ({manifest['direction_hash'][:12]}); keeping them")
            return manifest
    started = time.time()
    local = localize(spec)
    model = build_centre_model(local)
    pca: dict | None = None
    hessian_summary = None
    if spec.uses_hessian:
        eigen_directions, hessian_summary = _centre_hessian(local, model)
    if spec.directions.type == "pca":
        from landscape_job.pca import build_pca

        plane = build_pca(local.directions, model, two_d=spec.grid.ndim == 2, final=local.model.checkpoint)
        directions = plane.directions
        pca = {"explained_variance": plane.explained_variance, "trajectory": plane.trajectory.to_dict()}
    elif spec.directions.type == "hessian":
        directions = eigen_directions
    else:
        directions = build_directions(local.directions, model, two_d=spec.grid.ndim == 2)
    # Keyed by the spec's URL (the provenance), hashed from the fetched, verified copy.
    checkpoints = {url: file_sha256(path) for url, path in zip(_checkpoint_inputs(spec), _checkpoint_inputs(local))}
    manifest = {
        "run": run.url,
        "spec_hash": spec.hash,
        "direction_hash": directions.hash,
        "dir_type": directions.dir_type,
        "tensors": len(directions.x),
        "parameters": sum(t.numel() for t in directions.x),
        "cosine_xy": directions.cosine(),
        "checkpoints": checkpoints,
        "seed": spec.directions.seed,
        "code_version": landscape_job.__version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prepare_seconds": round(time.time() - started, 3),
    }
    if hessian_summary is not None:
        manifest["hessian"] = hessian_summary
    attrs = {"spec_hash": spec.hash, "seed": spec.directions.seed, "norm": spec.directions.norm,
             "ignore": spec.directions.ignore, "type": spec.directions.type}
    if pca is not None:
        # Merge draws the path from here: it never needs the trajectory's checkpoints again.
        manifest["pca"] = pca
        trajectory = pca["trajectory"]
        attrs.update({"explained_variance": json.dumps(pca["explained_variance"]),
                      "trajectory_names": json.dumps(trajectory["names"]),
                      "trajectory_x": json.dumps(trajectory["x"]),
                      **({"trajectory_y": json.dumps(trajectory["y"])} if trajectory["y"] is not None else {})})
    run.put(DIRECTIONS_KEY, direction_file_bytes(directions, attrs))
    run.put(MANIFEST_KEY, json.dumps(manifest, indent=2).encode())
    cosine = "" if manifest["cosine_xy"] is None else f", cos(x, y) = {manifest['cosine_xy']:.2e}"
    log(f"prepare: {directions.dir_type} directions over {manifest['tensors']} tensors "
        f"({manifest['parameters']:,} values){cosine}")
    if hessian_summary is not None:
        trace = hessian_summary["trace"]
        log(f"prepare: Hessian at the centre: λmax (sharpness) = {hessian_summary['max_eig']:.6g}, "
            f"λmin = {hessian_summary['min_eig']:.6g}"
            + ("" if trace is None else f", trace ≈ {trace:.6g} ± {hessian_summary['trace_stderr']:.2g}")
            + f" ({hessian_summary['iterations']} Lanczos steps"
            + ("" if hessian_summary["converged"] else ", NOT converged: raise hessian.iterations") + ")")
    return manifest


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


def wait_for(run: Storage, keys: list[str], seconds: float, what: str, log: Log,
             poll: float = 1.0, max_poll: float = 30.0, abort: Callable[[], str | None] | None = None) -> None:
    """Polls storage until every key exists, so stages started together chain by themselves.

    On a cluster all three Jobs start at submit time: evaluate pods wait here for
    prepare's output and the merge pod for the shards, instead of failing and burning
    retries. Gives up after ``seconds`` naming what is still missing, or as soon as
    ``abort`` says why the missing objects will never come.
    """
    deadline = time.monotonic() + seconds
    announced = False
    while True:
        missing = [k for k in keys if not run.exists(k)]
        if not missing:
            return
        reason = abort() if abort is not None else None
        if reason:
            listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise StageError(f"{reason}; {len(missing)} missing under {run.url}: {listed}")
        if time.monotonic() >= deadline:
            listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise StageError(f"gave up after {seconds:g}s waiting for {what}: {len(missing)} missing under "
                             f"{run.url}: {listed}")
        if not announced:
            log(f"waiting up to {seconds:g}s for {what} ({len(missing)} of {len(keys)} objects missing)")
            announced = True
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        poll = min(poll * 1.5, max_poll)


class _Checkpointer:
    """Decides when a worker writes its partial results: every K points or T seconds."""

    def __init__(self, every: int, seconds: float):
        self.every, self.seconds = every, seconds
        self.pending, self.last = 0, time.monotonic()

    def tick(self) -> bool:
        self.pending += 1
        if self.pending >= self.every or time.monotonic() - self.last >= self.seconds:
            self.pending, self.last = 0, time.monotonic()
            return True
        return False


def _load_partial(run: Storage, key: str, spec_hash: str, direction_hash: str, log: Log) -> dict[int, dict[str, float]]:
    """Points a previous attempt of this shard already finished."""
    if not run.exists(key):
        return {}
    try:
        partial = read_shard(run.get(key), f"{run.url}/{key}")
    except StageError as err:
        log(f"evaluate: ignoring damaged checkpoint: {err}")
        return {}
    if partial.attrs.get("spec_hash") != spec_hash or partial.attrs.get("direction_hash") != direction_hash:
        log(f"evaluate: ignoring checkpoint {key} from another spec or direction")
        return {}
    names = list(partial.metrics)
    return {int(p): {n: float(partial.metrics[n][k]) for n in names} for k, p in enumerate(partial.indices)}


def _shard_data(done: dict[int, dict[str, float]], names: list[str], attrs: dict) -> ShardData:
    order = sorted(done)
    return ShardData(indices=np.array(order, dtype=np.int64),
                     metrics={n: np.array([done[p][n] for p in order], dtype=np.float64) for n in names},
                     attrs=attrs)


def _previous_attempts(run: Storage, key: str) -> int:
    """How many workers started this shard before, from its progress object (0 if none)."""
    try:
        return int(json.loads(run.get(key)).get("attempt", 1))
    except (NotFound, ValueError, TypeError):
        return 0


def _values_checksum(data: ShardData) -> str:
    """The content hash of a shard's points and values, not of its timing attributes."""
    return ShardData(indices=data.indices, metrics=data.metrics).checksum()


def evaluate(run: Storage, shard: int, log: Log = _stderr, progress_seconds: float = 2.0,
             log_points: bool = False, wait_seconds: float = 0.0) -> dict:
    """Evaluates one shard's points, checkpointing as it goes; returns the shard's stats.

    ``log_points`` logs every finished point (debugging, and the fault-injection tests,
    which count the points a killed worker had computed). ``wait_seconds`` waits that long
    for the prepare stage's output.
    """
    if wait_seconds > 0:
        wait_for(run, [SPEC_KEY, MANIFEST_KEY, DIRECTIONS_KEY], wait_seconds, "the prepare stage", log)
    spec = read_run_spec(run)
    num_shards = spec.compute.shards
    if not 0 <= shard < num_shards:
        raise UserError(f"shard index {shard} is out of range: the spec has compute.shards = {num_shards}")
    manifest = _read_json(run, MANIFEST_KEY, "run the prepare stage first")
    final_key = shard_key(shard, num_shards)
    if run.exists(final_key):
        existing = read_shard(run.get(final_key), f"{run.url}/{final_key}")
        if existing.attrs.get("spec_hash") == spec.hash:
            log(f"evaluate: shard {shard} of {num_shards} is already complete; nothing to do")
            return dict(existing.attrs)
        raise StageError(f"{run.url}/{final_key} was computed for another spec; remove it or use a new run")
    directions = load_directions(run.get(DIRECTIONS_KEY), f"{run.url}/{DIRECTIONS_KEY}")
    if directions.hash != manifest["direction_hash"]:
        raise StageError(f"{run.url}/{DIRECTIONS_KEY} does not match the manifest's direction hash; rerun prepare")

    started = time.time()
    points = spec.grid.shard_range(shard, num_shards)
    ckpt_key = partial_key(shard, num_shards)
    done = _load_partial(run, ckpt_key, spec.hash, directions.hash, log)
    done = {p: v for p, v in done.items() if p in points}
    resumed = len(done)
    todo = [p for p in points if p not in done]
    device = resolve_device(spec.compute.device)
    evaluator = build_evaluator(spec, directions, device)
    evaluator.warm_up()  # chooses points_per_forward, compiles: never part of a point's time
    names = evaluator.metric_names()
    host = socket.gethostname()
    attempt = _previous_attempts(run, progress_key(shard, num_shards)) + 1
    attrs = {"spec_hash": spec.hash, "direction_hash": directions.hash, "shard": shard, "num_shards": num_shards,
             "precision": spec.compute.precision, "device": str(device), "host": host,
             "code_version": landscape_job.__version__, "attempts": attempt,
             "points_per_forward": evaluator.points_per_forward or 1, "compile_seconds": evaluator.compile_seconds,
             "data_on_device": evaluator.data_resident, "channels_last": evaluator.channels_last}
    log(f"evaluate: shard {shard} of {num_shards}: {len(points)} points on {device}"
        + (f", {resumed} already done (resumed)" if resumed else "") + f"; {describe_evaluator(evaluator)}")

    xs, ys = spec.grid.coordinates(np.array(todo, dtype=np.int64))
    checkpointer = _Checkpointer(spec.compute.checkpoint_every, spec.compute.checkpoint_seconds)
    loop_start = time.monotonic()
    last_progress = 0.0

    def report(state: str) -> None:
        elapsed = time.monotonic() - loop_start
        computed = len(done) - resumed
        rate = computed / elapsed if elapsed > 0 else 0.0
        remaining = len(points) - len(done)
        progress = {"shard": shard, "num_shards": num_shards, "done": len(done), "total": len(points),
                    "rate": rate, "eta_s": remaining / rate if rate > 0 else None, "host": host,
                    "device": str(device), "state": state, "updated": time.time(), "attempt": attempt,
                    "points_per_forward": evaluator.points_per_forward or 1,
                    "compile_seconds": evaluator.compile_seconds}
        run.put(progress_key(shard, num_shards), json.dumps(progress).encode())

    report("running")
    group = evaluator.points_per_forward or 1
    for start in range(0, len(todo), group):
        chunk = todo[start:start + group]
        values = evaluator.evaluate_many([(float(a), float(b)) for a, b in
                                          zip(xs[start:start + group], ys[start:start + group])])
        save = False
        for p, a, b, v in zip(chunk, xs[start:start + group], ys[start:start + group], values):
            done[p] = v
            if log_points:
                log(f"point {p} ({a:g}, {b:g}): " + ", ".join(f"{k}={x:.6g}" for k, x in v.items()))
            save = checkpointer.tick() or save
        if save:
            run.put(ckpt_key, shard_bytes(_shard_data(done, names, attrs)))
        if time.monotonic() - last_progress >= progress_seconds:
            last_progress = time.monotonic()
            report("running")

    elapsed = time.time() - started
    computed = len(done) - resumed
    loop_seconds = time.monotonic() - loop_start
    attrs.update({"elapsed_s": elapsed, "points_computed": computed, "points_resumed": resumed,
                  "seconds_per_point": loop_seconds / computed if computed else 0.0})
    if evaluator.curvature is not None:
        # Of the points computed by this attempt (a resumed point's count is not kept).
        attrs["hessian_unconverged"] = evaluator.unconverged
    final = _shard_data(done, names, attrs)
    if not run.put_if_absent(final_key, shard_bytes(final)):
        # Another attempt of this shard finished first (a pod thought lost came back):
        # its values must be ours, or the run is inconsistent.
        existing = read_shard(run.get(final_key), f"{run.url}/{final_key}")
        if _values_checksum(existing) != _values_checksum(final):
            raise StageError(f"{run.url}/{final_key} was written by another attempt with different values")
        log(f"evaluate: shard {shard} of {num_shards} was completed by another attempt with the same values")
    run.delete(ckpt_key)
    report("done")
    log(f"evaluate: shard {shard} of {num_shards} done: {computed} points in {loop_seconds:.1f}s"
        + (f" ({loop_seconds / computed:.3f}s per point)" if computed else ""))
    return attrs


def collect_shards(run: Storage, spec: Spec, direction_hash: str) -> tuple[dict[str, np.ndarray], list[dict]]:
    """All shards' values as flat arrays; refuses missing, foreign, damaged or overlapping shards."""
    num_shards = spec.compute.shards
    missing = [i for i in range(num_shards) if not run.exists(shard_key(i, num_shards))]
    if missing:
        listed = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise StageError(f"merge: {len(missing)} of {num_shards} shards missing: {listed} "
                         f"(expected {run.url}/{shard_key(missing[0], num_shards)})")
    flat: dict[str, np.ndarray] = {}
    seen = np.zeros(spec.grid.size, dtype=np.int64)
    stats = []
    for i in range(num_shards):
        key = shard_key(i, num_shards)
        source = f"{run.url}/{key}"
        data = read_shard(run.get(key), source)
        if data.attrs.get("spec_hash") != spec.hash:
            raise StageError(f"merge: {source} was computed for another spec (spec hash "
                             f"{str(data.attrs.get('spec_hash'))[:12]} != {spec.hash[:12]})")
        if data.attrs.get("direction_hash") != direction_hash:
            raise StageError(f"merge: {source} was computed with other directions")
        allowed = spec.grid.shard_range(i, num_shards)
        stray = [int(p) for p in data.indices if int(p) not in allowed]
        if stray:
            raise StageError(f"merge: {source} holds points outside its range: {stray[:5]}")
        if len(np.unique(data.indices)) != len(data.indices):
            raise StageError(f"merge: {source} holds a point more than once")
        for name, values in data.metrics.items():
            flat.setdefault(name, np.full(spec.grid.size, np.nan))[data.indices] = values
        seen[data.indices] += 1
        stats.append({k: (v.item() if hasattr(v, "item") else v) for k, v in data.attrs.items()})
    absent = np.flatnonzero(seen == 0)
    if absent.size:
        owners = sorted({i for i in range(num_shards) for p in absent[:100] if p in spec.grid.shard_range(i, num_shards)})
        raise StageError(f"merge: {absent.size} grid points missing, e.g. flat index {absent[0]}; "
                         f"incomplete shards: {owners}")
    return flat, stats


def _axis_labels(spec: Spec, pca: dict | None = None) -> tuple[str, str]:
    d = spec.directions
    if d.type == "pca" and pca is not None:
        ratios = pca["explained_variance"]
        return f"PC1 ({100 * ratios[0]:.1f}% of variance)", f"PC2 ({100 * ratios[1]:.1f}% of variance)"
    if d.type == "interpolate":
        return "interpolation α (0: model, 1: target)", ""
    if d.type == "plane":
        return "x (toward target 1)", "y (toward target 2)"
    norm = "" if d.norm == "none" else f", {d.norm}-normalised"
    return f"x ({d.type} direction{norm})", f"y ({d.type} direction{norm})"


def _summary(spec: Spec, flat: dict[str, np.ndarray]) -> dict:
    summary = {}
    for name, values in flat.items():
        finite = np.isfinite(values)
        entry: dict[str, object] = {"non_finite_points": int((~finite).sum())}
        if finite.any() and name.endswith("_eig"):  # no "best" curvature: its range instead
            entry.update({"min": float(np.nanmin(values[finite])), "max": float(np.nanmax(values[finite]))})
        elif finite.any():
            best = int(np.nanargmin(np.where(finite, values, np.inf)) if name.endswith("loss")
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


def merge(run: Storage, log: Log = _stderr, plots: bool = True, wait_seconds: float = 0.0,
          abort: Callable[[], str | None] | None = None) -> dict:
    """Verifies and merges the shards into surface.h5, then writes the plots and report.json.

    ``wait_seconds`` waits that long for every shard to appear (the merge pod starts with
    the evaluate pods); without it, missing shards fail at once, named.
    """
    started = time.time()
    if wait_seconds > 0:
        wait_for(run, [SPEC_KEY], wait_seconds, "the run's spec", log)
    spec = read_run_spec(run)
    if wait_seconds > 0:
        shards = [shard_key(i, spec.compute.shards) for i in range(spec.compute.shards)]
        wait_for(run, [MANIFEST_KEY, *shards], wait_seconds, "the evaluate stage's shards", log, abort=abort)
    manifest = _read_json(run, MANIFEST_KEY, "run the prepare stage first")
    flat, stats = collect_shards(run, spec, manifest["direction_hash"])
    pca = manifest.get("pca")
    xlabel, ylabel = _axis_labels(spec, pca)
    attrs = {"name": spec.name, "spec_hash": spec.hash, "direction_hash": manifest["direction_hash"],
             "code_version": landscape_job.__version__, "precision": spec.compute.precision,
             "arch": spec.model.arch, "dataset": spec.data.dataset, "loss": spec.loss,
             "direction_type": spec.directions.type, "dir_type": manifest["dir_type"],
             "norm": spec.directions.norm, "ignore": spec.directions.ignore, "seed": spec.directions.seed,
             "xlabel": xlabel, "ylabel": ylabel, "cosine_xy": manifest.get("cosine_xy")}
    hessian = manifest.get("hessian")
    if hessian is not None:
        attrs.update({"sharpness": hessian["sharpness"], "hessian_trace": hessian["trace"],
                      "hessian_split": hessian["split"], "hessian_ignore": hessian["ignore"]})
    run.put(SURFACE_KEY, surface_bytes(spec.grid, flat, attrs, trajectory=_surface_trajectory(pca)))
    plot_keys = write_plots(run, spec) if plots else []
    compute_s = sum(float(s.get("elapsed_s", 0.0)) for s in stats)
    report = {
        "run": run.url, "name": spec.name, "spec_hash": spec.hash,
        "grid": {"x": str(spec.grid.x), "y": str(spec.grid.y) if spec.grid.y else None, "points": spec.grid.size},
        "precision": spec.compute.precision,
        "shards": [{k: s.get(k) for k in ("shard", "device", "host", "elapsed_s", "points_computed",
                                          "points_resumed", "seconds_per_point", "attempts",
                                          "points_per_forward", "compile_seconds")} for s in stats],
        "retries": sum(int(s.get("attempts", 1)) - 1 for s in stats),
        "compute_seconds": compute_s,
        "compile_seconds": sum(float(s.get("compile_seconds", 0.0)) for s in stats),
        "points_per_second": spec.grid.size / compute_s if compute_s else None,
        "summary": _summary(spec, flat),
        **({"pca": pca} if pca is not None else {}),
        **({"interpolation": interpolation_summary(spec.grid.x.values(), flat)}
           if spec.directions.type == "interpolate" else {}),
        "provenance": {k: manifest.get(k) for k in ("direction_hash", "dir_type", "seed", "checkpoints", "cosine_xy",
                                                    "code_version", "torch_version")},
        **({"hessian": {**hessian, "unconverged_points": sum(int(s.get("hessian_unconverged", 0)) for s in stats)}}
           if hessian is not None else {}),
        "outputs": [SURFACE_KEY, *plot_keys],
        "merge_seconds": round(time.time() - started, 3),
    }
    run.put(REPORT_KEY, json.dumps(report, indent=2).encode())
    log(f"merge: {spec.grid.size} points from {spec.compute.shards} shards -> {run.url}/{SURFACE_KEY}, "
        f"{len(plot_keys)} plots")
    return report


def write_plots(run: Storage, spec: Spec) -> list[str]:
    """Renders the surface's plots locally and stores each under plots/.

    Beside the figures: ``surface.html`` (the offline viewer) and, for 2-D, ``surface.vtp``.
    """
    from landscape_job.exports import write_exports
    from landscape_job.plots import PlotOptions, plot_surface

    options = PlotOptions(vmin=spec.plot.vmin, vmax=spec.plot.vmax, vlevel=spec.plot.vlevel, log=spec.plot.log)
    with tempfile.TemporaryDirectory() as tmp:
        surface = Path(tmp) / SURFACE_KEY
        surface.write_bytes(run.get(SURFACE_KEY))
        written = plot_surface(surface, Path(tmp) / "plots", options)
        written += write_exports(surface, Path(tmp) / "plots", options=options)
        keys = []
        for path in written:
            key = f"plots/{path.name}"
            run.put(key, path.read_bytes())
            keys.append(key)
    return keys
