"""Issue 27 end to end: runs submitted with ``--slurm`` to a real one-node Slurm (``slurm_cluster``).

The cluster is Debian's slurmctld and slurmd with a ``gpu`` partition of two dummy GRES
devices, so the evaluate array really is scheduled one GPU a task (two at once); the jobs
run this checkout's virtualenv (``slurm.code: venv``). Each test drives the launcher as a
user does (``launcher submit --slurm``, ``status``, ``wait``, ``cancel``) and checks the
scheduler itself with ``scontrol`` and ``squeue``.

The time-limit run is submitted by a module fixture at the start, so that its minute of
Slurm time overlaps the other runs instead of adding to them.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from conftest import run_all, spec_from
from launcher.api import submit
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from launcher.slurm.record import SLURM_KEY

#: A digits MLP whose forward optionally sleeps: the same numbers, at a pace a test can catch mid-shard.
MODEL_SOURCE = """
import time
import torch.nn as nn

class Pause(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        if self.seconds:
            time.sleep(self.seconds)
        return x

def mlp(delay=0.0):
    return nn.Sequential(Pause(delay), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
"""
# A real Slurm, and whole runs in processes; one xdist worker runs them all, with the one cluster
# of the session (`make test` runs with --dist loadgroup).
pytestmark = [pytest.mark.tools, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

SLURM = {"partition": "gpu", "cpu_partition": "cpu", "cpus": 1, "memory": "1000M", "prepare_merge_cpus": 1,
         "prepare_merge_memory": "1000M"}


def digits_spec(folder: Path, name: str, delay: float = 0.0, shards: int = 2, grid: int = 5,
                **slurm: Any) -> dict[str, Any]:
    """A 5 x 5 digits surface of a small MLP, stored in ``folder/runs``, for the test Slurm."""
    (folder / "slurm_models.py").write_text(textwrap.dedent(MODEL_SOURCE))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    torch.save(model.state_dict(), folder / "mlp.pt")
    return {"name": name, "python": {"path": [str(folder)]},
            "model": {"arch": "python:slurm_models:mlp", "checkpoint": str(folder / "mlp.pt"),
                      "kwargs": {"delay": delay}},
            "data": {"dataset": "digits", "splits": ["train", "test"]},
            "grid": {"x": f"-1:1:{grid}", "y": f"-1:1:{grid}"},
            "compute": {"shards": shards, "device": "cpu", "points_per_forward": 1, "checkpoint_every": 2,
                        "checkpoint_adapt": False},
            "plot": {"formats": ["png"]},  # merge's figures are not what these tests look at: the fewest
            "storage": str(folder / "runs"), "slurm": {**SLURM, **slurm}}


def write(folder: Path, raw: dict[str, Any]) -> Path:
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def surface_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of a surface file."""
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path) as handle:
        handle.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset)
                          else None)
    return arrays


def assert_same_surface(a: Path, b: Path) -> None:
    first, second = surface_arrays(a), surface_arrays(b)
    assert {"xcoordinates", "ycoordinates", "train_loss", "test_acc"} <= set(first) and set(first) == set(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def record(run: Path) -> dict[str, Any]:
    return json.loads((run / SLURM_KEY).read_text())


def scontrol(cluster, job: str) -> list[dict[str, str]]:
    """``scontrol show job -o`` as dicts (only the simple fields the tests read)."""
    out = cluster.run("scontrol", "show", "job", "-o", job)
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.splitlines()]


