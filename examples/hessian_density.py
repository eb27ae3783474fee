"""The Hessian's eigenvalue density of the demo's digits CNN at θ* (stochastic Lanczos quadrature).

    python examples/train_digits.py            # the demo's checkpoints (seconds)
    python examples/hessian_density.py         # docs/images/digits-cnn-density.png

The Hessian of the mean cross-entropy over the 1,438 train digits, over every tensor
(``ignore="none"``; the default ``biasbn`` leaves the biases out, as the paper does, and
the result says which tensors it covered), 4 probes of 80 Lanczos steps each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from landscape_job import api as ls
from landscape_job.datasets.builtin import load_split
from landscape_job.models import build_model
from landscape_job.models.checkpoints import load_state_dict
from landscape_job.spec.sections import DataSpec

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=HERE / "checkpoints" / "digits-cnn-a.pt")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "images" / "digits-cnn-density.png")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--probes", type=int, default=4)
    args = parser.parse_args()
    train = load_split(DataSpec(dataset="digits"), "train")
    model = build_model("cnn", train.num_classes, tuple(train.inputs.shape[1:]))
    model.load_state_dict(load_state_dict(args.checkpoint))
    started = time.time()
    curvature = ls.hessian(model, (train.inputs, train.labels), ignore="none", density_steps=args.steps,
                           density_probes=args.probes, trace_samples=0)
    print(f"λmax {curvature.max_eig:.4g}, λmin {curvature.min_eig:.4g}, SLQ trace {curvature.density.trace:.4g}, "
          f"{curvature.describe()}; {time.time() - started:.0f} s")
    figure = curvature.plot()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110, facecolor="white")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
