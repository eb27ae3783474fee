"""What a run will cost, from a few real points: ``launcher estimate`` and ``landscape-job estimate``.

Builds the run's model, directions and data exactly as the evaluate stage does, times a
few grid points after one warm-up group, and projects compute time and wall time for the
spec's shards. Writes nothing.

The wall time is the run's, not only its points': a local run (``local_threads``) is timed
with the threads each of its workers gets, the points are timed for a time budget rather
than a count (three points of a cheap model moved the figure by 60% between runs), and
the fixed costs are measured and added: a fresh stage process's start-up (interpreter and
imports) for the launcher's pre-check, prepare, every shard and merge (a local run's pre-check and
stages are forked from one interpreter: one start-up), prepare's and each worker's setup, and merge's
figures (drawn here from a stand-in surface of the run's grid).
The range comes from the spread of the timed points. Timings on a laptop CPU say little about a GPU cluster:
``launcher estimate --cluster`` runs this inside one pod shaped like the evaluate pods
(``landscape-job estimate`` prints the measurement as one JSON line) and projects from there.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from landscape_job.run.records import Manifest
from landscape_job.runtime.memory import CUDA_OVERHEAD_BYTES, Fit, LiveBytes, mib, peak_device_bytes, reset_device_peak
from landscape_job.series.evaluator import SeriesEvaluator
from landscape_job.spec.direction_types import direction_type
from landscape_job.spec.localize import localize
from landscape_job.spec.sections import Spec
from landscape_job.surface.centre import build_centre_model, build_evaluator
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.evaluator_setup import resolve_device
from landscape_job.surface.point_evaluator import PointEvaluator


@dataclass(frozen=True)
class Estimate:
    seconds_per_point: float
    points: int
    shards: int
    parallel: int
    device: str
    setup_seconds: float
    #: A fresh stage process's interpreter and imports (paid by every process of the run, or, with
    #: ``forked``, by the one interpreter the pre-check and the stages are forked from).
    startup_seconds: float = 0.0
    #: The merge stage beyond its start-up: drawing the figures, the exports.
    merge_seconds: float = 0.0
    #: The 10th and 90th percentile of the timed points' seconds per point (the range).
    seconds_per_point_low: float | None = None
    seconds_per_point_high: float | None = None
    #: How much slower a process runs with ``parallel`` of them busy at once than alone
    #: (>= 1): cores shared with other work or a CPU quota make workers slow each other down.
    contention: float = 1.0
    #: The stages are forked from an interpreter that has imported torch (a local run on Linux,
    #: ``landscape_job.forkserver``), not started afresh as pods are.
    forked: bool = False

    @property
    def compute_hours(self) -> float:
        return self.seconds_per_point * self.points / 3600

    def wall_for(self, seconds_per_point: float) -> float:
        """The launcher's pre-check and prepare, the shards ``parallel`` at a time (the slowest
        shard's points, its start-up and setup, per wave), then merge.

        ``contention`` slows a wave's start-up and setup as much as its points: the workers of a
        wave start together and import and build their models side by side (measured alone,
        start-up and setup came out 1.5-2x short of a run's on the shared 2-core machine)."""
        per_shard = -(-self.points // self.shards)
        waves = -(-self.shards // self.parallel)
        # Start-ups: the pre-check, prepare, merge and each shard; forked, the stage server's only.
        fixed_startups, shard_startup = (1, 0.0) if self.forked else (3, self.startup_seconds)
        fixed = fixed_startups * self.startup_seconds + self.setup_seconds + self.merge_seconds
        return fixed + waves * self.contention * (per_shard * seconds_per_point + self.setup_seconds
                                                  + shard_startup)

    @property
    def wall_seconds(self) -> float:
        return self.wall_for(self.seconds_per_point)

    @property
    def wall_range(self) -> tuple[float, float]:
        """The wall time at the low and high end of the timed points' spread."""
        return (self.wall_for(self.seconds_per_point_low or self.seconds_per_point),
                self.wall_for(self.seconds_per_point_high or self.seconds_per_point))

    def to_json_line(self) -> str:
        """The one line ``landscape-job estimate`` prints; the launcher finds it in the pod's log."""
        return json.dumps({JSON_KEY: asdict(self)}, sort_keys=True)


#: The key of the estimate pod's result line, so it is told apart from any other log line.
JSON_KEY = "landscape_estimate"


def from_log(lines: list[str], parallel: int | None = None) -> Estimate | None:
    """The estimate in a pod's log (its last result line), re-projected for ``parallel``; None if absent."""
    for line in reversed(lines):
        line = line.strip()
        if not line.startswith("{") or JSON_KEY not in line:
            continue
        try:
            fields = json.loads(line)[JSON_KEY]
            est = Estimate(**fields)
        except (ValueError, TypeError, KeyError):
            continue
        if parallel:
            est = Estimate(**{**fields, "parallel": min(parallel, est.shards)})
        return est
    return None


def estimate(spec: Spec, points: int = 3, parallel: int | None = None, seconds: float = 5.0,
             local_threads: int | None = None, fixed_costs: bool = True, forked: bool = False) -> Estimate:
    """Times ``points`` groups at least, and more until ``seconds`` of timing have passed.

    ``local_threads``: time with that many threads, as each worker of a local run gets
    (``launcher.local.runner``: the cores split between the workers). ``fixed_costs`` measures a
    stage process's start-up and merge's figures (off where only the points matter). ``forked``:
    the run's stages will be forked from one interpreter (``Estimate.forked``).
    """
    started = time.perf_counter()
    device = resolve_device(spec.compute.device)
    threads = torch.get_num_threads()
    if local_threads:
        torch.set_num_threads(local_threads)
    try:
        evaluator = _evaluator(spec, device)
        evaluator.warm_up()
        setup = time.perf_counter() - started
        times = _time_points(spec, evaluator, points, seconds)
    finally:
        torch.set_num_threads(threads)
    times.sort()
    # The mean, not the median: a shard takes the sum of its points' times, and a few slow
    # points (another process's burst on a shared core) lengthen it by their full cost.
    mean = statistics.fmean(times)
    return Estimate(seconds_per_point=mean, points=spec.grid.size, shards=spec.compute.shards,
                    parallel=min(parallel or spec.compute.shards, spec.compute.shards), device=str(device),
                    setup_seconds=setup, startup_seconds=_startup_seconds() if fixed_costs else 0.0,
                    merge_seconds=_merge_seconds(spec) if fixed_costs else 0.0,
                    contention=_contention(min(parallel or spec.compute.shards, spec.compute.shards))
                    if fixed_costs and local_threads else 1.0, forked=forked,
                    seconds_per_point_low=min(mean, times[int(0.1 * (len(times) - 1))]),
                    seconds_per_point_high=max(mean, times[int(round(0.9 * (len(times) - 1)))]))


def _evaluator(spec: Spec, device: torch.device) -> PointEvaluator:
    """The spec's evaluator at θ*, as a shard builds it, along directions that cost nothing to build.

    A point costs the same along any direction: a type whose directions cost a run of
    their own (Hessian eigenvectors: Lanczos in prepare) is stood in for by another here.
    """
    if spec.series is not None:  # a series' points are its checkpoints: timed as the shards measure them
        return SeriesEvaluator(spec, Manifest(), device)
    local = localize(spec)
    model = build_centre_model(local)
    stand_in = direction_type(local.directions.type).estimate_as
    timing = local.directions if stand_in is None else replace(local.directions, type=stand_in)
    directions = build_directions(timing, model, two_d=spec.grid.ndim == 2)
    return build_evaluator(local, directions, device, model)


def _time_points(spec: Spec, evaluator: PointEvaluator, points: int, seconds: float) -> list[float]:
    """Seconds per point of whole groups of K points spread over the grid, the first (warm-up) left out."""
    k = evaluator.how().points_per_forward
    rng = np.random.default_rng(0)
    times: list[float] = []
    budget_end = time.perf_counter() + seconds
    first = True
    while first or len(times) < points or time.perf_counter() < budget_end:
        flat = rng.integers(0, spec.grid.size, k)
        xs, ys = spec.grid.coordinates(flat)
        start = time.perf_counter()
        evaluator.evaluate_many([(float(a), float(b)) for a, b in zip(xs, ys)])
        if not first:  # the first group warms up kernels and allocators
            times.append((time.perf_counter() - start) / k)
        first = False
        if len(times) >= 10_000:
            break
    return times


def _startup_seconds() -> float:
    """A fresh interpreter importing what an evaluate process imports (the best of two)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    best = math.inf
    for _ in range(2):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import landscape_job.stages.evaluate_stage, landscape_job.cli"],
                       check=True, env=env, capture_output=True)
        best = min(best, time.perf_counter() - began)
    return best


#: A second of pure-Python work, counted: how much CPU a process gets.
_BUSY = ("import time\nend, n = time.perf_counter() + 1.0, 0\n"
         "while time.perf_counter() < end:\n    sum(range(2000))\n    n += 1\nprint(n)")


def _contention(workers: int) -> float:
    """Work done by one busy process alone over the mean of ``workers`` busy at once (at least 1).

    The points are timed in this one process; a local run's workers share the machine
    (and any CPU quota) with each other: on an idle machine with a core each this is ~1.
    """
    if workers <= 1:
        return 1.0

    def busy(n: int) -> list[int]:
        procs = [subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        return [int(p.communicate()[0]) for p in procs]

    alone = busy(1)[0]
    together = statistics.mean(busy(workers))
    return max(1.0, alone / together) if together > 0 else 1.0


def _merge_seconds(spec: Spec) -> float:
    """merge's figures and exports for this grid, drawn from a stand-in bowl of the same shape."""
    from landscape_job.outputs.exports import write_outputs
    from landscape_job.spec.metrics import SPLITS
    from landscape_job.surface.file import surface_bytes

    began = time.perf_counter()
    x = spec.grid.x.values()
    y = spec.grid.y.values() if spec.grid.y is not None else np.zeros(1)
    bowl = np.add.outer(y ** 2, x ** 2).ravel() + 0.1
    flat = {f"{split}_{name}": bowl * (100 if name == "acc" else 1) for split in SPLITS
            for name in ("loss", "acc") if split in spec.data.splits}
    with tempfile.TemporaryDirectory(prefix="landscape-estimate-") as tmp:
        surface = Path(tmp) / "surface.h5"
        surface.write_bytes(surface_bytes(spec.grid, flat, {"name": spec.name}))
        write_outputs(surface, Path(tmp) / "plots", spec.plot)
    return time.perf_counter() - began


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe(est: Estimate) -> list[str]:
    low, high = est.wall_range
    return [
        f"measured on {est.device}: {est.seconds_per_point:.4f} s per point (mean of the timed points), "
        f"setup {est.setup_seconds:.1f} s per worker, start-up {est.startup_seconds:.1f} s per "
        + ("interpreter (the one the pre-check and the stages are forked from), " if est.forked else "process, ")
        + f"merge {est.merge_seconds:.1f} s, {est.parallel} workers at once {est.contention:.2f}x slower than one",
        f"compute: {est.points} points x {est.seconds_per_point:.4f} s = {est.compute_hours:.2f} device-hours",
        f"wall: about {_duration(est.wall_seconds)} ({_duration(low)} to {_duration(high)}) with {est.shards} "
        f"shards, {est.parallel} at a time",
    ]


# -- device memory: what a shard will hold, against the GPU it will get ------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak device memory of one shard's points, for the spec's model, batch, precision and K.

    ``resident_bytes``: held for the whole run (weights, θ*'s copy, directions, resident
    data). ``working_bytes``: the most one group of K points adds while its forward passes
    run, at ``batch_size``. ``method``: ``cuda allocator`` (measured,
    ``torch.cuda.max_memory_allocated``) or ``counted tensor bytes`` (on a CPU, ``memory.LiveBytes``:
    no allocator rounding, no cuDNN workspaces; CPU autocast lowers the same convolutions and
    matmuls as CUDA's, but kernels differ), so a CPU figure is a model of the GPU's, not a measurement.
    """

    peak_bytes: int
    resident_bytes: int
    working_bytes: int
    batch_size: int
    precision: str
    points_per_forward: int
    device: str
    method: str
    #: The largest split's samples: a batch above it is the whole split.
    samples: int = 0

    def largest_batch(self, total_bytes: int, overhead_bytes: int = CUDA_OVERHEAD_BYTES) -> int:
        """The batch whose working memory (linear in the batch) fits beside the resident bytes."""
        per_sample = self.working_bytes / max(1, self.batch_size)
        room = total_bytes - overhead_bytes - self.resident_bytes
        return max(0, int(room / per_sample)) if per_sample > 0 else 0


def measure_memory(evaluator: PointEvaluator, coords: list[tuple[float, float]]) -> MemoryEstimate:
    """Runs one group of K points (``coords``, after ``warm_up``) and takes its memory peak."""
    evaluator.warm_up()
    device = evaluator.device
    resident = evaluator.resident_bytes()
    if device.type == "cuda":
        reset_device_peak(device)
        evaluator.evaluate_many(coords)
        peak = peak_device_bytes(device) or 0
        working, method = max(0, peak - resident), "cuda allocator"
    else:
        with LiveBytes() as counted:
            evaluator.evaluate_many(coords)
        working, method = counted.peak, "counted tensor bytes"
    return MemoryEstimate(peak_bytes=resident + working, resident_bytes=resident, working_bytes=working,
                          batch_size=evaluator.batch_size, precision=evaluator.how().precision,
                          points_per_forward=evaluator.how().points_per_forward, device=str(device), method=method,
                          samples=max((s.size for s in evaluator.splits), default=0))


def estimate_memory(spec: Spec) -> MemoryEstimate:
    """``launcher estimate``'s memory part: the spec's evaluator, as a shard builds it, one group of points."""
    evaluator = _evaluator(spec, resolve_device(spec.compute.device))
    evaluator.warm_up()
    k = evaluator.how().points_per_forward
    xs, ys = spec.grid.coordinates(np.linspace(0, spec.grid.size - 1, k).astype(np.int64))
    return measure_memory(evaluator, [(float(a), float(b)) for a, b in zip(xs, ys)])


def describe_memory(est: MemoryEstimate, spec: Spec, target_bytes: int | None, target_source: str) -> list[str]:
    """The lines ``launcher estimate`` prints about memory; ``target_bytes``: the GPU's memory
    (``kubernetes.gpu_memory``, or the device measured here), None when neither is known."""
    lines = [f"memory ({est.method}, on {est.device}): peak {mib(est.peak_bytes)} per shard = "
             f"{mib(est.resident_bytes)} resident + {mib(est.working_bytes)} for {est.points_per_forward} point(s) "
             f"at batch {est.batch_size}, {est.precision}"]
    if spec.compute.precision == "auto" and est.device == "cpu":
        lines.append("  precision auto is fp32 here; on a GPU it becomes bf16 or fp16, whose activations take "
                     "about half: an upper bound")
    if spec.compute.batch_size == "auto" and est.device == "cpu":
        lines.append(f"  batch_size auto is {est.batch_size} here; on a GPU each worker finds the largest batch "
                     "that fits")
    if target_bytes is None:
        lines.append("  GPU memory: unknown (set kubernetes.gpu_memory, e.g. 16Gi for a V100, to compare)")
        return lines
    fit = Fit(est.peak_bytes, target_bytes)
    lines.append("  " + fit.describe(f"against {target_source}"))
    largest = est.largest_batch(target_bytes)
    whole = f"; the largest split ({est.samples:,} samples) fits in one batch" if largest >= est.samples > 0 else ""
    lines.append(f"  largest batch that fits {target_source}: about {largest:,} (working memory grows with "
                 f"the batch; measured at {est.batch_size}){whole}")
    return lines
