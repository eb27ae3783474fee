"""The launcher's backends (issue 22) and what a user sees of them (issue 25, points 3 and 4).

Done means done: while merge is still writing (the result and the plots stored, report.json
not yet), ``wait`` does not succeed, ``status``/``list``/the Python handle do not say
Complete, and ``pull`` copies nothing; once merge has written report.json, all of them do,
and ``pull`` gets every output the report lists. Local first: with no kubeconfig and no
``--storage``, the run commands look in ``./runs`` and say where they looked. And the plan:
``submit --dry-run`` prints the plan a submit creates, and creates nothing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from conftest import write_spec
from landscape_job import stages
from landscape_job.spec.parse import load_spec
from landscape_job.stages import REPORT_KEY, SURFACE_KEY
from landscape_job.storage import open_storage
from launcher.api import Run
from launcher.backends.base import BACKENDS, backend_class, make_backend
from launcher.backends.done import missing_outputs
from launcher.cli import main as launcher
from launcher.commands.wait import TIMEOUT_EXIT
from launcher.local.record import LocalRunRecord
from launcher.local.runner import open_run


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder is the spec's; no kubeconfig anywhere (``$KUBECONFIG``, ``~/.kube/config``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return tmp_path


class HeldMerge:
    """The run's storage as merge sees it, holding merge back just before it writes ``report.json``
    (``at``: before the first key that starts with it)."""

    def __init__(self, run, at: str = REPORT_KEY):
        self.run, self.url, self.at = run, run.url, at
        self.reached, self.release = threading.Event(), threading.Event()

    def put(self, key: str, data: bytes) -> None:
        if key.startswith(self.at) and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(120), "the test never released merge"
        self.run.put(key, data)

    def __getattr__(self, name: str):
        return getattr(self.run, name)


def exit_and_err(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = launcher(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_wait_status_list_and_pull_say_done_only_when_merge_has_written_everything(
        tmp_path: Path, linear_spec: dict, no_cluster: Path, capsys: pytest.CaptureFixture) -> None:
    spec = load_spec(write_spec(tmp_path, linear_spec))
    run = open_run(spec, "held")
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    stages.evaluate(run, 0, log=quiet)
    # The run's launcher runs on another host, as on a shared folder: its record is taken at its word.
    record = LocalRunRecord(pid=1, host="elsewhere", started=0.0, workers={"merge": 1})
    run.put("local.json", record.to_json())
    held = HeldMerge(run)
    merging = threading.Thread(target=lambda: stages.merge(held, log=quiet), daemon=True)
    merging.start()
    try:
        assert held.reached.wait(120), "merge never came to write report.json"
        folder = tmp_path / "runs" / "held"
        assert (folder / SURFACE_KEY).is_file() and any((folder / "plots").iterdir())  # half written

        code, out, err = exit_and_err(capsys, "wait", "held", "--timeout", "0.5", "--interval", "0.1")
        assert code == TIMEOUT_EXIT and "done:" not in out
        code, out, _ = exit_and_err(capsys, "status", "held", "-o", "json")
        status = json.loads(out)
        assert status["state"] == "Running" and status["stages"][2]["state"] == "Running"
        code, out, _ = exit_and_err(capsys, "list", "--storage", "runs", "-o", "json")
        assert [r["state"] for r in json.loads(out)] == ["Running"]
        handle = Run(spec, "held", make_backend("local"))
        assert handle.status().state == "running"
        code, out, err = exit_and_err(capsys, "pull", "held", str(tmp_path / "early"))
        assert code == 1 and "not complete" in err and "report.json (merge writes it last)" in err
        assert not (tmp_path / "early").exists() and not list(tmp_path.glob(".early.pull-*"))
    finally:
        held.release.set()
        merging.join(120)

    run.put("local.json", record.ended("succeeded").to_json())
    code, out, _ = exit_and_err(capsys, "wait", "held", "--timeout", "5", "--interval", "0.1")
    assert code == 0 and out.startswith("done: ")
    assert json.loads(exit_and_err(capsys, "status", "held", "-o", "json")[1])["state"] == "Complete"
    assert handle.status().state == "succeeded"
    code, out, _ = exit_and_err(capsys, "pull", "held", str(tmp_path / "late"))
    assert code == 0
    report = json.loads((tmp_path / "late" / REPORT_KEY).read_text())
    assert len(report["outputs"]) > 1
    assert all((tmp_path / "late" / key).read_bytes() == (folder / key).read_bytes() for key in report["outputs"])


def test_pull_wait_waits_for_the_report(tmp_path: Path, linear_spec: dict, no_cluster: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """``pull --wait`` on a run whose merge is held: it times out with nothing pulled, then pulls once released."""
    spec = load_spec(write_spec(tmp_path, linear_spec))
    run = open_run(spec, "later")
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    stages.evaluate(run, 0, log=quiet)
    run.put("local.json", LocalRunRecord(pid=1, host="elsewhere", started=0.0, workers={"merge": 1}).to_json())
    held = HeldMerge(run)
    merging = threading.Thread(target=lambda: stages.merge(held, log=quiet, plots=False), daemon=True)
    merging.start()
    assert held.reached.wait(120)
    code, _, err = exit_and_err(capsys, "pull", "later", str(tmp_path / "out"), "--wait", "--timeout", "0.3",
                                "--interval", "0.1")
    assert code == TIMEOUT_EXIT and "nothing pulled" in err and not (tmp_path / "out").exists()
    threading.Timer(0.5, held.release.set).start()
    code, out, _ = exit_and_err(capsys, "pull", "later", str(tmp_path / "out"), "--wait", "--interval", "0.1")
    merging.join(60)
    assert code == 0 and (tmp_path / "out" / REPORT_KEY).is_file() and out.strip().endswith(SURFACE_KEY)


@pytest.mark.slow
def test_a_merge_run_again_is_not_complete_until_it_has_rewritten_everything(
        tmp_path: Path, linear_spec: dict, no_cluster: Path, capsys: pytest.CaptureFixture) -> None:
    """A re-merge (a resumed run, a retried merge pod) over a run that has a report.json: while it rewrites
    the outputs the earlier report must not vouch for them; once done, the outputs are the new merge's only."""
    spec = load_spec(write_spec(tmp_path, linear_spec))
    run = open_run(spec, "again")
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    stages.evaluate(run, 0, log=quiet)
    stages.merge(run, log=quiet, plots=False)  # the first merge: surface.h5 and report.json, no figures
    folder = tmp_path / "runs" / "again"
    assert json.loads((folder / REPORT_KEY).read_text())["outputs"] == [SURFACE_KEY]
    record = LocalRunRecord(pid=1, host="elsewhere", started=0.0, workers={"merge": 1})
    run.put("local.json", record.to_json())
    assert json.loads(exit_and_err(capsys, "status", "again", "-o", "json")[1])["state"] == "Complete"  # so far

    held = HeldMerge(run, at="plots/")  # merge again, with figures: held after surface.h5, before its figures
    merging = threading.Thread(target=lambda: stages.merge(held, log=quiet), daemon=True)
    merging.start()
    handle = Run(spec, "again", make_backend("local"))
    try:
        assert held.reached.wait(120), "merge never came to write its figures"
        code, out, _ = exit_and_err(capsys, "status", "again", "-o", "json")
        assert json.loads(out)["state"] == "Running" and json.loads(out)["stages"][2]["state"] == "Running"
        code, out, _ = exit_and_err(capsys, "wait", "again", "--timeout", "0.5", "--interval", "0.1")
        assert code == TIMEOUT_EXIT and "done:" not in out
        assert [r["state"] for r in json.loads(exit_and_err(capsys, "list", "--storage", "runs", "-o", "json")[1])] \
            == ["Running"]
        assert handle.status().state == "running"
        code, _, err = exit_and_err(capsys, "pull", "again", str(tmp_path / "early"))
        assert code == 1 and "report.json (merge writes it last)" in err and not (tmp_path / "early").exists()
    finally:
        held.release.set()
        merging.join(120)

    run.put("local.json", record.ended("succeeded").to_json())
    assert json.loads(exit_and_err(capsys, "status", "again", "-o", "json")[1])["state"] == "Complete"
    assert handle.status().state == "succeeded"
    assert exit_and_err(capsys, "pull", "again", str(tmp_path / "late"))[0] == 0
    outputs = json.loads((tmp_path / "late" / REPORT_KEY).read_text())["outputs"]
    figures = sorted(k for k in outputs if k.startswith("plots/"))
    assert figures and sorted(str(p.relative_to(tmp_path / "late")) for p in (tmp_path / "late" / "plots").iterdir()) \
        == figures

    stages.merge(run, log=quiet, plots=False)  # once more without figures: the earlier figures go with its report
    assert json.loads((folder / REPORT_KEY).read_text())["outputs"] == [SURFACE_KEY]
    assert not list((folder / "plots").glob("*"))
    assert exit_and_err(capsys, "pull", "again", str(tmp_path / "last"))[0] == 0
    assert not (tmp_path / "last" / "plots").exists()


