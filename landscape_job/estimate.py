"""What a run will cost, from a few real points: ``launcher estimate`` and ``landscape-job estimate``.

Builds the run's model, directions and data exactly as the evaluate stage does, times a
few grid points after one warm-up group, and projects compute time and wall time for the
spec's shards. Writes nothing. Timings on a laptop CPU say little about a GPU cluster:
``launcher estimate --cluster`` runs this inside one pod shaped like the evaluate pods
(``landscape-job estimate`` prints the measurement as one JSON line) and projects from there.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from landscape_job.direction_builders import build_directions
from landscape_job.direction_types import direction_type
from landscape_job.evaluator import Evaluator, resolve_device
from landscape_job.inputs import localize
from landscape_job.memory import CUDA_OVERHEAD_BYTES, Fit, LiveBytes, mib, peak_device_bytes, reset_device_peak
from landscape_job.spec import Spec
from landscape_job.stages import build_centre_model, build_evaluator


@dataclass(frozen=True)
class Estimate:
    seconds_per_point: float
    points: int
    shards: int
    parallel: int
    device: str
    setup_seconds: float

    @property
    def compute_hours(self) -> float:
        return self.seconds_per_point * self.points / 3600

    @property
    def wall_seconds(self) -> float:
        """The slowest shard's points, shards running ``parallel`` at a time, plus setup per wave."""
        per_shard = -(-self.points // self.shards)
        waves = -(-self.shards // self.parallel)
        return waves * (per_shard * self.seconds_per_point + self.setup_seconds)

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


def estimate(spec: Spec, points: int = 3, parallel: int | None = None) -> Estimate:
    started = time.perf_counter()
    local = localize(spec)
    model = build_centre_model(local)
    # A point costs the same along any direction: a type whose directions cost a run of
    # their own (Hessian eigenvectors: Lanczos in prepare) is stood in for by another here.
    stand_in = direction_type(local.directions.type).estimate_as
    timing = local.directions if stand_in is None else replace(local.directions, type=stand_in)
    directions = build_directions(timing, model, two_d=spec.grid.ndim == 2)
    device = resolve_device(spec.compute.device)
    evaluator = build_evaluator(local, directions, device, model)
    evaluator.warm_up()
    setup = time.perf_counter() - started
    k = evaluator.points_per_forward or 1
    # Whole groups of K points, as the workers evaluate them; the first group warms up.
    flat = np.linspace(0, spec.grid.size - 1, (points + 1) * k).astype(np.int64)
    xs, ys = spec.grid.coordinates(flat)
    coords = [(float(a), float(b)) for a, b in zip(xs, ys)]
    times = []
    for i in range(0, len(coords), k):
        start = time.perf_counter()
        evaluator.evaluate_many(coords[i:i + k])
        if i:  # the first group warms up kernels and allocators
            times.append((time.perf_counter() - start) / k)
    return Estimate(seconds_per_point=statistics.median(times), points=spec.grid.size, shards=spec.compute.shards,
                    parallel=min(parallel or spec.compute.shards, spec.compute.shards), device=str(device),
                    setup_seconds=setup)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe(est: Estimate) -> list[str]:
    return [
        f"measured on {est.device}: {est.seconds_per_point:.4f} s per point (median of the timed points), "
        f"setup {est.setup_seconds:.1f} s per worker",
        f"compute: {est.points} points x {est.seconds_per_point:.4f} s = {est.compute_hours:.2f} device-hours",
        f"wall: about {_duration(est.wall_seconds)} with {est.shards} shards, {est.parallel} at a time",
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


def measure_memory(evaluator: Evaluator, coords: list[tuple[float, float]]) -> MemoryEstimate:
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
                          batch_size=evaluator.batch_size, precision=evaluator.precision,
                          points_per_forward=evaluator.points_per_forward or 1, device=str(device), method=method,
                          samples=max((s.size for s in evaluator.splits), default=0))


def estimate_memory(spec: Spec) -> MemoryEstimate:
    """``launcher estimate``'s memory part: the spec's evaluator, as a shard builds it, one group of points."""
    local = localize(spec)
    model = build_centre_model(local)
    stand_in = direction_type(local.directions.type).estimate_as
    timing = local.directions if stand_in is None else replace(local.directions, type=stand_in)
    directions = build_directions(timing, model, two_d=spec.grid.ndim == 2)
    evaluator = build_evaluator(local, directions, resolve_device(spec.compute.device), model)
    evaluator.warm_up()
    k = evaluator.points_per_forward or 1
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
