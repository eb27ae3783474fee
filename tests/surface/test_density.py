"""The Hessian's eigenvalue density by stochastic Lanczos quadrature against a small dense Hessian's
exact eigen-decomposition (numpy), on a network (autograd's dense Hessian) and a chosen spectrum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SYNTHETIC
from landscape_job.datasets.builtin import load_split
from landscape_job.spec.sections import DataSpec, HessianSpec
from landscape_job.plots.spectrum import smoothed_density
from landscape_job.surface.curvature import CurvatureProbe
from landscape_job.surface.hessian import density_probes, spectral_density
from test_hessian import _dense_hessian, _quadratic_operator, _symmetric, _tiny_mlp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _network_probe(steps: int, probes: int) -> tuple[CurvatureProbe, np.ndarray]:
    data = load_split(DataSpec(dataset="synthetic", subset=40, options=SYNTHETIC), "train")
    model = _tiny_mlp(2)
    hessian = _dense_hessian(model, data.inputs.double(), data.labels)
    probe = CurvatureProbe(model=model, inputs=data.inputs.double(), labels=data.labels,
                           options=HessianSpec(ignore="none", density_steps=steps, density_probes=probes, seed=3),
                           loss="cross_entropy", batch_size=16)
    return probe, hessian


@pytest.mark.parametrize("steps", [6, 12])
def test_slq_moments_equal_the_exact_spectral_measure_of_each_probe(steps: int) -> None:
    """m Lanczos steps are the m-point Gauss quadrature of vᵀ f(H) v: exact for moments k <= 2m − 1.
    The truth: Σᵢ (uᵢ·v)² λᵢᵏ from numpy's eigen-decomposition of autograd's dense Hessian."""
    probe, hessian = _network_probe(steps, probes=3)
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    density = probe.density()
    assert density is not None and density.nodes.shape == (3, steps)
    for row, v in enumerate(density_probes(probe.operator.dim, 3, seed=3)):
        mass = (eigenvectors.T @ v.numpy()) ** 2
        for k in range(2 * steps):
            exact = float(np.sum(mass * eigenvalues ** k))
            got = float(np.sum(density.weights[row] * density.nodes[row] ** k))
            assert got == pytest.approx(exact, rel=1e-6, abs=1e-6 * np.abs(eigenvalues).max() ** k)
    # The probes' mean estimates tr(Hᵏ)/n, and n·moment(1) is a trace estimate.
    assert density.trace == pytest.approx(np.mean([v.numpy() @ hessian @ v.numpy() for v in
                                                   density_probes(probe.operator.dim, 3, 3)]) * len(hessian), rel=1e-6)


def test_full_lanczos_nodes_are_the_exact_eigenvalues() -> None:
    """With as many steps as dimensions, every probe's nodes are H's eigenvalues (where v reaches them)."""
    spectrum = np.r_[-2.0, np.linspace(0.1, 1.0, 27), 8.0, 15.0]
    a, _ = _symmetric(spectrum, seed=1)
    operator = _quadratic_operator(a)
    density = spectral_density(operator, operator.dim, steps=200, probes=2, seed=0)
    for nodes, weights in zip(density.nodes, density.weights):
        found = np.sort(nodes[weights > 1e-12])
        np.testing.assert_allclose(found, np.sort(spectrum), atol=1e-8)
    for k in range(6):
        mean = np.mean([v.numpy() @ np.linalg.matrix_power(a, k) @ v.numpy()
                        for v in density_probes(operator.dim, 2, 0)])
        assert density.moment(k) == pytest.approx(mean, rel=1e-6)


def test_the_smoothed_density_integrates_to_one_and_peaks_at_the_outliers() -> None:
    spectrum = np.r_[np.linspace(0.0, 0.5, 28), 8.0, 15.0]
    a, _ = _symmetric(spectrum, seed=2)
    operator = _quadratic_operator(a)
    density = spectral_density(operator, operator.dim, steps=30, probes=4, seed=1)
    grid = np.linspace(-2, 17, 4000)
    phi = smoothed_density(density.nodes, density.weights, grid, sigma=0.1)
    assert np.trapezoid(phi, grid) == pytest.approx(1.0, abs=1e-3)
    assert phi[np.argmin(np.abs(grid - 15.0))] > 100 * phi[np.argmin(np.abs(grid - 11.5))]


def test_a_divergent_loss_leaves_no_weight() -> None:
    def nan_matvec(v: torch.Tensor) -> torch.Tensor:
        return v * float("nan")

    density = spectral_density(nan_matvec, 10, steps=4, probes=2)
    assert np.all(density.weights == 0) and np.isnan(density.trace)


@pytest.mark.slow
def test_a_series_row_holds_the_density_and_its_trace() -> None:
    """``series.metrics: density``: a checkpoint's columns are the probes' nodes and weights, padded to
    ``density_steps`` each, and the trace they give; the merge's figures draw them."""
    from landscape_job.series.file import Series
    from landscape_job.series.figures import density_flow, density_steps_figure
    from landscape_job.series.probe import density_columns
    from landscape_job.spec.series_metrics import split_column

    probe, hessian = _network_probe(steps=200, probes=2)  # more steps than the 53 parameters: padded
    columns = density_columns(probe)
    nodes = np.array([v for k, v in columns.items() if split_column(k)[0] == "density_nodes"]).reshape(2, 200)
    weights = np.array([v for k, v in columns.items() if split_column(k)[0] == "density_weights"]).reshape(2, 200)
    exact = np.linalg.eigvalsh(hessian)
    for row_n, row_w in zip(nodes, weights):
        assert row_w.sum() == pytest.approx(1.0, abs=1e-12) and np.all(row_w[len(exact):] == 0)
        # Lanczos meets each distinct eigenvalue once (a repeated one, like 0 here, once for all its copies).
        found = row_n[row_w > 1e-10]
        assert np.abs(found[:, None] - exact[None, :]).min(axis=1).max() <= 1e-8
        assert found.max() == pytest.approx(exact.max(), rel=1e-10) and found.min() == pytest.approx(exact.min(),
                                                                                                     rel=1e-10)
    probes = density_probes(probe.operator.dim, 2, seed=3)
    assert columns["trace"] == pytest.approx(np.mean([v.numpy() @ hessian @ v.numpy() for v in probes]) * len(exact),
                                             rel=1e-9)
    series = Series(steps=np.array([0, 10]), checkpoints=["a", "b"],
                    data={"density_nodes": np.stack([nodes.ravel()] * 2), "density_weights": np.stack([weights.ravel()] * 2),
                          "trace": np.array([columns["trace"]] * 2)},
                    attrs={"density_probes": 2, "lr": 0.1, "threshold": 20.0})
    assert density_flow(series)._repr_png_().startswith(b"\x89PNG")
    assert density_steps_figure(series, [])._repr_png_().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_series_file_shows_itself_with_its_density_figures(tmp_path) -> None:
    """``ls.Series``: a summary and the series page inline (text/html), and the density figures in ``.plot()``."""
    from landscape_job import api as ls
    from landscape_job.series.file import series_bytes

    rng = np.random.default_rng(0)
    nodes = np.sort(rng.normal(size=(3, 2 * 6)), axis=1)
    weights = np.full_like(nodes, 1 / 6)
    flat = {"train_loss": np.array([1.0, 0.5, 0.2]), "trace": np.array([3.0, 4.0, 5.0])}
    flat.update({f"density_nodes[{i}]": nodes[:, i] for i in range(12)})
    flat.update({f"density_weights[{i}]": weights[:, i] for i in range(12)})
    path = tmp_path / "series.h5"
    path.write_bytes(series_bytes(np.array([0, 10, 20]), ["a", "b", "c"], flat,
                                  {"name": "s", "lr": 0.1, "threshold": 20.0, "density_probes": 2,
                                   "hessian_ignore": "biasbn"}))
    series = ls.Series.load(path)
    page = series._repr_html_()
    assert "<iframe" in page and "3 (steps 0 … 20)" in page and "hessian.ignore: biasbn" in page
    figures = series.plot()
    assert set(figures) == {"series_density", "series_density_steps", "series_trace"}
    assert all(f._repr_png_().startswith(b"\x89PNG") for f in figures.values())


