"""The pod contract through real processes: the local backend, and workers killed with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import SYNTHETIC, checkpointed_points, run_all, save_linear_checkpoint, spec_from, write_spec
from landscape_job import stages
from landscape_job.forkserver import shared
from launcher.cli import main as launcher
from launcher.local.runner import open_run

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {m: f[m][()] for m in METRICS}


@pytest.mark.slow
def test_submit_local_runs_the_pod_entrypoints(tmp_path: Path, linear_spec: dict, capsys) -> None:
    linear_spec["compute"]["shards"] = 3
    path = write_spec(tmp_path, linear_spec)
    assert launcher(["submit", str(path), "--local", "--run-id", "loc", "--workers", "2"]) == 0
    out = capsys.readouterr()
    run_dir = tmp_path / "runs" / "loc"
    assert f"done: file://{run_dir}/surface.h5" in out.out
    assert "20/20 points" in out.err
    for name in ("prepare.log", "evaluate-0.log", "evaluate-1.log", "evaluate-2.log", "merge.log"):
        assert (run_dir / "logs" / name).is_file(), name
    assert "shard 2 of 3" in (run_dir / "logs/evaluate-2.log").read_text()  # JOB_COMPLETION_INDEX reached it
    for shard in range(3):
        progress = json.loads((run_dir / f"shards/shard-{shard}-of-3.progress.json").read_text())
        assert progress["state"] == "done" and progress["done"] == progress["total"]
    report = json.loads((run_dir / "report.json").read_text())
    assert len(report["shards"]) == 3 and "plots/train_loss_2d_contour.png" in report["outputs"]
    assert (run_dir / "plots/train_loss_2d_contour.png").stat().st_size > 10_000

    reference = open_run(spec_from(tmp_path, linear_spec), "inproc")
    run_all(reference, 3)
    got, want = _arrays(run_dir / "surface.h5"), _arrays(tmp_path / "runs/inproc/surface.h5")
    for metric in METRICS:
        np.testing.assert_allclose(got[metric], want[metric], rtol=1e-12)

    # The same run id and spec, once the run is Complete: nothing runs (no stage is started: every log and the
    # run's record stay as they were), and the result is named as before. A shard's own "already complete" is
    # test_sharding's.
    logs = {p.name: p.read_bytes() for p in (run_dir / "logs").iterdir()}
    record = (run_dir / "local.json").read_bytes()
    capsys.readouterr()
    assert launcher(["submit", str(path), "--local", "--run-id", "loc"]) == 0
    again = capsys.readouterr()
    assert "run loc is already complete; nothing to run" in again.err and f"done: file://{run_dir}/surface.h5" in again.out
    assert {p.name: p.read_bytes() for p in (run_dir / "logs").iterdir()} == logs
    assert (run_dir / "local.json").read_bytes() == record

    # The same run id with another spec is refused, and the run is left as it was (checked on this run rather
    # than on a whole run of its own: ~10 s of CPU).
    capsys.readouterr()
    stored = (run_dir / "spec.yaml").read_bytes()
    linear_spec["directions"]["seed"] = 123
    other = write_spec(tmp_path, linear_spec, "other.yaml")
    assert launcher(["submit", str(other), "--local", "--run-id", "loc"]) == 2
    assert "--run-id loc: that run exists with a different spec" in capsys.readouterr().err
    assert (run_dir / "spec.yaml").read_bytes() == stored


def _evaluate_args(run_url: str) -> list[str]:
    return ["--run", run_url, "evaluate", "--shard", "0", "--log-points"]


def _points_logged(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.startswith("point "))


@pytest.mark.slow
def test_sigkilled_worker_resumes_to_the_identical_surface(tmp_path: Path, linear_spec: dict,
                                                           one_torch_thread: None) -> None:
    """Five SIGKILLs at random moments; each loses at most one checkpoint interval, and the
    final surface is bit-identical to an uninterrupted evaluate of the shard. That one runs in this
    process (the stage function the workers run, at their one torch thread: the same numbers, and one
    interpreter's start-up less); the shard it is compared with is computed only by the worker processes.
    (30 points: each attempt is a process start-up plus a few points, so more points only cost time.) The
    workers are forked as a local run forks its stages (landscape_job.forkserver), at its one torch thread."""
    every = 5
    save_linear_checkpoint(tmp_path / "wide.pt", seed=0, hidden=[64, 64])
    linear_spec["model"] = {"arch": "mlp", "checkpoint": "wide.pt", "kwargs": {"hidden": [64, 64]}}
    linear_spec["data"]["options"] = {**SYNTHETIC, "train_size": 1000, "test_size": 200}
    linear_spec["grid"] = {"x": "-1:1:6", "y": "-1:1:5"}
    linear_spec["compute"].update(shards=1, checkpoint_every=every, checkpoint_seconds=3600, precision="fp32",
                                  checkpoint_adapt=False)
    spec = spec_from(tmp_path, linear_spec)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    reference = open_run(spec, "reference")
    stages.prepare(reference, log=lambda _: None)
    stages.evaluate(reference, 0, log=lambda _: None)  # one torch thread, as the workers (one_torch_thread)

    run = open_run(spec, "killed")
    stages.prepare(run, log=lambda _: None)
    rng = random.Random(20261124)
    targets = sorted(rng.sample(range(3, spec.grid.size - 8), 5))  # 8 points of margin: a late kill still lands
    kills = 0
    for attempt, target in enumerate(targets):
        before = checkpointed_points(run, 0, 1)
        if target <= before:
            continue
        log = tmp_path / f"attempt-{attempt}.log"
        with open(log, "w") as handle:
            process = shared(env).start(_evaluate_args(run.url), env, stdout=handle.fileno())
            deadline = time.monotonic() + 120
            while before + _points_logged(log) < target and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode == -signal.SIGKILL, log.read_text()[-2000:]
        kills += 1
        after = checkpointed_points(run, 0, 1)
        computed = _points_logged(log)
        lost = before + computed - after
        assert 0 <= lost <= every, (before, computed, after)
    assert kills >= 4

    with open(tmp_path / "final.log", "w") as handle:
        assert shared(env).start(_evaluate_args(run.url), env, stdout=handle.fileno()).wait(timeout=120) == 0
    assert "already done (resumed)" in (tmp_path / "final.log").read_text()
    stages.merge(run, log=lambda _: None, plots=False)
    stages.merge(reference, log=lambda _: None, plots=False)
    got, want = _arrays(tmp_path / "runs/killed/surface.h5"), _arrays(tmp_path / "runs/reference/surface.h5")
    for metric in METRICS:
        np.testing.assert_array_equal(got[metric], want[metric])


@pytest.mark.slow
def test_pod_entrypoint_errors_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "landscape_job.cli", "--run", str(tmp_path / "nothing"), "prepare"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no spec.yaml" in result.stderr
    env = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
    result = subprocess.run([sys.executable, "-m", "landscape_job.cli", "--run", str(tmp_path), "evaluate"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "give --shard or set JOB_COMPLETION_INDEX" in result.stderr


@pytest.mark.slow
def test_estimate_projects_from_real_points_and_writes_nothing(tmp_path: Path, linear_spec: dict, capsys) -> None:
    from launcher.estimate import Estimate

    linear_spec["compute"]["shards"] = 4
    # estimate times merge by writing the spec's outputs for a stand-in surface: VTP, not PNGs (no figure is read)
    linear_spec["plot"] = {"formats": ["vtp"]}
    assert launcher(["estimate", str(write_spec(tmp_path, linear_spec)), "--points", "2", "--parallel", "2",
                     "--seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "s per point" in out and "compute: 20 points x" in out and "4 shards, 2 at a time" in out
    assert "start-up" in out and " to " in out
    assert not (tmp_path / "runs").exists()
    est = Estimate(seconds_per_point=0.1, points=2601, shards=16, parallel=8, device="cuda", setup_seconds=30)
    assert est.compute_hours == pytest.approx(2601 * 0.1 / 3600)
    # prepare's setup, then two waves of 8 shards of <=163 points
    assert est.wall_seconds == pytest.approx(30 + 2 * (163 * 0.1 + 30))
    # with each process's start-up (pre-check, prepare, 16 shards, merge), merge's figures and a range
    est = Estimate(seconds_per_point=0.1, points=2601, shards=16, parallel=8, device="cpu", setup_seconds=30,
                   startup_seconds=2, merge_seconds=5, seconds_per_point_low=0.05, seconds_per_point_high=0.2)
    assert est.wall_seconds == pytest.approx(3 * 2 + 30 + 5 + 2 * (163 * 0.1 + 30 + 2))
    assert est.wall_range == pytest.approx((est.wall_for(0.05), est.wall_for(0.2)))
    assert est.wall_range[0] < est.wall_seconds < est.wall_range[1]
