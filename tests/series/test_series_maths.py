"""The series' mathematics against independent answers: stable laws, dense Hessians, a quadratic's GD step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape_job.surface.curvature import CurvatureProbe
from landscape_job.surface.hessian import HessianOperator, flatten
from landscape_job.series.probe import (Spectrum, full_gradient, gradient_columns, minibatches, noise_columns,
                                        top_spectrum)
from landscape_job.spec.sections import HessianSpec
from landscape_job.spec.series import SeriesSpec
from landscape_job.series.tail_index import (block_size, estimate, reference_block_size, tail_index,
                                             tail_index_reference, usable_count)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: The sample count of the example's noise (44 minibatches x 3,466 coordinates, ~152k):
#: the estimator's error at α = 2 is about ±0.04 there (±0.06 at 40k).
SAMPLES = 150_000


def test_block_size_is_the_largest_divisor_not_above_the_root() -> None:
    assert block_size(100) == 10 and block_size(120) == 10 and block_size(97) == 1 and block_size(12) == 3
    assert all(block_size(n) * block_size(n) <= n and n % block_size(n) == 0 for n in range(1, 500))
    assert block_size(usable_count(97)) >= 4  # a prime count is cut to one with real blocks


def test_usable_count_is_the_largest_count_with_a_real_block_size() -> None:
    """Against a brute force: every divisor scanned upwards, the cut's rule as the docstring says it."""
    limit = 1500
    real = [False] + [max(d for d in range(1, m + 1) if m % d == 0 and d * d <= m) * 2 >= math.isqrt(m)
                      for m in range(1, limit + 1)]
    for count in range(1, limit + 1):
        assert usable_count(count) == max(m for m in range(1, count + 1) if real[m]), count
    assert usable_count(152_504) == 152_500


def formula_alpha(x: list[float], k1: int) -> float:
    """Mohammadi et al.'s 1/α̂, written out: blocks of k1 consecutive values, a zero block left out."""
    sums = [sum(x[i:i + k1]) for i in range(0, len(x), k1)]
    logs_y = [math.log(abs(y)) for y in sums if y != 0]
    inverse = (sum(logs_y) / len(logs_y) - sum(math.log(abs(v)) for v in x) / len(x)) / math.log(k1)
    return 1 / inverse


def test_the_fewest_samples_get_an_estimate_by_the_formula() -> None:
    # 16 values (MIN_SAMPLES, blocks of 4): a block summing to exactly 1 counts, one summing to 0 does not.
    x16 = [1.5, -0.5, 0.25, -0.25, 2, -2, 3, -3, 0.1, 0.2, 0.3, 0.4, 5, -1, 7, 2.5]
    assert tail_index(np.array(x16)) == pytest.approx(formula_alpha(x16, 4), rel=1e-12)
    # 22 values: blocks of 2, the smallest block size the estimator uses.
    x22 = [1.5, -0.5, 0.75, 0.25, 3, -3] + [0.3 * i + 0.1 for i in range(16)]
    assert usable_count(22) == 22 and block_size(22) == 2
    assert tail_index(np.array(x22)) == pytest.approx(formula_alpha(x22, 2), rel=1e-12)
    # zeros and non-finite values are left out before counting; 15 left is too few
    assert tail_index(np.array(x16 + [0.0, np.nan, np.inf])) == tail_index(np.array(x16))
    assert math.isnan(tail_index(np.array(x16[:15] + [0.0])))


def test_a_tail_index_without_a_positive_inverse_is_nan() -> None:
    # blocks smaller than their values (cancelling): a negative 1/α̂
    assert math.isnan(tail_index(np.array([1, -1, 1, -0.5] * 4)))
    # 18 values of ±1 in blocks of 3 summing to ±1: 1/α̂ exactly 0
    assert block_size(usable_count(18)) == 3
    assert math.isnan(tail_index(np.array([1.0, 1.0, -1.0] * 6)))


def test_float32_samples_are_estimated_in_float64() -> None:
    from scipy.stats import levy_stable  # here, not at the top: 1.6 s of every worker's collection
    x = levy_stable.rvs(1.5, 0.0, scale=0.01, size=20_000, random_state=np.random.default_rng(4)).astype(np.float32)
    assert tail_index(x) == tail_index(x.astype(np.float64))
    assert tail_index_reference(x) == tail_index_reference(x.astype(np.float64))


