"""The direction mathematics of DESIGN.md, checked tensor by tensor."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import save_cnn_checkpoint
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.directions import (
    Directions, direction_file_bytes, load_directions, named_tensors, read_direction_file)
from landscape_job.base.errors import UserError
from landscape_job.surface.evaluator import Evaluator
from landscape_job.models import build_model
from landscape_job.spec.sections import ComputeSpec, DirectionsSpec


def _cnn(path: Path | None = None) -> torch.nn.Module:
    model = build_model("cnn", 4, (1, 8, 8), {"channels": [4, 6]})
    if path is not None:
        load_into(model, load_state_dict(path), str(path))
    return model.eval()


@pytest.fixture
def cnn_a(tmp_path: Path) -> torch.nn.Module:
    return _cnn(save_cnn_checkpoint(tmp_path / "a.pt", seed=0))


def _random(model, **kw) -> Directions:
    return build_directions(DirectionsSpec(**{"type": "random", **kw}), model, two_d=True)


def test_filter_normalisation_gives_each_filter_its_weights_norm(cnn_a) -> None:
    d = _random(cnn_a, norm="filter", ignore="biasbn")
    weights = [w for _, w in named_tensors(cnn_a, "weights")]
    checked = 0
    for group in (d.x, d.y):
        for dt, w in zip(group, weights):
            if w.dim() <= 1:
                assert torch.count_nonzero(dt) == 0  # ignore: biasbn zeroes biases and BN
                continue
            for k in range(w.shape[0]):
                assert dt[k].norm().item() == pytest.approx(w[k].norm().item(), rel=1e-5)
                checked += 1
    assert checked > 20


def test_ignore_none_copies_weights_into_small_tensors(cnn_a) -> None:
    d = _random(cnn_a, norm="filter", ignore="none")
    for dt, (name, w) in zip(d.x, named_tensors(cnn_a, "weights")):
        if w.dim() <= 1:
            assert torch.equal(dt, w), name


def test_layer_and_unit_normalisations(cnn_a) -> None:
    weights = [w for _, w in named_tensors(cnn_a, "weights")]
    layer = _random(cnn_a, norm="layer").x
    dfilter = _random(cnn_a, norm="dfilter").x
    dlayer = _random(cnn_a, norm="dlayer").x
    weight = _random(cnn_a, norm="weight").x
    raw = _random(cnn_a, norm="none").x
    for i, w in enumerate(weights):
        if w.dim() <= 1:
            continue
        assert layer[i].norm().item() == pytest.approx(w.norm().item(), rel=1e-5)
        assert dlayer[i].norm().item() == pytest.approx(1.0, rel=1e-5)
        for k in range(w.shape[0]):
            assert dfilter[i][k].norm().item() == pytest.approx(1.0, rel=1e-5)
        torch.testing.assert_close(weight[i], raw[i] * w)


def test_seed_decides_the_directions(cnn_a) -> None:
    a1, a2, b = _random(cnn_a, seed=1), _random(cnn_a, seed=1), _random(cnn_a, seed=2)
    assert a1.hash == a2.hash and all(torch.equal(u, v) for u, v in zip(a1.x, a2.x))
    assert a1.hash != b.hash
    assert not torch.equal(a1.x[0], a1.y[0])  # x and y are different draws
    assert abs(a1.cosine()) < 0.3


def test_same_dir_and_orthogonalize(cnn_a) -> None:
    same = _random(cnn_a, same_dir=True)
    assert same.cosine() == pytest.approx(1.0, abs=1e-6)
    ortho = _random(cnn_a, orthogonalize=True, ignore="none")
    plain = _random(cnn_a, ignore="none")
    assert abs(ortho.cosine()) < 1e-6
    y_norm = lambda d: float(sum((t.double() ** 2).sum() for t in d.y)) ** 0.5  # noqa: E731
    assert y_norm(ortho) == pytest.approx(y_norm(plain), rel=1e-6)


def test_states_differ_from_weights_exactly_on_bn_statistics(cnn_a) -> None:
    weights = {n for n, _ in named_tensors(cnn_a, "weights")}
    states = {n for n, _ in named_tensors(cnn_a, "states")}
    assert weights < states
    assert states - weights == {f"bn{i}.{s}" for i in (1, 2) for s in ("running_mean", "running_var",
                                                                        "num_batches_tracked")}


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_interpolation_moves_bn_statistics_only_with_states(tmp_path: Path, dir_type: str) -> None:
    a_path = save_cnn_checkpoint(tmp_path / "a.pt", seed=0)
    b_path = save_cnn_checkpoint(tmp_path / "b.pt", seed=1)
    a, b = _cnn(a_path), _cnn(b_path)
    d = build_directions(DirectionsSpec(type="interpolate", targets=(str(b_path),), dir_type=dir_type,
                                        norm="none", ignore="none"), a, two_d=False)
    split = __import__("landscape_job.datasets.builtin", fromlist=["Split"]).Split(
        torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 4, "train")
    evaluator = Evaluator(a, d, [split], compute=ComputeSpec(precision="fp64"))
    evaluator.set_point(1.0)
    moved = a.state_dict()
    for name, value in b.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        is_bn_stat = "running_" in name
        expected = value if (dir_type == "states" or not is_bn_stat) else _cnn(a_path).state_dict()[name]
        torch.testing.assert_close(moved[name].float(), expected.float(), rtol=1e-6, atol=1e-6, msg=name)
    evaluator.restore()
    for name, value in _cnn(a_path).state_dict().items():
        assert torch.equal(a.state_dict()[name].to(value.dtype), value), name


def test_direction_file_round_trip(tmp_path: Path, cnn_a) -> None:
    d = _random(cnn_a, dir_type="states", ignore="none")
    back = load_directions(direction_file_bytes(d, {"seed": 0}), "dirs")
    assert back.dir_type == "states" and back.names == d.names and back.hash == d.hash
    for u, v in zip(d.x + d.y, back.x + back.y):
        assert torch.equal(u, v)


def test_a_file_in_the_papers_layout_loads(tmp_path: Path, cnn_a) -> None:
    """The paper's tools write groups of datasets '0'..'n-1' and no attributes."""
    weights = [w for _, w in named_tensors(cnn_a, "weights")]
    rng = np.random.default_rng(0)
    path = tmp_path / "paper_dirs.h5"
    with h5py.File(path, "w") as f:
        for group in ("xdirection", "ydirection"):
            g = f.create_group(group)
            for i, w in enumerate(weights):
                g.create_dataset(str(i), data=rng.standard_normal(tuple(w.shape)).astype(np.float32))
    d = read_direction_file(str(path), cnn_a, two_d=True)
    assert d.dir_type == "weights" and len(d.x) == len(weights) == len(d.y)
    with h5py.File(path) as f:
        assert np.array_equal(d.y[3].numpy(), f["ydirection/3"][()])


def test_a_direction_file_for_another_model_is_refused(tmp_path: Path, cnn_a) -> None:
    other = build_model("cnn", 4, (1, 8, 8), {"channels": [5, 6]})
    d = _random(other)
    path = tmp_path / "dirs.h5"
    path.write_bytes(direction_file_bytes(d, {}))
    with pytest.raises(UserError, match=r"directions.file .*dirs.h5: xdirection/0 has shape \(5, 1, 3, 3\) "
                                        r"but the model's conv1.weight has \(4, 1, 3, 3\)"):
        read_direction_file(str(path), cnn_a, two_d=True)


def test_a_1d_direction_file_cannot_make_a_2d_surface(tmp_path: Path, cnn_a) -> None:
    d = build_directions(DirectionsSpec(type="random"), cnn_a, two_d=False)
    path = tmp_path / "x_only.h5"
    path.write_bytes(direction_file_bytes(d, {}))
    with pytest.raises(UserError, match="no 'ydirection' group"):
        read_direction_file(str(path), cnn_a, two_d=True)
