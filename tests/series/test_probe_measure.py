"""``series.probe.measure``: the columns one checkpoint's row gets, for each choice of metrics,
against direct computations (the whole split's loss and accuracy in one forward pass, the
dense Hessian's eigenvalues, the gradient by one backward pass) on a tiny float64 network.

test_series_run.py checks the same through a whole series run; this one calls ``measure``
itself, so mutation testing (docs/testing.md) can run it in a second.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape_job.datasets.builtin import Split
from landscape_job.series.probe import density_columns, measure, noise_columns, split_metrics
from landscape_job.spec.sections import HessianSpec
from landscape_job.spec.series import SeriesSpec
from landscape_job.surface.curvature import CurvatureProbe
from landscape_job.surface.hessian import flatten

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HESSIAN = HessianSpec(ignore="none", iterations=200, tolerance=1e-10, density_steps=6, density_probes=2)
SERIES = SeriesSpec(checkpoints=("x",), lr=0.1, top_k=3, noise_batch_size=8, noise_batches=4)


def problem() -> tuple[torch.nn.Module, Split, Split]:
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    # float32 inputs, as the data sets give them: measure casts them to the model's dtype
    train = Split(inputs=torch.randn(30, 4), labels=torch.randint(0, 3, (30,)), num_classes=3, name="train")
    test = Split(inputs=torch.randn(17, 4), labels=torch.randint(0, 3, (17,)), num_classes=3, name="test")
    return model, train, test


def whole(model: torch.nn.Module, split: Split) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(split.inputs.double())
    return (float(F.cross_entropy(logits, split.labels)),
            100.0 * float((logits.argmax(dim=1) == split.labels).double().mean()))


def run(metric_keys: set[str]) -> dict[str, float]:
    model, train, test = problem()
    return measure(model, [train, test], train, SERIES, HESSIAN, "cross_entropy", 7, metric_keys)


def test_loss_and_accuracy_of_each_split_in_batches_equal_one_pass() -> None:
    model, train, test = problem()
    for split in (train, test):
        loss, accuracy = whole(model, split)
        assert split_metrics(model, split, "cross_entropy", 7) == pytest.approx((loss, accuracy), rel=1e-12)
    out = run({"loss", "acc"})
    assert set(out) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert (out["test_loss"], out["test_acc"]) == pytest.approx(whole(model, test), rel=1e-12)
    assert set(run({"loss"})) == {"train_loss", "test_loss"}
    assert set(run({"acc"})) == {"train_acc", "test_acc"}


def test_the_hessian_columns_are_the_dense_hessians_extremes() -> None:
    out = run({"top_eigenvalues"})
    assert set(out) == {"top_eigenvalues[0]", "top_eigenvalues[1]", "top_eigenvalues[2]", "min_eig",
                        "lanczos_iterations", "lanczos_converged"}
    model, train, _ = problem()
    params = list(model.parameters())
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = [t.view(s) for t, s in zip(torch.split(flat, sizes), shapes)]
        logits = torch.func.functional_call(model, {n: t for (n, _), t in zip(model.named_parameters(), tensors)},
                                            (train.inputs.double(),))
        return F.cross_entropy(logits, train.labels)

    values = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flatten([p.detach() for p in params])))
    top = values.flip(0)[:3].numpy()
    np.testing.assert_allclose([out[f"top_eigenvalues[{i}]"] for i in range(3)], top, rtol=1e-6)
    assert out["min_eig"] == pytest.approx(float(values[0]), rel=1e-6, abs=1e-9 * float(values[-1]))
    assert out["lanczos_converged"] == 1.0 and 2 <= out["lanczos_iterations"] <= 200


def test_the_gradient_columns_are_the_full_batch_gradients() -> None:
    out = run({"grad_norm"})
    assert set(out) == {"grad_norm"}
    model, train, _ = problem()
    model.zero_grad()
    F.cross_entropy(model(train.inputs.double()), train.labels).backward()
    norm = float(flatten([p.grad for p in model.parameters()]).norm())
    assert out["grad_norm"] == pytest.approx(norm, rel=1e-12)
    # with the spectrum: the components along the top eigenvectors and what a step would change
    out = run({"grad_norm", "grad_components", "top_eigenvalues"})
    assert out["grad_norm"] == pytest.approx(norm, rel=1e-12)
    components = np.array([out[f"grad_components[{i}]"] for i in range(3)])
    assert np.sum(components ** 2) <= norm ** 2 * (1 + 1e-9)
    assert out["top_k_share"] == pytest.approx(np.sum(components ** 2) / norm ** 2, rel=1e-9)
    assert "predicted_delta[2]" in out


def test_the_noise_and_density_columns_are_their_own_functions() -> None:
    out = run({"tail_index"})
    assert set(out) == {"tail_index", "noise_norm"}
    model, train, _ = problem()
    probe = CurvatureProbe(model=model, inputs=train.inputs.double(), labels=train.labels, options=HESSIAN,
                           loss="cross_entropy", batch_size=7)
    batch_loss = lambda idx: F.cross_entropy(model(probe.inputs[idx]), probe.labels[idx], reduction="sum")  # noqa: E731
    model.zero_grad()
    F.cross_entropy(model(probe.inputs), probe.labels).backward()
    gradient = flatten([p.grad for p in model.parameters()]).detach()
    expected = noise_columns(probe.params, batch_loss, gradient, len(probe.labels), SERIES)
    assert out["noise_norm"] == pytest.approx(expected["noise_norm"], rel=1e-10)
    assert out["tail_index"] == pytest.approx(expected["tail_index"], rel=1e-10, nan_ok=True)
    density = run({"density_nodes"})
    assert density == pytest.approx(density_columns(probe), rel=1e-10)
    assert "grad_norm" not in density and "top_eigenvalues[0]" not in density


def test_a_tensor_the_loss_does_not_touch_has_a_zero_gradient() -> None:
    from landscape_job.series.probe import full_gradient, minibatch_gradient

    used = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    unused = torch.ones(3, dtype=torch.float64, requires_grad=True)
    z = torch.tensor([[1.0, 2.0], [3.0, 5.0], [-1.0, 4.0]], dtype=torch.float64)
    batch_loss = lambda idx: (z[idx] @ used).sum()  # noqa: E731
    expected = torch.cat([z[[0, 2]].mean(0), torch.zeros(3, dtype=torch.float64)])
    torch.testing.assert_close(minibatch_gradient([used, unused], batch_loss, torch.tensor([0, 2])), expected)
    torch.testing.assert_close(full_gradient([used, unused], batch_loss, 3, 2),
                               torch.cat([z.mean(0), torch.zeros(3, dtype=torch.float64)]))


def test_gradient_columns_pad_missing_eigenvectors_and_a_zero_gradient() -> None:
    from landscape_job.series.probe import Spectrum, gradient_columns

    vectors = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.6, 0.8, 0.0]], dtype=torch.float64)  # 2 found of k = 3
    spectrum = Spectrum(values=np.array([4.0, 1.0, np.nan]), vectors=vectors, min_eig=-1.0, iterations=5,
                        converged=True)
    gradient = torch.tensor([2.0, 1.0, 2.0, 1.0], dtype=torch.float64)
    out = gradient_columns(gradient, spectrum, lr=0.5, k=3)
    assert out["grad_components[0]"] == 2.0 and out["grad_components[1]"] == pytest.approx(2.2)
    assert np.isnan(out["grad_components[2]"]) and np.isnan(out["predicted_delta[2]"])
    assert out["predicted_delta[0]"] == pytest.approx(4.0 * (0.25 * 4.0 / 2 - 0.5))
    assert out["top_k_share"] == pytest.approx((4.0 + 2.2 ** 2) / 10.0)
    zero = gradient_columns(torch.zeros(4, dtype=torch.float64), spectrum, lr=0.5, k=3)
    assert zero["grad_norm"] == 0.0 and np.isnan(zero["top_k_share"])


def test_minibatches_never_straddle_two_shuffles() -> None:
    from landscape_job.series.probe import minibatches

    assert len(minibatches(25, 10, None, 0)) == 2  # at least two, however few the samples
    assert len(minibatches(45, 10, None, 0)) == 4
    for seed in range(10):
        batches = minibatches(25, 10, 5, seed)  # 20 of the 25 samples per shuffle: batches 0-1, 2-3, 4
        assert [len(b) for b in batches] == [10] * 5
        for first in (0, 2):
            assert len(set(torch.cat(batches[first:first + 2]).tolist())) == 20, seed


def test_measure_does_only_the_work_its_metrics_need(monkeypatch: pytest.MonkeyPatch) -> None:
    import landscape_job.series.probe as probe_module

    def refused(*args, **kwargs):
        raise AssertionError("work that no chosen metric needs")

    monkeypatch.setattr(probe_module, "CurvatureProbe", refused)
    assert set(run({"loss"})) == {"train_loss", "test_loss"}  # no Hessian probe for the loss alone
    monkeypatch.undo()
    monkeypatch.setattr(probe_module, "split_metrics", refused)
    monkeypatch.setattr(probe_module, "full_gradient", refused)
    assert "min_eig" in run({"top_eigenvalues"})  # no pass over the splits, no gradient
    monkeypatch.undo()
    # the gradient's components need the spectrum: without it (or without asking) only the norm
    assert set(run({"grad_norm", "grad_components"})) == {"grad_norm"}
    assert "grad_components[0]" not in run({"grad_norm", "top_eigenvalues"})


def test_a_divergent_checkpoint_has_a_nan_spectrum_and_no_vectors() -> None:
    from landscape_job.series.probe import top_spectrum

    model, train, _ = problem()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    probe = CurvatureProbe(model=model, inputs=train.inputs.double(), labels=train.labels, options=HESSIAN,
                           loss="cross_entropy", batch_size=7)
    spectrum = top_spectrum(probe, 3)
    assert np.isnan(spectrum.values).all() and spectrum.values.shape == (3,) and np.isnan(spectrum.min_eig)
    assert spectrum.vectors.shape == (0, probe.operator.dim) and spectrum.vectors.dtype == torch.float64
    assert not spectrum.converged and spectrum.iterations == 1


@pytest.mark.parametrize("choice", ["loss", "accuracy", "hessian", "gradient", "noise", "density"])
def test_the_columns_a_series_announces_are_the_columns_measure_gives(choice: str) -> None:
    """``series_columns`` (what the evaluator tells the shard file before the first checkpoint) names
    exactly the columns ``measure`` then computes, for each choice: the vector rows' widths (top_k,
    the density's steps × probes, the Hessian's tensors) come from one rule."""
    from types import SimpleNamespace

    from landscape_job.series.evaluator import series_columns
    from landscape_job.spec.series_metrics import selected

    series = SeriesSpec(checkpoints=("x",), lr=0.1, top_k=3, noise_batch_size=8, noise_batches=4, metrics=(choice,))
    spec = SimpleNamespace(series=series, hessian=HESSIAN, data=SimpleNamespace(splits=("train", "test")))
    model, train, test = problem()
    computed = measure(model, [train, test], train, series, HESSIAN, "cross_entropy", 7,
                       {m.key for m in selected(series.metrics)})
    assert sorted(series_columns(spec, layers=len(list(model.parameters())))) == sorted(computed)
