"""The Python API (issue 15, point 1): the CLI's engine on an in-memory model and data.

The notebook example (examples/notebook.py) trains the digits CNN in memory, computes a
plane and an interpolation through the API, plots and saves them; the pod CLI then
computes the same surfaces from the checkpoints it saved, and every array is equal to
the last bit, with the same direction hash. The other tests pin down the inputs the API
takes (tensors, arrays, Datasets, DataLoaders give one surface), that it never changes
the caller's model, and its Hessian against a dense autograd Hessian.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from conftest import SYNTHETIC, write_spec
from landscape_job import api as ls
from landscape_job.cli import main as pod
from landscape_job.datasets.builtin import load_split
from landscape_job.base.errors import UserError
from landscape_job.spec.sections import DataSpec
from landscape_job.spec.parse import load_spec
from launcher.local.runner import open_run

ROOT = Path(__file__).resolve().parents[2]
#: Samples of each digits split the example and the CLI evaluate on (data.subset): seconds, not a minute.
SUBSET = 256


def _example():
    spec = importlib.util.spec_from_file_location("notebook_example", ROOT / "examples" / "notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli_surface(folder: Path, raw: dict, run_id: str) -> dict:
    """The pod entrypoint, stage by stage (in this process: same threads, same kernels), as submit --local runs it."""
    spec = load_spec(write_spec(folder, raw, f"{run_id}.yaml"))
    run = open_run(spec, run_id)
    assert pod(["--run", run.url, "prepare"]) == 0
    for shard in range(spec.compute.shards):
        assert pod(["--run", run.url, "evaluate", "--shard", str(shard)]) == 0
    assert pod(["--run", run.url, "merge", "--no-plots"]) == 0
    with h5py.File(folder / "runs" / run_id / "surface.h5") as f:
        return {"arrays": {k: f[k][()] for k in f}, "attrs": dict(f.attrs)}


def _same(api_file: Path, cli: dict) -> None:
    with h5py.File(api_file) as f:
        arrays, attrs = {k: f[k][()] for k in f}, dict(f.attrs)
    assert sorted(arrays) == sorted(cli["arrays"])
    for name, values in cli["arrays"].items():
        np.testing.assert_array_equal(arrays[name], values, err_msg=name)
    for key in ("direction_hash", "dir_type", "norm", "ignore", "precision", "xlabel", "ylabel"):
        assert attrs.get(key) == cli["attrs"].get(key), key


@pytest.mark.slow
def test_the_notebook_example_equals_the_cli(tmp_path: Path) -> None:
    results = _example().main(tmp_path / "nb", epochs=1, points=4, subset=SUBSET, progress=False)
    plane, curve = results["plane"], results["interpolation"]
    assert plane["train_loss"].shape == (4, 4) and curve["train_loss"].shape == (4,)
    assert (tmp_path / "nb" / "train_loss_2d_contour.png").stat().st_size > 1000
    assert (tmp_path / "nb" / "1d_loss.png").is_file()
    base = {"model": {"arch": "cnn", "checkpoint": "nb/digits-cnn-a.pt"},
            "data": {"dataset": "digits", "splits": ["train", "test"], "subset": SUBSET}, "storage": "runs"}
    _same(tmp_path / "nb" / "plane.h5", _cli_surface(tmp_path, {
        **base, "name": "plane", "directions": {"type": "random", "seed": 0},
        "grid": {"x": "-1:1:4", "y": "-1:1:4"}, "compute": {"shards": 2}}, "plane"))
    _same(tmp_path / "nb" / "interpolation.h5", _cli_surface(tmp_path, {
        **base, "name": "interp", "directions": {"type": "interpolate", "targets": ["nb/digits-cnn-b.pt"]},
        "grid": {"x": "-0.5:1.5:4"}}, "interp"))
    # The CLI's own direction file, handed to the API, gives the CLI's plane too (one row of it).
    splits = {s: load_split(DataSpec(dataset="digits", subset=SUBSET), s) for s in ("train", "test")}
    row = ls.plane(_load_cnn(tmp_path / "nb" / "digits-cnn-a.pt"), {n: (s.inputs, s.labels) for n, s in splits.items()},
                   x="-1:1:4", y="1:2:2", directions=tmp_path / "runs" / "plane" / "directions.h5", progress=False)
    np.testing.assert_array_equal(row["test_loss"][0], plane["test_loss"][-1])


def _load_cnn(path: Path) -> nn.Module:
    from landscape_job.models.checkpoints import load_into, load_state_dict
    from landscape_job.models import build_model

    model = build_model("cnn", 10, (1, 8, 8))
    load_into(model, load_state_dict(path), str(path))
    return model


class _DictNet(nn.Module):
    """A small classifier with BatchNorm that returns a dict, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))

    def forward(self, x: torch.Tensor) -> dict:
        return {"logits": self.body(x), "features": x}


