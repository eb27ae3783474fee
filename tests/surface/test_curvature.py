"""surface/curvature.py, the glue between a network and the Hessian: which samples
(``hessian_split``), which parameters, which probes (the seed), which loss (the API's
``batch_fn``), checked against autograd's dense Hessian and the probes written out.

The model and the data are tiny (a 6-4-3 MLP, 24..96 samples), so mutation testing
(docs/testing.md) runs this file against every mutant of curvature.py in seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.func import functional_call

from conftest import SYNTHETIC, spec_from
from test_hessian import _dense_hessian, _hessian_spec, _tiny_mlp

from landscape_job.base.errors import UserError
from landscape_job.datasets.builtin import Split, load_split
from landscape_job.spec.sections import DataSpec, HessianSpec
from landscape_job.surface.curvature import (
    CurvatureProbe,
    centre_analysis,
    hessian_parameters,
    hessian_split,
    lanczos_caution,
    probe_for,
)
from landscape_job.surface.hessian import LanczosResult


def _spec(tmp_path, **hessian):
    raw = _hessian_spec(tmp_path)  # data.subset 40 of the 96 training and 40 test samples
    raw["hessian"] = {**raw["hessian"], **hessian}
    return spec_from(tmp_path, raw)


def _rademacher(dim: int, count: int, seed: int) -> list[torch.Tensor]:
    """The probes as documented: ±1 from torch.randint(0, 2) on a CPU generator seeded with ``seed``."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return [torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8).double() * 2 - 1 for _ in range(count)]


# --------------------------------------------------------------------------- the samples


@pytest.mark.parametrize("split, count", [("train", 40), ("test", 40)])
def test_without_hessian_subset_the_hessian_sees_the_loss_samples(tmp_path, split: str, count: int) -> None:
    spec = _spec(tmp_path, split=split)
    got = hessian_split(spec)
    want = load_split(spec.data, split)  # data.subset (40) applies, as to the loss
    assert (got.name, got.num_classes, len(got.labels)) == (split, 3, count)
    assert torch.equal(got.inputs, want.inputs) and torch.equal(got.labels, want.labels)


def test_hessian_subset_is_a_seeded_subset_of_the_whole_split_not_of_data_subset(tmp_path) -> None:
    spec = _spec(tmp_path, subset=7, subset_seed=5)
    full = load_split(replace(spec.data, subset=None), "train")
    assert len(full.labels) == SYNTHETIC["train_size"] == 96
    chosen = torch.sort(torch.randperm(96, generator=torch.Generator().manual_seed(5))[:7]).values
    assert int(chosen.max()) >= 40  # beyond data.subset's 40: the whole split is drawn from
    got = hessian_split(spec)
    assert (got.name, got.num_classes, len(got.labels)) == ("train", 3, 7)
    assert torch.equal(got.inputs, full.inputs[chosen]) and torch.equal(got.labels, full.labels[chosen])
    other = hessian_split(_spec(tmp_path, subset=7, subset_seed=0))
    assert not torch.equal(other.inputs, got.inputs)  # the seed is used


@pytest.mark.parametrize("split, size", [("train", 96), ("test", 40)])
def test_a_hessian_subset_of_the_whole_split_is_allowed_one_more_is_named(tmp_path, split: str, size: int) -> None:
    whole = hessian_split(_spec(tmp_path, split=split, subset=size))
    full = load_split(replace(_spec(tmp_path).data, subset=None), split)
    assert whole.name == split and torch.equal(whole.inputs, full.inputs) and torch.equal(whole.labels, full.labels)
    with pytest.raises(UserError, match=rf"^hessian.subset: {size + 1} is larger than the {split} split "
                                        rf"\({size} samples\); lower it or drop it$"):
        hessian_split(_spec(tmp_path, split=split, subset=size + 1))


# --------------------------------------------------------------------------- the probes and their seed


def _probe(options: HessianSpec, dense: bool = True) -> tuple[CurvatureProbe, np.ndarray | None]:
    """A probe on 24 samples in batches of 10, and autograd's dense Hessian of their mean loss."""
    data = load_split(DataSpec(dataset="synthetic", subset=24, options=SYNTHETIC), "train")
    model = _tiny_mlp(1)
    probe = CurvatureProbe(model=model, inputs=data.inputs.double(), labels=data.labels, options=options,
                           loss="cross_entropy", batch_size=10)
    return probe, _dense_hessian(model, data.inputs.double(), data.labels) if dense else None


