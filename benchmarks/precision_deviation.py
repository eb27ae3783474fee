"""How far a reduced precision moves a spec's surface from fp32. Run by hand; results go in docs/performance.md.

    python benchmarks/precision_deviation.py examples/digits.yaml --precision fp16 --points 25

Builds the spec's model, directions and data as ``launcher estimate`` does, evaluates
``--points`` grid points spread over the whole grid (the corners included, where the
weights are furthest from θ*) in fp32 and in ``--precision``, and prints per metric the
largest relative deviation (loss) or absolute deviation in percentage points
(accuracy), and the points whose fp16 logits overflowed. Writes nothing.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
import torch

from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.evaluator_setup import resolve_device
from landscape_job.spec.localize import localize
from landscape_job.spec.parse import load_spec
from landscape_job.surface.centre import build_centre_model, build_evaluator


def spread_points(size: int, points: int) -> np.ndarray:
    """``points`` flat indices evenly over ``0 .. size-1``, both ends included."""
    return np.unique(np.linspace(0, size - 1, min(points, size)).round().astype(np.int64))


def deviations(reference: list[dict[str, float]], other: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the largest deviation over the points: relative for losses (and any other
    metric), absolute for accuracies (in percentage points: a relative accuracy near 0 means
    nothing). Points where either value is not finite are left out (reported apart)."""
    found: dict[str, float] = {}
    for ref, low in zip(reference, other):
        for name, value in ref.items():
            new = low[name]
            if not (math.isfinite(value) and math.isfinite(new)):
                continue
            gap = abs(new - value) if name.endswith("_acc") else abs(new - value) / max(abs(value), 1e-12)
            found[name] = max(found.get(name, 0.0), gap)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--precision", default="fp16", choices=["tf32", "bf16", "fp16"])
    parser.add_argument("--points", type=int, default=25)
    parser.add_argument("--device", default=None, help="default: the spec's compute.device")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    if args.device:
        spec = replace(spec, compute=replace(spec.compute, device=args.device))
    local = localize(spec)
    device = resolve_device(spec.compute.device)
    directions = build_directions(local.directions, build_centre_model(local), two_d=spec.grid.ndim == 2)
    flat = spread_points(spec.grid.size, args.points)
    xs, ys = spec.grid.coordinates(flat)
    coords = [(float(a), float(b)) for a, b in zip(xs, ys)]
    results = {}
    nonfinite = []
    for precision in ("fp32", args.precision):
        run = replace(local, compute=replace(local.compute, precision=precision, points_per_forward=1))
        evaluator = build_evaluator(run, directions, device)
        results[precision] = evaluator.evaluate_many(coords)
        nonfinite = evaluator.nonfinite
    print(f"spec {args.spec}: {spec.model.arch} on {spec.data.dataset}, {len(coords)} of {spec.grid.size} grid "
          f"points, device {device}, torch {torch.__version__}")
    for name, gap in deviations(results["fp32"], results[args.precision]).items():
        unit = "percentage points" if name.endswith("_acc") else "relative"
        print(f"{args.precision} vs fp32: {name}: largest deviation {gap:.2e} ({unit})")
    print(f"points with non-finite {args.precision} logits: {len(nonfinite)}"
          + "".join(f"\n  ({a:g}, {b:g}): {n} samples" for a, b, n in nonfinite))


if __name__ == "__main__":
    main()
