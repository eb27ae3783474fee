"""A series run end to end: its spec, sharded = unsharded, a killed shard resumes, series.h5 as h5py reads it,
and the edge of stability on the digits example (a short training inside the test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import SYNTHETIC, checkpointed_points, run_all, save_linear_checkpoint, spec_from, write_spec
from landscape_job import stages
from landscape_job.base.errors import UserError
from landscape_job.spec.parse import load_spec, spec_from_yaml
from launcher.local.runner import open_run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def series_raw(tmp_path: Path) -> dict:
    """Five checkpoints of a small MLP on the synthetic set, named by step, listed by a glob."""
    (tmp_path / "ck").mkdir()
    for step, seed in ((0, 0), (10, 1), (20, 2), (100, 3), (30, 4)):
        save_linear_checkpoint(tmp_path / "ck" / f"step_{step}.pt", seed, hidden=[5])
    return {
        "name": "series",
        "model": {"arch": "mlp", "kwargs": {"hidden": [5]}},
        "data": {"dataset": "synthetic", "options": dict(SYNTHETIC)},
        "series": {"checkpoints": "ck/step_*.pt", "lr": 0.5, "momentum": 0.5, "top_k": 3,
                   "metrics": ["loss", "accuracy", "hessian", "gradient", "noise"],
                   "noise_batch_size": 8, "noise_per_layer": True},
        "hessian": {"ignore": "none", "iterations": 60, "tolerance": 1e-8},
        "compute": {"shards": 1, "precision": "fp64", "batch_size": 32, "checkpoint_every": 2,
                    "checkpoint_adapt": False},
        "storage": "runs",
    }


def test_the_spec_lists_checkpoints_in_step_order(tmp_path: Path, series_raw: dict) -> None:
    spec = spec_from(tmp_path, series_raw)
    assert spec.series.steps == (0, 10, 20, 30, 100)  # natural order, then by step
    assert [Path(c).name for c in spec.series.checkpoints] == [f"step_{s}.pt" for s in (0, 10, 20, 30, 100)]
    assert spec.grid.size == 5 and spec.model.checkpoint == spec.series.checkpoints[-1]
    assert spec.series.threshold == pytest.approx((2 + 2 * 0.5) / 0.5)
    again = spec_from_yaml(spec.to_yaml(), "stored")
    assert again.hash == spec.hash and again.series == spec.series
    assert "grid" not in spec.to_dict() and "directions" not in spec.to_dict()


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(grid={"x": "-1:1:3"}), "grid: a series run"),
    (lambda r: r["series"].update(steps=[1, 2]), "series.steps: 2 steps for 5 checkpoints"),
    (lambda r: r["series"].update(top_k=65), "series.top_k: at most 64"),
    (lambda r: r["series"].update(momentum=1.0), "series.momentum"),
    (lambda r: r["series"].update(lr=0), "series.lr: must be positive"),
    (lambda r: r["series"].update(metrics=["loss", "sharpness"]), "series.metrics[1]"),
    (lambda r: r["series"].update(checkpoints="nothing/*.pt"), "series.checkpoints: no checkpoint file matches"),
    (lambda r: r["series"].update(steps=[1, 1, 2, 3, 4]), "same step"),
    (lambda r: r["series"].update(typo=1), "series.typo: unknown key"),
    (lambda r: r["series"].update(top_k=60), "hessian.iterations: 60 Lanczos steps cannot give series.top_k = 60"),
    (lambda r: r.update(metrics=["loss"]), "metrics: a series run"),
])
def test_a_bad_series_is_one_line_naming_the_key(tmp_path: Path, series_raw: dict, change, message: str) -> None:
    change(series_raw)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        spec_from(tmp_path, series_raw)


def _series(tmp_path: Path, raw: dict, run_id: str, plots: bool = False) -> dict[str, np.ndarray]:
    spec = spec_from(tmp_path, raw)
    run = open_run(spec, run_id)
    run_all(run, spec.compute.shards)
    with h5py.File(tmp_path / "runs" / run_id / "series.h5") as f:
        return {k: f[k][()] for k in f} | {"attrs": dict(f.attrs)}


@pytest.mark.slow
def test_sharded_equals_unsharded_and_h5py_reads_the_file(tmp_path: Path, series_raw: dict) -> None:
    whole = _series(tmp_path, series_raw, "one")
    series_raw["compute"]["shards"] = 3
    sharded = _series(tmp_path, series_raw, "three")
    for name in whole:
        if name != "attrs":
            np.testing.assert_array_equal(sharded[name], whole[name], err_msg=name)
    assert whole["step"].tolist() == [0, 10, 20, 30, 100]
    assert whole["top_eigenvalues"].shape == (5, 3) and whole["grad_components"].shape == (5, 3)
    assert whole["train_loss"].shape == (5,) and np.isfinite(whole["tail_index"]).all()
    assert whole["tail_index_layers"].shape == (5, 4)  # two weights, two biases
    assert json.loads(whole["attrs"]["layer_names"]) == ["layers.1.weight", "layers.1.bias", "layers.3.weight",
                                                         "layers.3.bias"]
    assert whole["attrs"]["threshold"] == pytest.approx(6.0)
    assert (np.diff(whole["top_eigenvalues"], axis=1) <= 0).all()  # descending
    # The row of step 30 is the checkpoint step_30.pt, measured on its own.
    from landscape_job.series.probe import split_metrics
    from landscape_job.datasets.builtin import load_split
    from landscape_job.models import build_model

    model = build_model("mlp", 3, (6,), {"hidden": [5]}).double().eval()
    model.load_state_dict(torch.load(tmp_path / "ck" / "step_30.pt", weights_only=True)["state_dict"])
    split = load_split(spec_from(tmp_path, series_raw).data, "train")
    loss, acc = split_metrics(model, split, "cross_entropy", 1000)
    assert whole["train_loss"][3] == pytest.approx(loss, rel=1e-12) and whole["train_acc"][3] == pytest.approx(acc)


@pytest.mark.slow
def test_a_killed_shard_resumes_to_the_same_series(tmp_path: Path, series_raw: dict) -> None:
    series_raw["series"]["metrics"] = ["loss", "hessian", "gradient"]
    reference = _series(tmp_path, series_raw, "whole")
    spec = spec_from(tmp_path, series_raw)
    run = open_run(spec, "killed")
    stages.prepare(run, log=lambda _: None)
    import landscape_job.series.evaluator as module

    original, calls = module.measure, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed while measuring the fourth checkpoint
        return original(*args, **kwargs)

    module.measure = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            stages.evaluate(run, 0, log=lambda _: None)
    finally:
        module.measure = original
    assert checkpointed_points(run, 0, 1) == 2  # saved after the second checkpoint
    record = stages.evaluate(run, 0, log=lambda _: None)
    assert record.points_resumed == 2 and record.points_computed == 3 and record.attempts == 2
    report = stages.merge(run, log=lambda _: None, plots=False)
    assert report["kind"] == "series" and report["retries"] == 1
    with h5py.File(tmp_path / "runs/killed/series.h5") as f:
        for name in ("train_loss", "top_eigenvalues", "grad_components", "predicted_delta", "top_k_share"):
            np.testing.assert_array_equal(f[name][()], reference[name], err_msg=name)


def test_a_checkpoint_changed_after_prepare_is_refused(tmp_path: Path, series_raw: dict) -> None:
    spec = spec_from(tmp_path, series_raw)
    run = open_run(spec, "changed")
    stages.prepare(run, log=lambda _: None)
    save_linear_checkpoint(tmp_path / "ck" / "step_20.pt", 99, hidden=[5])
    with pytest.raises(UserError, match=r"series.checkpoints\[2\]"):
        stages.evaluate(run, 0, log=lambda _: None)


@pytest.mark.slow
def test_the_digits_example_reaches_the_edge_of_stability(tmp_path: Path) -> None:
    """The example's short version: full-batch GD at η = 0.2 on 300 digits; λmax over the last third
    of the steps stays within 20% of 2/η (and the figures and the viewer page are written)."""
    sys.path.insert(0, str(EXAMPLES))
    from train_digits_eos import train

    train(tmp_path / "eos", lr=0.2, steps=390, every=30, subset=300, log=lambda _: None)
    raw = {"name": "eos-short", "model": {"arch": "python:eos_net:tanh_mlp", "kwargs": {"hidden": [32, 32]}},
           "python": {"path": [str(EXAMPLES / "eos")]},
           "data": {"dataset": "digits", "subset": 300, "splits": ["train"]},
           "loss": "python:eos_net:half_squared_error",
           "series": {"checkpoints": "eos/step_*.pt", "lr": 0.2, "metrics": ["loss", "hessian"], "top_k": 2},
           "hessian": {"ignore": "none", "iterations": 80, "trace_samples": 0},
           "compute": {"shards": 2, "precision": "fp64"}, "storage": "runs"}
    spec = load_spec(write_spec(tmp_path, raw))
    run = open_run(spec, "eos")
    stages.prepare(run, log=lambda _: None)
    for shard in range(2):
        stages.evaluate(run, shard, log=lambda _: None)
    report = stages.merge(run, log=lambda _: None, plots=True)
    eos = report["edge_of_stability"]
    print(json.dumps(eos, indent=1))  # the numbers, in the test's output
    assert eos["threshold"] == pytest.approx(10.0)
    assert eos["last_third"]["within_band"] == 1.0
    assert abs(eos["last_third"]["median"] - 10.0) <= 2.0
    assert eos["reached"] and eos["reached_at_step"] > 0 and eos["before"] < 10.0
    with h5py.File(tmp_path / "runs/eos/series.h5") as f:
        sharpness = f["top_eigenvalues"][:, 0]
    first_third = sharpness[1:len(sharpness) // 3 + 1]  # after the first step's catapult: below the line
    assert first_third.min() < 0.95 * 10.0 < sharpness.max()
    assert {"plots/series_sharpness_flow.png", "plots/series.html"} <= set(report["outputs"])


def test_eos_summary_finds_the_crossing_from_below() -> None:
    from landscape_job.series.merge import eos_summary

    steps = np.arange(0, 90, 10)
    sharpness = np.array([12.0, 6.0, 8.0, 9.5, 10.4, 10.1, 9.9, 10.2, 9.8])  # a catapult, sharpening, EoS
    eos = eos_summary(steps, sharpness, 10.0)
    assert eos["reached_at_step"] == 40 and eos["before"] == 9.5 and eos["at"] == 10.4
    assert eos["after"] == pytest.approx(10.1) and eos["start"] == 12.0
    assert eos["last_third"] == {"min": 9.8, "max": 10.2, "median": 9.9, "within_band": 1.0}
    never = eos_summary(steps, np.linspace(1, 5, 9), 10.0)
    assert not never["reached"] and never["last_third"]["within_band"] == 0.0


@pytest.mark.slow
def test_the_page_and_the_figures_follow_the_file(tmp_path: Path) -> None:
    """A series with loss and hessian only: two figures (no noise, no gradient), and a page whose data
    is the file's, non-finite values as null, no '</' that could end its script early."""
    from landscape_job.series.figures import plot_series
    from landscape_job.series.file import load_series, series_bytes
    from landscape_job.series.page import series_html

    flat = {"train_loss": np.array([1.0, 0.5, np.nan]), "min_eig": np.array([-1.0, 0.0, 0.5]),
            "top_eigenvalues[0]": np.array([3.0, 5.0, 4.0]), "top_eigenvalues[1]": np.array([1.0, 2.0, 2.5])}
    path = tmp_path / "series.h5"
    path.write_bytes(series_bytes(np.array([0, 5, 10]), ["a</script>", "b", "c"], flat,
                                  {"name": "t", "threshold": 4.0, "momentum": 0.0}))
    series = load_series(path)
    assert series.data["top_eigenvalues"].tolist() == [[3.0, 1.0], [5.0, 2.0], [4.0, 2.5]]
    written = {p.name for p in plot_series(series, tmp_path / "plots")}
    assert written == {"series_sharpness_flow.png", "series_sharpness_flow.pdf", "series_spectrum.png",
                       "series_spectrum.pdf"}
    page = series_html(series)
    data = json.loads(page.split('<script id="series-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["steps"] == [0, 5, 10] and data["threshold"] == 4.0
    assert list(data["fields"]) == ["top_eigenvalues", "train_loss", "min_eig"]  # sharpness first, then the registry's order
    assert data["fields"]["train_loss"]["values"] == [1.0, 0.5, None]
    assert data["fields"]["top_eigenvalues"]["values"][1] == [5.0, 2.0]
    assert "2/η = 4" in data["threshold_label"] and page.count("</script>") == 2  # the data's and the script's


@pytest.mark.slow
def test_series_figures_follow_plot_formats_and_are_reproducible(tmp_path: Path) -> None:
    """The series figures go through the surface's saver: plot.formats' figure formats only,
    and the same file drawn twice gives the same bytes (no creation date in the PDF)."""
    from landscape_job.plots.options import PlotOptions
    from landscape_job.series.figures import plot_series
    from landscape_job.series.file import load_series, series_bytes

    flat = {"top_eigenvalues[0]": np.array([3.0, 5.0, 4.0]), "train_loss": np.array([1.0, 0.5, 0.4])}
    path = tmp_path / "series.h5"
    path.write_bytes(series_bytes(np.array([0, 5, 10]), ["a", "b", "c"], flat, {"name": "t", "threshold": 4.0}))
    series = load_series(path)
    options = PlotOptions(formats=("svg", "pdf"), dpi=72)
    first = plot_series(series, tmp_path / "one", options=options)
    second = plot_series(series, tmp_path / "two", options=options)
    assert sorted(p.name for p in first) == ["series_sharpness_flow.pdf", "series_sharpness_flow.svg",
                                             "series_spectrum.pdf", "series_spectrum.svg"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert b"CreationDate" not in first[1].read_bytes()


def test_a_glob_left_for_the_pods_is_expanded_by_them(tmp_path: Path, series_raw: dict) -> None:
    """Unchecked (a cluster's spec), the glob stays a pattern; the pods' parse of the stored spec expands it."""
    from landscape_job.spec.parse import parse_spec

    series_raw["compute"]["shards"] = 3
    unchecked = parse_spec(series_raw, base_dir=tmp_path, check_files=False)
    assert unchecked.series.checkpoints == (str(tmp_path / "ck" / "step_*.pt"),) and not unchecked.series.listed
    on_a_pod = spec_from_yaml(unchecked.to_yaml(), "spec.yaml")
    assert on_a_pod.series.steps == (0, 10, 20, 30, 100) and on_a_pod.grid.size == 5
    assert on_a_pod.model.checkpoint == str(tmp_path / "ck" / "step_100.pt")


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """A fresh moto bucket, dummy credentials, boto3 pointed at moto only (as tests/inputs/test_inputs.py)."""
    import os
    import uuid

    from storage_testing import s3_client

    for name in list(os.environ):
        if name.startswith("AWS_") or name == "LANDSCAPE_STORAGE_OPTIONS":
            monkeypatch.delenv(name)
    config = tmp_path / "aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    for name, value in (("AWS_CONFIG_FILE", str(config)), ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none")),
                        ("AWS_EC2_METADATA_DISABLED", "true"), ("NO_PROXY", "127.0.0.1,localhost"),
                        ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", moto_endpoint),
                        ("LANDSCAPE_CACHE_DIR", str(tmp_path / "cache"))):
        monkeypatch.setenv(name, value)
    client = s3_client(moto_endpoint)
    name = f"series-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return {"client": client, "name": name}