def test_the_estimator_is_chosen_by_name() -> None:
    x = np.random.default_rng(6).standard_cauchy(10_000)
    assert estimate(x) == tail_index(x) and estimate(x, "reference") == tail_index_reference(x)
    with pytest.raises(ValueError, match="unknown tail-index estimator 'hill'"):
        estimate(x, "hill")
    for size in (block_size, reference_block_size):
        with pytest.raises(ValueError, match=f"^{size.__name__} needs a positive count$"):
            size(0)


@pytest.mark.parametrize("alpha", [1.2, 1.5, 1.8, 2.0])
def test_tail_index_recovers_symmetric_stable_laws(alpha: float) -> None:
    from scipy.stats import levy_stable  # here, not at the top: 1.6 s of every worker's collection
    samples = levy_stable.rvs(alpha, 0.0, scale=0.3, size=SAMPLES, random_state=np.random.default_rng(11))
    assert abs(tail_index(samples) - alpha) <= 0.1


def test_tail_index_of_gaussian_noise_is_two_and_scale_free() -> None:
    rng = np.random.default_rng(5)
    for scale in (1e-4, 1.0, 1e3):
        assert abs(tail_index(rng.normal(0, scale, SAMPLES)) - 2.0) <= 0.1


def test_tail_index_of_a_cauchy_is_one() -> None:
    assert abs(tail_index(np.random.default_rng(2).standard_cauchy(SAMPLES)) - 1.0) <= 0.1


def test_gaussian_minibatch_noise_gives_alpha_two() -> None:
    """A linear loss Σᵢ θ·zᵢ with Gaussian zᵢ: every minibatch gradient minus the full one is Gaussian."""
    torch.manual_seed(0)
    n, dim = 4096, 750
    z = torch.randn(n, dim, dtype=torch.float64) * 0.7
    theta = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
    batch_loss = lambda idx: (z[idx] @ theta).sum()  # noqa: E731
    gradient = full_gradient([theta], batch_loss, n, 512)
    torch.testing.assert_close(gradient, z.mean(0))
    series = SeriesSpec(checkpoints=("x",), lr=0.1, noise_batch_size=16, noise_batches=200, noise_per_layer=True)
    out = noise_columns([theta], batch_loss, gradient, n, series)
    assert abs(out["tail_index"] - 2.0) <= 0.1 and abs(out["tail_index_layers[0]"] - 2.0) <= 0.1
    # The noise of a mean of 16 samples: E‖noise‖ ≈ sqrt(Σ σ²·(1/16)(1 − 16/n)).
    expected = math.sqrt(float((z.var(0) / 16).sum()))
    assert out["noise_norm"] == pytest.approx(expected, rel=0.05)


def test_minibatches_are_seeded_and_cover_the_samples() -> None:
    first = minibatches(100, 10, None, 3)
    assert len(first) == 10 and sorted(torch.cat(first).tolist()) == list(range(100))
    assert all(torch.equal(a, b) for a, b in zip(first, minibatches(100, 10, None, 3)))
    assert not torch.equal(first[0], minibatches(100, 10, None, 4)[0])
    assert len(minibatches(100, 10, 25, 0)) == 25  # more than one pass: fresh shuffles


def _tiny_problem():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    inputs = torch.randn(40, 5, dtype=torch.float64)
    labels = torch.randint(0, 3, (40,))
    return model, inputs, labels


def _dense_hessian(model, inputs, labels) -> torch.Tensor:
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = [t.view(s) for t, s in zip(torch.split(flat, sizes), shapes)]
        out = torch.func.functional_call(model, {n: t for (n, _), t in zip(model.named_parameters(), tensors)},
                                         (inputs,))
        return torch.nn.functional.cross_entropy(out, labels)

    return torch.autograd.functional.hessian(loss, flatten([p.detach() for p in params]))


