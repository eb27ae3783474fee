"""``launcher.api.submit`` (issue 15, point 1): a notebook sends a spec off and pulls the surface.

The local backend runs the stages as processes in the background (the notebook stays
usable), ``status`` reads the run's storage, ``wait`` blocks until the merge is done and
``pull`` gives the surface, equal to the in-memory API's for the same weights, data and
directions. A spec mistake raises before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape_job import api as ls
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.datasets.builtin import load_split
from landscape_job.base.errors import StageError, UserError
from landscape_job.models import build_model
from landscape_job.spec.sections import DataSpec
from launcher.api import submit
from cluster_testing import aws_env, bucket, fake  # noqa: F401 - the fake cluster and S3 bucket fixtures


@pytest.mark.slow
def test_submit_local_wait_pull_equals_the_api(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a dict spec's relative paths are the notebook's folder's
    linear_spec["grid"] = {"x": "-1:1:4", "y": "-1:1:3"}
    linear_spec["compute"]["shards"] = 1  # the handle is under test; sharded = unsharded is test_sharding's
    run = submit(linear_spec, backend="local", run_id="nb-run")
    first = run.status()
    assert first.state in ("running", "succeeded") and first.points == 12
    final = run.wait(timeout=600, interval=0.5).status()
    assert final.state == "succeeded" and final.points_done == 12, run.log
    landscape = run.pull(tmp_path / "pulled")
    assert (tmp_path / "pulled" / "surface.h5").is_file() and (tmp_path / "pulled" / "report.json").is_file()
    assert any((tmp_path / "pulled" / "plots").glob("*.png"))
    assert run.url.endswith("/runs/nb-run")

    model = build_model("mlp", 3, (6,), {"hidden": []})
    load_into(model, load_state_dict(tmp_path / "a.pt"), "a.pt")
    data = {s: (split.inputs, split.labels) for s in ("train", "test")
            for split in [load_split(DataSpec(dataset="synthetic", options=linear_spec["data"]["options"]), s)]}
    d = linear_spec["directions"]
    same = ls.plane(model, data, x="-1:1:4", y="-1:1:3", seed=d["seed"], norm=d["norm"], ignore=d["ignore"],
                    precision="fp64", batch_size=32, progress=False)
    assert same.attrs["direction_hash"] == landscape.attrs["direction_hash"]
    for name, values in landscape.values.items():
        np.testing.assert_allclose(same[name], values, rtol=1e-12, atol=1e-12, err_msg=name)


def test_mistakes_raise_before_anything_is_written(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"grid.x: "):
        submit({**linear_spec, "grid": {"x": "1:0:3"}}, backend="local")
    with pytest.raises(UserError, match=r"backend: expected one of local, cluster, slurm, got 'gpu'"):
        submit(linear_spec, backend="gpu")
    with pytest.raises(UserError, match=r"model.checkpoint|a\.pt"):
        submit({**linear_spec, "model": {**linear_spec["model"], "checkpoint": "missing.pt"}}, backend="local")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_submit_to_the_cluster_wait_pull(fake, bucket: str, moto_endpoint: str, linear_spec: dict,
                                         tmp_path: Path, monkeypatch) -> None:
    """backend="cluster" is ``launcher submit``: the fake API server runs the pods; the handle follows S3."""
    from cluster_testing import cluster_spec

    monkeypatch.chdir(tmp_path)
    linear_spec["plot"] = {"formats": ["vtp"]}  # the surface is pulled and checked, not the figures
    run = submit(cluster_spec(linear_spec, bucket, moto_endpoint, shards=1), backend="cluster", run_id="nb-cluster")
    assert run.backend == "cluster" and run.url == f"s3://{bucket}/runs/nb-cluster"
    assert {j["metadata"]["labels"]["landscape.stage"] for j in fake.of("jobs")} == {"prepare", "evaluate", "merge"}
    landscape = run.wait(timeout=600, interval=0.5).pull()
    assert run.status().state == "succeeded" and run.status().points_done == 20
    assert landscape["train_loss"].shape == (4, 5) and np.isfinite(landscape["train_loss"]).all()


@pytest.mark.slow
def test_a_cluster_run_that_fails_reads_failed_and_wait_raises(fake, bucket: str, moto_endpoint: str,
                                                               linear_spec: dict, tmp_path: Path, monkeypatch) -> None:
    """The handle asks the cluster, as ``launcher status`` does: a prepare that fails in its pod
    (a checkpoint path that exists in no pod) is the run's failure, not a wait until the timeout."""
    from cluster_testing import cluster_spec

    monkeypatch.chdir(tmp_path)
    spec = cluster_spec(linear_spec, bucket, moto_endpoint, shards=1)
    spec["model"] = {**spec["model"], "checkpoint": "/data/checkpoints/missing.pt"}
    run = submit(spec, backend="cluster", run_id="nb-fails")
    with pytest.raises(StageError, match=r"run nb-fails failed: .*the prepare Job failed"):
        run.wait(timeout=120, interval=0.2)
    state = run.status()
    assert state.state == "failed" and state.finished and state.points_done == 0