def test_missing_outputs_is_the_report_and_what_it_lists() -> None:
    assert missing_outputs({"spec.yaml"}) == [SURFACE_KEY, REPORT_KEY]
    assert missing_outputs({SURFACE_KEY, "plots/a.png"}) == [REPORT_KEY]
    written = {SURFACE_KEY, REPORT_KEY, "plots/a.png"}
    assert missing_outputs(written, {"outputs": [SURFACE_KEY, "plots/a.png"]}) == []
    assert missing_outputs(written, {"outputs": [SURFACE_KEY, "plots/a.png", "plots/b.svg"]}) == ["plots/b.svg"]


def test_without_a_kubeconfig_the_run_commands_look_in_runs_and_say_where(
        tmp_path: Path, linear_spec: dict, no_cluster: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = exit_and_err(capsys, "list")
    assert code == 0 and out.strip() == f"no runs under file://{tmp_path}/runs"
    assert f"local runs under {tmp_path}/runs" in err and "no kubeconfig" in err
    for command in (["status", "r1"], ["logs", "r1"], ["wait", "r1"], ["pull", "r1"], ["cancel", "r1"]):
        code, _, err = exit_and_err(capsys, *command)
        assert code == 2, command
        assert f"run r1: not in {tmp_path}/runs/r1 (local runs), and no kubeconfig ({tmp_path}/no-such-kubeconfig " \
               f"not found) for the cluster" in err and "Traceback" not in err, command

    spec = load_spec(write_spec(tmp_path, linear_spec))
    open_run(spec, "r1")  # a run in ./runs (submitted, not started): found by id, no kubeconfig needed
    code, out, _ = exit_and_err(capsys, "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["r1", "Incomplete"]
    assert json.loads(exit_and_err(capsys, "status", "r1", "-o", "json")[1])["source"] == "storage"


def test_the_backend_table_names_each_backend_once() -> None:
    assert set(BACKENDS) >= {"local", "cluster"}
    for name in ("local", "cluster"):
        backend = backend_class(name)
        assert backend.name == name
        for method in ("from_args", "where", "checked_spec", "plan", "submit", "status", "wait", "logs", "list",
                       "cancel", "pull"):
            assert callable(getattr(backend, method)), (name, method)


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path: Path, linear_spec: dict, no_cluster: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    linear_spec["compute"]["shards"] = 2
    path = write_spec(tmp_path, linear_spec)
    code, out, _ = exit_and_err(capsys, "submit", str(path), "--local", "--run-id", "p1", "--workers", "1",
                                "--dry-run", "-o", "json")
    assert code == 0 and not (tmp_path / "runs" / "p1").exists()
    plan = json.loads(out)
    assert (plan["backend"], plan["run"], plan["storage"]) == ("local", "p1", f"file://{tmp_path}/runs/p1")
    assert plan["spec_hash"] == load_spec(path).hash and plan["options"] == {"workers": 1}
    assert [(s["name"], s["count"], s["command"][-1]) for s in plan["stages"]] == [
        ("prepare", 1, "prepare"), ("evaluate", 2, "evaluate"), ("merge", 1, "merge")]
    code, out, _ = exit_and_err(capsys, "submit", str(path), "--local", "--run-id", "p1", "--dry-run")
    assert code == 0 and out.startswith("run p1 (local): spec hash ")


def test_the_cluster_plan_is_what_render_prints(tmp_path: Path, linear_spec: dict,
                                                capsys: pytest.CaptureFixture) -> None:
    linear_spec["storage"] = "s3://bucket/runs"
    linear_spec["kubernetes"] = {"namespace": "ml", "gpus": 0}
    path = write_spec(tmp_path, linear_spec)
    code, out, _ = exit_and_err(capsys, "render", str(path), "-o", "json", "--run-id", "r1")
    assert code == 0
    plan = make_backend("cluster").plan(load_spec(path, check_files=False), "r1")
    assert json.loads(out)["items"] == json.loads(json.dumps(list(plan.objects)))
    assert plan.options["namespace"] == "ml" and plan.storage == "s3://bucket/runs/r1"
    evaluate = next(s for s in plan.stages if s.name == "evaluate")
    assert evaluate.count == 1 and "evaluate" in evaluate.command and evaluate.where == "Job r1-evaluate"


def test_open_storage_of_a_held_run_is_still_the_runs(tmp_path: Path) -> None:
    """HeldMerge hands merge every call but put: what merge reads is what the commands read."""
    run = open_storage(f"file://{tmp_path}/x")
    held = HeldMerge(run)
    held.put("a", b"1")
    assert held.get("a") == b"1" and held.list() == ["a"]
