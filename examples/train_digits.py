"""Trains two small CNNs on scikit-learn's digits, from two seeds, for the demo specs.

The README's main command runs this first; it skips checkpoints that already exist.
Each takes a few seconds on two CPU cores. The two runs differ only in their seed, so
the interpolation between them shows the barrier between two independent minima. The
first run also keeps its weights every other epoch under ``trajectory/``, the training
path that ``examples/digits-pca.yaml`` projects onto its PCA plane.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from landscape_job.models.checkpoints import save_checkpoint
from landscape_job.datasets.builtin import load_split
from landscape_job.models import build_model
from landscape_job.spec.sections import DataSpec

ARCH = "cnn"


def fit(seed: int, epochs: int, trajectory: Path | None = None, every: int = 2) -> torch.nn.Module:
    """The CNN trained on the digits' train split, in memory (in eval mode); ``trajectory``:
    a folder that keeps its weights every ``every`` epochs."""
    torch.manual_seed(seed)
    train_split = load_split(DataSpec(dataset="digits"), "train")
    model = build_model(ARCH, train_split.num_classes, tuple(train_split.inputs.shape[1:]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_split.labels), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(train_split.inputs[batch]), train_split.labels[batch]).backward()
            optimizer.step()
        if trajectory is not None and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            save_checkpoint(model, trajectory / f"epoch_{epoch + 1}.pt", epoch=epoch + 1, seed=seed)
    return model.eval()


def train(seed: int, epochs: int, out: Path, trajectory: Path | None = None, every: int = 2) -> None:
    started = time.time()
    model = fit(seed, epochs, trajectory, every)
    test_split = load_split(DataSpec(dataset="digits"), "test")
    with torch.no_grad():
        acc = (model(test_split.inputs).argmax(1) == test_split.labels).float().mean().item() * 100
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out, epoch=epochs, seed=seed, test_acc=acc)
    print(f"trained {out} (seed {seed}, {epochs} epochs, test accuracy {acc:.1f}%, {time.time() - started:.1f}s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "checkpoints")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--force", action="store_true", help="retrain even if the checkpoints exist")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for seed, name in ((0, "digits-cnn-a.pt"), (1, "digits-cnn-b.pt")):
        path = args.out / name
        trajectory = args.out / "trajectory" if seed == 0 else None
        if path.exists() and not args.force and (trajectory is None or trajectory.is_dir()):
            print(f"{path} exists; keeping it (--force retrains)")
            continue
        train(seed, args.epochs, path, trajectory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
