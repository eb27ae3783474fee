"""Local runs managed like cluster runs: status, list, logs, pull, wait and cancel read the run's storage
(``./runs/<id>`` by id, by path, by file:// URL) with no kubeconfig anywhere."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import write_spec
from launcher.cli import main as launcher
from launcher.local.record import FAILED, RUNNING, LocalRunRecord
from launcher.run_status import stored_status


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The current folder is the spec's, and no kubeconfig exists: any cluster call would fail."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def run_ok(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code = launcher(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.slow
def test_a_finished_local_run_by_id_path_and_url(tmp_path: Path, linear_spec: dict, no_cluster: None,
                                                 capsys: pytest.CaptureFixture) -> None:
    linear_spec["compute"]["shards"] = 2
    linear_spec["plot"] = {"formats": ["vtp"]}  # no figure is read here: merge without matplotlib
    spec = write_spec(tmp_path, linear_spec)
    assert launcher(["submit", str(spec), "--local", "--run-id", "loc", "--workers", "2"]) == 0
    capsys.readouterr()
    folder = tmp_path / "runs" / "loc"
    record = json.loads((folder / "local.json").read_text())
    assert record["state"] == "succeeded" and record["workers"] == {} and record["host"] == socket.gethostname()

    text = run_ok(capsys, "status", "loc")
    assert text.startswith(f"run loc  from storage (Complete)  storage file://{folder}")
    assert "local run: succeeded" in text and "evaluate  Complete   2/2 shards complete" in text
    records = [json.loads(run_ok(capsys, "status", ref, "-o", "json"))
               for ref in ("loc", "runs/loc", f"file://{folder}", str(folder))]
    records.append(json.loads(run_ok(capsys, "status", "loc", "--storage", f"file://{tmp_path}/runs", "-o", "json")))
    assert all(r == records[0] for r in records)
    record = records[0]
    assert (record["source"], record["state"], record["namespace"]) == ("storage", "Complete", None)
    assert [(s["stage"], s["state"]) for s in record["stages"]] == [("prepare", "Complete"), ("evaluate", "Complete"),
                                                                     ("merge", "Complete")]
    assert record["local"]["alive"] is False and record["progress"]["points_done"] == 20

    rows = run_ok(capsys, "list", "--storage", "runs").splitlines()
    assert rows[1].split()[:3] == ["loc", "Complete", "2/2"] and rows[1].endswith(f"file://{folder}")

    logs = {name: (folder / "logs" / f"{name}.log").read_text().splitlines()
            for name in ("prepare", "evaluate-0", "evaluate-1", "merge")}
    assert "shard 1 of 2" in "\n".join(logs["evaluate-1"])
    expected = ([f"[prepare] {line}" for line in logs["prepare"]] + [f"[shard 0] {line}" for line in logs["evaluate-0"]]
                + [f"[shard 1] {line}" for line in logs["evaluate-1"]] + [f"[merge] {line}" for line in logs["merge"]])
    assert run_ok(capsys, "logs", "loc").splitlines() == expected
    assert run_ok(capsys, "logs", "runs/loc", "--index", "1").splitlines() == logs["evaluate-1"]
    assert run_ok(capsys, "logs", f"file://{folder}", "--stage", "merge", "--tail", "1").splitlines() == \
        logs["merge"][-1:]

    for n, ref in enumerate(("runs/loc", "loc", f"file://{folder}")):
        out = tmp_path / f"pulled-{n}"
        run_ok(capsys, "pull", ref, str(out))
        assert (out / "surface.h5").read_bytes() == (folder / "surface.h5").read_bytes()

    assert run_ok(capsys, "wait", "loc", "--timeout", "5") == f"done: file://{folder}/surface.h5\n" \
                                                                f"      file://{folder}/plots/\n" \
                                                                f"      file://{folder}/report.json\n"
    assert "is not running (it succeeded" in run_ok(capsys, "cancel", "runs/loc")

    assert launcher(["status", "runs/nothing"]) == 2
    assert "'runs/nothing': no such run folder" in capsys.readouterr().err
    (tmp_path / "notarun").mkdir()
    assert launcher(["status", "./notarun"]) == 2
    assert "no spec.yaml: not a run's folder" in capsys.readouterr().err


def sleeper(tag: str) -> subprocess.Popen:
    """A process that stands for a local run's launcher or worker: its command line names what it is."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", tag])