@pytest.mark.parametrize("seed", [0, 5])
def test_the_trace_is_the_mean_of_z_h_z_over_the_probes_of_hessian_seed(seed: int) -> None:
    probe, dense = _probe(HessianSpec(ignore="none", trace_samples=3, seed=seed))
    values = [float(z.numpy() @ dense @ z.numpy()) for z in _rademacher(len(dense), 3, seed)]
    est = probe.trace()
    assert est is not None and est.samples == 3
    assert est.trace == pytest.approx(np.mean(values), rel=1e-9)
    assert est.stderr == pytest.approx(np.std(values, ddof=1) / math.sqrt(3), rel=1e-9)
    assert probe.operator.products == 3


def test_no_trace_and_no_density_when_their_counts_are_zero() -> None:
    probe, _ = _probe(HessianSpec(ignore="none", trace_samples=0, density_steps=0), dense=False)
    assert probe.trace() is None and probe.density() is None and probe.operator.products == 0


@pytest.mark.parametrize("seed", [0, 5])
def test_the_density_s_moments_are_v_h_k_v_over_the_probes_of_hessian_seed(seed: int) -> None:
    """m Lanczos steps from v integrate λ^k exactly for k <= 2m - 1: with 2 steps the first three moments
    are the probes' mean vᵀHᵏv, v = z/√n."""
    probe, dense = _probe(HessianSpec(ignore="none", density_steps=2, density_probes=3, seed=seed))
    density = probe.density()
    assert density is not None and density.nodes.shape == (3, 2) and density.dim == len(dense)
    assert density.nodes.dtype == np.float64 and density.weights.dtype == np.float64
    vs = [z.numpy() / math.sqrt(len(dense)) for z in _rademacher(len(dense), 3, seed)]
    for k in (1, 2, 3):
        power = np.linalg.matrix_power(dense, k)
        assert density.moment(k) == pytest.approx(np.mean([v @ power @ v for v in vs]), rel=1e-7)


# --------------------------------------------------------------------------- the loss and the parameters


def _squared_outputs(m, batch):
    """An API ``batch_fn``: half the squared outputs, per sample (no labels)."""
    return 0.5 * (m(batch[0]) ** 2).sum(dim=1)


def _dense_squared_outputs(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """autograd's dense Hessian of ``_squared_outputs``' mean over every parameter."""
    named = dict(model.named_parameters())
    shapes = {k: p.shape for k, p in named.items()}

    def mean_loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in shapes.items():
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        out = functional_call(model, params, (inputs,))
        return 0.5 * (out ** 2).sum(dim=1).mean()

    flat = torch.cat([p.detach().reshape(-1) for p in named.values()])
    return torch.autograd.functional.hessian(mean_loss, flat)


def test_probe_for_uses_the_api_s_batch_fn_the_hessian_batch_size_and_the_model_s_dtype(tmp_path) -> None:
    """The API's ``batch_fn`` replaces ``loss``: the operator is that loss's mean Hessian, autograd's dense
    one; the inputs take the model's dtype."""
    spec = _spec(tmp_path, ignore="none", batch_size=7)
    split = load_split(spec.data, "train")
    model = _tiny_mlp(2)
    probe = probe_for(model, split, spec, _squared_outputs)
    assert probe.batch_size == 7 and probe.inputs.dtype == torch.float64 and probe.labels.dtype == torch.int64
    assert torch.equal(probe.inputs, split.inputs.double()) and torch.equal(probe.labels, split.labels)
    dense = _dense_squared_outputs(model, split.inputs.double())
    v = torch.linspace(-1.0, 1.0, len(dense), dtype=torch.float64)
    torch.testing.assert_close(probe.operator(v), dense @ v, rtol=1e-9, atol=1e-12)
    # Without batch_fn: spec.loss (cross-entropy), in compute.batch_size (16) batches.
    plain = probe_for(model, split, _spec(tmp_path, ignore="none"))
    assert plain.batch_fn is None and plain.batch_size == 16 and plain.loss == "cross_entropy"
    ce = _dense_hessian(model, split.inputs.double(), split.labels)
    torch.testing.assert_close(plain.operator(v), torch.from_numpy(ce) @ v, rtol=1e-9, atol=1e-12)


def test_biasbn_takes_the_weights_only_and_pads_an_eigenvector_with_zeros() -> None:
    model = _tiny_mlp(0)  # layers.1: 5x6 weight, 5 bias; layers.3: 3x5 weight, 3 bias
    data = load_split(DataSpec(dataset="synthetic", subset=12, options=SYNTHETIC), "train")
    probe = CurvatureProbe(model=model, inputs=data.inputs.double(), labels=data.labels,
                           options=HessianSpec(ignore="biasbn"), loss="cross_entropy", batch_size=12)
    assert probe.tensor_names() == ["layers.1.weight", "layers.3.weight"] and probe.operator.dim == 30 + 15
    vector = torch.arange(45, dtype=torch.float64)
    parts = probe.as_direction(vector)
    assert [tuple(p.shape) for p in parts] == [(5, 6), (5,), (3, 5), (3,)]
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in parts)
    assert torch.equal(parts[0], torch.arange(30.0).view(5, 6)) and torch.equal(parts[2], torch.arange(30.0, 45.0).view(3, 5))
    assert torch.equal(parts[1], torch.zeros(5)) and torch.equal(parts[3], torch.zeros(3))
    vector[0] = 99.0  # a copy, not a view of the eigenvector
    assert parts[0][0, 0] == 0.0
    every = CurvatureProbe(model=model, inputs=data.inputs.double(), labels=data.labels,
                           options=HessianSpec(ignore="none"), loss="cross_entropy", batch_size=12)
    assert every.tensor_names() == [n for n, _ in model.named_parameters()] and every.operator.dim == 53


