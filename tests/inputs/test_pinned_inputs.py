"""Inputs are pinned to the run (issue 13, point 2): a resume never mixes models or data.

Before, a checkpoint copied over ``model.checkpoint`` between attempts was used by the
resumed shards (exit 0, rows of the surface around another model, max |Δ| 33).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_all, save_linear_checkpoint, spec_from, write_spec
from landscape_job import stages
from landscape_job.base.errors import UserError
from landscape_job.run.shards import shard_key
from landscape_job.spec.parse import load_spec
from launcher.cli import main as launcher
from launcher.local.runner import open_run


@pytest.mark.slow
def test_a_checkpoint_replaced_before_resume_is_refused(tmp_path: Path, linear_spec: dict, capsys) -> None:
    (tmp_path / "ck").mkdir()
    save_linear_checkpoint(tmp_path / "ck" / "model.pt", 0)
    linear_spec["model"]["checkpoint"] = "ck/model.pt"
    # Two shards: one kept from the first attempt, one for the resume to compute (its model is what is tested).
    linear_spec["compute"]["shards"] = 2
    linear_spec["plot"] = {"formats": ["vtp"]}  # surface.h5 is compared, not the figures: merge without matplotlib
    path = write_spec(tmp_path, linear_spec)
    # The first attempt: what `launcher submit --run-id r1 --workers 1` stores (open_run, then its stages at its
    # workers' thread counts), made in this process (conftest.run_all with workers: ~11 s of CPU less than four
    # stage processes). The resumes below are the launcher's.
    run_all(open_run(load_spec(path), "r1"), 2, workers=1)
    run_dir = tmp_path / "runs" / "r1"
    surface = (run_dir / "surface.h5").read_bytes()
    (run_dir / shard_key(1, 2)).unlink()
    original = (tmp_path / "ck" / "model.pt").read_bytes()
    shutil.copy(tmp_path / "b.pt", tmp_path / "ck" / "model.pt")  # another model under the same name
    capsys.readouterr()

    assert launcher(["submit", str(path), "--local", "--run-id", "r1", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "model.checkpoint:" in err and "changed since this run's directions were built" in err, err
    assert "Traceback" not in err
    assert not (run_dir / shard_key(1, 2)).exists()
    assert (run_dir / "surface.h5").read_bytes() == surface  # nothing merged around the other model

    (tmp_path / "ck" / "model.pt").write_bytes(original)  # the way out: the file restored
    assert launcher(["submit", str(path), "--local", "--run-id", "r1", "--workers", "1"]) == 0
    (tmp_path / "before.h5").write_bytes(surface)
    with h5py.File(run_dir / "surface.h5") as new, h5py.File(tmp_path / "before.h5") as old:
        assert np.array_equal(new["train_loss"][()], old["train_loss"][()])


@pytest.mark.parametrize("stage", ["prepare", "evaluate"])
def test_every_stage_checks_the_targets(tmp_path: Path, linear_spec: dict, stage: str) -> None:
    linear_spec["directions"] = {"type": "plane", "targets": ["b.pt", "c.pt"]}
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "plane")
    stages.prepare(run, log=lambda _m: None)
    save_linear_checkpoint(tmp_path / "c.pt", 9)
    with pytest.raises(UserError, match=r"directions.targets\[1\]: .*c.pt changed since"):
        if stage == "prepare":
            stages.prepare(run, log=lambda _m: None)
        else:
            stages.evaluate(run, 0, log=lambda _m: None)


@pytest.mark.slow
def test_tensors_data_files_are_pinned(tmp_path: Path, linear_spec: dict) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for split in ("train", "test"):
        np.savez(tmp_path / "data" / f"{split}.npz", inputs=rng.standard_normal((20, 6)).astype(np.float32),
                 labels=rng.integers(0, 3, 20))
    linear_spec["data"] = {"dataset": "tensors", "root": "data", "classes": 3}
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "tensors")
    run_all(run, 1)
    (tmp_path / "runs" / "tensors" / shard_key(0, 1)).unlink()
    np.savez(tmp_path / "data" / "test.npz", inputs=rng.standard_normal((20, 6)).astype(np.float32),
             labels=rng.integers(0, 3, 20))
    with pytest.raises(UserError, match=r"data.root: .*data/test.npz changed since"):
        stages.evaluate(run, 0, log=lambda _m: None)
