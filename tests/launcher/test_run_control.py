"""One runner per run, stop signals and full disks, on real launcher processes (issue 26).

Each test runs ``launcher submit --local`` as a subprocess, acts on it from outside (a second
submit, SIGKILL, SIGTERM/SIGHUP/SIGINT, ``launcher cancel``, a full tmpfs), reads the process
table for anything of the run left running, resumes, and compares the surface bit for bit
with an uninterrupted run of the same spec (its stages run in this process: ``reference``).
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import run_all, save_linear_checkpoint, write_spec
from landscape_job.base.diskspace import NoSpace
from landscape_job.base.termination import PARENT_ENV
from landscape_job.run.lease import Lease, LeaseHeld, LeaseRecord, current, lease_key, stale
from landscape_job.spec.parse import load_spec
from landscape_job.storage import open_storage
from landscape_job.storage.location import StorageLocation
from launcher.local.runner import open_run

LAUNCHER = [sys.executable, "-m", "launcher.cli"]


@pytest.fixture(scope="module")
def slow_spec(tmp_path_factory) -> Path:
    """A run of a few seconds per shard (a wide MLP on 2,000 samples, 60 points, checkpoints every 4)."""
    folder = tmp_path_factory.mktemp("control")
    save_linear_checkpoint(folder / "wide.pt", 0, hidden=[128, 128])
    return write_spec(folder, {
        "name": "ctl",
        "model": {"arch": "mlp", "checkpoint": "wide.pt", "kwargs": {"hidden": [128, 128]}},
        "data": {"dataset": "synthetic", "options": {"shape": [6], "classes": 3, "train_size": 2000,
                                                     "test_size": 200, "seed": 0}},
        "directions": {"type": "random", "seed": 3, "norm": "filter", "ignore": "none"},
        "grid": {"x": "-1:1:10", "y": "-1:1:6"},
        "compute": {"shards": 2, "precision": "fp64", "batch_size": 500, "checkpoint_every": 4,
                    "checkpoint_adapt": False},
        # What these tests compare is surface.h5; VTP alone keeps merge off matplotlib (0.7 s of CPU, not 3.1 s).
        "plot": {"formats": ["vtp"]},
    })


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", **extra)


def _submit(spec: Path, storage: Path, run_id: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([*LAUNCHER, "submit", str(spec), "--local", "--storage", str(storage), "--run-id", run_id,
                             "--workers", "2"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def _wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _evaluating(folder: Path) -> bool:
    """Two checkpoint segments are stored (both workers', or two of one's): the run is mid-evaluate, as a shard
    that finishes deletes its segments."""
    return len(list((folder / "shards").glob("*.partial-*.h5"))) >= 2 if (folder / "shards").is_dir() else False


def processes_of(run_folder: Path, launcher: int) -> list[int]:
    """Pids of live processes of the run: its launcher's (``launcher``'s pid in their environment: its stage
    server and the stages forked from it), or whose environment or command line names the run's folder (a
    stage started afresh, the launcher): read from the process table, /proc."""
    found = []
    needles = (str(run_folder).encode(), f"{PARENT_ENV}={launcher}\0".encode())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().split(") ")[-1].startswith("Z"):
                continue  # a zombie waits for its parent to read its status: not running
            environ, cmdline = (entry / "environ").read_bytes(), (entry / "cmdline").read_bytes()
            if needles[0] in environ + cmdline or needles[1] in environ:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _surface(folder: Path) -> dict[str, np.ndarray]:
    with h5py.File(folder / "surface.h5", "r") as f:
        return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset) and k.endswith("_loss")}


@pytest.fixture(scope="module")
def reference(slow_spec: Path, tmp_path_factory) -> dict[str, np.ndarray]:
    """The surface of an uninterrupted run of ``slow_spec`` (in a folder storage, as the tests' runs), its
    stages run in this process (conftest.run_all with workers: the functions the launcher's workers run, at the
    thread counts ``submit --local --workers 2`` gives them). A ``launcher submit`` subprocess gave the same
    surface bit for bit at ~15 s of CPU (the launcher, and four stage processes importing torch) on every
    xdist worker that ran one of these tests; this costs ~1 s. That the two agree is checked again by every
    comparison below: the runs compared with it are the launcher's."""
    return _reference_of(slow_spec, tmp_path_factory)


def _reference_of(path: Path, tmp_path_factory) -> dict[str, np.ndarray]:
    storage = tmp_path_factory.mktemp("reference")
    raw = {**yaml.safe_load(path.read_text()), "storage": str(storage)}
    spec = load_spec(write_spec(path.parent, raw, f"reference-{path.name}"))  # beside it: the same wide.pt
    run_all(open_run(spec, "ref"), spec.compute.shards, workers=2)
    return _surface(storage / "ref")


@pytest.fixture(scope="module")
def long_spec(slow_spec: Path) -> Path:
    """``slow_spec`` on 240 points: ~2.5 s of compute a shard, so that workers orphaned by a SIGKILLed launcher
    are still computing when they notice (their parent watch looks once a second). On 60 points (~0.7 s a
    shard) they had mostly finished, and the resume the test checks had nothing to do."""
    raw = yaml.safe_load(slow_spec.read_text())
    raw["grid"] = {"x": "-1:1:24", "y": "-1:1:10"}
    return write_spec(slow_spec.parent, raw, "long.yaml")


def _identical(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and got
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def _resume_words(command_line: str, storage: Path) -> list[str]:
    words = shlex.split(command_line)
    assert words[:2] == ["launcher", "submit"] and "--run-id" in words and str(storage) in words
    return words


def _resume(command_line: str, storage: Path) -> subprocess.CompletedProcess:
    words = _resume_words(command_line, storage)
    return subprocess.run([*LAUNCHER, *words[1:]], env=_env(), capture_output=True, text=True, timeout=600)


# --- one runner per run ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_submit_of_the_same_run_is_refused_naming_the_holder(slow_spec: Path, tmp_path: Path,
                                                                      reference: dict) -> None:
    first = _submit(slow_spec, tmp_path, "same")
    folder = tmp_path / "same"
    try:
        _wait_for(lambda: (folder / "lease").is_dir() and (folder / "logs" / "prepare.log").exists(), what="lease")
        # The holder is paused (its lease stays valid for its ttl) so that it cannot finish and release the
        # lease while the second launcher starts up: on a loaded machine that took longer than the run.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run([*LAUNCHER, "submit", str(slow_spec), "--local", "--storage", str(tmp_path),
                                     "--run-id", "same"], env=_env(), capture_output=True, text=True, timeout=50)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip().splitlines()
        assert len(err) == 1, second.stderr  # refused before it printed anything else or wrote anything
        assert err[0].startswith("launcher: error: run same is being run by launcher pid "
                                 f"{first.pid} on host {socket.gethostname()}")
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert not [line for line in (folder / "logs" / "prepare.log").read_text().splitlines() if "run same" in line]
    assert (folder / "logs" / "prepare.log").read_text().count("prepare: wrote manifest") <= 1
    _identical(_surface(folder), reference)
    assert LeaseRecord.from_json((folder / "lease" / "00000001.json").read_bytes()).released


