"""The evaluate stage: one shard's grid points, checkpointed as they go, so a killed worker resumes exactly.

A shard's life is three steps, one function each: ``_resume`` (what a previous attempt
left, the evaluator, this attempt's record), ``_loop`` (the points; every K points or T
seconds a checkpoint segment of the points new since the last one, a progress object
every few seconds) and ``_finish`` (the complete shard, written once; a second attempt
that finished first must agree with it).

On SIGTERM (preemption, eviction, a drain: :mod:`landscape_job.base.termination`) the loop
stops between K-batches' bookkeeping, the finished points not yet checkpointed are written
as one more segment, and the worker exits 143: only the K-batch in flight is lost.
"""

from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

import landscape_job
from landscape_job.base.errors import StageError, UserError
from landscape_job.runtime.precision import compute_dtype
from landscape_job.surface.seeded import SeededRecipe, materialize, read_recipe
from landscape_job.base.termination import Terminated, shielded, unmasked
from landscape_job.run.files import (
    DIRECTIONS_KEY,
    MANIFEST_KEY,
    SPEC_KEY,
    Log,
    quarantine,
    read_manifest,
    read_run_spec,
    stderr_log,
    wait_for,
)
from landscape_job.run.pinned import verify_inputs
from landscape_job.run.records import Manifest, ProgressRecord, ShardRecord
from landscape_job.run.shards import (
    ShardData,
    memory_snapshot_key,
    partial_key,
    progress_key,
    read_shard,
    segment_key,
    segment_prefix,
    shard_bytes,
    shard_key,
)
from landscape_job.runtime.memory import MemorySnapshot, mib, peak_device_bytes, peak_host_rss_bytes, reset_device_peak
from landscape_job.series.evaluator import SeriesEvaluator
from landscape_job.spec.localize import localize
from landscape_job.spec.sections import Spec
from landscape_job.storage import NotFound, Storage
from landscape_job.surface.centre import build_centre_model, build_evaluator
from landscape_job.surface.directions import Directions, load_directions
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.evaluator_setup import resolve_device
from landscape_job.surface.point_evaluator import PointEvaluator
from landscape_job.run.tally import TallyWriter
from landscape_job.stages.last_shard import release_merge_if_last
from landscape_job.stages.shard_stops import record_stop, refuse_after_full_stop

Values = dict[str, float]

#: The most of a worker's time checkpoints may take when ``compute.checkpoint_adapt`` is on.
CHECKPOINT_OVERHEAD = 0.05


class _Checkpointer:
    """Decides when a worker saves: every K points or T seconds, the K stretched to keep saves cheap.

    With ``adapt``, a save that is due by the point count waits until the compute since the
    previous save is at least 1/``CHECKPOINT_OVERHEAD`` times what the last save took: for a
    model whose points cost microseconds a fixed K would spend most of the time saving. T
    is never stretched: a killed worker loses at most T seconds of points (or K points
    when ``adapt`` is off).
    """

    def __init__(self, every: int, seconds: float, adapt: bool):
        self.every, self.seconds, self.adapt = every, seconds, adapt
        self.pending, self.last, self.save_cost = 0, time.monotonic(), 0.0

    def due(self, new_points: int) -> bool:
        self.pending += new_points
        elapsed = time.monotonic() - self.last
        if elapsed >= self.seconds:
            return True
        return self.pending >= self.every and (not self.adapt or self.save_cost <= CHECKPOINT_OVERHEAD * elapsed)

    def saved(self, seconds: float) -> None:
        """Called after each save with what it took."""
        self.pending, self.last, self.save_cost = 0, time.monotonic(), seconds


class _Results:
    """A shard's values in arrays preallocated by position in the shard (its points in the
    order the shard computes them: ``Grid.shard_points``).

    Recording a point is O(1) and a checkpoint slices out only the positions finished since
    the previous one, so neither grows with the number of points already done.
    """

    def __init__(self, points: np.ndarray, names: list[str]):
        self.points, self.names = points, names
        self._by_index = np.argsort(points, kind="stable")  # positions, by ascending flat index
        self._sorted = points[self._by_index]
        self.filled = np.zeros(len(points), dtype=bool)
        self.values = {n: np.full(len(points), np.nan) for n in names}
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def put(self, position: int, values: Values) -> None:
        self.count += not self.filled[position]
        self.filled[position] = True
        for name in self.names:
            self.values[name][position] = values[name]

    def put_many(self, data: ShardData) -> None:
        """Points read back from checkpoints (only those of this shard), placed by flat index."""
        found = np.minimum(np.searchsorted(self._sorted, data.indices), len(self._sorted) - 1)  # never empty
        keep = self._sorted[found] == data.indices
        positions = self._by_index[found[keep]]
        self.filled[positions] = True
        self.count = int(self.filled.sum())
        for name in self.names:
            self.values[name][positions] = data.metrics[name][keep]

    def data(self, positions: np.ndarray, attrs: dict[str, object]) -> ShardData:
        """The given positions as a shard file's contents (indices in the order of ``positions``)."""
        return ShardData(indices=np.asarray(self.points[positions], dtype=np.int64),
                         metrics={n: self.values[n][positions] for n in self.names}, attrs=attrs)