@pytest.mark.slow
def test_an_s3_prefix_lists_the_checkpoints_and_gives_the_local_series(tmp_path: Path, series_raw: dict,
                                                                        bucket: dict) -> None:
    series_raw["series"]["metrics"] = ["loss", "hessian"]
    local = _series(tmp_path, series_raw, "local")
    for path in (tmp_path / "ck").iterdir():
        bucket["client"].put_object(Bucket=bucket["name"], Key=f"run7/ckpt/{path.name}", Body=path.read_bytes())
    bucket["client"].put_object(Bucket=bucket["name"], Key="run7/ckpt/notes.txt", Body=b"not a checkpoint")
    series_raw["series"]["checkpoints"] = f"s3://{bucket['name']}/run7/ckpt/"
    spec = spec_from(tmp_path, series_raw)
    assert spec.series.checkpoints[-1] == f"s3://{bucket['name']}/run7/ckpt/step_100.pt"
    assert spec.series.steps == (0, 10, 20, 30, 100)
    remote = _series(tmp_path, series_raw, "remote")
    for name in ("train_loss", "test_loss", "top_eigenvalues", "min_eig"):
        np.testing.assert_array_equal(remote[name], local[name], err_msg=name)
    from landscape_job.spec.localize import check_reachable
    from landscape_job.spec.parse import parse_spec

    check_reachable(parse_spec(series_raw, base_dir=tmp_path, check_files=False))  # a cluster submit's check
    series_raw["series"]["checkpoints"] = f"s3://{bucket['name']}/elsewhere/"
    with pytest.raises(UserError, match=r"series.checkpoints: no checkpoint"):
        spec_from(tmp_path, series_raw)
    with pytest.raises(UserError, match=r"series.checkpoints\[0\]: no objects under"):
        check_reachable(parse_spec(series_raw, base_dir=tmp_path, check_files=False))


