"""Trains a small tanh network on scikit-learn's digits by full-batch gradient descent, at the edge of stability.

The series example (``examples/digits-series.yaml``) reads the checkpoints this writes:
``--every`` steps under ``checkpoints/eos/step_<n>.pt``. Full-batch GD on the squared
error at learning rate η: the top Hessian eigenvalue (sharpness) rises during training
(progressive sharpening) until it reaches 2/η, then hovers there while the loss keeps
falling, non-monotonically (the edge of stability, Cohen et al., ICLR 2021). In float64
on the whole train split (1,438 samples) 800 steps take about six seconds on two idle cores.

``--sharpness N`` also prints λmax every N steps (a few power iterations on exact
Hessian-vector products), to check a learning rate before building the series.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "eos"))
from eos_net import half_squared_error, tanh_mlp  # noqa: E402

from landscape_job.models.checkpoints import save_checkpoint  # noqa: E402
from landscape_job.datasets.builtin import load_split  # noqa: E402
from landscape_job.spec.sections import DataSpec  # noqa: E402

HIDDEN = (32, 32)


def sharpness(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, iterations: int = 20) -> float:
    """λmax of the mean loss's Hessian by power iteration (the top eigenvalue is the largest in size here)."""
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]
    value = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        grads = torch.autograd.grad(half_squared_error(model(inputs), labels).mean(), params, create_graph=True)
        hv = torch.autograd.grad(sum((g * x).sum() for g, x in zip(grads, v)), params)
        value = float(sum((h * x).sum() for h, x in zip(hv, v)))
        v = [h.detach() for h in hv]
    return value


def train(out: Path, lr: float, steps: int, every: int, seed: int = 0, subset: int | None = None,
          check_every: int = 0, log=print) -> list[tuple[int, float]]:
    """Full-batch GD; saves step_<n>.pt every ``every`` steps (0 and the last included).

    Returns (step, λmax) pairs when ``check_every`` is set (else an empty list).
    """
    torch.manual_seed(seed)
    split = load_split(DataSpec(dataset="digits", subset=subset), "train")  # the spec's data.subset: the same samples
    inputs, labels = split.inputs.double(), split.labels
    model = tanh_mlp(hidden=HIDDEN).double()
    out.mkdir(parents=True, exist_ok=True)
    checks = []
    started = time.time()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            save_checkpoint(model, out / f"step_{step}.pt", step=step, lr=lr)
        if check_every and step % check_every == 0:
            checks.append((step, sharpness(model, inputs, labels)))
            log(f"step {step}: λmax {checks[-1][1]:.3f} (2/η = {2 / lr:.3f})")
        if step == steps:
            break
        model.zero_grad()
        loss = half_squared_error(model(inputs), labels).mean()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    log(f"trained {steps} steps at η = {lr} in {time.time() - started:.1f}s; final train loss {loss.item():.4f}; "
        f"checkpoints in {out}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "checkpoints" / "eos")
    parser.add_argument("--lr", type=float, default=0.16, help="η (2/η = 12.5)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=20, help="save a checkpoint every N steps")
    parser.add_argument("--sharpness", type=int, default=0, metavar="N", help="print λmax every N steps")
    args = parser.parse_args()
    train(args.out, args.lr, args.steps, args.every, check_every=args.sharpness)
    return 0


if __name__ == "__main__":
    sys.exit(main())