def _load_partial(run: Storage, shard: int, num_shards: int, spec_hash: str, direction_hash: str,
                  names: list[str], log: Log) -> list[ShardData]:
    """The checkpoints a previous attempt of this shard left: its segments, and a whole
    ``.partial.h5`` from before segments (same format), each checked on its own; a damaged
    or foreign one is moved aside (``shards/quarantine/``) and its points recomputed."""
    keys = ([partial_key(shard, num_shards)] if run.exists(partial_key(shard, num_shards)) else []) \
        + run.list(segment_prefix(shard, num_shards))
    pieces = []
    for key in keys:
        try:
            partial = read_shard(run.get(key), f"{run.url}/{key}")
        except NotFound:
            continue  # a concurrent attempt finished and cleaned up
        except StageError as err:
            quarantine(run, key, f"damaged checkpoint, its points are recomputed ({err})", log)
            continue
        record = ShardRecord.from_attrs(partial.attrs)
        if record.spec_hash != spec_hash or record.direction_hash != direction_hash:
            quarantine(run, key, "checkpoint of another spec or other directions; its points are recomputed", log)
            continue
        if not set(partial.metrics) >= set(names):
            log(f"evaluate: ignoring checkpoint {key}: it lacks {sorted(set(names) - set(partial.metrics))}")
            continue
        pieces.append(partial)
    return pieces


def _previous_attempts(run: Storage, key: str) -> int:
    """How many workers started this shard before, from its progress object (0 if none)."""
    try:
        return int(ProgressRecord.from_json(run.get(key)).attempt)
    except (NotFound, ValueError, TypeError):
        return 0


def _values_checksum(data: ShardData) -> str:
    """The content hash of a shard's points and values, not of its timing attributes."""
    return ShardData(indices=data.indices, metrics=data.metrics).checksum()


@dataclass
class _ShardWork:
    """One attempt at one shard: its points, what is done, and where its records go."""

    run: Storage
    spec: Spec
    shard: int
    #: The shard's flat indices in the order it computes them (``Grid.shard_points``).
    points: np.ndarray
    #: The values by position in the shard, resumed ones included.
    results: _Results
    resumed: int
    evaluator: PointEvaluator
    names: list[str]
    device: torch.device
    host: str
    attempt: int
    #: This attempt's shard attributes; the timings are added when it finishes.
    record: ShardRecord
    #: time.time() when the attempt started (the shard's elapsed_s counts its setup too).
    started: float
    #: time.monotonic() when the first point started (rates and seconds_per_point count points only).
    loop_start: float = 0.0
    #: ``compute.memory_snapshot``: CUDA's allocation history, dumped with the shard.
    snapshot: MemorySnapshot | None = None
    #: Positions finished since the last checkpoint, in the order computed.
    unsaved: list[int] = field(default_factory=list)
    tally: TallyWriter | None = None

    @property
    def num_shards(self) -> int:
        return self.spec.compute.shards

    @property
    def computed(self) -> int:
        return len(self.results) - self.resumed

    def report(self, state: str) -> None:
        """Rewrites the shard's progress object (for ``launcher status`` and the local progress bar)."""
        elapsed = time.monotonic() - self.loop_start
        rate = self.computed / elapsed if elapsed > 0 else 0.0
        done = len(self.results)
        remaining = len(self.points) - done
        progress = ProgressRecord(
            shard=self.shard, num_shards=self.num_shards, done=done, total=len(self.points), rate=rate,
            eta_s=remaining / rate if rate > 0 else None, host=self.host, device=str(self.device), state=state,
            updated=time.time(), attempt=self.attempt, points_per_forward=self.record.points_per_forward,
            compile_seconds=self.record.compile_seconds)
        self.run.put(progress_key(self.shard, self.num_shards), progress.to_json())
        if self.tally is None:
            self.tally = TallyWriter(self.run, self.shard, self.num_shards)
        self.tally.write(progress)  # what pollers list (landscape_job.run.tally)

    def save_partial(self) -> None:
        """Writes the points finished since the last checkpoint as one new segment object."""
        if not self.unsaved:
            return
        positions = np.array(self.unsaved, dtype=np.int64)
        self.unsaved = []
        data = self.results.data(positions, self.record.to_attrs())
        self.run.put(segment_key(self.shard, self.num_shards, int(data.indices[0])), shard_bytes(data))