def write_run(folder: Path, record: LocalRunRecord) -> None:
    (folder / "logs").mkdir(parents=True)
    (folder / "spec.yaml").write_text("compute: {shards: 2}\n")
    (folder / "local.json").write_bytes(record.to_json())
    (folder / "logs" / "evaluate-0.log").write_text("evaluate: point 1\n")


@pytest.mark.slow
def test_logs_follow_every_worker_of_a_live_local_run(tmp_path: Path, no_cluster: None,
                                                     capsys: pytest.CaptureFixture) -> None:
    """``-f`` over several workers: each log's last ``--tail`` lines, then its new lines, prefixed, until the run
    no longer runs."""
    launcher_process = sleeper("launcher")
    folder = tmp_path / "runs" / "live"
    try:
        record = LocalRunRecord(pid=launcher_process.pid, host=socket.gethostname(), started=time.time(),
                                workers={"evaluate-0": launcher_process.pid, "evaluate-1": launcher_process.pid})
        write_run(folder, record)
        (folder / "logs" / "evaluate-1.log").write_text("one a\none b\none c\n")
        follow = threading.Thread(target=launcher, args=(["logs", "live", "-f", "--tail", "1"],))
        follow.start()
        seen = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not ("[shard 0]" in seen and "[shard 1]" in seen):
            time.sleep(0.05)
            seen += capsys.readouterr().out
        with open(folder / "logs" / "evaluate-1.log", "a") as log:
            log.write("one d\n")
        with open(folder / "logs" / "evaluate-0.log", "a") as log:
            log.write("evaluate: point 2\n")
        time.sleep(1.5)  # a poll of each (every 0.5 s) while the run still runs
    finally:
        launcher_process.kill()
        launcher_process.wait()
    follow.join(timeout=20)
    assert not follow.is_alive()
    lines = (seen + capsys.readouterr().out).splitlines()
    assert [line for line in lines if line.startswith("[shard 0] ")] == [
        "[shard 0] evaluate: point 1", "[shard 0] evaluate: point 2"]
    assert [line for line in lines if line.startswith("[shard 1] ")] == ["[shard 1] one c", "[shard 1] one d"]
    assert len(lines) == 4


def test_cancel_stops_a_live_local_run(tmp_path: Path, no_cluster: None, capsys: pytest.CaptureFixture) -> None:
    launcher_process, worker = sleeper("launcher"), sleeper("landscape_job")
    try:
        record = LocalRunRecord(pid=launcher_process.pid, host=socket.gethostname(), started=time.time(),
                                workers={"evaluate-0": worker.pid})
        write_run(tmp_path / "runs" / "live", record)
        status = json.loads(run_ok(capsys, "status", "live", "-o", "json"))
        assert status["state"] == "Running" and status["local"]["alive"] is True
        assert [s["state"] for s in status["stages"]] == ["Pending", "Running", "Pending"]
        assert status["stages"][1]["shards"] == {"total": 2, "complete": 0, "failed": [], "active": 1}
        assert launcher(["wait", "live", "--timeout", "0.2", "--interval", "0.05"]) == 124
        capsys.readouterr()

        out = run_ok(capsys, "cancel", "runs/live")
        assert f"stopped 2 processes ({launcher_process.pid}, {worker.pid})" in out
        assert launcher_process.wait(timeout=10) is not None and worker.wait(timeout=10) is not None
        assert json.loads((tmp_path / "runs/live/local.json").read_text())["state"] == "cancelled"
        assert json.loads(run_ok(capsys, "status", "live", "-o", "json"))["state"] == "Cancelled"
        assert launcher(["wait", "live", "--timeout", "1"]) == 1
        assert "run live: cancelled" in capsys.readouterr().err
        assert "is not running" in run_ok(capsys, "cancel", "live")
    finally:
        for process in (launcher_process, worker):
            process.kill()
            process.wait()


