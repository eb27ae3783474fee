"""At θ* the run records the top eigenvalues of the Hessian (not an empty list), and says when
λmin may not be the smallest eigenvalue: a loose Lanczos tolerance, or too few steps.

Checked against autograd's dense Hessian of a small MLP (fp64), as tests/surface/test_hessian.py does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import spec_from
from test_hessian import _dense_hessian, _hessian_spec

from landscape_job.surface.curvature import SAFE_TOLERANCE, TOP_EIGENVALUES, centre_analysis
from landscape_job.datasets.builtin import load_split
from landscape_job.surface.hessian import LanczosResult
from landscape_job.models import build_model


def _model_and_split(tmp_path, spec):
    """The spec's MLP at a.pt's weights and its train split, both in float64 (the dense Hessian's precision)."""
    model = build_model("mlp", 3, (6,), {"hidden": [4]})
    model.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"])
    split = load_split(spec.data, "train")
    split = type(split)(inputs=split.inputs.double(), labels=split.labels, num_classes=split.num_classes,
                        name=split.name)
    return model.double().eval(), split


def _centre(tmp_path, **hessian):
    raw = _hessian_spec(tmp_path)
    raw["hessian"] = {**raw["hessian"], "ignore": "none", "trace_samples": 0, **hessian}
    spec = spec_from(tmp_path, raw)
    model, split = _model_and_split(tmp_path, spec)
    _, summary = centre_analysis(model, split, spec, two_d=True)
    truth = np.linalg.eigvalsh(_dense_hessian(model, split.inputs, split.labels))
    return summary, truth


@pytest.mark.slow
def test_the_top_eigenvalues_are_recorded_for_every_direction_type(tmp_path):
    summary, truth = _centre(tmp_path, tolerance=1e-9, iterations=200)
    assert len(summary["top_eigenvalues"]) == TOP_EIGENVALUES == 3
    scale = np.abs(truth).max()
    np.testing.assert_allclose(summary["top_eigenvalues"], truth[::-1][:3], atol=1e-6 * scale)
    assert summary["min_eig"] == pytest.approx(truth[0], abs=1e-6 * scale)
    assert summary["caution"] is None


def test_a_loose_tolerance_or_a_cut_short_run_is_flagged(tmp_path):
    loose, _ = _centre(tmp_path, tolerance=1e-2, iterations=200)
    assert loose["caution"] is not None and "hessian.tolerance 0.01" in loose["caution"]
    assert "may not be the smallest eigenvalue" in loose["caution"]
    short, _ = _centre(tmp_path, tolerance=1e-9, iterations=3)
    assert not short["converged"] and "raise hessian.iterations" in short["caution"]


def test_a_run_over_the_whole_operator_is_exact_whatever_the_tolerance():
    from landscape_job.surface.curvature import lanczos_caution
    from landscape_job.spec.sections import HessianSpec

    exact = LanczosResult(max_eig=2.0, min_eig=-1.0, top_values=(2.0,), top_vectors=(), iterations=5,
                          converged=True, residual_max=0.0, residual_min=0.0)
    assert lanczos_caution(exact, HessianSpec(tolerance=0.5), dim=5) is None
    assert lanczos_caution(exact, HessianSpec(tolerance=0.5), dim=50) is not None
    assert lanczos_caution(exact, HessianSpec(tolerance=SAFE_TOLERANCE), dim=50) is None


def test_the_centre_summary_and_the_hessian_directions_against_the_dense_hessian(tmp_path):
    """Every number of the manifest's ``hessian`` section, and ``directions.type: hessian``'s two
    directions, against numpy's eigen-decomposition of autograd's dense Hessian (biasbn: weights only)."""
    raw = _hessian_spec(tmp_path)
    raw["hessian"] = {**raw["hessian"], "tolerance": 1e-9, "iterations": 200, "trace_samples": 3,
                      "density_steps": 4, "density_probes": 2}
    raw["directions"] = {"type": "hessian"}
    spec = spec_from(tmp_path, raw)
    model, split = _model_and_split(tmp_path, spec)
    directions, summary = centre_analysis(model, split, spec, two_d=True)
    names = [n for n, _ in model.named_parameters()]
    weights = [i for i, (_, p) in enumerate(model.named_parameters()) if p.dim() > 1]
    dense = _dense_hessian(model, split.inputs, split.labels)
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    keep = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in weights])
    values, vectors = np.linalg.eigh(np.asarray(dense)[np.ix_(keep, keep)])
    scale = np.abs(values).max()
    assert summary["sharpness"] == summary["max_eig"] == pytest.approx(values[-1], rel=1e-6)
    assert summary["min_eig"] == pytest.approx(values[0], abs=1e-6 * scale)
    np.testing.assert_allclose(summary["top_eigenvalues"], values[::-1][:3], atol=1e-6 * scale)
    assert summary["tensors"] == [names[i] for i in weights] and summary["excluded"] == ["layers.1.bias", "layers.3.bias"]
    assert (summary["parameters"], summary["samples"], summary["split"], summary["ignore"]) == \
        (len(keep), len(split.labels), "train", "biasbn")
    assert summary["converged"] and 2 <= summary["iterations"] <= 200 and summary["trace_samples"] == 3
    assert summary["residual_max"] <= 1e-6 * scale and summary["residual_min"] <= 1e-6 * scale
    assert summary["trace_stderr"] > 0 and abs(summary["trace"] - values.sum()) < 10 * summary["trace_stderr"] + 1e-9
    assert summary["density"]["steps"] == 4 and summary["density"]["probes"] == 2
    assert np.array(summary["density"]["weights"]).sum(axis=1) == pytest.approx([1.0, 1.0])
    assert summary["hessian_vector_products"] >= summary["iterations"] + 3 + 2  # Lanczos, trace, density
    assert directions is not None and directions.names == names and directions.dir_type == "weights"
    for direction, column in ((directions.x, -1), (directions.y, -2)):
        assert [tuple(t.shape) for t in direction] == [tuple(p.shape) for p in model.parameters()]
        assert all(float(direction[i].abs().max()) == 0 for i in range(len(names)) if i not in weights)
        flat = torch.cat([direction[i].reshape(-1) for i in weights]).double().numpy()
        assert abs(float(flat @ vectors[:, column])) == pytest.approx(1.0, abs=1e-5)
    one, _ = centre_analysis(model, split, spec, two_d=False)
    assert one is not None and one.y is None
