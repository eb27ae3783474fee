"""The direction-type table is the one home of each type's facts: the spec, the builders,
the merge's labels and the estimate all read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import spec_from
from landscape_job.spec import direction_types
from landscape_job.spec import sections as spec_module
from landscape_job.surface.direction_builders import BUILDERS
from landscape_job.spec.direction_types import DEFAULTED, DIRECTION_TYPES, TYPES, direction_type
from landscape_job.spec.sections import DirectionsSpec

TARGETS = {"random": [], "interpolate": ["b.pt"], "plane": ["b.pt", "c.pt"], "pca": []}


def _directions(kind: str) -> dict:
    section = {"type": kind}
    if TARGETS.get(kind):
        section["targets"] = TARGETS[kind]
    if direction_type(kind).reads_trajectory:
        section["trajectory"] = ["b.pt", "c.pt"]
    return section


def _grid(kind: str) -> dict:
    return {"x": "-1:1:3"} if direction_type(kind).ndim == 1 else {"x": "-1:1:3", "y": "-1:1:3"}


def test_every_type_has_a_builder_and_is_a_spec_choice() -> None:
    assert set(BUILDERS) == set(TYPES)
    assert spec_module.DIRECTION_TYPES is DIRECTION_TYPES
    for entry in TYPES.values():
        assert entry.estimate_as is None or entry.estimate_as in TYPES


def test_the_spec_dataclass_defaults_are_the_default_type_s() -> None:
    default = DirectionsSpec()
    entry = direction_type(default.type)
    assert (default.dir_type, default.norm, default.ignore) == (entry.dir_type, entry.norm, entry.ignore)


@pytest.mark.parametrize("kind", [k for k, t in TYPES.items() if t.settings == DEFAULTED])
def test_the_table_drives_the_spec_defaults_and_their_notes(tmp_path: Path, linear_spec: dict, kind: str,
                                                             monkeypatch) -> None:
    """Change a type's defaults in the table and the parsed spec follows, note and all."""
    entry = direction_type(kind)
    changed = dataclasses.replace(entry, dir_type="weights", norm="layer", ignore="none", defaults_why="because")
    monkeypatch.setitem(direction_types.TYPES, kind, changed)
    linear_spec["directions"] = _directions(kind)
    linear_spec["grid"] = _grid(kind)
    spec = spec_from(tmp_path, linear_spec)
    d = spec.directions
    assert (d.dir_type, d.norm, d.ignore) == ("weights", "layer", "none")
    assert [n for n in spec.notes if n.startswith("directions.")] == [
        f"directions.dir_type: weights (default for type {kind}: because)",
        f"directions.norm: layer (default for type {kind}: because)",
        f"directions.ignore: none (default for type {kind}: because)"]


@pytest.mark.parametrize("kind", ["random", "interpolate", "plane", "pca"])
def test_the_spec_takes_each_type_s_table_defaults(tmp_path: Path, linear_spec: dict, kind: str) -> None:
    linear_spec["directions"] = _directions(kind)
    linear_spec["grid"] = _grid(kind)
    d = spec_from(tmp_path, linear_spec).directions
    entry = direction_type(kind)
    assert (d.dir_type, d.norm, d.ignore) == (entry.dir_type, entry.norm, entry.ignore)
    assert len(d.targets) == entry.targets


def test_a_type_s_dimensionality_is_enforced_from_the_table(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    from landscape_job.base.errors import UserError

    monkeypatch.setitem(direction_types.TYPES, "random",
                        dataclasses.replace(direction_type("random"), ndim=1, ndim_error="grid.y: 1-D only"))
    with pytest.raises(UserError, match="grid.y: 1-D only"):
        spec_from(tmp_path, linear_spec)


def test_axis_labels() -> None:
    assert direction_type("random").axis_labels("filter") == ("x (random direction, filter-normalised)",
                                                              "y (random direction, filter-normalised)")
    assert direction_type("file").axis_labels("none") == ("x (file direction)", "y (file direction)")
    assert direction_type("interpolate").axis_labels("none") == ("interpolation α (0: model, 1: target)", "")
    assert direction_type("plane").axis_labels("none") == ("x (toward target 1)", "y (toward target 2)")
    assert direction_type("pca").axis_labels("none", [0.8125, 0.125]) == ("PC1 (81.2% of variance)",
                                                                          "PC2 (12.5% of variance)")
    assert direction_type("pca").axis_labels("none") == ("x (pca direction)", "y (pca direction)")


def test_hessian_directions_need_the_centre_analysis() -> None:
    from torch import nn

    from landscape_job.surface.direction_builders import build_directions

    with pytest.raises(ValueError, match="the prepare stage builds them"):
        build_directions(DirectionsSpec(type="hessian"), nn.Linear(2, 2), two_d=False)
