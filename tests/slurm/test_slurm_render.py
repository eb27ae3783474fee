"""The Slurm backend without a scheduler: the ``slurm:`` section, the rendered batch scripts, the
records read from ``scontrol``, the status words, and every user mistake refused in one line
before anything is submitted. (The real scheduler: tests/slurm/test_slurm.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from landscape_job.base.errors import UserError
from landscape_job.cli import _shard_index
from landscape_job.spec.parse import load_spec
from launcher.cli import main as launcher
from launcher.slurm.doctor import gpus_in
from launcher.slurm.record import SlurmRunRecord
from launcher.slurm.render import pyxis_image, render_scripts, sbatch_lines
from launcher.slurm.scheduler import parse_show_job, task_indexes
from launcher.slurm.section import format_time, parse_slurm, parse_time, with_defaults
from launcher.slurm.status import TaskView, failure, run_status, stage_status, status_lines

SPEC = {"name": "digits", "model": {"arch": "mlp", "checkpoint": "/data/digits.pt"},
        "data": {"dataset": "digits"}, "grid": {"x": "-1:1:41", "y": "-1:1:41"}, "compute": {"shards": 16},
        "storage": "file:///shared/runs"}


def spec_file(tmp_path: Path, **slurm: object) -> Path:
    path = tmp_path / "surface.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "slurm": slurm}))
    return path


def scripts(tmp_path: Path, **slurm: object):
    spec = load_spec(spec_file(tmp_path, **slurm), check_files=False)
    return render_scripts(spec, "r1", with_defaults(parse_slurm(spec.slurm), "/shared/envs/default"))


def options(text: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


def test_the_evaluate_array_holds_one_gpu_a_task_and_ends_with_the_run(tmp_path: Path) -> None:
    run = scripts(tmp_path, partition="gpu", cpu_partition="cpu", account="proj42", qos="normal", constraint="a100",
                  code="pyxis", parallelism=4, cpus=8, memory="64G", extra_sbatch=["--mail-type=FAIL"])
    evaluate = options(run.script("evaluate").text)
    for wanted in ("--array=0-15%4", "--partition=gpu", "--account=proj42", "--qos=normal", "--constraint=a100",
                   "--cpus-per-task=8", "--mem=64G", "--gpus-per-task=1", "--kill-on-invalid-dep=yes", "--requeue",
                   "--signal=B:TERM@300", "--output=/shared/runs/r1/logs/evaluate-%a.log", "--open-mode=append",
                   "--mail-type=FAIL", "--comment=landscape-run=r1"):
        assert wanted in evaluate, wanted
    text = run.script("evaluate").text
    assert "export LANDSCAPE_RUN=file:///shared/runs/r1" in text and "export LANDSCAPE_REQUIRE_GPU=1" in text
    # The batch shell becomes srun, so --signal=B:TERM reaches the stage through it; the run folder is mounted.
    assert text.rstrip().endswith("exec srun --ntasks=1 --cpus-per-task=8 "
                                  "'--container-image=ghcr.io#landscape-dev/landscape:0.1.0' "
                                  "--container-mounts=/shared/runs landscape-job evaluate")
    for stage in ("prepare", "merge"):
        light = options(run.script(stage).text)
        assert "--partition=cpu" in light and "--no-requeue" in light and "--kill-on-invalid-dep=yes" in light
        assert not any(o.startswith(("--gpus", "--gres", "--array", "--constraint")) for o in light), light
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_prepare_carries_the_spec_and_the_sbatch_lines_chain_the_stages(tmp_path: Path) -> None:
    run = scripts(tmp_path)
    prepare = run.script("prepare").text
    embedded = prepare.split("<<'LANDSCAPE_SPEC_END'\n", 1)[1].split("\nLANDSCAPE_SPEC_END\n", 1)[0]
    assert yaml.safe_load(embedded)["grid"] == {"x": "-1:1:41", "y": "-1:1:41"}
    assert "export LANDSCAPE_SPEC_FILE=/shared/runs/r1/logs/prepare.spec.yaml" in prepare
    lines = sbatch_lines(run)
    assert lines[1] == "prepare=$(sbatch --parsable ./prepare.sbatch)"
    assert lines[2] == "evaluate=$(sbatch --parsable --dependency=afterok:$prepare ./evaluate.sbatch)"
    assert lines[3] == "merge=$(sbatch --parsable --dependency=afterok:$evaluate ./merge.sbatch)"


def test_apptainer_gres_and_venv_modes(tmp_path: Path) -> None:
    run = scripts(tmp_path, code="apptainer", gpu_request="gres", gpu_type="a100", gpus=2,
                  container_mounts=["/scratch"], setup=["module load apptainer"])
    text = run.script("evaluate").text
    assert "#SBATCH --gres=gpu:a100:2" in text and "module load apptainer\n" in text
    assert text.rstrip().endswith("exec apptainer exec --nv --bind=/scratch,/shared/runs "
                                  "docker://ghcr.io/landscape-dev/landscape:0.1.0 landscape-job evaluate")
    assert "--nv" not in run.script("merge").text  # merge holds no GPU
    venv = scripts(tmp_path, venv="/shared/envs/ls", gpus=0).script("evaluate").text
    assert venv.rstrip().endswith("exec /shared/envs/ls/bin/landscape-job evaluate")
    assert "--gpus" not in venv and "LANDSCAPE_REQUIRE_GPU" not in venv
    assert pyxis_image("nvcr.io/nvidia/pytorch:24.01-py3") == "nvcr.io#nvidia/pytorch:24.01-py3"
    assert pyxis_image("ubuntu:22.04") == "ubuntu:22.04" and pyxis_image("/shared/ls.sqsh") == "/shared/ls.sqsh"


def test_time_limits_are_sized_from_the_run_or_taken_from_the_spec(tmp_path: Path) -> None:
    # 1681 points in 16 shards: 106 a shard at 60 s, a 1800 s start-up, the 300 s signal lead.
    sized = options(scripts(tmp_path).script("evaluate").text)
    assert f"--time={format_time(1800 + 106 * 60 + 300)}" in sized and "--time=0-02:21:00" in sized
    given = scripts(tmp_path, evaluate_time="1-00:00:00", prepare_time=90, merge_time="30:00")
    assert "--time=1-00:00:00" in given.script("evaluate").text
    assert "--time=0-01:30:00" in given.script("prepare").text and "--time=0-00:30:00" in given.script("merge").text
    assert parse_time("2:30:00", "k") == 9000 and parse_time("5-0", "k") == 5 * 86400 and parse_time(3, "k") == 180


@pytest.mark.parametrize("slurm, message", [
    ({"gpus": "one"}, "slurm.gpus: expected an integer"),
    ({"partitoin": "gpu"}, "slurm.partitoin: unknown key; did you mean 'partition'?"),
    ({"extra_sbatch": ["--array=0-3"]}, "slurm.extra_sbatch[0]: --array is set by the launcher"),
    ({"extra_sbatch": ["mail"]}, "slurm.extra_sbatch[0]: expected an sbatch option"),
    ({"memory": "lots"}, "slurm.memory: expected megabytes"),
    ({"evaluate_time": "soon"}, "slurm.evaluate_time: expected minutes or [D-]HH:MM:SS"),
    ({"evaluate_time": 5, "signal_seconds": 600}, "slurm.signal_seconds: 600 s is not below evaluate's time limit"),
    ({"code": "docker"}, "slurm.code: expected one of venv, pyxis, apptainer"),
    ({"code": "pyxis", "venv": "/x"}, "slurm.venv: only with code: venv"),
    ({"venv": "relative/env"}, "slurm.venv: expected an absolute path"),
    ({"setup": ["a\nb"]}, "slurm.setup[0]: expected one line"),
    ({"container_mounts": ["data:/data"]}, "slurm.container_mounts[0]: expected /host/path"),
])
def test_a_mistake_in_the_section_is_one_line_exit_2_before_any_sbatch(tmp_path: Path, capsys, slurm: dict,
                                                                     message: str, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here: the refusal must come before any is looked for
    path = spec_file(tmp_path, **slurm)
    for argv in (["render", str(path), "--slurm"], ["submit", str(path), "--slurm", "--run-id", "r1"]):
        assert launcher(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("launcher: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_s3_storage_needs_a_log_folder(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path), storage_override="s3://bucket/runs", check_files=False)
    with pytest.raises(UserError, match=r"^slurm.log_dir: required with s3:// storage"):
        render_scripts(spec, "r1", parse_slurm({"code": "pyxis"}))
    run = render_scripts(spec, "r1", parse_slurm({"log_dir": "/shared/logs", "code": "apptainer"}))
    assert "--output=/shared/logs/r1/evaluate-%a.log" in run.script("evaluate").text
    assert "--bind=/shared/logs/r1 " in run.script("evaluate").text  # the log folder is mounted, not the bucket


def test_an_array_task_takes_its_shard_from_slurm(monkeypatch) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert _shard_index(None) == 7
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")  # an Indexed Job's own index first
    assert _shard_index(None) == 3
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "x")
    with pytest.raises(UserError, match="SLURM_ARRAY_TASK_ID: expected an integer"):
        _shard_index(None)


LINE = ("JobId=12 ArrayJobId=10 ArrayTaskId=2 JobName=r1-evaluate UserId=u(1) JobState=TIMEOUT Reason=TimeLimit "
        "Dependency=(null) Requeue=1 Restarts=1 ExitCode=0:15 RunTime=01:00:30 TimeLimit=01:00:00 "
        "Comment=landscape-run=r1 Command=/tmp/my script.sh WorkDir=/tmp")


def test_scontrol_lines_are_read_into_records() -> None:
    job = parse_show_job(LINE)
    assert (job.job_id, job.array_job_id, job.tasks, job.state, job.reason) == (12, 10, (2,), "TIMEOUT", "TimeLimit")
    assert (job.exit_code, job.signal, job.restarts, job.run_seconds, job.limit_seconds) == (0, 15, 1, 3630, 3600)
    assert job.comment == "landscape-run=r1" and job.label == "10_2"
    assert task_indexes("0-15%4") == tuple(range(16)) and task_indexes("1,3,5-7") == (1, 3, 5, 6, 7)
    assert gpus_in("gpu:a100:4(S:0-1),nic:1") == 4 and gpus_in("(null)") == 0 and gpus_in("gpu:2") == 2


def _job(**fields: str) -> str:
    base = {"JobId": "5", "ArrayJobId": "5", "ArrayTaskId": "0", "JobState": "FAILED", "Reason": "NonZeroExitCode",
            "ExitCode": "2:0", "RunTime": "00:00:10", "TimeLimit": "00:10:00", "Restarts": "0"}
    return " ".join(f"{k}={v}" for k, v in {**base, **fields}.items())


def test_each_way_a_task_fails_is_named() -> None:
    assert failure(parse_show_job(LINE), 300).startswith("TIMEOUT: over its time limit (0-01:00:00)")
    assert failure(parse_show_job(_job()), 300) == "exit 2: a user error, not retried"
    assert failure(parse_show_job(_job(ExitCode="143:0", RunTime="00:09:00")), 120).startswith(
        "time limit: stopped by the --signal=B:TERM@120 warning after 540 s")
    assert failure(parse_show_job(_job(ExitCode="143:0", RunTime="00:01:00")), 120).startswith("exit 143")
    assert failure(parse_show_job(_job(JobState="OUT_OF_MEMORY")), 300).startswith("OUT_OF_MEMORY")
    assert failure(parse_show_job(_job(JobState="RUNNING", ExitCode="0:0")), 300) is None


def test_status_names_the_pending_reasons_and_the_failed_task(tmp_path: Path) -> None:
    record = SlurmRunRecord.new("r1", {"prepare": "4", "evaluate": "5", "merge": "6"}, 3, str(tmp_path), 300)
    (tmp_path / "evaluate-1.log").write_text("landscape-job: error: data.root: /x not found\n")
    jobs = {"prepare": [parse_show_job(_job(JobId="4", ArrayJobId="", JobState="COMPLETED", ExitCode="0:0"))],
            "evaluate": [parse_show_job(_job(ArrayTaskId="0", JobState="RUNNING", ExitCode="0:0")),
                         parse_show_job(_job(ArrayTaskId="2", JobState="PENDING", Reason="Priority", ExitCode="0:0"))],
            "merge": [parse_show_job(_job(JobId="6", ArrayJobId="", JobState="PENDING", Reason="Dependency",
                                          ExitCode="0:0"))]}
    from launcher.slurm.backend import last_log_line

    status = run_status(record, "file:///runs/r1", jobs, {"manifest.json"}, {},
                        lambda stage, shard: last_log_line(record, stage, shard))
    lines = "\n".join(status_lines(status))
    assert status.state == "Running" and "shard 2: PENDING (Priority)" in lines
    assert "merge: Pending (Dependency)" in lines
    assert "shard 1: UNKNOWN" in lines  # neither Slurm nor storage knows it
    jobs["evaluate"].append(parse_show_job(_job(ArrayTaskId="1")))
    failed = run_status(record, "file:///runs/r1", jobs, {"manifest.json"}, {},
                        lambda stage, shard: last_log_line(record, stage, shard))
    assert failed.state == "Failed"
    assert failed.error == ("evaluate task 1 (job 5_1): exit 2: a user error, not retried; its log ends: "
                            "landscape-job: error: data.root: /x not found")
    waiting = stage_status("evaluate", [TaskView(0, "5_0", "PENDING", "Resources")], lambda s, i: None)
    assert (waiting.state, waiting.reason) == ("Waiting", "Resources")


def test_a_run_whose_jobs_slurm_forgot_ends_instead_of_waiting_forever(tmp_path: Path) -> None:
    record = SlurmRunRecord.new("r1", {"prepare": "4", "evaluate": "5", "merge": "6"}, 2, str(tmp_path), 300)
    keys = {"manifest.json", "shards/shard-0-of-2.h5"}  # shard 1 never finished; Slurm has forgotten all
    status = run_status(record, "file:///runs/r1", {}, keys, {}, lambda stage, shard: None)
    assert status.state == "Gone" and status.stage("evaluate").state == "Gone"
    assert "no longer known to Slurm" in status.error
    merged = run_status(record, "file:///runs/r1", {}, keys | {"shards/shard-1-of-2.h5", "surface.h5", "report.json"},
                        {}, lambda stage, shard: None)
    assert merged.state == "Complete"