def until(condition, seconds: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def progress_done(run: Path, shard: int, shards: int) -> int:
    path = run / "shards" / f"shard-{shard}-of-{shards}.progress.json"
    try:
        return json.loads(path.read_text())["done"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slurm-runs")


@pytest.fixture(scope="module")
def time_limit_run(slurm_cluster, work: Path) -> Path:
    """A run whose one shard needs more than its 1-minute limit (a point takes 1.5 s of pauses, 25 points);
    submitted first, checked last. ``signal_seconds: 30``: the stage is warned 30 s before the limit, or
    earlier: Slurm may send it up to 60 s early, which for a 1-minute limit can be as soon as it starts."""
    folder = work / "limit"
    folder.mkdir()
    raw = digits_spec(folder, "limit", delay=0.5, shards=1, evaluate_time=1, signal_seconds=30)
    assert launcher(["submit", str(write(folder, raw)), "--slurm", "--run-id", "limit"]) == 0
    return folder / "runs" / "limit"


def test_a_slurm_surface_equals_the_local_one_bit_for_bit(slurm_cluster, time_limit_run: Path, work: Path,
                                                          capsys) -> None:
    folder = work / "same"
    folder.mkdir()
    raw = digits_spec(folder, "same")
    path = write(folder, raw)
    # The local run of the same spec, in a thread while Slurm runs its copy: its stages in this process
    # (conftest.run_all, submit --local's order). That is submit --local's surface to the bit:
    # tests/storage/test_flaky_run.py checks it for this digits data against a --local run in processes.
    (folder / "ref").mkdir()
    local = threading.Thread(target=run_all, args=(open_run(spec_from(folder / "ref", raw), "here"), 2))
    assert launcher(["submit", str(path), "--slurm", "--run-id", "there"]) == 0
    local.start()
    out = capsys.readouterr().out
    run = folder / "runs" / "there"
    jobs = record(run)
    assert f"evaluate {jobs['evaluate']} (array)" in out

    # While prepare runs, merge waits on its dependency (and so does the array).
    assert launcher(["status", str(run)]) == 0
    status = capsys.readouterr().out
    assert re.search(r"^  merge +Pending +Dependency", status, re.M), status
    evaluate = scontrol(slurm_cluster, jobs["evaluate"])
    assert evaluate[0]["ArrayTaskId"].startswith("0-1") and evaluate[0]["JobState"] == "PENDING"
    assert scontrol(slurm_cluster, jobs["merge"])[0]["Dependency"].startswith(f"afterok:{jobs['evaluate']}")

    assert launcher(["wait", str(run), "--interval", "0.5", "--timeout", "240"]) == 0
    local.join(240)
    assert not local.is_alive()
    assert_same_surface(run / "surface.h5", folder / "runs" / "here" / "surface.h5")
    # Each shard ran as an array task on a "GPU" of the gpu partition, its index from SLURM_ARRAY_TASK_ID.
    for shard in (0, 1):
        task = scontrol(slurm_cluster, f"{jobs['evaluate']}_{shard}")[0]
        assert task["JobState"] == "COMPLETED" and task["Partition"] == "gpu" and task["TresPerTask"] == "gres:gpu:1"
        assert f"shard {shard} of 2" in (run / "logs" / f"evaluate-{shard}.log").read_text()
    capsys.readouterr()
    assert launcher(["status", str(run), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "Complete"
    # Every array task's log, tagged; pull fetches what merge wrote.
    assert launcher(["logs", str(run)]) == 0
    logs = capsys.readouterr().out
    assert all(tag in logs for tag in ("[prepare] ", "[shard 0] landscape: evaluate shard 0",
                                       "[shard 1] landscape: evaluate shard 1", "[merge] "))
    assert launcher(["pull", str(run), str(folder / "pulled")]) == 0
    assert_same_surface(folder / "pulled" / "surface.h5", run / "surface.h5")


def test_a_failed_prepare_ends_the_run_at_once_and_evaluate_never_starts(slurm_cluster, work: Path, capsys) -> None:
    folder = work / "broken"
    folder.mkdir()
    raw = digits_spec(folder, "broken")
    raw["model"]["checkpoint"] = str(folder / "not-there.pt")  # a path only "the nodes" would have
    assert launcher(["submit", str(write(folder, raw)), "--slurm", "--run-id", "broken"]) == 0
    run = folder / "runs" / "broken"
    jobs = record(run)
    capsys.readouterr()
    started = time.monotonic()
    assert launcher(["wait", str(run), "--interval", "0.5", "--timeout", "120"]) == 1
    err = capsys.readouterr().err
    prepare_ended = scontrol(slurm_cluster, jobs["prepare"])[0]
    assert prepare_ended["JobState"] == "FAILED" and prepare_ended["ExitCode"] == "2:0"
    assert "prepare" in err and "exit 2: a user error" in err and "not-there.pt" in err, err
    # The array is cancelled by --kill-on-invalid-dep (about a second after prepare) without a task ever
    # starting; merge too.
    for stage in ("evaluate", "merge"):
        job = until(lambda: next((j for j in scontrol(slurm_cluster, jobs[stage]) if j["JobState"] != "PENDING"),
                                 None), 10, f"{stage} to leave the queue")
        assert job["JobState"] == "CANCELLED" and job["Reason"] == "DependencyNeverSatisfied", job
        assert job["StartTime"] == job["EndTime"]  # cancelled while pending: no run time at all
    assert not list((run / "logs").glob("evaluate-*.log"))
    assert time.monotonic() - started < 60  # the prepare itself is most of it; Slurm ends the rest in ~1 s


def test_a_requeued_evaluate_task_resumes_and_the_surface_is_bit_identical(slurm_cluster, work: Path,
                                                                           capsys) -> None:
    folder = work / "requeue"
    folder.mkdir()
    raw = digits_spec(folder, "requeue", delay=0.1, shards=1)
    # Through the Python handle this time: submit(spec, backend="slurm").
    handle = submit(raw, backend="slurm", run_id="requeue")
    run = folder / "runs" / "requeue"
    assert handle.status().state == "running"
    task = f"{record(run)['evaluate']}_0"
    # The reference, in this process, while Slurm runs its copy (the same spec: the same pauses).
    (folder / "ref").mkdir()
    reference = threading.Thread(target=run_all, args=(open_run(spec_from(folder / "ref", raw), "ref"), 1))
    reference.start()
    until(lambda: progress_done(run, 0, 1) >= 4, 180, "two checkpoint segments of shard 0")
    slurm_cluster.run("scontrol", "requeue", task)
    # Slurm holds a requeued job back for two minutes (BeginTime); release it now, as an admin may.
    until(lambda: scontrol(slurm_cluster, task)[0]["JobState"] == "PENDING", 60, "the task back in the queue")
    slurm_cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now")
    landscape = handle.wait(timeout=240, interval=0.5).pull()
    reference.join(120)
    log = (run / "logs" / "evaluate-0.log").read_text()
    assert "attempt 1" in log and "attempt 2" in log, log
    assert "resum" in log.split("attempt 2")[1].lower(), log  # the second attempt started from the segments
    assert scontrol(slurm_cluster, task)[0]["Restarts"] == "1"
    assert_same_surface(run / "surface.h5", folder / "runs" / "ref" / "surface.h5")
    np.testing.assert_array_equal(landscape["train_loss"], surface_arrays(run / "surface.h5")["train_loss"])


def test_cancel_removes_every_job_of_the_run(slurm_cluster, work: Path, capsys) -> None:
    folder = work / "cancel"
    folder.mkdir()
    raw = digits_spec(folder, "cancel", delay=1.0, shards=2)
    assert launcher(["submit", str(write(folder, raw)), "--slurm", "--run-id", "cancel"]) == 0
    run = folder / "runs" / "cancel"
    ids = list(record(run)[k] for k in ("prepare", "evaluate", "merge"))
    live = lambda: slurm_cluster.run("squeue", "-h", "-r", "-j", ",".join(ids),  # noqa: E731
                                     "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i")
    assert len(live().split()) == 4  # prepare, the two array tasks, merge
    assert launcher(["list", "--slurm"]) == 0
    assert any(line.split()[0] == "cancel" for line in capsys.readouterr().out.splitlines()[1:])
    assert launcher(["cancel", str(run)]) == 0
    until(lambda: live().strip() == "", 30, "no job of the run left in squeue")
    for job in ids:
        assert {t["JobState"] for t in scontrol(slurm_cluster, job)} == {"CANCELLED"}
    capsys.readouterr()
    assert launcher(["wait", str(run), "--timeout", "10"]) == 1
    assert "cancelled" in capsys.readouterr().err


def test_a_task_over_its_time_limit_is_reported_and_not_requeued(slurm_cluster, time_limit_run: Path,
                                                                 capsys) -> None:
    run = time_limit_run
    capsys.readouterr()
    assert launcher(["wait", str(run), "--interval", "1", "--timeout", "150"]) == 1
    err = capsys.readouterr().err
    assert "evaluate task 0" in err and "time limit" in err and "--signal=B:TERM@30" in err, err
    task = scontrol(slurm_cluster, f"{record(run)['evaluate']}_0")[0]
    assert task["JobState"] == "FAILED" and task["ExitCode"] == "143:0" and task["Restarts"] == "0"
    assert "stopped by SIGTERM" in (run / "logs" / "evaluate-0.log").read_text()  # the stage got the warning
    assert launcher(["status", str(run)]) == 0
    assert "shard 0: FAILED (time limit: stopped by the --signal" in capsys.readouterr().out


def test_doctor_reads_the_cluster(slurm_cluster, work: Path, capsys) -> None:
    folder = work / "doctor"
    folder.mkdir()
    path = write(folder, digits_spec(folder, "doctor"))
    assert launcher(["doctor", "--slurm", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[  ok] partition gpu: up, 1 nodes, 2 GPUs a node" in out
    assert "[  ok] GPUs: partition gpu has 2 GPUs a node, a task asks 1" in out
    assert "[  ok] array size: 2 shards" in out and "[  ok] code: virtualenv" in out
    assert f"[  ok] storage: {folder / 'runs'} is writable here" in out
    raw = digits_spec(folder, "doctor-bad", partition="nope", gpus=4, code="apptainer")
    assert launcher(["doctor", "--slurm", str(write(folder, raw))]) == 1
    out, err = capsys.readouterr()
    assert "[fail] slurm.partition: no partition nope" in out and "doctor: " in err


def test_what_the_controller_refuses_is_exit_2_before_any_job(slurm_cluster, work: Path, capsys) -> None:
    folder = work / "refused"
    folder.mkdir()
    before = slurm_cluster.run("squeue", "-h", "-t", "all", "-o", "%i").split()
    path = write(folder, digits_spec(folder, "refused", partition="nope"))
    assert launcher(["submit", str(path), "--slurm", "--run-id", "refused"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == "launcher: error: sbatch: invalid partition specified: nope allocation failure: Invalid partition " \
                  "name specified", err
    assert slurm_cluster.run("squeue", "-h", "-t", "all", "-o", "%i").split() == before  # sbatch --test-only only
    assert not (folder / "runs" / "refused").exists()  # nothing written either
