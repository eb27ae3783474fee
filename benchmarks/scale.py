"""What the pipeline itself costs as a grid grows: a model that costs nothing, 10^4 to 10^6 points.

    python benchmarks/scale.py                               # 101², 317², 1001² and the end-to-end run
    python benchmarks/scale.py --sizes 101,317 --end-to-end 0  # per-point costs only
    python benchmarks/scale.py --outputs 1001                  # merge's outputs alone, from a stand-in 1001² surface

The model is ``nn.Linear(4, 2)`` (a ``python:`` factory) on 16 ``tensors`` samples, so
what remains of a point's time is the stage's own: setting θ, the loop, checkpoints,
progress objects. Prints

- per-point cost per shard size: shard 0 of an n×n grid evaluated in this process, its
  ``seconds_per_point`` (the loop's time over its points, checkpoints included), with
  the shard count chosen so a shard holds at most ``--shard-points`` points (the 1001²
  grid: 8 shards of ~125,000), and the ratio of each to the smallest grid's;
- start-up: ``import landscape_job.stages.evaluate_stage`` (torch and all) in a fresh
  interpreter, and the wall time of a whole evaluate stage (``python -m landscape_job.cli ... evaluate``) of a one-point shard;
- end to end: ``launcher submit --local`` of the ``--end-to-end`` grid, its wall time and
  points per second, then merge by output on that run (verifying and reading the
  shards, surface.h5, the plots, surface.vtp, surface.html) with each output's size.

``--outputs N`` times only merge's outputs, from a stand-in N×N surface (a bowl with
evaluation noise, accuracies k/N·100 as a real split gives): surface.h5 plain and
gzip-compressed (chunked, shuffled: is compression worth it?), the figures in PNG alone and
in PDF alone (what leaving PDF out of ``plot.formats`` saves), surface.vtp and surface.html.

Timings are wall-clock on whatever else the machine is doing: run it on a quiet machine,
or read the ratios, which come from the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MODEL = '''import torch


def build():
    return torch.nn.Linear(4, 2)
'''


def _setup(folder: Path) -> None:
    (folder / "code").mkdir()
    (folder / "code" / "tiny.py").write_text(MODEL)
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(4, 2).state_dict(), folder / "tiny.pt")
    (folder / "data").mkdir()
    for split, seed in (("train", 1), ("test", 2)):
        generator = torch.Generator().manual_seed(seed)
        torch.save({"inputs": torch.randn(16, 4, generator=generator),
                    "labels": torch.randint(0, 2, (16,), generator=generator)}, folder / "data" / f"{split}.pt")


def _spec(folder: Path, n: int, shards: int, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""name: {name}
python: {{path: [code]}}
model: {{arch: "python:tiny:build", checkpoint: tiny.pt}}
data: {{dataset: tensors, root: data, classes: 2}}
directions: {{type: random, seed: 0, ignore: none}}
grid: {{x: "-1:1:{n}", y: "-1:1:{n}"}}
compute: {{shards: {shards}, precision: fp32, device: cpu}}
storage: runs
""")
    return path


def _shards_for(n: int, shard_points: int) -> int:
    return max(1, math.ceil(n * n / shard_points))


def per_point(folder: Path, sizes: list[int], shard_points: int) -> None:
    from landscape_job import stages
    from landscape_job.spec.parse import load_spec
    from launcher.local.runner import open_run

    quiet = lambda _msg: None  # noqa: E731
    print("per-point cost by shard size (shard 0, in this process, checkpoints included):")
    first = None
    for n in sizes:
        shards = _shards_for(n, shard_points)
        spec = load_spec(_spec(folder, n, shards, f"pp{n}"))
        run = open_run(spec, f"pp{n}")
        stages.prepare(run, log=quiet)
        started = time.perf_counter()
        record = stages.evaluate(run, 0, log=quiet)
        wall = time.perf_counter() - started
        us = record.seconds_per_point * 1e6
        first = first or us
        print(f"  {n}x{n} ({shards} shards): shard of {record.points_computed} points: {us:.1f} us/point "
              f"({us / first:.2f}x the {sizes[0]}x{sizes[0]} cost); stage {wall:.1f}s")


def start_up(folder: Path) -> None:
    print("start-up (median of 3, fresh interpreters):")
    env = dict(os.environ, MPLBACKEND="Agg")
    times = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import landscape_job.stages.evaluate_stage"], check=True, env=env)
        times.append(time.perf_counter() - began)
    print(f"  python -c 'import landscape_job.stages.evaluate_stage': {statistics.median(times):.2f}s")
    from landscape_job import stages
    from landscape_job.spec.parse import load_spec
    from launcher.local.runner import open_run

    spec = load_spec(_spec(folder, 3, 9, "startup"))
    run = open_run(spec, "startup")
    stages.prepare(run, log=lambda _m: None)
    times = []
    for shard in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "landscape_job.cli", "--run", run.url, "evaluate", "--shard",
                        str(shard)], check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - began)
    print(f"  a whole evaluate stage of a one-point shard: {statistics.median(times):.2f}s")


def end_to_end(folder: Path, n: int, shard_points: int) -> None:
    shards = _shards_for(n, shard_points)
    spec_path = _spec(folder, n, shards, f"e2e{n}")
    env = dict(os.environ, MPLBACKEND="Agg")
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "launcher.cli", "submit", str(spec_path), "--local", "--run-id",
                    f"e2e{n}"], check=True, env=env, cwd=folder, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    print(f"end to end: launcher submit --local, {n}x{n} = {n * n} points, {shards} shards, "
          f"{os.cpu_count()} cores: {wall:.1f}s, {n * n / wall:.0f} points/s")
    merge_by_output(folder, spec_path, f"e2e{n}")


