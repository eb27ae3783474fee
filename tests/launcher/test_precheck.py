"""launcher.local.precheck: a fresh launcher checks a local run's inputs in a stage of the run's own server.

Each check runs ``launcher submit --local`` in a fresh interpreter (as a user's shell does) that reports,
as it exits, whether it imported torch: the check of the inputs must have run in the stage server's child,
and what the user sees must be what ``launcher validate`` (which checks in itself) says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from conftest import write_spec
from landscape_job.forkserver import FORKS
from launcher.cli import main as validate

ROOT = Path(__file__).resolve().parents[2]
# launcher.cli's main, then: its exit code and whether this process imported torch, on the last line of stdout
LAUNCHER = [sys.executable, "-c", "import sys; from launcher.cli import main\ntry: code = main(sys.argv[1:])\n"
            "except SystemExit as e: code = e.code\nprint(code, 'torch' in sys.modules)"]

pytestmark = [pytest.mark.slow,  # each test runs a launcher and its stage server (~3 s of CPU)
              pytest.mark.skipif(not FORKS, reason="stages are forked on Linux only")]


def _launch(*args: str, cwd: Path) -> tuple[str, str]:
    done = subprocess.run([*LAUNCHER, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    return done.stdout.strip().splitlines()[-1], done.stderr


def test_a_local_run_imports_torch_in_its_stages_only(tmp_path: Path, linear_spec: dict) -> None:
    spec = write_spec(tmp_path, linear_spec)
    last, err = _launch("submit", str(spec), "--local", "--run-id", "r", cwd=tmp_path)
    assert last == "0 False", err
    with h5py.File(tmp_path / "runs" / "r" / "surface.h5") as f:
        assert f["train_loss"].shape == (4, 5)  # y by x


@pytest.mark.parametrize("mistake", ["kwargs", "device"])
def test_an_input_mistake_is_validates_one_line_and_nothing_is_written(tmp_path: Path, linear_spec: dict,
                                                                        mistake: str, monkeypatch, capsys) -> None:
    """Mistakes only the inputs' check finds (a checkpoint that does not fit, CUDA on a CPU machine): the
    launcher says what ``launcher validate`` says, which checks in its own process (here, this one)."""
    if mistake == "kwargs":
        linear_spec["model"]["kwargs"] = {"hidden": [3]}
    else:
        linear_spec["compute"]["device"] = "cuda"
        torch.cuda.is_available() and pytest.skip("this machine has CUDA")
    spec = write_spec(tmp_path, linear_spec)
    monkeypatch.chdir(tmp_path)
    assert validate(["validate", str(spec)]) == 2
    said = capsys.readouterr().err
    submitted, err = _launch("submit", str(spec), "--local", "--run-id", "r", cwd=tmp_path)
    assert said.startswith("launcher: error: ") and said.count("\n") == 1, said
    assert submitted == "2 False" and err == said, err
    assert not (tmp_path / "runs").exists()
