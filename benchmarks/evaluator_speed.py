"""How close is a grid point to a bare forward pass? Run by hand; results go in docs/performance.md.

    python benchmarks/evaluator_speed.py --model resnet20 --images 2000 --device cpu --precision fp32
    python benchmarks/evaluator_speed.py ... --points-per-forward 4 --channels-last true --stream --compile

Prints, for one model, data size, device and precision:
- the bare-forward ceiling: one no-grad eval-mode forward pass over the same images at the
  best batch size found (the least a grid point can cost),
- the evaluator's seconds per point (set θ = θ* + aδ + bη, forward over the data, loss and
  accuracy, restore), over several points,
- their ratio, and peak memory (CUDA: max allocated; CPU: max RSS of the process).
With --precision other than fp32 it also reports the largest loss deviation from fp32 over
the points measured, so a user can judge tf32/bf16/fp16 on a real model. A precision the
device cannot run natively (bf16 before Ampere) prints ``precision refused: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import torch

from landscape_job.datasets.builtin import Split
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.evaluator_setup import configure_precision
from landscape_job.models import build_model
from landscape_job.base.errors import UserError
from landscape_job.runtime.precision import AUTOCAST, device_capability, resolve_precision
from landscape_job.spec.sections import ComputeSpec, DirectionsSpec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic_cifar(images: int, classes: int = 10, seed: int = 0) -> Split:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(images, 3, 32, 32, generator=generator)
    labels = torch.randint(0, classes, (images,), generator=generator)
    return Split(inputs, labels, classes, "train")


def bare_forward_once(model: torch.nn.Module, inputs: torch.Tensor, batch: int, precision: str) -> float:
    """Seconds of one no-grad forward over all inputs: the least a grid point can cost."""
    device = inputs.device
    autocast = torch.autocast(device.type, dtype=AUTOCAST.get(precision, torch.bfloat16), enabled=precision in AUTOCAST)
    with torch.no_grad(), autocast:
        _sync(device)
        start = time.perf_counter()
        for s in range(0, len(inputs), batch):
            model(inputs[s:s + batch])
        _sync(device)
    return time.perf_counter() - start


def round_points(i: int, rounds: int, k: int) -> list[tuple[float, float]]:
    """The K grid points of round i (distinct, so a group really holds K different models)."""
    return [(-0.5 + i / max(1, rounds) + 0.01 * j, 0.25) for j in range(k)]


def evaluate_once(evaluator: Evaluator, points: list[tuple[float, float]]) -> tuple[float, list[float]]:
    """Seconds per point over one group of points, and their train losses."""
    _sync(evaluator.device)
    start = time.perf_counter()
    losses = [r["train_loss"] for r in evaluator.evaluate_many(points)]
    _sync(evaluator.device)
    return (time.perf_counter() - start) / len(points), losses


def interleaved(model: torch.nn.Module, inputs: torch.Tensor, evaluator: Evaluator, batch: int,
                precision: str, rounds: int) -> tuple[float, float, list[float]]:
    """Median ceiling and evaluator times, measured alternately so that load from anything
    else on the machine falls on both alike; the first round warms up and is dropped."""
    ceiling, point, losses = [], [], []
    k = evaluator.points_per_forward or 1
    for i in range(rounds + 1):
        c = bare_forward_once(model, inputs, batch, precision)
        p, group_losses = evaluate_once(evaluator, round_points(i, rounds, k))
        if i:
            ceiling.append(c)
            point.append(p)
            losses.extend(group_losses)
    return statistics.median(ceiling), statistics.median(point), losses


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"])
    parser.add_argument("--batch-sizes", default="128,256,512,1024,2000")
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--points-per-forward", default="1",
                        help="K grid points per vmapped forward, or auto (compute.points_per_forward)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward (compute.compile)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--stream", action="store_true",
                        help="keep the data in (pinned) host memory and stream batches (compute.data_on_device: false)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:  # bf16 on a GPU before Ampere: the evaluator refuses it, and so does the benchmark
        resolve_precision(args.precision, device.type, device_capability(device))
    except UserError as err:
        print(f"precision refused: {err}")
        raise SystemExit(2) from None
    torch.backends.cudnn.benchmark = device.type == "cuda"
    configure_precision(args.precision)

    split = synthetic_cifar(args.images)
    model = build_model(args.model, 10, (3, 32, 32)).eval()
    directions = build_directions(DirectionsSpec(type="random", seed=0), model, two_d=True)

    inputs = split.inputs.to(device)
    # The evaluator perturbs the model in place; the ceiling runs on an unperturbed copy.
    bare = build_model(args.model, 10, (3, 32, 32)).eval().to(device)
    bare.load_state_dict(model.state_dict())
    batches = [int(b) for b in args.batch_sizes.split(",")]
    by_batch = {}
    for b in batches:
        passes = [bare_forward_once(bare, inputs, b, args.precision) for _ in range(3)]
        by_batch[b] = statistics.median(passes[1:])  # the first pass builds this shape's kernels
    best_batch = min(by_batch, key=by_batch.get)
    k = args.points_per_forward if args.points_per_forward == "auto" else int(args.points_per_forward)
    channels_last = {"auto": "auto", "true": True, "false": False}[args.channels_last]
    compute = ComputeSpec(precision=args.precision, batch_size=best_batch, points_per_forward=k,
                          data_on_device=not args.stream, channels_last=channels_last, compile=args.compile)
    evaluator = Evaluator(model, directions, [split], compute=compute, device=device)
    evaluator.warm_up()
    ceiling, per_point, losses = interleaved(bare, inputs, evaluator, best_batch, args.precision, args.points)
    deviation = None
    if args.precision != "fp32":
        configure_precision("fp32")
        # The same weights as the measured model (a fresh build_model is another random init).
        centre = build_model(args.model, 10, (3, 32, 32)).eval()
        centre.load_state_dict(bare.state_dict())
        reference = Evaluator(centre, directions, [split], device=device,
                              compute=ComputeSpec(precision="fp32", batch_size=best_batch, points_per_forward=1))
        group = evaluator.points_per_forward or 1
        ref_losses = [loss for i in range(1, args.points + 1)
                      for loss in evaluate_once(reference, round_points(i, args.points, group))[1]]
        deviation = max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses))

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"model {args.model}, {args.images} images 3x32x32, precision {args.precision}")
    print(f"evaluator: {evaluator.points_per_forward} point(s) per forward, data "
          f"{'resident' if evaluator.data_resident else 'streamed'}, channels_last {evaluator.channels_last}, "
          f"compile {'%.1fs (not in the per-point time)' % evaluator.compile_seconds if args.compile else 'off'}")
    print("bare forward by batch size (median of 2 after a warm-up): " + ", ".join(f"{b}: {t:.4f}s" for b, t in by_batch.items()))
    print(f"ceiling (batch {best_batch}, median of {args.points} interleaved): {ceiling:.4f} s/pass")
    print(f"evaluator: {per_point:.4f} s/point = {1 / per_point:.2f} points/s")
    print(f"ratio evaluator/ceiling: {per_point / ceiling:.3f}")
    print(f"peak memory: {peak_memory_mb(device):.0f} MiB")
    if deviation is not None:
        print(f"largest relative loss deviation from fp32: {deviation:.2e}")


if __name__ == "__main__":
    main()
