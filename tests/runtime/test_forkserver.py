"""landscape_job.forkserver: a forked stage behaves as ``python -m landscape_job.cli`` started afresh.

Each check runs the same command both ways and compares what a caller sees: exit code, output, the
environment and folder the stage reads, a signal's exit, a session of its own, and the thread counts
torch reads from ``OMP_NUM_THREADS`` when it loads. The numbers of forked stages are compared bit for
bit with in-process runs by the local-run tests (test_run_control, test_local_backend)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from landscape_job.base.termination import PARENT_ENV, TERMINATED_EXIT, launcher_alive
from landscape_job.storage.location import RUN_ENV
from landscape_job.forkserver import StageProcess, StageServer

# slow: each test starts interpreters, ~2-9 s (pyproject's marker rule)
pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="stages are forked on Linux only"), pytest.mark.slow]


@pytest.fixture(scope="module")
def server():
    with StageServer(dict(os.environ)) as started:
        yield started


def _state(server: StageServer, pid: int) -> str:
    """What /proc says of a stage, its threads and its server: for a wait that timed out."""
    def threads(of: int) -> str:
        try:
            tasks = sorted(os.listdir(f"/proc/{of}/task"))
            return "; ".join(f"{t} {Path(f'/proc/{of}/task/{t}/stat').read_text().split(')')[1].split()[0]} "
                             f"{Path(f'/proc/{of}/task/{t}/wchan').read_text()}" for t in tasks)
        except OSError as err:
            return f"gone ({err})"
    return (f"stage {pid}: {threads(pid)}; server {server.process.pid}: {threads(server.process.pid)}; "
            f"running {sorted(server._running)}, early {server._early}, gone {server._gone}")


def _both(server: StageServer, tmp_path: Path, args: list[str], env: dict[str, str]) -> list[tuple[int, str]]:
    """(exit code, output) of ``args`` forked and afresh, each in a folder of its own."""
    seen = []
    for how in ("forked", "afresh"):
        folder = tmp_path / how
        folder.mkdir(parents=True)
        log = folder / "out.log"
        with open(log, "w") as handle:
            if how == "forked":
                process = server.start(args, env, stdout=handle.fileno(), cwd=str(folder))
                assert isinstance(process, StageProcess)
            else:
                process = subprocess.Popen([sys.executable, "-m", "landscape_job.cli", *args], env=env,
                                           cwd=folder, stdout=handle, stderr=subprocess.STDOUT)
            code = process.wait(timeout=120)
        seen.append((code, log.read_text().replace(str(folder), "<folder>")))
    return seen


def test_exit_codes_and_output_are_a_fresh_interpreters(server: StageServer, tmp_path: Path) -> None:
    env = dict(os.environ)
    for i, args in enumerate([["--help"], ["no-such-stage"], ["--run", "relative/run", "merge", "--wait", "0"]]):
        forked, afresh = _both(server, tmp_path / str(i), args, env)
        assert forked == afresh, args
    assert forked[0] != 0 and "relative/run" in forked[1]  # the folder it ran in, as the fresh one read it


def test_the_stage_reads_its_own_environment(server: StageServer, tmp_path: Path) -> None:
    """The run's URL comes from the request's environment, not the server's."""
    env = dict(os.environ, **{RUN_ENV: (tmp_path / "nowhere").as_uri()})
    forked, afresh = _both(server, tmp_path, ["merge", "--wait", "0"], env)
    assert forked == afresh and "nowhere" in forked[1]


def test_sigterm_sigkill_and_its_own_session(server: StageServer, tmp_path: Path) -> None:
    command = ["--run", (tmp_path / "run").as_uri(), "evaluate", "--shard", "0", "--wait", "600"]
    log = tmp_path / "stage.log"
    for sig, code in ((signal.SIGTERM, TERMINATED_EXIT), (signal.SIGKILL, -signal.SIGKILL)):
        with open(log, "w") as handle:
            process = server.start(command, dict(os.environ), stdout=handle.fileno(), new_session=True)
        assert os.getpgid(process.pid) == process.pid and os.getsid(process.pid) == process.pid
        deadline = time.monotonic() + 60
        while "wait" not in log.read_text().lower():
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.05)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
        os.killpg(process.pid, sig)  # as the local runner stops a stage
        assert process.wait(timeout=30) == code, log.read_text()
        process.kill()  # reaped: a no-op, never a signal to another process with its pid