def merge_by_output(folder: Path, spec_path: Path, run_id: str) -> None:
    from landscape_job.outputs.exports import write_exports
    from landscape_job.plots import PlotOptions, plot_surface
    from landscape_job.spec.parse import load_spec
    from landscape_job.stages import read_manifest
    from landscape_job.stages.merge_stage import collect_shards
    from landscape_job.surface.provenance import surface_attrs
    from landscape_job.surface.file import surface_bytes
    from launcher.local.runner import open_run

    spec = load_spec(spec_path)
    run = open_run(spec, run_id)
    print(f"merge by output ({spec.grid.size} points, {spec.compute.shards} shards):")
    began = time.perf_counter()
    manifest = read_manifest(run)
    flat, _stats = collect_shards(run, spec, manifest.direction_hash)
    print(f"  read and verify the shards: {time.perf_counter() - began:.2f}s")
    began = time.perf_counter()
    raw = surface_bytes(spec.grid, flat, surface_attrs(spec, manifest))
    print(f"  surface.h5: {time.perf_counter() - began:.2f}s, {len(raw) / 1e6:.1f} MB")
    options = PlotOptions.from_spec(spec.plot)
    with tempfile.TemporaryDirectory() as tmp:
        surface = Path(tmp) / "surface.h5"
        surface.write_bytes(raw)
        began = time.perf_counter()
        written = plot_surface(surface, Path(tmp) / "plots", options)
        size = sum(p.stat().st_size for p in written)
        pdf = sum(p.stat().st_size for p in written if p.suffix == ".pdf")
        print(f"  plots: {time.perf_counter() - began:.2f}s, {len(written)} files, {size / 1e6:.1f} MB "
              f"({pdf / 1e6:.1f} MB of PDF)")
        for fmt in ("vtp", "html"):
            began = time.perf_counter()
            out = write_exports(surface, Path(tmp) / "plots", formats=[fmt], options=options)
            print(f"  surface.{fmt}: {time.perf_counter() - began:.2f}s, "
                  f"{sum(p.stat().st_size for p in out) / 1e6:.1f} MB")
    report = __import__("json").loads(run.get("report.json"))
    print(f"  the run's own merge stage (report.json merge_seconds): {report['merge_seconds']:.2f}s")


def stand_in_surface(n: int) -> dict:
    """An n×n surface with what a real one has: smooth losses with evaluation noise in every
    digit, and accuracies that are multiples of 100/samples (1,797 samples, as digits)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, n)
    xx, yy = np.meshgrid(x, x)
    loss = (0.05 + xx ** 2 + 0.5 * yy ** 2) * (1 + 1e-3 * rng.standard_normal((n, n)))
    acc = np.round(1797 * np.clip(1 - loss / 3, 0, 1)) * 100 / 1797
    return {"x": x, "metrics": {"train_loss": loss, "test_loss": 1.1 * loss, "train_acc": acc, "test_acc": acc}}


def outputs(n: int) -> None:
    import h5py

    from landscape_job.outputs.exports import write_exports
    from landscape_job.plots import PlotOptions, plot_surface

    stand_in = stand_in_surface(n)
    print(f"merge's outputs from a stand-in {n}x{n} surface ({n * n} points, 4 metrics):")
    with tempfile.TemporaryDirectory() as tmp:
        for label, options in (("plain (the layout merge writes)", {}),
                               ("chunked, shuffle + gzip 1", {"chunks": True, "shuffle": True,
                                                              "compression": "gzip", "compression_opts": 1})):
            path = Path(tmp) / "surface.h5"
            began = time.perf_counter()
            with h5py.File(path, "w") as f:
                f["xcoordinates"] = stand_in["x"]
                f["ycoordinates"] = stand_in["x"]
                for name, values in stand_in["metrics"].items():
                    f.create_dataset(name, data=values, **options)
            wrote = time.perf_counter() - began
            began = time.perf_counter()
            with h5py.File(path, "r") as f:
                for name in stand_in["metrics"]:
                    f[name][()]
            print(f"  surface.h5 {label}: {path.stat().st_size / 1e6:.1f} MB, written in {wrote:.2f}s, "
                  f"read in {time.perf_counter() - began:.2f}s")
        surface = Path(tmp) / "surface.h5"  # the compressed one: h5py reads it as the plain one
        for fmt in ("png", "pdf"):
            began = time.perf_counter()
            written = plot_surface(surface, Path(tmp) / fmt, PlotOptions(formats=(fmt,)))
            print(f"  figures in {fmt} alone: {time.perf_counter() - began:.2f}s, {len(written)} files, "
                  f"{sum(p.stat().st_size for p in written) / 1e6:.1f} MB")
        for fmt in ("vtp", "html"):
            began = time.perf_counter()
            out = write_exports(surface, Path(tmp) / "exports", formats=[fmt])
            print(f"  surface.{fmt}: {time.perf_counter() - began:.2f}s, "
                  f"{sum(p.stat().st_size for p in out) / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="101,317,1001", help="grid side lengths for the per-point costs")
    parser.add_argument("--shard-points", type=int, default=130_000, help="the most points a shard holds")
    parser.add_argument("--end-to-end", type=int, default=1001, help="side of the end-to-end grid (0: skip)")
    parser.add_argument("--outputs", type=int, default=0, help="only time merge's outputs at this side (0: off)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one local worker's share of a 2-core machine
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.outputs:
        return outputs(args.outputs)
    with tempfile.TemporaryDirectory(prefix="landscape-scale-") as tmp:
        folder = Path(tmp)
        _setup(folder)
        os.chdir(folder)
        start_up(folder)
        per_point(folder, [int(s) for s in args.sizes.split(",")], args.shard_points)
        if args.end_to_end:
            end_to_end(folder, args.end_to_end, args.shard_points)


if __name__ == "__main__":
    main()
