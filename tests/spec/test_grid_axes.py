"""A grid axis as the paper writes it ("min:max:num"), as a list [min, max, num] (YAML or Python)
or as the coordinates themselves (a numpy array), in the spec and the API alike; and torchvision's
own ``num_classes`` keyword in ``model.kwargs``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import spec_from, write_spec
from landscape_job import api as ls
from landscape_job.base.errors import UserError
from landscape_job.models import build_model
from landscape_job.spec.grid import Axis
from landscape_job.spec.parse import spec_from_yaml
from launcher.cli import main as launcher


@pytest.mark.parametrize("form", [(-1, 1, 51), [-1.0, 1.0, 51], (np.float64(-1), np.int64(1), np.int64(51)),
                                  np.linspace(-1, 1, 51), torch.linspace(-1, 1, 51, dtype=torch.float64)],
                         ids=["tuple", "list", "numpy scalars", "array", "tensor"])
def test_every_form_is_the_same_axis(form) -> None:
    assert Axis.parse(form, "grid.x") == Axis.parse("-1:1:51", "grid.x") == Axis(-1.0, 1.0, 51)


@pytest.mark.parametrize("form, message", [
    ([-1, 1], r"grid\.x: expected \[min, max, num\] \(e\.g\. \[-1, 1, 51\]\), got \[-1, 1\]"),
    ([-1, 1, 5.5], r"grid\.x: num must be a whole number"),
    ([-1, "1", 5], r"grid\.x: expected \[min, max, num\]"),
    ([True, 1, 5], r"grid\.x: expected \[min, max, num\]"),
    ([1, -1, 5], r"grid\.x: min must be below max"),
    ([-1, 1, 0], r"grid\.x: num must be at least 1"),
    (np.array([0.0, 0.1, 0.3]), r"grid\.x: the coordinates must be evenly spaced"),
    (np.zeros((2, 2)), r"grid\.x: expected a 1-D array"),
    (3, r'grid\.x: expected "min:max:num" or \[min, max, num\], got 3'),
])
def test_a_wrong_axis_is_named(form, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Axis.parse(form, "grid.x")


def test_a_yaml_list_is_an_axis_and_the_stored_spec_reads_back_the_same(tmp_path: Path, linear_spec: dict,
                                                                        capsys) -> None:
    linear_spec["grid"] = {"x": [-0.123456789, 1, 7], "y": [-1, 1, 3]}
    spec = spec_from(tmp_path, linear_spec)
    assert spec.grid.x == Axis(-0.123456789, 1.0, 7) and spec.grid.y == Axis(-1.0, 1.0, 3)
    stored = spec_from_yaml(spec.to_yaml(), "spec.yaml")  # what a pod reads: the coordinates exactly
    assert stored.grid == spec.grid and stored.hash == spec.hash
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec))]) == 0
    linear_spec["grid"]["x"] = [-1, 1]
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec))]) == 2
    assert "grid.x: expected [min, max, num]" in capsys.readouterr().err


def test_the_api_takes_tuples_and_arrays(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g)
    data = (x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())  # three classes, as the model outputs
    text = ls.line(model, data, x="-1:1:5", progress=False)
    for form in ((-1, 1, 5), np.linspace(-1, 1, 5)):
        curve = ls.line(model, data, x=form, progress=False)
        np.testing.assert_array_equal(curve.x, text.x)
        np.testing.assert_array_equal(curve["train_loss"], text["train_loss"])


def test_torchvision_num_classes_in_kwargs_is_welcome_when_it_agrees() -> None:
    model = build_model("torchvision:resnet18", 10, (3, 32, 32), {"num_classes": 10}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(UserError, match=r"^model\.kwargs\.num_classes: 100, but the data set has 10 classes"):
        build_model("torchvision:resnet18", 10, (3, 32, 32), {"num_classes": 100})