def test_thread_counts_are_the_environments(server: StageServer, tmp_path: Path, linear_spec: dict) -> None:
    """torch read OMP_NUM_THREADS as it loaded in the server; a forked evaluate runs at its own, as afresh."""
    from conftest import spec_from
    from landscape_job import stages
    from launcher.local.runner import open_run

    run = open_run(spec_from(tmp_path, linear_spec), "threads")
    stages.prepare(run, log=lambda _: None)
    args = ["--run", run.url, "evaluate", "--shard", "0"]
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        lines = []
        for forked in (True, False):
            with open(tmp_path / "out.log", "w") as handle:
                process = (server.start(args, env, stdout=handle.fileno()) if forked else
                           subprocess.Popen([sys.executable, "-m", "landscape_job.cli", *args], env=env,
                                            stdout=handle, stderr=subprocess.STDOUT))
                assert process.wait(timeout=120) == 0, (tmp_path / "out.log").read_text()
            lines.append(next(x for x in (tmp_path / "out.log").read_text().splitlines() if "points on cpu" in x))
            for key in run.list("shards/"):  # the next one computes the shard again
                run.delete(key)
        assert lines[0] == lines[1] and f"({threads} thread" in lines[0], lines


def test_a_stage_whose_startup_settings_differ_starts_afresh(server: StageServer, tmp_path: Path) -> None:
    with open(tmp_path / "out.log", "w") as handle:
        process = server.start(["--help"], dict(os.environ, PYTHONHASHSEED="7"), stdout=handle.fileno())
    assert isinstance(process, subprocess.Popen) and process.wait(timeout=60) == 0


def test_when_the_server_dies_stages_start_afresh_and_a_running_one_still_ends(tmp_path: Path) -> None:
    server = StageServer(dict(os.environ))
    try:
        with open(tmp_path / "a.log", "w") as handle:
            running = server.start(["--run", (tmp_path / "run").as_uri(), "merge", "--wait", "600"],
                                   dict(os.environ), stdout=handle.fileno(), new_session=True)
        assert isinstance(running, StageProcess)
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 30
        with open(tmp_path / "b.log", "w") as handle:
            while isinstance(later := server.start(["--help"], dict(os.environ), stdout=handle.fileno()),
                             StageProcess):
                later.wait(timeout=60)
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert later.wait(timeout=60) == 0
        os.killpg(running.pid, signal.SIGTERM)  # its status went with the server: it counts as failed
        assert running.wait(timeout=30) == 1
    finally:
        server.close()


def test_a_forked_stage_watches_its_launcher_through_the_server(server: StageServer, tmp_path: Path) -> None:
    """base.termination's parent watch: a forked stage's launcher is its server's parent (here, this process).
    Named as its launcher, this process keeps the stage going; another pid named stops it within the watch."""
    command = ["--run", (tmp_path / "run").as_uri(), "merge", "--wait", "600"]
    stages = {}
    for name, launcher in (("ours", os.getpid()), ("other", os.getppid())):
        with open(tmp_path / f"{name}.log", "w") as handle:
            stages[name] = server.start(command, dict(os.environ, **{PARENT_ENV: str(launcher)}),
                                        stdout=handle.fileno(), new_session=True)
    assert stages["other"].wait(timeout=30) == TERMINATED_EXIT, (tmp_path / "other.log").read_text()
    assert stages["ours"].poll() is None, (tmp_path / "ours.log").read_text()
    os.killpg(stages["ours"].pid, signal.SIGTERM)
    try:
        code = stages["ours"].wait(timeout=30)
    except subprocess.TimeoutExpired:
        log = (tmp_path / "ours.log").read_text()
        pytest.fail(f"no exit within 30 s: {_state(server, stages['ours'].pid)}; log: {log}")
    assert code == TERMINATED_EXIT
    assert launcher_alive(os.getppid()) and not launcher_alive(os.getpid())  # a stage started afresh: its parent


def test_a_process_keeps_one_server_per_start_up_settings_and_replaces_a_dead_one(tmp_path: Path) -> None:
    """forkserver.shared: the runs of one process (the Python API's, in a notebook) share a server."""
    from landscape_job import forkserver

    env = dict(os.environ, PYTHONHASHSEED="101")  # start-up settings no other test's server has
    first = forkserver.shared(env)
    assert forkserver.shared(dict(env, OMP_NUM_THREADS="1", ANY_OTHER="x")) is first  # the same start-up
    other = forkserver.shared(dict(env, PYTHONHASHSEED="103"))
    assert other is not first
    other.process.kill()  # not needed further: not left to import torch for nothing
    first.process.kill()
    first.process.wait()
    deadline = time.monotonic() + 30
    while not first._gone:  # its reader has seen the socket close
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = forkserver.shared(env)
    assert again is not first and again.usable
    with open(tmp_path / "out.log", "w") as handle:
        process = again.start(["--help"], env, stdout=handle.fileno())
    assert isinstance(process, StageProcess) and process.wait(timeout=60) == 0