def test_lanczos_stops_on_an_invariant_subspace_at_any_scale() -> None:
    """A start vector in a 2-D eigenspace: two steps and T's eigenvalues are those two, exactly,
    whether H's scale is 1e6 (roundoff β ~ 1e-10 must count as zero) or 1e-14 (a real β of
    1e-14 must not)."""
    from landscape_job.surface.hessian import lanczos_tridiagonal

    diagonal = torch.arange(1.0, 7.0, dtype=torch.float64)
    for scale in (1.0, 1e6):
        h = torch.diag(diagonal * scale)
        start = torch.zeros(6, dtype=torch.float64)
        start[[1, 4]] = 2 ** -0.5
        alphas, betas = lanczos_tridiagonal(lambda v: h @ v, start, 6)
        assert len(alphas) == 2 and len(betas) == 1
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        np.testing.assert_allclose(np.linalg.eigvalsh(t), [2 * scale, 5 * scale], rtol=1e-12)
    tiny = torch.diag(diagonal * 1e-14)
    alphas, betas = lanczos_tridiagonal(lambda v: tiny @ v, torch.full((6,), 6 ** -0.5, dtype=torch.float64), 6)
    assert len(alphas) == 6 and len(betas) == 5
    t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(t), np.arange(1, 7) * 1e-14, rtol=1e-8)