def _synthetic() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def test_every_form_of_data_gives_one_surface_and_the_model_is_untouched() -> None:
    torch.manual_seed(0)
    model = _DictNet()
    model.train()(torch.randn(32, 6))  # running statistics that are not the defaults
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _synthetic()
    dataset = torch.utils.data.TensorDataset(x, y)
    forms = {
        "tensors": (x, y),
        "arrays": (x.numpy(), y.numpy()),
        "dataset": [*dataset],  # a plain list of (input, label) pairs is a Dataset too
        "tensor dataset": dataset,
        "loader": torch.utils.data.DataLoader(dataset, batch_size=7, shuffle=True),
    }
    curves = {name: ls.line(model, {"train": data, "test": (x[:20], y[:20])}, x="-1:1:5", output="logits",
                            precision="fp64", progress=False) for name, data in forms.items()}
    for name, curve in curves.items():
        np.testing.assert_array_equal(curve["train_loss"], curves["tensors"]["train_loss"], err_msg=name)
    assert curves["tensors"].attrs["precision"] == "fp64"
    assert model.training and not model._forward_hooks
    assert all(torch.equal(before[k], v) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    # At a = 0 the API's loss is the model's own mean cross-entropy (eval mode, float64).
    centre = int(np.argmin(np.abs(curves["tensors"].x)))
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model.double().eval()(x.double())["logits"], y).item()
    assert curves["tensors"]["train_loss"][centre] == pytest.approx(expected, rel=1e-12)


def test_mistakes_are_one_line_user_errors() -> None:
    model, (x, y) = _DictNet(), _synthetic()
    with pytest.raises(UserError, match=r"model.output: .* returned a dict with logits: tensor \(2, 3\), features"):
        ls.line(model, (x, y), progress=False)
    with pytest.raises(UserError, match=r"data: name the splits train and test, got \['validation'\]"):
        ls.line(model, {"validation": (x, y)}, output="logits", progress=False)
    with pytest.raises(UserError, match=r"grid.x: "):
        ls.line(model, (x, y), x="1:-1", output="logits", progress=False)


@pytest.mark.slow
def test_hessian_equals_the_dense_hessians_eigenvalues() -> None:
    """λmax and λmin of the mean cross-entropy of a tiny MLP, against torch.autograd's dense Hessian."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = _synthetic()
    x = x.double()
    found = ls.hessian(model, (x, y), precision="fp64", ignore="none", iterations=200, tolerance=1e-8,
                       trace_samples=0)
    params = dict(model.named_parameters())
    names, shapes = list(params), [p.shape for p in params.values()]
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        pieces, start = {}, 0
        for name, shape in zip(names, shapes):
            pieces[name] = theta[start:start + shape.numel()].reshape(shape)
            start += shape.numel()
        return nn.functional.cross_entropy(torch.func.functional_call(model, pieces, (x,)), y)

    eigenvalues = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat))
    assert found.converged and found.parameters == flat.numel() == SYNTHETIC["shape"][0] * 4 + 4 + 15
    assert found.max_eig == pytest.approx(eigenvalues[-1].item(), rel=1e-6)
    assert found.min_eig == pytest.approx(eigenvalues[0].item(), rel=1e-6, abs=1e-9)


def test_plot_returns_figures_and_save_writes_the_papers_file(tmp_path: Path) -> None:
    model, (x, y) = _DictNet(), _synthetic()
    plane = ls.plane(model, (x, y), x="-1:1:3", y="-1:1:3", output="logits", metrics=["loss"], progress=False)
    figures = plane.plot(log=True)
    assert set(figures) >= {"train_loss_2d_contour", "train_loss_3d_surface"}
    assert all(isinstance(f, Figure) for f in figures.values())
    assert not list(tmp_path.iterdir())  # nothing written by plot()
    path = plane.save(tmp_path / "s" / "surface.h5")
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["train_loss"][()], plane["train_loss"])
        np.testing.assert_array_equal(f["xcoordinates"][()], [-1, 0, 1])
    assert ls.Landscape.load(path).values.keys() == plane.values.keys()


def test_a_plane_in_memory_is_its_saved_file_read_back(tmp_path: Path) -> None:
    """The API's result is read in memory and its file written only when saved (h5py not imported by a plane):
    the surface it holds is, array for array and bit for bit, the file's read back, and that file is a run's."""
    import dataclasses

    from landscape_job.surface.file import Surface

    model, (x, y) = _DictNet(), _synthetic()
    runs = {"plane": ls.plane(model, {"train": (x, y), "test": (x[:20], y[:20])}, x="-1:1:4", y="-0.5:0.5:3",
                              output="logits", metrics={"zz_top1": lambda out, labels: (out.argmax(1) == labels)},
                              progress=False),
            "line": ls.line(model, (x, y), x="-1:1:5", output="logits", precision="fp64", progress=False)}
    for name, run in runs.items():
        read = ls.Landscape.load(run.save(tmp_path / f"{name}.h5")).surface
        assert run.data == (tmp_path / f"{name}.h5").read_bytes()
        for f in dataclasses.fields(Surface):
            mine, theirs = getattr(run.surface, f.name), getattr(read, f.name)
            if f.name == "path":
                continue
            if f.name == "metrics":
                assert list(mine) == list(theirs), name
                assert all(mine[k].dtype == theirs[k].dtype and mine[k].tobytes() == theirs[k].tobytes() for k in mine)
            elif isinstance(mine, np.ndarray):
                assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes(), (name, f.name)
            else:
                assert mine == theirs, (name, f.name)
    assert set(runs["plane"].values) == {"train_loss", "train_acc", "test_loss", "test_acc", "train_zz_top1",
                                         "test_zz_top1"}
