"""A spec is code, and bounded (issue 26, docs/security.md): ``validate --static`` executes nothing,
``python.requirements`` takes requirement specifiers only, every integer key has a ceiling, plot values
that would fail merge are refused or drawn, series globs stay in their folder, and the example
NetworkPolicy lets only prepare and merge reach the API server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import save_linear_checkpoint, write_spec
from landscape_job.base.errors import UserError
from landscape_job.base.pyref import check_requirement
from landscape_job.base.schema import MAX_INTEGER
from landscape_job.plots.levels import MAX_LEVELS, contour_levels
from landscape_job.spec.parse import MAX_PLOT_LEVELS, load_spec
from launcher.cli import main as launcher
from launcher.spec_schema import spec_json_schema as spec_schema

REPO = Path(__file__).resolve().parents[2]


def _pwned_spec(folder: Path, marker: Path) -> Path:
    save_linear_checkpoint(folder / "a.pt", 0)
    return write_spec(folder, {
        "name": "pwned",
        "model": {"arch": "python:os:system", "checkpoint": "a.pt", "kwargs": {"command": f"touch {marker}"}},
        "data": {"dataset": "synthetic"},
        "grid": {"x": "-1:1:3"},
    })


def test_validate_static_executes_nothing_from_the_spec(tmp_path: Path, capsys) -> None:
    """The issue's spec: --static prints the plan (naming the code it would run) and the marker stays absent;
    the full validate names the module before it imports it (and then does: the marker is the proof).
    In this process: the spec's code is os.system, which every process has imported, so only the call
    (the marker file) tells executed from not, here as in a fresh interpreter."""
    marker = tmp_path / "PWNED"
    spec = _pwned_spec(tmp_path, marker)
    assert launcher(["validate", str(spec), "--static"]) == 0
    static = capsys.readouterr()
    assert "model.arch: imports os and calls system" in static.out and "not executed (--static)" in static.out
    assert not marker.exists()
    assert launcher(["validate", str(spec), "--static", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["user_code"] == ["model.arch: imports os and calls system"]
    assert not marker.exists()

    launcher(["validate", str(spec)])
    said = capsys.readouterr().out.index("# validate: executing user code, model.arch: imports os and calls system")
    assert said == 0 and marker.exists()  # a spec is code: that is why --static exists


@pytest.mark.parametrize("entry,why", [
    ("--index-url=http://x", "a pip option"), ("-e .", "a pip option"), ("-r other.txt", "a pip option"),
    ("pkg @ https://example.com/pkg.whl", "a direct URL reference"), ("./pkg", "not a requirement specifier"),
    ("/abs/pkg", "not a requirement specifier"), ("https://example.com/x.tar.gz", "not a requirement specifier"),
    ("git+https://example.com/x", "not a requirement specifier"), ("pkg; --index-url x", "not a requirement"),
])
def test_requirements_refuse_options_urls_and_paths_in_one_line(tmp_path: Path, linear_spec: dict, capsys,
                                                                entry: str, why: str) -> None:
    linear_spec["python"] = {"requirements": ["numpy>=1", entry]}
    path = write_spec(tmp_path, linear_spec)
    assert launcher(["validate", str(path), "--static"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("launcher: error: python.requirements[1]: ") and why in err
    schema = spec_schema()
    with pytest.raises(jsonschema.ValidationError):  # the JSON Schema refuses it too (no code to ask)
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.parametrize("entry", ["numpy", "numpy>=1.24,<3", "my-pkg[extra,other]~=1.2",
                                   "pkg==1.0; python_version >= '3.10'", "Pkg_Name.sub >= 2"])
def test_requirement_specifiers_pass(entry: str) -> None:
    assert check_requirement(entry, "python.requirements[0]") == entry.strip()


def test_pip_gets_the_requirements_after_its_options_end(monkeypatch, tmp_path: Path) -> None:
    """Defence in depth: even a requirement that slipped past the spec cannot become a pip option."""
    from landscape_job.base import pyref

    seen = {}

    def fake_run(command, **kwargs):
        seen["command"] = command
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(pyref.subprocess, "run", fake_run)
    pyref.activate([], ["numpy"], cache=tmp_path)
    assert seen["command"][-2:] == ["--", "numpy"]
    with pytest.raises(UserError, match="a pip option"):
        pyref.activate([], ["--index-url=http://x"], cache=tmp_path / "other")


@pytest.mark.parametrize("section,key,value", [
    ("compute", "batch_size", 10**20), ("compute", "batch_size", MAX_INTEGER + 1),
    ("compute", "checkpoint_every", 2**40), ("compute", "points_per_forward", 2**33),
    ("hessian", "iterations", 2**40), ("hessian", "subset", 2**31), ("directions", "seed", 2**32),
])
def test_every_integer_key_has_a_ceiling(tmp_path: Path, linear_spec: dict, capsys, section, key, value) -> None:
    linear_spec.setdefault(section, {})[key] = value
    if section == "hessian":
        linear_spec["metrics"] = ["loss", "hessian"]
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec)), "--static"]) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("launcher: error:")]  # notes may name skipped sections
    assert len(errors) == 1 and f"{section}.{key}: must be at most 2,147,483,647" in errors[0]


def test_the_ceiling_is_in_the_json_schema() -> None:
    compute = spec_schema()["properties"]["compute"]["properties"]
    assert compute["checkpoint_every"]["anyOf"][0]["maximum"] == MAX_INTEGER \
        if "anyOf" in compute["checkpoint_every"] else compute["checkpoint_every"]["maximum"] == MAX_INTEGER
    batch = json.dumps(compute["batch_size"])
    assert f'"maximum": {MAX_INTEGER}' in batch


def test_the_largest_batch_validate_accepts_runs_through_merge(tmp_path: Path, linear_spec: dict) -> None:
    """validate = run: the ceiling itself computes (the batch is the whole split), bit-identical to a small batch."""
    from conftest import run_all
    from landscape_job.surface.file import load_surface
    from launcher.local.runner import open_run

    results = []
    for batch in (MAX_INTEGER, 32):
        linear_spec["compute"]["batch_size"] = batch
        linear_spec["grid"] = {"x": "-1:1:3"}
        spec = load_spec(write_spec(tmp_path, linear_spec))
        run = open_run(spec, f"b{batch}")
        run_all(run, 1)
        results.append(load_surface(tmp_path / "runs" / f"b{batch}" / "surface.h5"))
    assert results[0].metrics["train_loss"] == pytest.approx(results[1].metrics["train_loss"], rel=1e-12)


def test_plot_values_merge_would_refuse_are_refused_by_validate(tmp_path: Path, linear_spec: dict, capsys) -> None:
    assert MAX_PLOT_LEVELS == MAX_LEVELS
    for plot, message in (({"vmin": 0.1, "vmax": 10.0, "vlevel": 1e-300}, "plot.vlevel: 1e-300 would draw"),
                          ({"log": True, "vmin": -1.0}, "plot.vmin: must be positive with plot.log"),
                          ({"log": True, "vmin": 0.1, "vmax": 10.0, "vlevel": 0.001}, "would draw 2e+03")):
        linear_spec["plot"] = plot
        assert launcher(["validate", str(write_spec(tmp_path, linear_spec)), "--static"]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_merge_draws_a_vlevel_too_fine_for_the_data_instead_of_failing(tmp_path: Path, linear_spec: dict) -> None:
    """plot.vlevel: 1e-300 without vmin/vmax: validate cannot know the range; merge widens the spacing to a
    multiple of it (at most MAX_LEVELS levels) and finishes, where it used to fail after the compute."""
    from conftest import run_all
    from landscape_job import stages
    from launcher.local.runner import open_run

    linear_spec["plot"] = {"vlevel": 1e-300, "formats": ["png", "html"]}
    spec = load_spec(write_spec(tmp_path, linear_spec))
    run = open_run(spec, "fine")
    run_all(run, 1)
    stages.merge(run, log=lambda _: None, plots=True)
    assert run.exists("plots/surface.html") and any(k.endswith(".png") for k in run.list("plots/"))
    levels = contour_levels(0.0, 1.0, 1e-300, coarsen=True)
    assert 2 <= len(levels) <= MAX_LEVELS + 2
    with pytest.raises(UserError, match="plot.vlevel"):  # launcher plot: the user is there to choose
        contour_levels(0.0, 1.0, 1e-300)


def _series_spec(folder: Path, pattern: str) -> dict:
    from conftest import SYNTHETIC

    return {"name": "s", "model": {"arch": "mlp", "kwargs": {"hidden": []}},
            "data": {"dataset": "synthetic", "options": dict(SYNTHETIC)},
            "series": {"checkpoints": pattern, "lr": 0.1, "metrics": ["loss"]}}


def test_a_series_glob_never_leaves_its_folder(tmp_path: Path, capsys) -> None:
    """A symlink matched by the glob is followed only when it resolves inside the glob's folder."""
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for step in (1, 2):
        save_linear_checkpoint(ckpts / f"step_{step}.pt", step)
    outside = save_linear_checkpoint(tmp_path / "secret.pt", 9)
    (ckpts / "step_3.pt").symlink_to(ckpts / "step_2.pt")  # inside: followed
    path = write_spec(tmp_path, _series_spec(tmp_path, "ckpts/step_*.pt"))
    assert launcher(["validate", str(path)]) == 0, capsys.readouterr().err
    (ckpts / "step_4.pt").symlink_to(outside)  # leads out: refused, in one line
    capsys.readouterr()
    assert launcher(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("launcher: error:")]  # notes may name skipped sections
    assert len(errors) == 1 and "series.checkpoints: " in errors[0] and "outside the glob's folder" in errors[0]
    assert str(outside) in err


