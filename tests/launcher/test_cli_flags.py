"""The small things a daily user hits (issue 15, point 7): the estimate projects the workers a
local run starts, ``landscape-job estimate`` reads a spec's paths as the launcher does,
``--version``/``-q``/``-v``/``--json``, and Ctrl-C names the command that resumes the run.

The runs themselves are stood in for (a fake ``LocalRunner``, a fake measurement): what is
tested is the wiring and the numbers the commands agree on, in well under a second each.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

import launcher.estimate
import launcher.local.runner
from landscape_job import cli as pod_cli
from landscape_job.checks import estimate as estimate_module
from landscape_job.checks.estimate import Estimate
from landscape_job.spec.parse import load_spec
from launcher import cli

from conftest import write_spec


def fake_estimate(calls: list[dict]):
    def measure(spec, points=3, parallel=None, seconds=5.0, local_threads=None, fixed_costs=True, forked=False):
        calls.append({"spec": spec, "parallel": parallel, "threads": local_threads})
        return Estimate(seconds_per_point=0.01, points=spec.grid.size, shards=spec.compute.shards,
                        parallel=min(parallel or spec.compute.shards, spec.compute.shards), device="cpu",
                        setup_seconds=1.0, startup_seconds=2.0, merge_seconds=3.0)
    return measure


class FakeRunner:
    """Stands in for ``launcher.local.runner.LocalRunner``: records the workers, runs nothing."""

    made: list["FakeRunner"] = []
    interrupt = False

    def __init__(self, run, spec, workers, log_dir, stream, live_logs=False):
        self.workers = workers
        FakeRunner.made.append(self)

    def end(self, state: str, error: str = "") -> None:
        pass

    def run_stage(self, stage: str) -> None:
        pass

    def run_evaluate(self) -> None:
        if FakeRunner.interrupt:
            raise KeyboardInterrupt


@pytest.fixture
def fakes(monkeypatch):
    calls: list[dict] = []
    FakeRunner.made, FakeRunner.interrupt = [], False
    monkeypatch.setattr(launcher.estimate, "estimate", fake_estimate(calls))
    monkeypatch.setattr(estimate_module, "estimate", fake_estimate(calls))
    monkeypatch.setattr(cli, "_memory", lambda spec: (None, ["memory: (not measured in this test)"]))
    monkeypatch.setattr(launcher.local.runner, "LocalRunner", FakeRunner)
    return calls


@pytest.mark.parametrize("cores, shards, workers", [(3, 4, 3), (8, 4, 4), (1, 4, 1)])
def test_the_estimate_projects_the_workers_submit_local_starts(tmp_path, linear_spec, fakes, monkeypatch, capsys,
                                                                 cores, shards, workers):
    monkeypatch.setattr(launcher.local.runner, "available_cores", lambda: cores)
    spec_file = write_spec(tmp_path, {**linear_spec, "compute": {**linear_spec["compute"], "shards": shards}})
    assert cli.main(["estimate", str(spec_file)]) == 0
    out = capsys.readouterr()
    assert f"{workers} at a time" in out.out and f"{workers} workers at a time as submit --local" in out.err
    assert cli.main(["submit", str(spec_file), "--local"]) == 0
    assert FakeRunner.made[-1].workers == workers == fakes[-1]["parallel"]
    assert fakes[-1]["threads"] == launcher.local.runner.worker_threads(workers) == max(1, cores // workers)


def test_the_pod_estimate_reads_relative_paths_against_the_spec_files_folder(tmp_path, linear_spec, fakes,
                                                                             monkeypatch, capsys):
    spec_file = write_spec(tmp_path, linear_spec)  # checkpoint: a.pt, beside the spec
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert pod_cli.main(["estimate", "--spec-file", str(spec_file), "--points", "1"]) == 0
    assert fakes[-1]["spec"].model.checkpoint == str(tmp_path / "a.pt")
    assert fakes[-1]["spec"].hash == load_spec(spec_file).hash  # the launcher's reading, exactly
    assert json.loads(capsys.readouterr().out)["landscape_estimate"]["points"] == 20


def test_version_on_both_commands(capsys):
    for main, prog in ((cli.main, "launcher"), (pod_cli.main, "landscape-job")):
        with pytest.raises(SystemExit) as stop:
            main(["--version"])
        assert stop.value.code == 0
        assert capsys.readouterr().out.strip() == f"{prog} 0.1.0"


def test_quiet_and_verbose(tmp_path, linear_spec, fakes, capsys):
    spec_file = write_spec(tmp_path, linear_spec)
    assert cli.main(["estimate", str(spec_file), "-q"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "wall: about" in quiet.out  # the result stays; the note goes
    assert cli.main(["-v", "validate", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("missing.yaml: spec file not found")
    assert cli.main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli.main(["-q", "-v", "validate", str(spec_file)])
    assert stop.value.code == 2


def test_json_output_of_validate_and_estimate(tmp_path, linear_spec, fakes, monkeypatch, capsys):
    spec_file = write_spec(tmp_path, linear_spec)
    assert cli.main(["validate", str(spec_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    spec = load_spec(spec_file)
    assert report["valid"] and report["spec_hash"] == spec.hash and report["spec"]["name"] == "linear"
    assert report["work"][0] == "grid: 5 x 4 = 20 points (2-D)" and report["spec"]["model"]["checkpoint"].endswith("a.pt")

    monkeypatch.setattr(cli, "_memory", lambda spec: (Estimate(0, 0, 1, 1, "cpu", 0), []))  # any dataclass
    assert cli.main(["estimate", str(spec_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    est = out["estimate"]
    fields = {k: v for k, v in est.items() if k in Estimate.__dataclass_fields__}
    assert est["wall_seconds"] == pytest.approx(Estimate(**fields).wall_seconds) and est["parallel"] >= 1
    assert est["compute_hours"] == pytest.approx(20 * 0.01 / 3600)
    assert cli.main(["estimate", str(spec_file), "--json", "--cluster"]) == 2


def test_ctrl_c_during_a_local_run_prints_the_exact_command_that_resumes_it(tmp_path, linear_spec, fakes, capsys):
    spec_file = write_spec(tmp_path, linear_spec)
    store = tmp_path / "my store"
    FakeRunner.interrupt = True
    assert cli.main(["submit", str(spec_file), "--local", "--storage", str(store), "--workers", "1"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("launcher: interrupted; run linear-") and "resume it with: " in err
    command = shlex.split(err.split("resume it with: ", 1)[1])
    run_id = command[command.index("--run-id") + 1]
    assert command[:2] == ["launcher", "submit"] and (store / run_id / "spec.yaml").is_file()
    assert command[command.index("--storage") + 1] == str(store)
    # The printed command resumes that run: same id, same storage, the spec accepted as the same.
    FakeRunner.interrupt = False
    assert cli.main(command[1:]) == 0
    assert f"{run_id}/surface.h5" in capsys.readouterr().out
    assert sorted(p.name for p in store.iterdir()) == [run_id]
