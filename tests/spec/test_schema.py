"""``launcher schema``: the spec's JSON Schema, generated from the parsers' own declarations.

An editor that checks a spec against it must agree with ``launcher validate`` on what a
key is, its type and its choices; these tests hold the two together.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from landscape_job.base.errors import UserError
from landscape_job.base.schema import REQUIRED, declared_keys, default_of
from landscape_job.spec.sections import ComputeSpec, DataSpec, HessianSpec, PlotSpec
from landscape_job.spec.parse import parse_spec
from launcher.cli import main as launcher
from launcher.kubernetes.section import KubernetesSpec, parse_kubernetes
from launcher.spec_schema import spec_json_schema

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
VALID = {"model": {"arch": "mlp", "checkpoint": "/m.pt"}, "data": {"dataset": "digits"},
         "grid": {"x": "-1:1:5", "y": "-1:1:5"}}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_there_are_examples_to_check() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_spec_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(raw)] == []
    # The normalised spec a run stores (spec.yaml) is a spec too.
    normalised = parse_spec(raw, base_dir=path.parent, check_files=False).to_dict()
    assert [e.message for e in validator.iter_errors(normalised)] == []


def _set(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = raw
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return raw


WRONG = [
    ("unknown top-level key", "grdi", {}),
    ("unknown nested key", "compute.shard", 2),
    ("unknown kubernetes key", "kubernetes.gpu", 1),
    ("wrong type", "compute.shards", "four"),
    ("boolean for an integer", "compute.batch_size", True),
    ("below the minimum", "compute.shards", 0),
    ("bad choice", "compute.precision", "fp8"),
    ("bad nested choice", "directions.norm", "unit"),
    ("bad split", "data.splits", ["train", "val"]),
    ("bad loss", "loss", "hinge"),
    ("bad axis", "grid.y", "1:2"),
    ("bad name", "name", "My Run!"),
    ("auto or an integer", "compute.points_per_forward", "many"),
    ("credentials in storage", "storage", {"url": "s3://b/p", "secret_access_key": "x"}),
    ("bad kubernetes quantity", "kubernetes.memory", "lots"),
    ("bad kubernetes name", "kubernetes.namespace", "Team_A"),
]


@pytest.mark.parametrize("path,value", [w[1:] for w in WRONG], ids=[w[0] for w in WRONG])
def test_wrong_specs_are_refused_by_schema_and_parser_alike(validator: jsonschema.Draft202012Validator,
                                                            path: str, value: Any) -> None:
    raw = _set(VALID, path, value)
    assert list(validator.iter_errors(raw)), f"the schema accepts {path}: {value!r}"
    with pytest.raises(UserError):
        spec = parse_spec(raw, base_dir=Path("/"), check_files=False)
        parse_kubernetes(spec.kubernetes)


def test_a_minimal_spec_validates(validator: jsonschema.Draft202012Validator) -> None:
    assert [e.message for e in validator.iter_errors(VALID)] == []
    assert [e.message for e in validator.iter_errors(_set(VALID, "compute.batch_size", None))] == []


@pytest.mark.parametrize("record,section", [(ComputeSpec, "compute"), (DataSpec, "data"), (PlotSpec, "plot"),
                                            (HessianSpec, "hessian")])
def test_schema_defaults_are_the_defaults_the_parser_fills_in(record: type, section: str) -> None:
    """One declaration: the default an editor shows is the one a run gets."""
    properties = spec_json_schema()["properties"][section]["properties"]
    spec = parse_spec({**VALID, "metrics": ["hessian"]}, base_dir=Path("/"), check_files=False)
    parsed = getattr(spec, section)
    for name in declared_keys(record):
        default = default_of(record, name)
        if default is REQUIRED:
            continue
        assert json.loads(json.dumps(properties[name]["default"])) == json.loads(json.dumps(getattr(parsed, name),
                                                                                            default=list)), name


def test_kubernetes_defaults_come_from_the_record() -> None:
    assert parse_kubernetes({}) == KubernetesSpec()
    properties = spec_json_schema()["properties"]["kubernetes"]["properties"]
    assert properties["memory"]["default"] == KubernetesSpec().memory
    assert set(properties) == set(declared_keys(KubernetesSpec))


def test_launcher_schema_prints_the_schema(capsys) -> None:
    assert launcher(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(spec_json_schema()))
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "batch_size" in printed["properties"]["compute"]["properties"]