def evaluate(run: Storage, shard: int, log: Log = stderr_log, progress_seconds: float = 2.0,
             log_points: bool = False, wait_seconds: float = 0.0) -> ShardRecord:
    """Evaluates one shard's points, checkpointing as it goes; returns the shard's record.

    ``log_points`` logs every finished point (debugging, and the fault-injection tests,
    which count the points a killed worker had computed). ``wait_seconds`` waits that long
    for the prepare stage's output.
    """
    if wait_seconds > 0:
        # Prepare writes the manifest last (after directions.h5; a series has none), so it marks the end.
        wait_for(run, [SPEC_KEY, MANIFEST_KEY], wait_seconds, "the prepare stage", log)
    spec = read_run_spec(run)
    num_shards = spec.compute.shards
    if not 0 <= shard < num_shards:
        raise UserError(f"shard index {shard} is out of range: the spec has compute.shards = {num_shards}")
    manifest = read_manifest(run)
    complete = _already_complete(run, spec, shard, manifest.direction_hash, log)
    if complete is None:
        refuse_after_full_stop(run, shard, num_shards)  # a disk or memory that was full fails the index
        try:
            complete = _compute(run, spec, shard, manifest, progress_seconds, log_points, log)
        except Terminated:
            record_stop(run, shard, num_shards, log)
            raise
    release_merge_if_last(run, num_shards, log)  # under Kueue only (launcher.kubernetes.gate)
    return complete


def _compute(run: Storage, spec: Spec, shard: int, manifest: Manifest, progress_seconds: float,
             log_points: bool, log: Log) -> ShardRecord:
    directions = _checked_directions(run, manifest) if spec.series is None else None
    verify_inputs(spec, localize(spec), manifest, "evaluate")  # the inputs the directions were built from
    work = _resume(run, spec, shard, directions, manifest, log)
    try:
        with unmasked():  # a SIGTERM that torch's own cleanup masked is still one
            _loop(work, progress_seconds, log_points, log)
    except Terminated:
        _flush(work, log)
        raise
    with shielded(deliver=False):  # the shard is whole after this: a SIGTERM meanwhile changes nothing
        return _finish(work, log)


def _flush(work: _ShardWork, log: Log) -> None:
    """SIGTERM: the finished points not yet checkpointed, saved as one segment before the worker exits."""
    unsaved = len(work.unsaved)
    with shielded(deliver=False):
        work.save_partial()
        work.report("terminated")
    log(f"evaluate: SIGTERM: saved {unsaved} finished point{'s' if unsaved != 1 else ''} as a checkpoint; "
        f"{len(work.results)} of {len(work.points)} are kept for the next attempt")


def _already_complete(run: Storage, spec: Spec, shard: int, direction_hash: str | None,
                      log: Log) -> ShardRecord | None:
    """The record of this shard's final file when it is sound and of this run; a damaged or foreign
    one is moved aside (``shards/quarantine/``) and the shard recomputed."""
    num_shards = spec.compute.shards
    final_key = shard_key(shard, num_shards)
    if not run.exists(final_key):
        return None
    try:
        existing = ShardRecord.from_attrs(read_shard(run.get(final_key), f"{run.url}/{final_key}").attrs)
    except NotFound:
        return None
    except StageError as err:
        quarantine(run, final_key, f"damaged shard, recomputing it ({err})", log)
        return None
    if existing.spec_hash == spec.hash and existing.direction_hash in (direction_hash, None):
        log(f"evaluate: shard {shard} of {num_shards} is already complete; nothing to do")
        return existing
    quarantine(run, final_key, "computed for another spec or other directions; recomputing it", log)
    return None


_WAY_OUT = ("restore the directions.h5 prepare wrote, or start a new run (a new --run-id); the run's "
            "shards were computed with the original directions, so a new file cannot join them")


