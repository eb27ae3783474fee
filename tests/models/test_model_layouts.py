"""Models as they come (issue 15, points 2 and 3): structured outputs and checkpoint layouts.

A model that returns a dict, a tuple or a dataclass gives, with ``model.output``, the
very surface of the same network returning a tensor; without it, one line (exit 2) lists
what it returned. Every common checkpoint layout loads into the same weights, and says
which entry and prefixes it used; ``.safetensors`` files load without pickle.
"""

from __future__ import annotations

import logging
import textwrap
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import run_all, spec_from, write_spec
from landscape_job.models.checkpoints import load_state_dict
from landscape_job.base.errors import UserError
from landscape_job.models.outputs import describe_output, pick_output
from landscape_job.storage import run_storage
from launcher.cli import main as launcher

MODULE = '''
import dataclasses
import torch
from torch import nn

@dataclasses.dataclass
class Out:                      # a Hugging Face ModelOutput-like record
    loss: object
    logits: torch.Tensor

class Net(nn.Module):
    def __init__(self, mode="tensor"):
        super().__init__()
        self.mode = mode
        self.lin = nn.Linear(6, 3)
    def forward(self, x):
        z = self.lin(x)
        if self.mode == "dict":
            return {"aux": z.sum(dim=1), "logits": z}
        if self.mode == "tuple":
            return (z, z.sum(dim=1))
        if self.mode == "dataclass":
            return Out(loss=None, logits=z)
        return z

def build(mode="tensor"):
    return Net(mode)
'''


@pytest.fixture
def net_spec(tmp_path: Path, linear_spec: dict) -> dict:
    (tmp_path / "lsj_outputs_net.py").write_text(textwrap.dedent(MODULE))
    torch.manual_seed(0)
    torch.save({"state_dict": {"lin.weight": torch.randn(3, 6, dtype=torch.float64),
                               "lin.bias": torch.randn(3, dtype=torch.float64)}}, tmp_path / "net.pt")
    linear_spec["model"] = {"arch": "python:lsj_outputs_net:build", "checkpoint": "net.pt"}
    linear_spec["python"] = {"path": [str(tmp_path)]}
    return linear_spec


def _surface(tmp_path: Path, raw: dict, run_id: str) -> dict[str, np.ndarray]:
    spec = spec_from(tmp_path, raw)
    run = run_storage(spec.storage, run_id)
    run.put("spec.yaml", spec.to_yaml().encode())
    run_all(run, shards=1)
    with h5py.File(tmp_path / "runs" / run_id / "surface.h5") as f:
        return {k: f[k][()] for k in ("train_loss", "train_acc", "test_loss")}


@pytest.mark.slow
@pytest.mark.parametrize("mode, output", [("dict", "logits"), ("tuple", 0), ("dataclass", "logits")])
def test_a_structured_output_gives_the_surface_of_the_tensor_output(tmp_path, net_spec, mode, output) -> None:
    plain = _surface(tmp_path, net_spec, "plain")
    net_spec["model"] = {**net_spec["model"], "kwargs": {"mode": mode}, "output": output}
    picked = _surface(tmp_path, net_spec, f"picked-{mode}")
    for name, values in plain.items():
        np.testing.assert_array_equal(picked[name], values, err_msg=name)
    assert np.isfinite(plain["train_loss"]).all() and plain["train_loss"].min() > 0


@pytest.mark.parametrize("mode, output, listed", [
    ("dict", None, "returned a dict with aux: tensor (2,), logits: tensor (2, 3); set model.output"),
    ("tuple", None, "returned a tuple with 0: tensor (2, 3), 1: tensor (2,)"),
    ("dataclass", None, "returned a Out with loss: NoneType, logits: tensor (2, 3)"),
    ("dict", "logit", "model.output: 'logit' is not among the model's outputs; it returned a dict with aux"),
    ("tuple", 2, "model.output: 2 is not among the model's outputs"),
    ("dataclass", "loss", "model.output: 'loss' is a NoneType, not a tensor of predictions"),
])
def test_validate_lists_what_the_model_returned(tmp_path, net_spec, capsys, mode, output, listed) -> None:
    net_spec["model"] = {**net_spec["model"], "kwargs": {"mode": mode}}
    if output is not None:
        net_spec["model"]["output"] = output
    code = launcher(["validate", str(write_spec(tmp_path, net_spec))])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and listed in lines[0], lines


def test_pick_output_rules() -> None:
    z = torch.zeros(2, 3)
    assert pick_output({"logits": z}, "logits") is z
    assert pick_output((z, 1), -2) is z
    assert pick_output(z, None) is z
    with pytest.raises(UserError, match="model.output: 0 is not among"):
        pick_output({"0": z}, 0)  # an index is not a key
    many = {f"k{i}": z for i in range(20)}
    assert describe_output(many).endswith("and 12 more")


# --------------------------------------------------------------------------- checkpoints


def _weights() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(1)
    return OrderedDict([("lin.weight", torch.randn(3, 6)), ("lin.bias", torch.randn(3))])


def _prefixed(prefix: str) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((prefix + k, v) for k, v in _weights().items())