def test_the_example_network_policy_lets_only_prepare_and_merge_reach_the_api(tmp_path: Path) -> None:
    """kubectl kustomize builds it; its selectors, applied to the pods `launcher render` makes, give every stage
    DNS and the object store and only prepare and merge the API server (evaluate also mounts no token)."""
    import shutil

    from kustomize import kustomize

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    policies = {o["metadata"]["name"]: o for o in kustomize("k8s/overlays/example") if o["kind"] == "NetworkPolicy"}
    from launcher.kubernetes.render import render_run
    from launcher.kubernetes.section import parse_kubernetes

    save_linear_checkpoint(tmp_path / "a.pt", 0)
    spec = load_spec(write_spec(tmp_path, {
        "name": "np", "model": {"arch": "mlp", "checkpoint": "a.pt", "kwargs": {"hidden": []}},
        "data": {"dataset": "synthetic"}, "grid": {"x": "-1:1:3"}, "storage": "s3://bucket/runs",
        "kubernetes": {"image": "example/landscape:1"}}), check_files=False)
    objects = render_run(spec, "np-1", parse_kubernetes(spec.kubernetes))
    pods = {o["metadata"]["labels"]["landscape.stage"]: o["spec"]["template"] for o in objects if o["kind"] == "Job"}

    def selects(policy: dict, labels: dict) -> bool:
        for rule in policy["spec"]["podSelector"].get("matchExpressions", []):
            value = labels.get(rule["key"])
            if rule["operator"] == "Exists" and value is None or rule["operator"] == "In" and value not in rule["values"]:
                return False
        return all(labels.get(k) == v for k, v in policy["spec"]["podSelector"].get("matchLabels", {}).items())

    for stage, pod in pods.items():
        labels = pod["metadata"]["labels"]
        assert selects(policies["landscape-stages"], labels)
        assert selects(policies["landscape-api-access"], labels) == (stage != "evaluate")
        assert pod["spec"]["automountServiceAccountToken"] == (stage != "evaluate")