def _checked_directions(run: Storage, manifest: Manifest) -> Directions | SeededRecipe:
    """The run's directions, which must be those the manifest (and every shard) was made with; a
    seeded run's recipe (its values are generated and checked in ``_resume``, on the device)."""
    way_out = _WAY_OUT
    recipe = read_recipe(run.get(DIRECTIONS_KEY), f"{run.url}/{DIRECTIONS_KEY}")
    if recipe is not None:
        return recipe
    try:
        directions = load_directions(run.get(DIRECTIONS_KEY), f"{run.url}/{DIRECTIONS_KEY}")
    except UserError as err:
        raise StageError(f"{err}; {way_out}") from None
    if directions.hash != manifest.direction_hash:
        raise StageError(f"{run.url}/{DIRECTIONS_KEY} was changed after prepare (its hash is not the manifest's "
                         f"direction_hash); {way_out}")
    return directions


def _seeded_evaluator(run: Storage, spec: Spec, recipe: SeededRecipe, manifest: Manifest, device: torch.device,
                      log: Log) -> Evaluator:
    """The evaluator of a seeded run: its directions generated tensor by tensor onto ``device``,
    their hash checked against the one prepare recorded (bit-identical in every pod, or none runs)."""
    started = time.monotonic()
    model = build_centre_model(localize(spec))
    dtype = compute_dtype(spec.compute.precision, spec.compute.weights)
    directions = materialize(recipe, model, device, dtype)
    if directions.hash != manifest.direction_hash:
        raise StageError(f"{run.url}/{DIRECTIONS_KEY}: the seeded directions generated here differ from those "
                         "prepare hashed (another torch version's generator?); run evaluate with the image that "
                         f"ran prepare; {_WAY_OUT}")
    log(f"evaluate: seeded directions generated on {device} in {time.monotonic() - started:.1f}s")
    return build_evaluator(spec, directions, device, model)


def _resume(run: Storage, spec: Spec, shard: int, directions: Directions | None, manifest: Manifest,
            log: Log) -> _ShardWork:
    """What a previous attempt finished (from its checkpoint), the warmed-up evaluator, this attempt's record."""
    started = time.time()
    num_shards = spec.compute.shards
    points = spec.grid.shard_points(shard, num_shards, manifest.shard_order)
    device = resolve_device(spec.compute.device)
    snapshot = MemorySnapshot(spec.compute.memory_snapshot, device)  # before the data and weights arrive
    if spec.compute.memory_snapshot and not snapshot.active:
        log(f"evaluate: compute.memory_snapshot records CUDA allocations only; nothing to record on {device}")
    # A series' points are its checkpoints (series_evaluator); its "direction hash" is the manifest's.
    evaluator: PointEvaluator
    if isinstance(directions, SeededRecipe):
        evaluator = _seeded_evaluator(run, spec, directions, manifest, device, log)
    else:
        evaluator = build_evaluator(spec, directions, device) if directions is not None else \
            SeriesEvaluator(spec, manifest, device)
    direction_hash = manifest.direction_hash
    names = evaluator.metric_names()
    results = _Results(points, names)
    for piece in _load_partial(run, shard, num_shards, spec.hash, direction_hash, names, log):
        results.put_many(piece)
    evaluator.warm_up()  # chooses points_per_forward, compiles: never part of a point's time
    how = evaluator.how()
    reset_device_peak(device)  # the peak of the points, not of the K search
    host = socket.gethostname()
    attempt = _previous_attempts(run, progress_key(shard, num_shards)) + 1
    record = ShardRecord(
        spec_hash=spec.hash, direction_hash=direction_hash, shard=shard, num_shards=num_shards,
        precision=how.precision, device=str(device), host=host, code_version=landscape_job.__version__,
        attempts=attempt, points_per_forward=how.points_per_forward, compile_seconds=how.compile_seconds,
        data_on_device=how.data_on_device, channels_last=how.channels_last, precision_reason=how.precision_reason,
        batch_size=evaluator.batch_size)
    work = _ShardWork(run=run, spec=spec, shard=shard, points=points, results=results, resumed=len(results),
                      evaluator=evaluator, names=names, device=device, host=host,
                      attempt=attempt, record=record, started=started, snapshot=snapshot)
    threads = torch.get_num_threads()  # a CPU's share of a local run's cores: what its speed depends on
    log(f"evaluate: shard {shard} of {num_shards}: {len(points)} points on {device}"
        + (f" ({threads} thread{'s' if threads != 1 else ''})" if device.type == "cpu" else "")
        + (f", {work.resumed} already done (resumed)" if work.resumed else "")
        + f"; {how.describe()}; precision {how.precision} ({how.precision_reason}), batch {evaluator.batch_size}")
    return work