LAYOUTS = {
    "bare": (lambda: _weights(), None, ""),
    "paper": (lambda: {"state_dict": _weights(), "epoch": 3, "acc": 91.0}, None, ""),  # the usual: no word
    "tutorial": (lambda: {"epoch": 3, "model_state_dict": _weights(), "optimizer_state_dict": {"lr": 0.1}},
                 None, "entry 'model_state_dict'"),
    "model": (lambda: {"model": _weights(), "optimizer": {}}, None, "entry 'model'"),
    "dataparallel": (lambda: _prefixed("module."), None, "prefix 'module.' removed"),
    "compiled": (lambda: {"model_state_dict": _prefixed("_orig_mod.")}, None,
                 "entry 'model_state_dict', prefix '_orig_mod.' removed"),
    "compiled dataparallel": (lambda: _prefixed("_orig_mod.module."), None,
                              "prefix '_orig_mod.' removed, prefix 'module.' removed"),
    "named entry": (lambda: {"ema": _weights(), "model": {"other": torch.zeros(1)}}, "ema", "entry 'ema'"),
    "nested entry": (lambda: {"ema": {"model": _weights()}}, "ema.model", "entry 'ema.model'"),
    "flat prefix": (lambda: OrderedDict([*_prefixed("student.").items(), ("teacher.w", torch.zeros(2))]),
                    "student", "keys under 'student.'"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_common_layout_loads_the_same_weights_and_says_how(tmp_path, caplog, layout) -> None:
    make, key, said = LAYOUTS[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(make(), path)
    with caplog.at_level(logging.INFO, logger="landscape_job.models.checkpoints"):
        sd = load_state_dict(path, key)
    assert list(sd) == list(_weights())
    for name, value in _weights().items():
        assert torch.equal(sd[name], value), name
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert (said in logged) if said else not logged, logged


def test_safetensors_checkpoints_load_without_pickle(tmp_path, caplog) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(dict(_prefixed("module.")), str(path))
    with caplog.at_level(logging.INFO, logger="landscape_job.models.checkpoints"):
        sd = load_state_dict(path)
    # safetensors keeps keys sorted; loading is by name, so the order does not matter
    assert all(torch.equal(sd[k], v) for k, v in _weights().items()) and sorted(sd) == sorted(_weights())
    assert "prefix 'module.' removed" in caplog.text
    (tmp_path / "weights.bin").write_bytes(path.read_bytes())  # a URL's file need not be named .safetensors
    assert all(torch.equal(load_state_dict(tmp_path / "weights.bin")[k], v) for k, v in _weights().items())
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{nonsense")
    with pytest.raises(UserError, match=r"bad\.safetensors: cannot read safetensors checkpoint"):
        load_state_dict(tmp_path / "bad.safetensors")


@pytest.mark.slow
def test_a_safetensors_checkpoint_runs_a_surface(tmp_path, net_spec) -> None:
    from safetensors.torch import save_file

    plain = _surface(tmp_path, net_spec, "pt")
    sd = torch.load(tmp_path / "net.pt", weights_only=True)["state_dict"]
    save_file({f"_orig_mod.{k}": v for k, v in sd.items()}, str(tmp_path / "net.safetensors"))
    net_spec["model"]["checkpoint"] = "net.safetensors"
    for name, values in _surface(tmp_path, net_spec, "st").items():
        np.testing.assert_array_equal(values, plain[name], err_msg=name)


def test_layout_mistakes_are_one_line(tmp_path) -> None:
    path = tmp_path / "c.pt"
    torch.save({"epoch": 1, "weights_here": _weights()}, path)
    with pytest.raises(UserError, match=r"none of state_dict, model_state_dict, model; for model.checkpoint, model.checkpoint_key names"):
        load_state_dict(path)
    with pytest.raises(UserError, match=r"model.checkpoint_key: .* has no entry 'ema'; it has 'epoch', "
                                        r"'weights_here'"):
        load_state_dict(path, "ema")
    assert list(load_state_dict(path, "weights_here")) == list(_weights())


def test_checkpoint_key_in_a_spec(tmp_path, net_spec, capsys) -> None:
    sd = torch.load(tmp_path / "net.pt", weights_only=True)["state_dict"]
    torch.save({"ema": {f"module.{k}": v for k, v in sd.items()}, "state_dict": {}}, tmp_path / "ema.pt")
    net_spec["model"]["checkpoint"] = "ema.pt"
    assert launcher(["validate", str(write_spec(tmp_path, net_spec))]) == 2  # the empty 'state_dict' is taken
    assert "not a state_dict (it is empty)" in capsys.readouterr().err
    net_spec["model"]["checkpoint_key"] = "ema"
    assert launcher(["validate", str(write_spec(tmp_path, net_spec))]) == 0, capsys.readouterr().err


def test_the_new_model_keys_leave_existing_hashes_alone(tmp_path, linear_spec) -> None:
    from conftest import spec_from

    plain = spec_from(tmp_path, linear_spec)
    assert set(plain.to_dict()["model"]) == {"arch", "checkpoint", "kwargs"}  # as every spec before them
    linear_spec["model"] = {**linear_spec["model"], "output": 0, "checkpoint_key": "state_dict"}
    picked = spec_from(tmp_path, linear_spec)
    assert picked.to_dict()["model"]["output"] == 0 and picked.hash != plain.hash
    assert spec_from(tmp_path, picked.to_dict()).hash == picked.hash  # the normalised spec re-reads the same
