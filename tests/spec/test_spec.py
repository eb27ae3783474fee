"""Every malformed spec gets one line naming the key, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import spec_from, write_spec
from landscape_job.spec.parse import load_spec, parse_spec
from launcher.cli import main as launcher


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return apply


def _drop(path: str) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[key]
        del node[last]
    return apply


CASES: list[tuple[str, Callable[[dict], None], str]] = [
    ("unknown top-level key", _set("grdi", {}), r"grdi: unknown key"),
    ("unknown nested key with hint", _set("compute.shard", 2), r"compute.shard: unknown key; did you mean 'shards'\?"),
    ("missing model", _drop("model"), r"model: required key is missing"),
    ("missing arch", _drop("model.arch"), r"model.arch: required key is missing"),
    ("missing checkpoint file", _set("model.checkpoint", "nope.pt"), r"model.checkpoint: file not found: .*nope.pt"),
    ("model not a mapping", _set("model", "mlp"), r"model: expected a mapping, got a string"),
    ("bad grid string", _set("grid.y", "1:2"), r'grid.y: expected "min:max:num" \(e.g. "-1:1:51"\), got "1:2"'),
    ("grid not a string", _set("grid.x", 5), r'grid.x: expected "min:max:num" or \[min, max, num\], got 5'),
    ("grid min above max", _set("grid.x", "1:-1:5"), r'grid.x: min must be below max, got "1:-1:5"'),
    ("grid beyond float32", _set("grid.x", "-1e200:1:5"), r'grid.x: coordinates must lie within ±1e\+30'),
    ("grid zero points", _set("grid.x", "-1:1:0"), r"grid.x: num must be at least 1"),
    ("grid missing x", _drop("grid.x"), r"grid.x: required key is missing"),
    ("grid too large", _set("grid", {"x": "-1:1:5000", "y": "-1:1:5000"}), r"grid: 25,000,000 points is more than"),
    ("shards not an int", _set("compute.shards", "four"), r"compute.shards: expected an integer, got a string 'four'"),
    ("shards zero", _set("compute.shards", 0), r"compute.shards: must be at least 1, got 0"),
    ("more shards than points", _set("compute.shards", 100), r"compute.shards: 100 shards for a grid of 20 points"),
    ("bad precision", _set("compute.precision", "fp8"), r"compute.precision: expected one of fp32, tf32, bf16, fp16, fp64, auto; got 'fp8'"),
    ("bool for int", _set("compute.shards", True), r"compute.shards: expected an integer, got a boolean"),
    ("bad loss", _set("loss", "hinge"), r"loss: expected one of cross_entropy, mse; got 'hinge'"),
    ("bad norm", _set("directions.norm", "unit"), r"directions.norm: expected one of filter, layer, weight"),
    ("bad dir_type", _set("directions.dir_type", "params"), r"directions.dir_type: expected one of weights, states"),
    ("bad direction type", _set("directions.type", "gradient"), r"directions.type: expected one of random, interpolate"),
    ("interpolate without target", _set("directions.type", "interpolate"),
     r"directions.targets: type interpolate takes one target checkpoint"),
    ("random with targets", _set("directions.targets", ["b.pt"]), r"directions.targets: type random takes no targets"),
    ("missing target file", lambda s: s["directions"].update(type="plane", targets=["b.pt", "zz.pt"]),
     r"directions.targets\[1\]: file not found: .*zz.pt"),
    ("interpolation is 1-D", lambda s: s["directions"].update(type="interpolate", targets=["b.pt"]),
     r"grid.y: an interpolation between two checkpoints is 1-D"),
    ("same_dir needs 2-D", lambda s: (s["directions"].update(same_dir=True), s["grid"].pop("y")),
     r"directions.same_dir: only for 2-D random directions"),
    ("file type without file", _set("directions.type", "file"), r"directions.file: required key is missing"),
    ("bad splits", _set("data.splits", ["train", "val"]), r"data.splits: expected train and/or test, got 'val'"),
    ("bad name", _set("name", "My Run!"), r"name: expected 1-40 lowercase letters"),
    ("vmin above vmax", _set("plot", {"vmin": 5, "vmax": 1}), r"plot.vmin: must be below plot.vmax"),
    ("bad storage scheme", _set("storage", "gs://bucket/x"), r"storage: expected a folder, file:///path or s3://"),
    ("negative checkpoint interval", _set("compute.checkpoint_seconds", -1), r"compute.checkpoint_seconds: must be positive"),
    ("unknown data set", _set("data.dataset", "imagenet"), r"data.dataset: unknown data set 'imagenet'"),
    ("unknown arch", _set("model.arch", "resnet57x"), r"model.arch: unknown model 'resnet57x'"),
    ("missing data root", lambda s: s["data"].update(dataset="cifar10", options={}, root="nowhere"),
     r"data.root: folder not found: .*nowhere"),
]


@pytest.mark.parametrize("mutate,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec_gets_one_line(tmp_path: Path, linear_spec: dict, capsys, mutate, message: str) -> None:
    raw = copy.deepcopy(linear_spec)
    mutate(raw)
    path = write_spec(tmp_path, raw)
    code = launcher(["submit", str(path), "--local"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    # One error line; a wrong grid is followed by notes naming what it kept from being checked.
    lines = [line for line in err.strip().splitlines() if not line.startswith("launcher: note: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("launcher: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "runs").exists()  # nothing written


def test_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def test_yaml_syntax_error_names_the_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  arch: [mlp\n")
    assert launcher(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml: not valid YAML at line" in err and "Traceback" not in err


def test_missing_spec_file(tmp_path: Path, capsys) -> None:
    assert launcher(["validate", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml: spec file not found" in capsys.readouterr().err


def test_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path: Path, linear_spec: dict, capsys) -> None:
    linear_spec["model"]["kwargs"] = {"hidden": [5]}
    code = launcher(["submit", str(write_spec(tmp_path, linear_spec)), "--local"])
    err = capsys.readouterr().err
    assert code == 2 and "a.pt" in err and "Traceback" not in err
    assert "missing" in err or "shape" in err


def test_normalised_spec_round_trips_and_explains_defaults(tmp_path: Path, linear_spec: dict) -> None:
    del linear_spec["directions"]["norm"], linear_spec["directions"]["ignore"]
    spec = spec_from(tmp_path, linear_spec)
    assert spec.directions.dir_type == "weights" and spec.directions.norm == "filter"
    assert spec.directions.ignore == "biasbn"
    assert any("directions.norm: filter (default for type random" in n for n in spec.notes)
    again = load_spec(write_spec(tmp_path, spec.to_dict(), "normalised.yaml"))
    assert again.hash == spec.hash and again.to_dict() == spec.to_dict()
    assert Path(spec.model.checkpoint).is_absolute()


def test_interpolation_defaults_to_states_without_normalisation(tmp_path: Path, linear_spec: dict) -> None:
    linear_spec["directions"] = {"type": "interpolate", "targets": ["b.pt"]}
    linear_spec["grid"] = {"x": "0:1:3"}
    spec = spec_from(tmp_path, linear_spec)
    assert (spec.directions.dir_type, spec.directions.norm, spec.directions.ignore) == ("states", "none", "none")


def test_validate_prints_spec_defaults_and_work(tmp_path: Path, linear_spec: dict, capsys) -> None:
    del linear_spec["directions"]["norm"]
    linear_spec["compute"]["shards"] = 3
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec))]) == 0
    out = capsys.readouterr().out
    assert "directions.norm: filter (default for type random" in out
    assert "grid: 5 x 4 = 20 points (2-D)" in out
    assert "shards: 3 (7 points per shard at most)" in out
    assert "forward samples: 20 x 136 = 2,720" in out
    assert not (tmp_path / "runs").exists()


def test_plain_path_spec_hash_ignores_storage_and_plot(tmp_path: Path, linear_spec: dict) -> None:
    a = spec_from(tmp_path, linear_spec)
    linear_spec["storage"] = "elsewhere"
    linear_spec["plot"] = {"log": True}
    b = spec_from(tmp_path, linear_spec)
    linear_spec["directions"]["seed"] = 8
    c = spec_from(tmp_path, linear_spec)
    assert a.hash == b.hash != c.hash


def test_the_spec_hash_of_an_existing_run_does_not_change() -> None:
    """Keys added since (metrics, trajectory, data.classes, speed keys, ...) are left out of the hash
    at their defaults, so a run started by an earlier version resumes and merges with this one.
    The literal is this spec's hash as the first release (a37d206) computed it."""
    raw = {"name": "pinned", "model": {"arch": "resnet56", "checkpoint": "/data/model.t7"},
           "data": {"dataset": "cifar10", "root": "/data/cifar10"},
           "grid": {"x": "-1:1:51", "y": "-1:1:51"}, "compute": {"shards": 16, "precision": "bf16"}}
    spec = parse_spec(raw, base_dir=Path("/"), check_files=False)
    assert spec.hash == "3e464f4f41f4b5f4fdffa14be4536b40757cc1f87b070010304770752b6260c9"


def test_validate_checks_the_kubernetes_section_too(tmp_path: Path, linear_spec: dict, capsys) -> None:
    linear_spec["kubernetes"] = {"cache_claim": "Bad_Name"}
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec)), "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("launcher: error: kubernetes.cache_claim: expected a DNS subdomain name")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_spec_with_plot_formats_round_trips_through_its_dict(tmp_path: Path, linear_spec: dict) -> None:
    """``to_dict`` is plain data (lists, not the tuples the sections hold): parsed again, it is the same spec."""
    linear_spec["plot"] = {"formats": ["png", "html"]}
    spec = spec_from(tmp_path, linear_spec)
    assert spec.to_dict()["plot"]["formats"] == ["png", "html"]
    assert parse_spec(spec.to_dict(), base_dir=tmp_path).to_dict() == spec.to_dict()


def test_a_precision_without_a_description_is_said_as_it_is() -> None:
    from landscape_job.spec.sections import PRECISION_DESCRIPTIONS, describe_precision

    assert describe_precision("fp8") == "fp8" and describe_precision("fp16") == PRECISION_DESCRIPTIONS["fp16"]
