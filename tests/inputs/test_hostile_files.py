"""Direction files a user hands over (issue 13, point 5): anything but finite numbers of the model's
shapes is one line naming the file and the dataset, never a traceback, never a "successful" NaN run."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import yaml

from conftest import SYNTHETIC
from landscape_job.surface.directions import named_tensors, read_direction_file
from landscape_job.base.errors import UserError
from landscape_job.models import build_model
from launcher.cli import main as launcher


def _model():
    return build_model("mlp", SYNTHETIC["classes"], (6,), {"hidden": []})


def _write(path: Path, change: Callable[[h5py.File], None] | None = None) -> Path:
    shapes = [tuple(t.shape) for _, t in named_tensors(_model(), "weights")]
    with h5py.File(path, "w") as f:
        for group in ("xdirection", "ydirection"):
            for i, shape in enumerate(shapes):
                f.create_dataset(f"{group}/{i}", data=np.full(shape, 0.5, dtype=np.float32))
        if change is not None:
            change(f)
    return path


def _replace(name: str, **kwargs) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, **kwargs)
    return change


def _nan(f: h5py.File) -> None:
    f["xdirection/0"][0, 0] = np.nan


def _inf(f: h5py.File) -> None:
    f["ydirection/1"][0] = -np.inf


def _external(tmp: Path) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f["xdirection/1"]
        f["xdirection/1"] = h5py.ExternalLink(str(tmp / "elsewhere.h5"), "/data")
    return change


def _soft(f: h5py.File) -> None:
    del f["xdirection/1"]
    f["xdirection/1"] = h5py.SoftLink("/ydirection/1")


def _group(f: h5py.File) -> None:
    del f["ydirection/0"]
    f.create_group("ydirection/0")


CASES = [
    ("nan", lambda tmp: _nan, r"xdirection/0 holds NaN or infinite values"),
    ("inf", lambda tmp: _inf, r"ydirection/1 holds NaN or infinite values"),
    ("strings", lambda tmp: _replace("xdirection/0", data=np.array([b"a", b"b"])), r"xdirection/0 is of dtype \|S1"),
    ("compound", lambda tmp: _replace("xdirection/1", data=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])),
     r"xdirection/1 is of dtype"),
    ("external link", _external, r"xdirection/1 is a ExternalLink; a direction file must hold its data itself"),
    ("soft link", lambda tmp: _soft, r"xdirection/1 is a SoftLink"),
    ("huge declared shape", lambda tmp: _replace("xdirection/0", shape=(3, 10**12), dtype="f4", chunks=(1, 1024)),
     r"xdirection/0 has shape \(3, 1000000000000\) but the model's \S+ has \(3, 6\)"),
    ("a group for a dataset", lambda tmp: _group, r"ydirection/0 is a group"),
]


@pytest.mark.parametrize("name, change, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_direction_file_is_one_line(tmp_path: Path, name, change, pattern) -> None:
    path = _write(tmp_path / "dirs.h5", change(tmp_path))
    with pytest.raises(UserError, match=pattern):
        read_direction_file(str(path), _model(), two_d=True)


def test_a_nan_direction_file_is_refused_by_validate_and_submit(tmp_path: Path, capsys) -> None:
    import torch

    torch.save(_model().state_dict(), tmp_path / "a.pt")
    _write(tmp_path / "dirs.h5", _nan)
    spec = {"name": "nan-dirs", "model": {"arch": "mlp", "checkpoint": "a.pt", "kwargs": {"hidden": []}},
            "data": {"dataset": "synthetic", "options": dict(SYNTHETIC)},
            "directions": {"type": "file", "file": "dirs.h5"}, "grid": {"x": "-1:1:3", "y": "-1:1:3"},
            "storage": "runs"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    for argv in (["validate", str(tmp_path / "s.yaml")], ["submit", str(tmp_path / "s.yaml"), "--local"]):
        assert launcher(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "holds NaN or infinite values" in err, err
    assert not (tmp_path / "runs").exists()


def test_a_huge_declared_shape_without_a_model_is_refused_unread(tmp_path: Path) -> None:
    """The run's own directions.h5 is read without a model: its declared size is bounded first."""
    from landscape_job.surface.directions import parse_direction_file

    path = _write(tmp_path / "dirs.h5", _replace("xdirection/0", shape=(10**6, 10**5), dtype="f4", chunks=(1, 1024)))
    with pytest.raises(UserError, match=r"declares more than 8,589,934,592 values"):
        parse_direction_file(path.read_bytes(), "directions.h5")