def test_biasbn_on_a_model_of_biases_only_is_named() -> None:
    norm = torch.nn.BatchNorm1d(3)
    assert hessian_parameters(norm, "none") == [0, 1]
    with pytest.raises(UserError, match=r"^hessian.ignore: biasbn leaves no parameter of this model; "
                                        r"use ignore: none$"):
        hessian_parameters(norm, "biasbn")


def test_the_caution_lines_name_the_key_to_change() -> None:
    def result(iterations: int, converged: bool) -> LanczosResult:
        return LanczosResult(max_eig=2.0, min_eig=-1.0, top_values=(2.0,), top_vectors=(), iterations=iterations,
                             converged=converged, residual_max=0.0, residual_min=0.0)

    assert lanczos_caution(result(9, False), HessianSpec(iterations=9), dim=10) == (
        "Lanczos stopped at hessian.iterations (9) before its residual test; raise hessian.iterations")
    assert lanczos_caution(result(10, False), HessianSpec(iterations=10), dim=10) is None  # the whole operator
    assert lanczos_caution(result(12, True), HessianSpec(tolerance=0.01), dim=50) == (
        "λmin after 12 Lanczos steps at hessian.tolerance 0.01 (looser than 0.001) may not be the smallest "
        "eigenvalue; use 0.001 or tighter where its sign matters")
    assert lanczos_caution(result(12, True), HessianSpec(tolerance=0.0011), dim=50) is not None
    assert lanczos_caution(result(12, True), HessianSpec(tolerance=0.001), dim=50) is None


def test_the_centre_analysis_takes_the_api_s_batch_fn(tmp_path) -> None:
    spec = _spec(tmp_path, ignore="none", tolerance=1e-9, iterations=200, trace_samples=0)
    split = load_split(spec.data, "train")
    model = _tiny_mlp(2)
    _, summary = centre_analysis(model, split, spec, two_d=False, batch_fn=_squared_outputs)
    truth = np.linalg.eigvalsh(_dense_squared_outputs(model, split.inputs.double()).numpy())
    assert summary["max_eig"] == pytest.approx(truth[-1], rel=1e-6)
    assert summary["min_eig"] == pytest.approx(truth[0], abs=1e-6 * np.abs(truth).max())


def test_hessian_directions_at_a_non_finite_checkpoint_are_named(tmp_path) -> None:
    raw = _hessian_spec(tmp_path)
    raw["hessian"] = {**raw["hessian"], "split": "test", "trace_samples": 0}
    raw["directions"] = {"type": "hessian"}
    spec = spec_from(tmp_path, raw)
    model = _tiny_mlp(0)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    split = load_split(spec.data, "test")
    for two_d in (False, True):
        with pytest.raises(UserError, match=r"^directions.type: hessian: the Hessian at model.checkpoint is not "
                                            r"finite on the test split; no eigenvectors to use as directions$"):
            centre_analysis(model, split, spec, two_d=two_d)
    # Without hessian directions the same point is a NaN result, not an error.
    _, summary = centre_analysis(model, split, _spec(tmp_path, trace_samples=0), two_d=True)
    assert math.isnan(summary["max_eig"]) and summary["top_eigenvalues"] == []


