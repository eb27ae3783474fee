"""The Python API's fixed cost on a small problem, side by side with loss-landscapes.

An 11 x 11 plane of a small MLP on 2,000 samples, filter-normalised random directions,
the mean loss at each point: ``landscape_job.api.plane`` vs ``loss_landscapes.random_plane``
(which is not a dependency: install it somewhere outside the repository and put it on
PYTHONPATH, e.g. ``pip install --target /tmp/ll-site loss-landscapes``). Each is timed
``--repeat`` times in this process after one untimed warm-up call (imports, first-call
set-up), and the median reported; ``--cold`` also times the first call; ``--fresh`` times a new
process's import and first call (apart, and their sum), as a script or a new kernel pays them.

    PYTHONPATH=/tmp/ll-site python benchmarks/api_overhead.py
    PYTHONPATH=/tmp/ll-site python benchmarks/api_overhead.py --fresh --base /path/to/other/checkout  # side by side
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn


def problem(samples: int = 2000, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    X = torch.randn(samples, 64)
    y = torch.randint(0, 10, (samples,))
    return model, X, y


def ours(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> None:
    from landscape_job.api import plane

    plane(model, (X, y), x="-1:1:11", y="-1:1:11", metrics=["loss"], progress=False)


def theirs(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> None:
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    loss_landscapes.random_plane(model, Loss(nn.CrossEntropyLoss(), X, y), distance=1, steps=11,
                                 normalization="filter", deepcopy_model=True)


def timed(fn, *args, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return times


#: What each tool's first call imports, timed apart from the call in ``--fresh``.
IMPORTS = {"ours": "import landscape_job.api.compute", "theirs": "import loss_landscapes, loss_landscapes.metrics"}


def fresh(name: str, samples: int, threads: int, tree: str | None = None) -> tuple[float, float]:
    """One call in a new process, after ``import torch`` (not timed): the tool's own import and
    its first call, timed apart, as a script or a new notebook kernel pays them. ``tree``: a
    checkout whose ``landscape_job`` to import instead (first on PYTHONPATH)."""
    import os
    import subprocess
    import sys

    code = (f"import sys, time, torch; torch.set_num_threads({threads}); sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from api_overhead import problem, {name}; model, X, y = problem({samples}); "
            f"t = time.perf_counter(); {IMPORTS[name]}; i = time.perf_counter(); {name}(model, X, y); "
            f"print(i - t, time.perf_counter() - i)")
    env = None if tree is None else {**os.environ, "PYTHONPATH": os.pathsep.join(
        [tree, *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    imported, called = out.strip().splitlines()[-1].split()
    return float(imported), float(called)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000, help="data set size (smaller: the fixed cost shows more)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the two compared on one core)")
    parser.add_argument("--cold", action="store_true", help="also time each one's first call (imports included)")
    parser.add_argument("--fresh", action="store_true",
                        help="time import + first call in a new process each (--repeat of each, alternating)")
    parser.add_argument("--base", metavar="TREE",
                        help="with --fresh: also time the API of another checkout (e.g. `git worktree` of main) in "
                             "the same rounds, side by side")
    args = parser.parse_args()
    if args.fresh:
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "theirs": [], **({"base": []} if args.base else {})}
        for _ in range(args.repeat):
            for name in runs:
                runs[name].append(fresh("ours" if name == "base" else name, args.samples, args.threads,
                                        args.base if name == "base" else None))
        labels = [("ours", "landscape_job.api.plane"), ("theirs", "loss_landscapes.random_plane"),
                  *([("base", f"base: {Path(args.base).name}")] if args.base else [])]
        for name, label in labels:
            totals = [a + b for a, b in runs[name]]
            print(f"{label:30s} fresh process: median {statistics.median(totals):.3f} s  "
                  f"(min {min(totals):.3f}, max {max(totals):.3f}, {args.repeat} runs; import "
                  f"{statistics.median(a for a, _ in runs[name]):.3f} s, first call "
                  f"{statistics.median(b for _, b in runs[name]):.3f} s)")
        reference = statistics.median(a + b for a, b in runs["theirs"])
        print(f"ratio of medians: {statistics.median(a + b for a, b in runs['ours']) / reference:.2f}"
              + (f" (base: {statistics.median(a + b for a, b in runs['base']) / reference:.2f})" if args.base else ""))
        return
    torch.set_num_threads(args.threads)
    model, X, y = problem(args.samples)
    for name, fn in (("landscape_job.api.plane", ours), ("loss_landscapes.random_plane", theirs)):
        start = time.perf_counter()
        fn(model, X, y)
        first = time.perf_counter() - start
        times = timed(fn, model, X, y, repeat=args.repeat)
        print(f"{name:30s} median {statistics.median(times):.3f} s  (min {min(times):.3f}, max {max(times):.3f}, "
              f"{args.repeat} runs)" + (f"; first call {first:.3f} s" if args.cold else ""))


if __name__ == "__main__":
    main()