@pytest.mark.slow
def test_submit_local_runs_a_series_through_the_pod_entrypoints(tmp_path: Path, series_raw: dict, capsys) -> None:
    """`launcher submit --local` of a series: the same processes as a surface, series.h5 and the sharpness flow."""
    from launcher.cli import main as launcher

    series_raw["series"]["metrics"] = ["loss", "hessian"]
    series_raw["compute"]["shards"] = 2
    series_raw["plot"] = {"formats": ["png"]}  # the figure checked below; no PDF copies, no page
    path = write_spec(tmp_path, series_raw)
    assert launcher(["submit", str(path), "--local", "--run-id", "loc", "--workers", "2"]) == 0
    run_dir = tmp_path / "runs" / "loc"
    assert f"done: file://{run_dir}/series.h5" in capsys.readouterr().out
    assert "shard 1 of 2" in (run_dir / "logs/evaluate-1.log").read_text()
    assert (run_dir / "plots/series_sharpness_flow.png").stat().st_size > 10_000
    # managed like a surface run: merged means series.h5, which status, wait and pull name
    assert launcher(["status", str(run_dir), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "Complete"
    assert launcher(["wait", str(run_dir), "--timeout", "5"]) == 0
    assert f"done: file://{run_dir}/series.h5" in capsys.readouterr().out
    in_process = _series(tmp_path, series_raw, "inproc")
    with h5py.File(run_dir / "series.h5") as f:
        np.testing.assert_allclose(f["top_eigenvalues"][()], in_process["top_eigenvalues"], rtol=1e-10)
        np.testing.assert_array_equal(f["step"][()], in_process["step"])


def test_a_series_renders_for_the_cluster_with_gpus_for_its_shards_only(tmp_path: Path, series_raw: dict) -> None:
    from launcher.kubernetes.section import parse_kubernetes
    from launcher.kubernetes.render import render_run

    series_raw["compute"]["shards"] = 3
    series_raw["storage"] = "s3://bucket/runs"
    spec = spec_from(tmp_path, series_raw)
    objects = render_run(spec, "s1", parse_kubernetes({}))
    jobs = {o["metadata"]["labels"]["landscape.stage"]: o for o in objects if o["kind"] == "Job"}
    assert jobs["evaluate"]["spec"]["completions"] == 3 and jobs["evaluate"]["spec"]["completionMode"] == "Indexed"
    gpus = {stage: json.dumps(job["spec"]["template"]["spec"]["containers"][0]["resources"]).count("nvidia.com/gpu")
            for stage, job in jobs.items()}
    assert gpus["evaluate"] > 0 and gpus["prepare"] == 0 and gpus["merge"] == 0  # prepare only lists and hashes


def test_listed_steps_order_the_rows_and_names_give_steps(tmp_path: Path, series_raw: dict) -> None:
    from landscape_job.spec.series import step_of

    assert step_of("/x/run-v2-step0120.pt", "k") == 120 and step_of("s3://b/ck/epoch_3.pth.tar", "k") == 3
    with pytest.raises(UserError, match=r"k: no step number in the file name 'final.pt'; list series.steps"):
        step_of("/x/final.pt", "k")
    names = ["step_0.pt", "step_10.pt", "step_100.pt"]
    series_raw["series"]["checkpoints"] = [f"ck/{n}" for n in names]
    series_raw["series"]["steps"] = [5, 3, 4]  # listed steps win over the names, and order the rows
    spec = spec_from(tmp_path, series_raw)
    assert spec.series.steps == (3, 4, 5)
    assert [Path(c).name for c in spec.series.checkpoints] == ["step_10.pt", "step_100.pt", "step_0.pt"]


def test_a_noise_matrix_too_large_to_hold_is_refused_before_any_checkpoint(tmp_path: Path, series_raw: dict,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import landscape_job.series.evaluator as module

    monkeypatch.setattr(module, "MAX_NOISE_BYTES", 10 * 53 * 8)  # 53 parameters: 10 minibatches fit, 12 do not
    spec = spec_from(tmp_path, series_raw)  # 96 samples in minibatches of 8: 12
    run = open_run(spec, "big")
    stages.prepare(run, log=lambda _: None)
    with pytest.raises(UserError, match=r"series.noise_batches: 12 minibatches x 53 parameters"):
        stages.evaluate(run, 0, log=lambda _: None)
    assert not run.list("shards/shard-0-of-1.partial")


@pytest.mark.slow
def test_the_python_handle_pulls_a_series_run_as_a_series(tmp_path: Path, series_raw: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``launcher.api.submit`` of a series spec: ``pull()`` (and ``pull(dest)``) give an ``ls.Series`` whose
    columns are the run's series.h5, as h5py reads it."""
    import launcher.local.runner
    from landscape_job import api as ls
    from launcher.api import submit

    monkeypatch.chdir(tmp_path)  # a dict spec's relative paths (the checkpoints' glob) are this folder's
    # One core for the run, so its one worker runs one torch thread, as each worker of the test above does:
    # with two, the threads of the Hessian's tiny products spin, five times the CPU for the same numbers.
    monkeypatch.setattr(launcher.local.runner, "available_cores", lambda: 1)
    series_raw["series"]["metrics"] = ["loss", "hessian"]
    series_raw["plot"] = {"formats": ["vtp"]}  # no figure and no page (a series has no .vtp): nothing here reads them
    run = submit(series_raw, backend="local", run_id="handle", workers=1)
    assert run.wait(timeout=600, interval=0.2).status().state == "succeeded", run.log
    pulled = run.pull()
    assert isinstance(pulled, ls.Series) and pulled.name.endswith("/handle/series.h5")
    with h5py.File(tmp_path / "runs" / "handle" / "series.h5") as f:
        np.testing.assert_array_equal(pulled.steps, f["step"][()])
        assert set(pulled.data) == set(f) - {"step", "checkpoint"}
        for name in pulled.data:
            np.testing.assert_array_equal(pulled[name], f[name][()], err_msg=name)
    assert pulled.steps.tolist() == [0, 10, 20, 30, 100] and pulled["top_eigenvalues"].shape == (5, 3)
    copied = run.pull(tmp_path / "out")
    assert isinstance(copied, ls.Series) and (tmp_path / "out" / "report.json").is_file()
    np.testing.assert_array_equal(copied["train_loss"], pulled["train_loss"])