def test_the_summary_s_density_nodes_integrate_v_h_k_v_and_padding_is_zero(tmp_path) -> None:
    """A linear model at zero weights on 4 samples: its Hessian has at most 5 distinct eigenvalues, so
    SLQ's 10 steps stop early on an invariant subspace and each row is padded. The manifest's nodes are
    0.0 there (JSON has no NaN), with zero weight, and each row's nodes and weights integrate vᵀHᵏv
    exactly (numpy's powers of autograd's dense Hessian)."""
    raw = _hessian_spec(tmp_path)
    raw["data"]["subset"] = 4
    raw["hessian"] = {**raw["hessian"], "ignore": "none", "trace_samples": 0, "density_steps": 10,
                      "density_probes": 2, "seed": 7}
    spec = spec_from(tmp_path, raw)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    split = load_split(spec.data, "train")
    split = replace(split, inputs=split.inputs.double())
    _, summary = centre_analysis(model, split, spec, two_d=False)
    nodes, weights = np.array(summary["density"]["nodes"]), np.array(summary["density"]["weights"])
    assert nodes.shape == weights.shape == (2, 10) and not np.isnan(nodes).any()
    padded = weights == 0
    assert padded[:, -1].all() and np.all(nodes[padded] == 0.0)
    dense = _dense_hessian(model, split.inputs, split.labels)
    vs = [z.numpy() / math.sqrt(len(dense)) for z in _rademacher(len(dense), 2, 7)]
    for row, v in enumerate(vs):
        for k in (1, 2, 3):
            exact = v @ np.linalg.matrix_power(dense, k) @ v
            assert float(np.sum(weights[row] * nodes[row] ** k)) == pytest.approx(exact, rel=1e-6, abs=1e-12)


def test_a_two_parameter_hessian_gives_both_directions() -> None:
    """Two parameters, two eigenvectors: exactly as many as two directions need (numpy's eigh)."""
    model = torch.nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3], [-0.2]]))
    inputs = torch.tensor([[1.0], [-2.0], [0.5], [1.5]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    split = Split(inputs=inputs, labels=labels, num_classes=2, name="train")
    spec = SimpleNamespace(hessian=HessianSpec(ignore="none", trace_samples=0, tolerance=1e-9),
                           directions=SimpleNamespace(type="hessian"), loss="cross_entropy",
                           compute=SimpleNamespace(batch_size=4))
    directions, summary = centre_analysis(model, split, spec, two_d=True)
    values, vectors = np.linalg.eigh(_dense_hessian(model, inputs, labels))
    assert summary["top_eigenvalues"] == pytest.approx(values[::-1].tolist(), rel=1e-9, abs=1e-12)
    for direction, column in ((directions.x, 1), (directions.y, 0)):
        assert abs(float(direction[0].reshape(-1).double().numpy() @ vectors[:, column])) == pytest.approx(1.0, abs=1e-6)


def test_a_float32_model_s_trace_and_density_are_taken_in_float32() -> None:
    """The probes reach the operator in the model's dtype (fp32 runs take their Hessian in fp32): the same
    probes as in float64, to float32's precision."""
    data = load_split(DataSpec(dataset="synthetic", subset=24, options=SYNTHETIC), "train")
    options = HessianSpec(ignore="none", trace_samples=2, density_steps=3, density_probes=2, seed=1)
    found = {}
    for dtype in (torch.float32, torch.float64):
        model = _tiny_mlp(1).to(dtype)
        probe = CurvatureProbe(model=model, inputs=data.inputs.to(dtype), labels=data.labels, options=options,
                               loss="cross_entropy", batch_size=24)
        found[dtype] = (probe.trace().trace, probe.density().moment(1))
    assert found[torch.float32] == pytest.approx(found[torch.float64], rel=1e-4)


def test_lanczos_starts_from_hessian_seed_and_returns_only_the_eigenvectors_asked_for() -> None:
    """The eigenvalues do not depend on the start vector, the run's path does: the probe's Lanczos is the
    one started from hessian.seed (its steps and residuals), and it returns eigenvectors only when asked."""
    from landscape_job.surface.hessian import lanczos

    for seed in (0, 5):
        probe, _ = _probe(HessianSpec(ignore="none", iterations=6, tolerance=1e-9, seed=seed), dense=False)
        found = probe.extremes()
        direct = lanczos(probe.operator, probe.operator.dim, iterations=6, tolerance=1e-9, seed=seed)
        assert (found.max_eig, found.min_eig, found.residual_max, found.residual_min) == \
            (direct.max_eig, direct.min_eig, direct.residual_max, direct.residual_min)
        assert found.top_values == () and found.top_vectors == ()
        assert len(probe.extremes(top_k=2).top_vectors) == 2
    other = lanczos(probe.operator, probe.operator.dim, iterations=6, tolerance=1e-9, seed=0)
    assert other.residual_max != found.residual_max  # seed 5's path is not seed 0's