def _loop(work: _ShardWork, progress_seconds: float, log_points: bool, log: Log) -> None:
    """Evaluates the points not yet done, ``points_per_forward`` at a time, checkpointing as it goes."""
    positions = np.flatnonzero(~work.results.filled)  # in the shard's order: coarse to fine
    todo = work.points[positions]
    xs, ys = work.spec.grid.coordinates(todo)
    todo, positions = todo.tolist(), positions.tolist()
    compute = work.spec.compute
    checkpointer = _Checkpointer(compute.checkpoint_every, compute.checkpoint_seconds, compute.checkpoint_adapt)
    work.loop_start = time.monotonic()
    last_progress = 0.0
    work.report("running")
    group = work.record.points_per_forward or 1
    for start in range(0, len(todo), group):
        chunk = todo[start:start + group]
        places = positions[start:start + group]
        halvings, overflowed = work.evaluator.oom_halvings, len(work.evaluator.nonfinite)
        values = work.evaluator.evaluate_many([(float(a), float(b)) for a, b in
                                               zip(xs[start:start + group], ys[start:start + group])])
        if work.evaluator.oom_halvings != halvings:
            log(f"evaluate: out of device memory; batch size halved to {work.evaluator.batch_size}")
        for a, b, samples in work.evaluator.nonfinite[overflowed:]:
            log(f"evaluate: point ({a:g}, {b:g}): {samples} samples with non-finite {work.record.precision} "
                "logits; its values are NaN (fp16 overflows above 65504: use bf16 or fp32 for this region)")
        with shielded():  # a point is recorded, queued for the checkpoint and logged, or none of these
            for p, i, a, b, v in zip(chunk, places, xs[start:start + group], ys[start:start + group], values):
                work.results.put(i, v)
                work.unsaved.append(i)
                if log_points:
                    log(f"point {p} ({a:g}, {b:g}): " + ", ".join(f"{k}={x:.6g}" for k, x in v.items()))
        if checkpointer.due(len(chunk)):
            began = time.monotonic()
            with shielded():  # a segment is written whole and its points marked saved together
                work.save_partial()
            checkpointer.saved(time.monotonic() - began)
        if time.monotonic() - last_progress >= progress_seconds:
            last_progress = time.monotonic()
            with shielded():
                work.report("running")


def _finish(work: _ShardWork, log: Log) -> ShardRecord:
    """Writes the complete shard once, drops the checkpoint, and marks the progress done."""
    run, shard, num_shards = work.run, work.shard, work.num_shards
    elapsed = time.time() - work.started
    computed = work.computed
    loop_seconds = time.monotonic() - work.loop_start
    evaluator = work.evaluator
    record = replace(work.record, elapsed_s=elapsed, points_computed=computed, points_resumed=work.resumed,
                     seconds_per_point=loop_seconds / computed if computed else 0.0,
                     # Of the points computed by this attempt (a resumed point's count is not kept).
                     hessian_unconverged=evaluator.unconverged_points(),
                     batch_size=evaluator.batch_size, oom_halvings=evaluator.oom_halvings,
                     peak_device_bytes=peak_device_bytes(work.device), peak_host_rss_bytes=peak_host_rss_bytes(),
                     nonfinite_points=len(evaluator.nonfinite))
    _store_snapshot(work, log)
    final_key = shard_key(shard, num_shards)
    final = work.results.data(np.arange(len(work.points)), record.to_attrs())
    if not run.put_if_absent(final_key, shard_bytes(final)):
        # Another attempt of this shard finished first (a pod thought lost came back):
        # its values must be ours, or the run is inconsistent.
        existing = read_shard(run.get(final_key), f"{run.url}/{final_key}")
        if _values_checksum(existing) != _values_checksum(final):
            raise StageError(f"{run.url}/{final_key} was written by another attempt with different values")
        log(f"evaluate: shard {shard} of {num_shards} was completed by another attempt with the same values")
    for key in run.list(segment_prefix(shard, num_shards)):
        run.delete(key)
    run.delete(partial_key(shard, num_shards))
    work.report("done")
    log(f"evaluate: shard {shard} of {num_shards} done: {computed} points in {loop_seconds:.1f}s"
        + (f" ({loop_seconds / computed:.3f}s per point)" if computed else "")
        + f"; peak device memory {mib(record.peak_device_bytes)}, host RSS {mib(record.peak_host_rss_bytes)}")
    return record


def _store_snapshot(work: _ShardWork, log: Log) -> None:
    """``compute.memory_snapshot``: the shard's CUDA allocation history, beside its shard file."""
    if work.snapshot is None or not work.snapshot.active:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.pickle"
        work.snapshot.dump(path)
        key = memory_snapshot_key(work.shard, work.num_shards)
        work.run.put(key, path.read_bytes())
    log(f"evaluate: memory snapshot -> {work.run.url}/{key} (open it at https://pytorch.org/memory_viz)")