@pytest.mark.slow
def test_a_sigkilled_runner_leaves_no_process_and_its_run_resumes_bit_identical(long_spec: Path, tmp_path: Path,
                                                                                 tmp_path_factory) -> None:
    runner = _submit(long_spec, tmp_path, "killed")
    folder = tmp_path / "killed"
    _wait_for(lambda: _evaluating(folder), what="evaluate")
    assert len(processes_of(folder, runner.pid)) >= 3  # what must stop: the launcher, its server, its workers
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    _wait_for(lambda: not processes_of(folder, runner.pid), timeout=60,
              what="the orphaned workers to stop themselves")
    held = current(open_storage(StorageLocation.parse(str(folder))))
    assert held is not None and not held.released and held.pid == runner.pid
    assert stale(held)  # its process is gone (this host); elsewhere its ttl would run out: test_lease_expiry
    unfinished = [s for s in range(2) if not (folder / "shards" / f"shard-{s}-of-2.h5").exists()]
    assert unfinished, "the orphaned workers finished their shards before stopping: the resume would have nothing to do"
    resumed = subprocess.run([*LAUNCHER, "submit", str(long_spec), "--local", "--storage", str(tmp_path), "--run-id",
                              "killed", "--workers", "2"], env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    _identical(_surface(folder), _reference_of(long_spec, tmp_path_factory))


def test_lease_expiry_and_races_in_a_shared_storage(tmp_path: Path) -> None:
    """A holder on another host is alive until its ttl runs out unrenewed; two takers of one generation: one wins."""
    storage = open_storage(StorageLocation.parse(str(tmp_path)))
    now = time.time()
    far = LeaseRecord(generation=1, run_id="r", host="other-node", pid=1, acquired=now, renewed=now, ttl=30)
    storage.put(lease_key(1), far.to_json())
    with pytest.raises(LeaseHeld, match="run r is being run by launcher pid 1 on host other-node"):
        Lease.acquire(storage, "r", ttl=30)
    assert not stale(far, now + 29.9) and stale(far, now + 30.1)
    storage.put(lease_key(1), LeaseRecord(**{**far.__dict__, "renewed": now - 31}).to_json())
    taken = Lease.acquire(storage, "r", ttl=30)
    assert taken.record.generation == 2 and current(storage).pid == os.getpid()
    assert not storage.put_if_absent(lease_key(2), b"{}")  # the race's loser: the generation is taken
    taken.renew()
    assert taken.lost is None
    storage.put_if_absent(lease_key(3), LeaseRecord(**{**far.__dict__, "generation": 3}).to_json())
    taken.renew()  # superseded: it must stop
    assert taken.lost and "taken over" in taken.lost


@pytest.mark.slow
def test_cancel_stops_the_runner_that_holds_the_lease(long_spec: Path, tmp_path: Path) -> None:
    # long_spec: on slow_spec's 60 points the run could end before `launcher cancel` had started up
    runner = _submit(long_spec, tmp_path, "cx")
    folder = tmp_path / "cx"
    _wait_for(lambda: _evaluating(folder), what="evaluate")
    cancel = subprocess.run([*LAUNCHER, "cancel", str(folder)], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert cancel.returncode == 0 and f"launcher pid {runner.pid}" in cancel.stdout, cancel.stderr
    assert runner.wait(timeout=60) == 128 + signal.SIGTERM
    err = runner.stderr.read()
    assert "cancelled (launcher cancel)" in err.strip().splitlines()[-1], err[-3000:]
    _wait_for(lambda: not processes_of(folder, runner.pid), timeout=30, what="no process of the run")
    assert '"state": "cancelled"' in (folder / "local.json").read_text()


# --- stop signals ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_the_workers_and_prints_the_command_that_resumes(slow_spec: Path, tmp_path: Path,
                                                                             request: pytest.FixtureRequest,
                                                                             sig) -> None:
    """Each signal stops the run: exit 128 + it, no process of the run left, the finished points saved, and a
    last line naming it with a ``launcher submit`` command for this run and storage. The launcher takes the
    three the same way (``launcher.local.runner._stop_signals`` raises one ``_Stopped`` whichever came) and
    stops its workers with SIGTERM whatever it got (``stop_workers``), so the run each leaves behind is made
    the same way: the resume, and its surface bit for bit against an uninterrupted run's, is run after
    SIGTERM only (~13 s of CPU, the launcher and four stage processes, that the other two would spend on the
    same code)."""
    runner = _submit(slow_spec, tmp_path, "sig")
    folder = tmp_path / "sig"
    _wait_for(lambda: _evaluating(folder), what="evaluate")
    assert len(processes_of(folder, runner.pid)) >= 3  # the launcher, its stage server, its workers
    runner.send_signal(sig)
    assert runner.wait(timeout=90) == 128 + sig
    assert not processes_of(folder, runner.pid)  # the launcher waited for every worker: nothing of the run is left
    last = runner.stderr.read().strip().splitlines()[-1]
    stopped = "interrupted" if sig == signal.SIGINT else f"stopped by {sig.name}"
    assert last.startswith(f"launcher: {stopped}; run sig is kept; resume it with: launcher submit "), last
    assert list((folder / "shards").glob("*.partial-*.h5"))  # the finished points were saved
    command = last.split("resume it with: ", 1)[1]
    assert _resume_words(command, tmp_path)[2:] == [str(slow_spec), "--local", "--run-id", "sig", "--storage",
                                                    str(tmp_path), "--workers", "2"]
    if sig != signal.SIGTERM:
        return
    resumed = _resume(command, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _identical(_surface(folder), request.getfixturevalue("reference"))


# --- full disks ------------------------------------------------------------------------------


def test_an_injected_enospc_is_one_line_and_leaves_nothing_partial(tmp_path: Path, monkeypatch) -> None:
    storage = open_storage(StorageLocation.parse(str(tmp_path)))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NoSpace) as caught:
        storage.put("shards/shard-0-of-1.h5", b"x" * 5000)
    assert str(caught.value).startswith(f"no space left on device writing {tmp_path}/shards/shard-0-of-1.h5: "
                                        "4.9 KiB needed, ")
    assert "\n" not in str(caught.value) and list(tmp_path.rglob("*.tmp")) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}): the injected ENOSPC test "
                    "covers the storage's part")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_ends_the_run_in_one_line_and_the_resume_is_bit_identical(slow_spec: Path, small_tmpfs: Path,
                                                                               reference: dict) -> None:
    filler = small_tmpfs / "filler"
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    # Room for prepare's and evaluate's objects and logs (~0.4 MB of the 0.6), not for merge's outputs (surface.h5
    # and plots/, MiBs): the run ends at merge, which checks the room it needs before writing anything.
    filler.write_bytes(b"\0" * (free - 600_000))
    result = subprocess.run([*LAUNCHER, "submit", str(slow_spec), "--local", "--storage", str(small_tmpfs),
                             "--run-id", "full", "--workers", "2"], env=_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("launcher: ") and ("no space left on device writing" in last) and "needed" in last, \
        result.stderr[-3000:]
    assert "submit again with --run-id full to resume" in last
    folder = small_tmpfs / "full"
    assert not [p for p in folder.rglob(".*") if p.is_file()]  # no temporary half-written object left
    for shard in folder.rglob("*.h5"):  # every object there is whole
        with h5py.File(shard, "r"):
            pass
    filler.unlink()
    resumed = subprocess.run([*LAUNCHER, "submit", str(slow_spec), "--local", "--storage", str(small_tmpfs),
                              "--run-id", "full", "--workers", "2"], env=_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    _identical(_surface(folder), reference)


def test_the_lease_on_s3_is_a_conditional_create(moto_endpoint: str, monkeypatch) -> None:
    """On S3 the generation is created with If-None-Match: * (moto honours it): a second runner is refused."""
    from storage_testing import new_bucket, s3_options

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = new_bucket(moto_endpoint)
    storage = open_storage(f"s3://{bucket}/runs/r", s3_options(moto_endpoint))
    held = Lease.acquire(storage, "r", ttl=30)
    assert storage.conditional_writes is True  # the atomic path, not the HEAD-then-PUT fallback
    with pytest.raises(LeaseHeld, match=f"run r is being run by launcher pid {os.getpid()}"):
        Lease.acquire(storage, "r", ttl=30)
    held.release()
    assert Lease.acquire(storage, "r", ttl=30).record.generation == 2


def test_merge_checks_its_outputs_fit_before_writing_any(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    from conftest import spec_from
    from landscape_job import stages
    from landscape_job.storage.files import FileStorage
    from launcher.local.runner import open_run

    run = open_run(spec_from(tmp_path, linear_spec), "room")
    stages.prepare(run, log=lambda _: None)
    stages.evaluate(run, 0, log=lambda _: None)
    monkeypatch.setattr(FileStorage, "free_bytes", lambda self: 50_000)
    with pytest.raises(NoSpace, match=r"no space left on device writing .*surface.h5 and plots/: .* needed, 48.8 KiB "
                                      r"free"):
        stages.merge(run, log=lambda _: None, plots=True)
    assert not run.exists("surface.h5") and not run.list("plots/")
    monkeypatch.undo()
    stages.merge(run, log=lambda _: None, plots=False)
    assert run.exists("surface.h5")
