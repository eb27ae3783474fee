# %% [markdown]
# # Loss landscapes from a notebook
#
# The Python API on an in-memory model: train two small CNNs on scikit-learn's digits,
# draw the loss surface around one of them and the interpolation between the two, plot
# both and save them as `surface.h5` files (the paper's layout, as `launcher pull` gives).
# Each `# %%` is a notebook cell (VS Code, Jupytext); as a script it runs them in order:
#
#     python examples/notebook.py                      # about a minute on two CPU cores
#     python examples/notebook.py --epochs 2 --points 4 --subset 256 --out /tmp/nb   # seconds (the tests)

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape_job import api as ls
from landscape_job.models.checkpoints import save_checkpoint
from landscape_job.datasets.builtin import load_split  # noqa: E402
from landscape_job.spec.sections import DataSpec  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_digits import fit  # noqa: E402


def main(out: Path, epochs: int = 20, points: int = 21, subset: int | None = None,
         progress: bool = True) -> dict[str, ls.Landscape]:
    out.mkdir(parents=True, exist_ok=True)

    # %% The data: any (inputs, labels) tensors, Dataset or DataLoader; here the digits' splits
    # (``subset``: the seeded subset a spec's data.subset takes, to be quick).
    train, test = (load_split(DataSpec(dataset="digits", subset=subset), s) for s in ("train", "test"))
    data = {"train": (train.inputs, train.labels), "test": (test.inputs, test.labels)}

    # %% Two CNNs trained in memory from two seeds (a few seconds each).
    model_a, model_b = fit(seed=0, epochs=epochs), fit(seed=1, epochs=epochs)

    # %% A 2-D surface around model_a: filter-normalised random directions (seed 0).
    plane = ls.plane(model_a, data, x=f"-1:1:{points}", y=f"-1:1:{points}", seed=0, progress=progress)
    print(plane, "lowest train loss", float(plane["train_loss"].min()))

    # %% The straight line from model_a (α = 0) to model_b (α = 1): the barrier between two minima.
    curve = ls.interpolate(model_a, model_b, data, x=f"-0.5:1.5:{points}", progress=progress)
    print(curve, "train loss at α = 0.5:", float(curve["train_loss"][len(curve.x) // 2]))

    # %% Plot: matplotlib figures, to show or to save.
    for landscape in (plane, curve):
        for stem, figure in landscape.plot().items():
            figure.savefig(out / f"{stem}.png", dpi=100)

    # %% Save: surface.h5 files that `launcher plot` and the paper's tools read; the
    # checkpoints too, so a CLI run can recompute the same surfaces (tests/api/test_api.py does).
    plane.save(out / "plane.h5")
    curve.save(out / "interpolation.h5")
    save_checkpoint(model_a, out / "digits-cnn-a.pt")
    save_checkpoint(model_b, out / "digits-cnn-b.pt")
    return {"plane": plane, "interpolation": curve}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The Python API on the digits CNN, notebook-style.")
    parser.add_argument("--out", type=Path, default=Path("notebook-out"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--points", type=int, default=21, help="grid lines per axis")
    parser.add_argument("--subset", type=int, help="evaluate on this many samples of each split")
    args = parser.parse_args()
    main(args.out, args.epochs, args.points, args.subset)
