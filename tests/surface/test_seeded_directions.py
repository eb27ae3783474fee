"""Directions that never touch disk (issue 23, items 4-5): seeded per tensor, filter-normalised
row by row, the same bits in every process and shard; ``directions.params`` moves only the
tensors it names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import run_all, spec_from
from landscape_job.base.errors import StageError, UserError
from landscape_job.spec.sections import DirectionsSpec, ParamsSpec
from landscape_job.spec.titles import figure_title
from landscape_job.surface.direction_builders import build_directions
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.seeded import (AUTO_SEEDED_BYTES, materialize, recipe_for, tensor_seed, uses_seeded)
from launcher.local.runner import open_run

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from lm_models import gpt  # noqa: E402

SIZE = {"vocab": 64, "width": 16, "layers": 2, "heads": 2, "context": 8}


def _tiny_lm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = gpt(**SIZE)
    with torch.no_grad():  # LayerNorm and biases away from their 1/0 init, so copies and zeros are told apart
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _lm_spec(tmp_path: Path, shards: int = 1, **directions: object) -> dict:
    torch.save(_tiny_lm().state_dict(), tmp_path / "lm.pt")
    return {"name": "lm", "python": {"path": [str(BENCHMARKS)]},
            "model": {"arch": "python:lm_models:gpt", "checkpoint": "lm.pt", "kwargs": dict(SIZE)},
            "data": {"dataset": "python:lm_models:tokens", "classes": 64,
                     "options": {"vocab": 64, "context": 8, "sequences": 12}},
            "directions": {"type": "random", "seed": 5, "storage": "seeded", **directions},
            "grid": {"x": "-1:1:5", "y": "-1:1:4"},
            "compute": {"shards": shards, "precision": "fp32", "batch_size": 8, "checkpoint_every": 2},
            "storage": "runs"}


# -- bit-identical in every process and shard ------------------------------------------------------

_CHILD = """
import sys, torch, yaml
sys.path.insert(0, {tests!r})
torch.set_num_threads({threads})
from conftest import run_all
from landscape_job.spec.parse import load_spec
from launcher.local.runner import open_run
spec = load_spec({spec!r})
run_all(open_run(spec, {run!r}), spec.compute.shards)
"""


def _run_in_process(folder: Path, raw: dict, run: str, threads: int) -> Path:
    folder.mkdir()
    (folder / "surface.yaml").write_text(json.dumps(raw))
    torch.save(_tiny_lm().state_dict(), folder / "lm.pt")
    code = _CHILD.format(tests=str(Path(__file__).parents[1]), threads=threads, spec=str(folder / "surface.yaml"), run=run)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=folder, timeout=300)
    return folder / "runs" / run


@pytest.mark.slow
def test_one_and_three_shards_in_two_processes_are_bit_identical(tmp_path: Path, one_torch_thread: None) -> None:
    """One shard in this process (one thread, after whatever ran here before), three in a fresh one (two
    threads): two processes whose global state differs, as two pods' does."""
    (tmp_path / "one").mkdir()
    torch.save(_tiny_lm().state_dict(), tmp_path / "one" / "lm.pt")
    run_all(open_run(spec_from(tmp_path / "one", _lm_spec(tmp_path, shards=1)), "one"), 1)
    one = tmp_path / "one" / "runs" / "one"
    three = _run_in_process(tmp_path / "three", _lm_spec(tmp_path, shards=3), "three", threads=2)
    with h5py.File(one / "surface.h5") as a, h5py.File(three / "surface.h5") as b:
        assert a.attrs["direction_hash"] == b.attrs["direction_hash"]
        assert a.attrs["direction_storage"] == "seeded"
        for name in ("train_loss", "train_acc", "test_loss"):
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
            assert np.isfinite(a[name][()]).all()
        assert len(np.unique(a["train_loss"][()])) > 10  # the points really differ
    with h5py.File(one / "directions.h5") as f:  # the recipe, not the values
        assert "xdirection" not in f and f.attrs["storage"] == "seeded"
    assert (one / "directions.h5").stat().st_size < 16 * 1024


def test_a_pod_whose_regenerated_directions_differ_stops(tmp_path: Path) -> None:
    from landscape_job import stages
    from landscape_job.run.files import DIRECTIONS_KEY

    spec = spec_from(tmp_path, _lm_spec(tmp_path))
    run = open_run(spec, "r")
    stages.prepare(run, log=lambda _: None)
    with h5py.File(tmp_path / "runs" / "r" / "directions.h5", "r+") as f:  # another generator's recipe
        recipe = json.loads(f.attrs["recipe"])
        f.attrs["recipe"] = json.dumps({**recipe, "seed": recipe["seed"] + 1})
    assert run.exists(DIRECTIONS_KEY)
    with pytest.raises(StageError, match="differ from those prepare hashed"):
        stages.evaluate(run, 0, log=lambda _: None)


