"""A language model's grid points on one device: seconds per point, tokens/s, peak memory and
model FLOPs utilisation, with seeded directions and with a direction file (issue 23, item 10).

    python benchmarks/lm_speed.py --directions seeded                  # ~1.1B Llama-style, bf16, CUDA
    python benchmarks/lm_speed.py --directions file --points 5
    python benchmarks/lm_speed.py --smoke --directions seeded          # a tiny one on the CPU

The model is ``lm_models.llama`` (random init; TinyLlama's widths, 16 layers: ~1.1B
parameters), held in ``--weights`` (bf16) as ``compute.weights`` holds it; the data is
``--sequences`` random sequences of ``--context`` tokens. "setup" is what the directions cost
before the first point: seeded, generated per tensor on the CPU and moved to the device
(``surface.seeded``); file, the paper's direction file written, read back and moved, as
prepare and an evaluate pod do through storage.

MFU counts the forward's matmul FLOPs per point, 2·N·T (N: the parameters of the blocks,
embeddings left out as lookups; T: tokens) + 2·L·T·C·d for causal attention (L layers,
C context, d width) + the head at the last position, against ``--peak-tflops`` (default
989, an H100/H200 SXM's dense bf16; 0 leaves MFU out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_models import llama, tokens  # noqa: E402

from landscape_job.datasets.builtin import Split  # noqa: E402
from landscape_job.runtime.memory import peak_device_bytes, peak_host_rss_bytes, reset_device_peak  # noqa: E402
from landscape_job.spec.sections import ComputeSpec, DirectionsSpec  # noqa: E402
from landscape_job.surface.directions import direction_file_bytes, load_directions  # noqa: E402
from landscape_job.surface.evaluator import Evaluator  # noqa: E402
from landscape_job.surface.seeded import materialize, recipe_for  # noqa: E402

SMOKE = {"vocab": 256, "width": 64, "layers": 2, "heads": 4, "context": 32, "hidden": 128}


def _flops(size: dict, sequences: int, context: int, params: int) -> float:
    embeddings = 2 * size["vocab"] * size["width"] + size["context"] * size["width"]  # tokens, positions, head
    tokens_ = sequences * context
    return (2 * (params - embeddings) * tokens_ + 2 * size["layers"] * tokens_ * context * size["width"]
            + 2 * sequences * size["vocab"] * size["width"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--directions", choices=("seeded", "file"), default="seeded")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on the CPU: the pipeline, not numbers")
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights", choices=("fp32", "bf16", "fp16"), default="bf16")
    parser.add_argument("--sequences", type=int, default=None)
    parser.add_argument("--context", type=int, default=None)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    size = dict(SMOKE) if args.smoke else {"vocab": 32000, "width": 2048, "layers": 16, "heads": 16,
                                            "context": 2048, "hidden": 5632}
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    sequences = args.sequences or (2 if args.smoke else 8)
    context = args.context or size["context"]
    torch.manual_seed(0)
    model = llama(**size).eval()
    params = sum(p.numel() for p in model.parameters())
    inputs, labels = tokens(size["vocab"], context, sequences).tensors
    split = Split(name="train", inputs=inputs, labels=labels, num_classes=size["vocab"])
    print(f"model: llama-style, {params:,} parameters, weights {args.weights}; {sequences} x {context} = "
          f"{sequences * context:,} tokens a point; device {device}")

    started = time.monotonic()
    recipe = recipe_for(DirectionsSpec(storage="seeded", seed=0), model, two_d=True)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.weights]
    if args.directions == "seeded":
        directions = materialize(recipe, model, device, dtype)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "directions.h5"
            path.write_bytes(direction_file_bytes(materialize(recipe, model), {}))
            file_bytes = path.stat().st_size
            directions = load_directions(path.read_bytes(), str(path))
        print(f"direction file: {file_bytes / 2**20:,.0f} MiB")
    setup = time.monotonic() - started
    print(f"setup ({args.directions} directions): {setup:.1f} s")

    precision = "bf16" if device.type == "cuda" and args.weights == "bf16" else "fp32"
    compute = ComputeSpec(precision=precision, batch_size=sequences, points_per_forward=1, weights=args.weights)
    evaluator = Evaluator(model, directions, [split], compute=compute, device=device)
    del directions
    evaluator.warm_up()
    evaluator.evaluate(0.0, 0.0)
    reset_device_peak(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.monotonic()
    for i in range(args.points):
        values = evaluator.evaluate(0.1 * (i + 1), -0.05 * i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_point = (time.monotonic() - start) / args.points
    peak = peak_device_bytes(device) if device.type == "cuda" else peak_host_rss_bytes()
    print(f"loss at the last point: {values['train_loss']:.4f}")
    print(f"lm: {per_point:.4f} s/point")
    print(f"lm tokens/s: {sequences * context / per_point:,.0f}")
    print(f"lm peak memory: {peak / 2**20:,.0f} MiB ({'device' if device.type == 'cuda' else 'host RSS'})")
    if args.peak_tflops > 0 and device.type == "cuda":
        mfu = _flops(size, sequences, context, params) / per_point / (args.peak_tflops * 1e12)
        print(f"lm MFU: {100 * mfu:.1f}%")
    else:
        print("lm MFU: n/a")


if __name__ == "__main__":
    main()