def test_the_density_averages_only_the_finite_probes() -> None:
    from landscape_job.surface.hessian import SpectralDensity

    density = SpectralDensity(nodes=np.array([[1.0, 3.0], [np.nan, np.nan], [2.0, np.nan]]),
                              weights=np.array([[0.5, 0.5], [0.0, 0.0], [1.0, 0.0]]), dim=10)
    assert density.moment(1) == pytest.approx((2.0 + 2.0) / 2)  # the NaN probe left out
    assert density.moment(2) == pytest.approx((5.0 + 4.0) / 2) and density.trace == pytest.approx(20.0)
    assert np.isnan(SpectralDensity(nodes=np.full((2, 2), np.nan), weights=np.zeros((2, 2)), dim=3).moment(1))


def test_density_probes_are_seeded_unit_rademacher_vectors() -> None:
    probes = density_probes(400, 3, seed=5)
    for v in probes:
        assert v.dtype == torch.float64 and set(v.mul(20).round().tolist()) == {-1.0, 1.0}
        assert abs(float((v > 0).double().mean()) - 0.5) < 0.1
    assert all(torch.equal(a, b) for a, b in zip(probes, density_probes(400, 3, seed=5)))
    assert not torch.equal(probes[0], probes[1]) and not torch.equal(probes[0], density_probes(400, 1, seed=6)[0])


def test_one_step_one_probe_is_the_rayleigh_quotient_and_zero_is_refused() -> None:
    h = torch.tensor(_symmetric(np.array([3.0, 1.0, -0.5, 2.0, 0.25]), 7)[0], dtype=torch.float64)
    density = spectral_density(lambda v: h @ v, 5, steps=1, probes=1, seed=2)
    v = density_probes(5, 1, seed=2)[0]
    assert density.nodes.shape == (1, 1) and density.weights.tolist() == [[1.0]]
    assert density.nodes[0, 0] == pytest.approx(float(v @ h @ v), rel=1e-12)
    for steps, probes in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match="^spectral_density needs steps >= 1 and probes >= 1$"):
            spectral_density(lambda v: h @ v, 5, steps=steps, probes=probes)
    # the probes reach the operator in the dtype asked for
    h32 = h.float()
    single = spectral_density(lambda v: h32 @ v, 5, steps=5, probes=2, dtype=torch.float32)
    double = spectral_density(lambda v: h @ v, 5, steps=5, probes=2)
    np.testing.assert_allclose(single.nodes, double.nodes, rtol=1e-4, atol=1e-5)


def test_a_non_finite_probe_leaves_its_row_empty_and_the_next_probes_are_kept() -> None:
    """A product that is NaN for the first probe only (a loss that diverged once): that row has no weight,
    and the later probes' rows are those of a clean run, each integrating vᵀHv exactly (numpy)."""
    h = torch.tensor(_symmetric(np.array([3.0, 1.0, -0.5, 2.0, 0.25, 4.0]), 3)[0], dtype=torch.float64)
    calls: list[int] = []

    def first_nan(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return v * float("nan") if len(calls) == 1 else h @ v

    density = spectral_density(first_nan, 6, steps=3, probes=3, seed=4)
    clean = spectral_density(lambda v: h @ v, 6, steps=3, probes=3, seed=4)
    assert np.all(np.isnan(density.nodes[0])) and np.all(density.weights[0] == 0)
    np.testing.assert_array_equal(density.nodes[1:], clean.nodes[1:])
    np.testing.assert_array_equal(density.weights[1:], clean.weights[1:])
    vs = [v.numpy() for v in density_probes(6, 3, seed=4)]
    assert density.moment(1) == pytest.approx(np.mean([v @ h.numpy() @ v for v in vs[1:]]), rel=1e-12)


def test_the_density_s_default_probes_are_seed_0_s() -> None:
    h = torch.tensor(_symmetric(np.array([3.0, 1.0, -0.5, 2.0, 0.25]), 7)[0], dtype=torch.float64)
    density = spectral_density(lambda v: h @ v, 5, steps=1, probes=2)
    for row, v in enumerate(density_probes(5, 2, seed=0)):
        assert density.nodes[row, 0] == pytest.approx(float(v @ h @ v), rel=1e-12)