# -- filter normalisation of transformer tensors ------------------------------------------------------


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_each_row_has_its_weights_norm(ignore: str) -> None:
    model = _tiny_lm()
    spec = DirectionsSpec(storage="seeded", seed=1, ignore=ignore)
    directions = materialize(recipe_for(spec, model, two_d=True), model)
    named = dict(model.named_parameters())
    assert {"transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.1.ln_2.weight"} <= set(named)
    for group in (directions.x, directions.y):
        for name, d in zip(directions.names, group):
            w = named[name].detach()
            if w.dim() > 1:  # Linear (out, in) and Embedding (vocab, width): one norm per row
                np.testing.assert_allclose(torch.linalg.vector_norm(d.double(), dim=1).numpy(),
                                           torch.linalg.vector_norm(w.double(), dim=1).numpy(), rtol=1e-6, atol=0)
            elif ignore == "biasbn":  # LayerNorm scales and biases: zero
                assert not d.any(), name
            else:  # ... or θ*'s own values (the paper's rule)
                assert torch.equal(d, w), name
    assert not torch.equal(directions.x[0], directions.y[0])


def test_a_tensor_is_drawn_from_its_own_name() -> None:
    """Leaving tensors out (params) or reordering them changes no other tensor's draw."""
    model = _tiny_lm()
    all_of = materialize(recipe_for(DirectionsSpec(storage="seeded", seed=2), model, False), model)
    some = materialize(recipe_for(DirectionsSpec(storage="seeded", seed=2,
                                                 params=ParamsSpec(include=("transformer.h.1.*",))), model, False), model)
    for name, a, b in zip(all_of.names, all_of.x, some.x):
        if name.startswith("transformer.h.1.") and a.dim() > 1:
            assert torch.equal(a, b), name
    assert tensor_seed(2, "x", "a") != tensor_seed(2, "y", "a") != tensor_seed(3, "x", "a")
    # Stable across processes (sha256, never Python's salted hash()): the documented formula.
    import hashlib
    expected = int.from_bytes(hashlib.sha256(b"landscape-directions|2|x|a").digest()[:8], "little") & (2**63 - 1)
    assert tensor_seed(2, "x", "a") == expected


# -- directions.params -------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["seeded", "file"])
def test_params_moves_exactly_the_matched_tensors(storage: str) -> None:
    model = _tiny_lm()
    params = ParamsSpec(include=("transformer.h.0.*", "transformer.wte.weight"), exclude=("*.attn.c_proj.*",))
    spec = DirectionsSpec(storage=storage, seed=4, params=params, ignore="none")
    directions = build_directions(spec, model, two_d=True)
    centre = {n: p.detach().clone() for n, p in model.named_parameters()}
    evaluator = Evaluator(model, directions, [])
    evaluator.set_point(0.7, -0.4)
    moved = {n for n, p in evaluator.model.named_parameters() if not torch.equal(p.detach(), centre[n])}
    expected = {n for n in centre if (n.startswith("transformer.h.0.") or n == "transformer.wte.weight")
                and ".attn.c_proj." not in n}
    assert moved == expected
    assert len(moved) < len(centre) - 10


def test_params_matching_nothing_is_named() -> None:
    spec = DirectionsSpec(storage="seeded", params=ParamsSpec(include=("encoder.*",)))
    with pytest.raises(UserError, match=r"directions.params: only encoder\.\* matches none of the model's"):
        build_directions(spec, _tiny_lm(), two_d=False)


def test_params_and_storage_in_the_spec(tmp_path: Path) -> None:
    raw = _lm_spec(tmp_path, params={"include": "transformer.h.*", "exclude": ["*.bias"]})
    spec = spec_from(tmp_path, raw)
    assert spec.directions.params == ParamsSpec(include=("transformer.h.*",), exclude=("*.bias",))
    out = spec.to_dict()["directions"]
    assert out["params"] == {"include": ["transformer.h.*"], "exclude": ["*.bias"]} and out["storage"] == "seeded"
    assert spec_from(tmp_path, {**raw, "directions": out}).hash == spec.hash  # re-parseable
    del raw["directions"]["storage"], raw["directions"]["params"]
    plain = spec_from(tmp_path, raw).to_dict()
    assert "storage" not in plain["directions"] and "params" not in plain["directions"]  # old hashes stay
    assert "weights" not in plain["compute"]


@pytest.mark.parametrize("directions, message", [
    ({"storage": "seeded", "type": "plane", "targets": ["lm.pt", "lm.pt"]}, "directions.storage: seeded"),
    ({"storage": "file", "type": "file", "file": "lm.pt", "params": {"include": "a*"}}, "directions.params: type file"),
    ({"params": {"inclde": "a*"}}, "directions.params.inclde: unknown key"),
    ({"params": {"include": [3]}}, "directions.params.include: expected glob patterns"),
    ({"params": {}}, "directions.params: give include and/or exclude"),
])
def test_directions_mistakes_are_one_line(tmp_path: Path, directions: dict, message: str) -> None:
    raw = _lm_spec(tmp_path)
    raw["directions"] = {**raw["directions"], **directions}
    if directions.get("type") == "plane":
        raw["grid"] = {"x": "0:1:3", "y": "0:1:3"}
    if directions.get("type") == "file":
        raw["directions"].pop("seed")
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        spec_from(tmp_path, raw)