def test_a_killed_local_run_reads_stopped(tmp_path: Path, no_cluster: None, capsys: pytest.CaptureFixture) -> None:
    gone = sleeper("launcher")
    gone.kill()
    gone.wait()
    write_run(tmp_path / "runs" / "dead", LocalRunRecord(pid=gone.pid, host=socket.gethostname(), started=0.0,
                                                         state=RUNNING, workers={"evaluate-0": gone.pid}))
    status = json.loads(run_ok(capsys, "status", "dead", "-o", "json"))
    assert status["state"] == "Stopped" and [s["state"] for s in status["stages"]] == ["Pending"] * 3
    assert launcher(["wait", "dead"]) == 1
    assert "run dead: stopped" in capsys.readouterr().err
    assert run_ok(capsys, "logs", "dead") == "evaluate: point 1\n"  # one log: no prefix


def test_a_failed_local_run_names_its_stage() -> None:
    record = LocalRunRecord(pid=1, host="h", started=0.0, state=FAILED,
                            error="evaluate (shard 1) stage failed (exit 1); log: file:///r/logs/evaluate-1.log")
    status = stored_status("r", "file:///r", {"spec.yaml", "manifest.json", "shards/shard-0-of-2.h5"}, 2, {}, record,
                           alive=False)
    assert status.state == "Failed"
    assert [(s.stage, s.state) for s in status.stages] == [("prepare", "Complete"), ("evaluate", "Failed"),
                                                           ("merge", "Pending")]
    assert status.stages[1].shards_complete == 1 and "shard 1" in (status.stages[1].message or "")


@pytest.mark.slow
def test_logs_follow_a_live_local_worker(tmp_path: Path, no_cluster: None, capsys: pytest.CaptureFixture) -> None:
    import threading

    launcher_process = sleeper("launcher")
    folder = tmp_path / "runs" / "live"
    write_run(folder, LocalRunRecord(pid=launcher_process.pid, host=socket.gethostname(), started=time.time(),
                                     workers={"evaluate-0": launcher_process.pid}))
    codes: list[int] = []
    follower = threading.Thread(target=lambda: codes.append(launcher(["logs", "live", "--index", "0", "-f"])))
    try:
        follower.start()
        time.sleep(1.0)
        with open(folder / "logs" / "evaluate-0.log", "a") as log:
            log.write("evaluate: point 2\n")
        time.sleep(1.0)
        assert follower.is_alive()  # the worker runs: following goes on
    finally:
        launcher_process.kill()
        launcher_process.wait()
    follower.join(timeout=10)
    assert not follower.is_alive() and codes == [0]
    assert capsys.readouterr().out == "evaluate: point 1\nevaluate: point 2\n"


def test_a_local_run_of_another_host_is_not_touched(tmp_path: Path, no_cluster: None,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A shared folder: the pids in the record are another machine's; none is signalled here."""
    bystander = sleeper("launcher")  # a process here whose pid the record names
    try:
        write_run(tmp_path / "runs" / "far", LocalRunRecord(pid=bystander.pid, host="elsewhere-node", started=0.0))
        assert json.loads(run_ok(capsys, "status", "far", "-o", "json"))["state"] == "Running"
        assert launcher(["cancel", "far"]) == 2
        assert "was started on host elsewhere-node, not here" in capsys.readouterr().err
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_failed_worker_s_own_error_is_on_the_launcher_s_line(tmp_path: Path, linear_spec: dict) -> None:
    """A worker that ends on its one-line error (the storage's retry budget spent, say): the launcher's
    line names it, whichever of the two noticed first, not only the log's address."""
    import io

    from conftest import spec_from
    from landscape_job.base.errors import StageError
    from landscape_job.storage import run_storage
    from launcher.local.runner import LocalRunner, _Worker

    run = run_storage(str(tmp_path / "runs"), "r")
    runner = LocalRunner(run, spec_from(tmp_path, linear_spec), 1, tmp_path, io.StringIO())
    cause = "shards/shard-1-of-2.partial-0.h5: still failing after 4 attempts over 9 s (last: ReadTimeoutError)"
    log_path = tmp_path / "evaluate-1.log"
    log_file = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-c", f"import sys; print('working'); "
                                f"print('landscape-job: ' + {cause!r}, file=sys.stderr); sys.exit(1)"],
                               stdout=log_file, stderr=subprocess.STDOUT)
    process.wait()
    with pytest.raises(StageError) as failed:
        runner._finish(_Worker(1, process, log_path, log_file), "evaluate (shard 1)")
    message = str(failed.value)
    assert message.startswith("evaluate (shard 1) stage failed (exit 1): " + cause) and "log: " in message, message
    assert "\n" not in message  # one line: the worker's own error needs no tail of its log
