"""Python functions in the API (issue 25): ``loss=fn``, ``metrics={"name": fn}``, ``batch_fn(model, batch)``,
each against the built-in that computes the same thing, or a closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape_job import api as ls
from landscape_job.base.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _forget_bound_metrics():
    """The metrics a test binds are registered process-wide (as python: ones are): unregistered after it."""
    from landscape_job.api.callables import BOUND_MODULE
    from landscape_job.spec import metrics

    yield
    for metric in metrics.registered():
        if metric.choice.startswith(f"python:{BOUND_MODULE}:"):
            metrics.unregister(metric.key)


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _data() -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return {"train": (x[:40], y[:40]), "test": (x[40:], y[40:])}


KW = dict(x="-1:1:5", precision="fp64", progress=False, seed=4)


def ce_per_sample(outputs, labels):
    return F.cross_entropy(outputs, labels, reduction="none")


def ce_mean(outputs, labels):
    return F.cross_entropy(outputs, labels)


def test_a_loss_function_equals_the_built_in() -> None:
    built_in = ls.line(_model(), _data(), **KW)
    for fn in (ce_per_sample, ce_mean, lambda o, y: F.cross_entropy(o, y, reduction="none")):
        mine = ls.line(_model(), _data(), loss=fn, **KW)
        np.testing.assert_allclose(mine["train_loss"], built_in["train_loss"], rtol=1e-12)
        np.testing.assert_allclose(mine["test_loss"], built_in["test_loss"], rtol=1e-12)
    assert mine.attrs["loss"].endswith(":loss_lambda")


def test_a_metric_function_against_the_accuracy() -> None:
    def error(outputs, labels):
        return 100.0 * (outputs.argmax(dim=1) != labels).double()

    curve = ls.line(_model(), _data(), metrics={"error": error}, **KW)
    np.testing.assert_allclose(curve["train_error"], 100.0 - curve["train_acc"], atol=1e-9)
    np.testing.assert_allclose(curve["test_error"], 100.0 - curve["test_acc"], atol=1e-9)


def test_an_edited_function_under_the_same_name_is_the_one_used() -> None:
    def score(outputs, labels):
        return torch.ones(len(labels), dtype=torch.float64)

    first = ls.line(_model(), _data(), metrics={"score": score}, **KW)

    def score(outputs, labels):  # noqa: F811 - a notebook cell run again after an edit
        return torch.full((len(labels),), 2.0, dtype=torch.float64)

    second = ls.line(_model(), _data(), metrics={"score": score}, **KW)
    assert np.all(first["train_score"] == 1.0) and np.all(second["train_score"] == 2.0)


def sq_batch(model, batch):
    """Squared error of the outputs' sum against the label: not a function of (outputs, labels) alone."""
    inputs, labels = batch
    return (model(inputs).sum(dim=1) - labels.double()) ** 2


def test_batch_fn_equals_the_built_in_loss_and_its_hessian() -> None:
    def batch_ce(model, batch):
        inputs, labels = batch
        return F.cross_entropy(model(inputs), labels, reduction="none")

    def batch_ce_mean(model, batch):  # the batch mean, in batches of 7 (the last one partial)
        inputs, labels = batch
        return F.cross_entropy(model(inputs), labels)

    built_in = ls.line(_model(), _data(), metrics=["loss"], **KW)
    mine = ls.line(_model(), _data(), metrics=["loss"], batch_fn=batch_ce, **KW)
    np.testing.assert_allclose(mine["train_loss"], built_in["train_loss"], rtol=1e-12)
    means = ls.line(_model(), _data(), metrics=["loss"], batch_fn=batch_ce_mean, batch_size=7, **KW)
    np.testing.assert_allclose(means["train_loss"], built_in["train_loss"], rtol=1e-12)
    h_built_in = ls.hessian(_model(), _data(), precision="fp64", ignore="none", iterations=80, tolerance=1e-10,
                            trace_samples=0)
    h_mine = ls.hessian(_model(), _data(), precision="fp64", ignore="none", iterations=80, tolerance=1e-10,
                        trace_samples=0, batch_fn=batch_ce)
    assert h_mine.max_eig == pytest.approx(h_built_in.max_eig, rel=1e-9)


def test_batch_fn_of_a_loss_no_built_in_has_against_its_closed_form() -> None:
    model, data = _model(), _data()
    curve = ls.line(model, data, batch_fn=sq_batch, **KW)  # the default metrics: the loss alone with batch_fn
    centre = int(np.argmin(np.abs(curve.x)))
    x, y = data["train"]
    with torch.no_grad():
        expected = float(((model(x).sum(dim=1) - y.double()) ** 2).mean())
    assert curve["train_loss"][centre] == pytest.approx(expected, rel=1e-12)


def test_mistakes_with_functions_are_one_line_user_errors() -> None:
    with pytest.raises(UserError, match="metrics: with batch_fn only loss"):
        ls.line(_model(), _data(), metrics=["loss", "accuracy"], batch_fn=sq_batch, **KW)
    with pytest.raises(UserError, match="batch_fn: returned shape"):
        ls.line(_model(), _data(), metrics=["loss"], batch_fn=lambda m, b: m(b[0]), **KW)
    with pytest.raises(UserError, match="loss: give loss or batch_fn"):
        ls.line(_model(), _data(), metrics=["loss"], loss=ce_mean, batch_fn=sq_batch, **KW)
    with pytest.raises(UserError, match="a metric's name must be a Python identifier"):
        ls.line(_model(), _data(), metrics={"top 5": ce_mean}, **KW)
    with pytest.raises(UserError, match="loss: expected"):
        ls.line(_model(), _data(), loss=3, **KW)