@pytest.mark.slow
def test_params_in_the_surface_file_and_titles(tmp_path: Path) -> None:
    raw = _lm_spec(tmp_path, params={"include": "transformer.h.0.*"})
    raw["grid"] = {"x": "-1:1:3", "y": "-1:1:3"}
    spec = spec_from(tmp_path, raw)
    run_all(open_run(spec, "t"), 1)
    with h5py.File(tmp_path / "runs" / "t" / "surface.h5") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    assert json.loads(attrs["params_include"]) == ["transformer.h.0.*"]
    assert attrs["params"] == "only transformer.h.0.*"
    assert figure_title("train loss", attrs) == "train loss — lm [only transformer.h.0.*]"
    assert figure_title("train loss", {"arch": "cnn", "dataset": "digits"}) == "train loss — cnn on digits"


def test_auto_is_the_file_for_small_models_and_seeded_above_a_gibibyte() -> None:
    small = _tiny_lm()
    assert not uses_seeded(DirectionsSpec(), small, two_d=True)
    assert uses_seeded(DirectionsSpec(storage="seeded"), small, two_d=True)

    class Big(torch.nn.Module):  # 2 directions x 4 bytes of (2**27 + 1) values > 1 GiB, on the meta device
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.empty(AUTO_SEEDED_BYTES // 8 + 1, device="meta"))

    assert uses_seeded(DirectionsSpec(), Big(), two_d=True)
    assert not uses_seeded(DirectionsSpec(), Big(), two_d=False)
    assert not uses_seeded(DirectionsSpec(storage="file"), Big(), two_d=True)


# -- planes through fine-tunes of one base model (task vectors), streamed ------------------------------


def test_task_vector_plane_is_the_fine_tunes_minus_the_base_streamed(tmp_path: Path) -> None:
    from landscape_job.surface.directions import _skeleton

    base = _tiny_lm(0)
    tunes = []
    for seed in (1, 2):
        tuned = _tiny_lm(0)
        with torch.no_grad():
            for p in tuned.parameters():
                p.add_(0.01 * seed * torch.randn_like(p))
        torch.save({"state_dict": tuned.state_dict()}, tmp_path / f"ft{seed}.pt")
        tunes.append(tuned.state_dict())
    params = ParamsSpec(exclude=("transformer.wte.*",))
    spec = DirectionsSpec(type="plane", targets=(str(tmp_path / "ft1.pt"), str(tmp_path / "ft2.pt")),
                          dir_type="states", norm="none", ignore="none", params=params)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    directions = build_directions(spec, base, two_d=True)
    for group, tuned in ((directions.x, tunes[0]), (directions.y, tunes[1])):
        for name, d in zip(directions.names, group):
            expected = torch.zeros_like(d) if name.startswith("transformer.wte.") else tuned[name] - before[name]
            assert torch.equal(d, expected), name
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())  # the base is untouched
    assert all(t.device.type == "meta" for t in _skeleton(base).state_dict().values())


# -- compute.weights: bf16 weights, float32 loss ----------------------------------------------------------


def test_half_weights_hold_bf16_and_take_the_loss_in_float32() -> None:
    from landscape_job.datasets.builtin import Split
    from landscape_job.spec.sections import ComputeSpec
    from lm_models import tokens

    model = _tiny_lm()
    inputs, labels = tokens(64, 8, 12).tensors
    reference = _tiny_lm().to(torch.bfloat16)  # θ* in bf16, the loss over its logits in float32
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(reference(inputs.to(torch.bfloat16)).float(), labels)
    directions = build_directions(DirectionsSpec(storage="seeded"), model, two_d=False)
    evaluator = Evaluator(model, directions, [Split(inputs=inputs, labels=labels, num_classes=64, name="train")],
                          compute=ComputeSpec(batch_size=5, weights="bf16", points_per_forward=1))
    assert all(p.dtype == torch.bfloat16 for p in evaluator.model.parameters())
    assert all(d.dtype == torch.bfloat16 for d in evaluator.displacement.dx)
    assert evaluator.evaluate(0.0)["train_loss"] == pytest.approx(float(expected), rel=1e-6)


def test_a_seeded_run_keeps_the_centre_hessian(tmp_path: Path, linear_spec: dict) -> None:
    linear_spec["directions"]["storage"] = "seeded"
    linear_spec["metrics"] = ["loss", "hessian"]
    linear_spec["hessian"] = {"iterations": 5, "trace_samples": 0}
    spec = spec_from(tmp_path, linear_spec)
    from landscape_job import stages

    manifest = stages.prepare(open_run(spec, "h"), log=lambda _: None)
    assert manifest.direction_storage == "seeded" and manifest.hessian is not None
    assert np.isfinite(manifest.hessian["max_eig"])