def test_top_k_eigenpairs_match_the_dense_hessian() -> None:
    model, inputs, labels = _tiny_problem()
    options = HessianSpec(ignore="none", iterations=200, tolerance=1e-10)
    probe = CurvatureProbe(model=model, inputs=inputs, labels=labels, options=options, loss="cross_entropy",
                           batch_size=16)
    spectrum = top_spectrum(probe, 5)
    dense = _dense_hessian(model, inputs, labels)
    values, vectors = torch.linalg.eigh(dense)
    np.testing.assert_allclose(spectrum.values, values.flip(0)[:5].numpy(), rtol=1e-6)
    assert spectrum.min_eig == pytest.approx(float(values[0]), rel=1e-6, abs=1e-9 * float(values[-1]))
    for i in range(5):
        u = spectrum.vectors[i]
        reference = vectors[:, -1 - i]
        assert abs(float(u @ reference)) == pytest.approx(1.0, abs=1e-6)  # the same line
        assert float(u[int(u.abs().argmax())]) > 0  # sign fixed: largest entry positive
        torch.testing.assert_close(dense @ u, values[-1 - i] * u, rtol=0, atol=1e-6 * float(values[-1]))


def test_gradient_components_reconstruct_the_projected_gradient() -> None:
    model, inputs, labels = _tiny_problem()
    probe = CurvatureProbe(model=model, inputs=inputs, labels=labels,
                           options=HessianSpec(ignore="none", iterations=200, tolerance=1e-10),
                           loss="cross_entropy", batch_size=16)
    spectrum = top_spectrum(probe, 6)
    batch_loss = lambda idx: torch.nn.functional.cross_entropy(model(inputs[idx]), labels[idx], reduction="sum")  # noqa: E731
    gradient = full_gradient(probe.params, batch_loss, len(labels), 7)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), labels).backward()
    torch.testing.assert_close(gradient, flatten([p.grad for p in model.parameters()]))
    out = gradient_columns(gradient, spectrum, lr=0.3, k=6)
    c = torch.tensor([out[f"grad_components[{i}]"] for i in range(6)], dtype=torch.float64)
    u = spectrum.vectors
    projected = u.T @ (u @ gradient)  # the orthogonal projection on span(u₁..u₆)
    torch.testing.assert_close(u.T @ c, projected, rtol=1e-10, atol=1e-12)
    assert out["top_k_share"] == pytest.approx(float(projected.norm() ** 2 / gradient.norm() ** 2), rel=1e-10)
    assert out["grad_norm"] == pytest.approx(float(gradient.norm()), rel=1e-12)


def test_predicted_loss_change_is_a_quadratics_gd_step_exactly() -> None:
    """L(θ) = ½θᵀAθ − bᵀθ: L(θ − η∇L) − L(θ) = Σᵢ cᵢ²(η²λᵢ/2 − η) over the full eigenbasis."""
    torch.manual_seed(3)
    dim, lr = 8, 0.4
    m = torch.randn(dim, dim, dtype=torch.float64)
    a = m @ m.T / dim - 0.3 * torch.eye(dim, dtype=torch.float64)  # indefinite: a negative λ too
    b = torch.randn(dim, dtype=torch.float64)
    theta = torch.randn(dim, dtype=torch.float64, requires_grad=True)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * t @ a @ t - b @ t

    operator = HessianOperator([theta], lambda: [loss(theta)])
    from landscape_job.surface.hessian import lanczos

    result = lanczos(operator, dim, iterations=dim, tolerance=1e-12, top_k=dim)
    spectrum = Spectrum(values=np.array(result.top_values), vectors=torch.stack(result.top_vectors),
                        min_eig=result.min_eig, iterations=result.iterations, converged=result.converged)
    gradient = full_gradient([theta], lambda idx: loss(theta) * len(idx), 1, 1)
    out = gradient_columns(gradient, spectrum, lr=lr, k=dim)
    predicted = sum(out[f"predicted_delta[{i}]"] for i in range(dim))
    with torch.no_grad():
        actual = float(loss(theta - lr * gradient) - loss(theta))
    assert predicted == pytest.approx(actual, rel=1e-10, abs=1e-12)
    assert out["top_k_share"] == pytest.approx(1.0, rel=1e-10)
