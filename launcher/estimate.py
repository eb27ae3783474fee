"""``launcher estimate surface.yaml``: what a run will cost, from a few real points here.

Builds the run's model, directions and data exactly as the evaluate stage does, times a
few grid points after one warm-up point, and projects compute time and wall time for the
spec's shards. Writes nothing. Timings on a laptop CPU say little about a GPU cluster:
run it where the pods run (a GPU node) for numbers that carry over.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from landscape_job.directions import build_directions
from landscape_job.evaluator import Evaluator, resolve_device
from landscape_job.spec import Spec
from landscape_job.inputs import localize
from landscape_job.stages import build_centre_model, load_splits


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


def estimate(spec: Spec, points: int = 3, parallel: int | None = None) -> Estimate:
    started = time.perf_counter()
    spec = localize(spec)
    model = build_centre_model(spec)
    directions = build_directions(spec.directions, model, two_d=spec.grid.ndim == 2)
    device = resolve_device(spec.compute.device)
    evaluator = Evaluator(model, directions, load_splits(spec), loss=spec.loss, precision=spec.compute.precision,
                          batch_size=spec.compute.batch_size, device=device)
    setup = time.perf_counter() - started
    flat = np.linspace(0, spec.grid.size - 1, points + 1).astype(np.int64)
    xs, ys = spec.grid.coordinates(flat)
    times = []
    for i, (a, b) in enumerate(zip(xs, ys)):
        start = time.perf_counter()
        evaluator.evaluate(float(a), float(b))
        if i:  # the first point warms up kernels and allocators
            times.append(time.perf_counter() - start)
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
