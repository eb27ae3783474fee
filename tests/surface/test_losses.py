"""The loss switch: one table of built-in losses, the one-point and stacked sums agreeing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape_job.surface.losses import BUILTIN, batch_loss_sum, batch_loss_sums
from landscape_job.spec.sections import LOSSES


def test_the_built_in_losses_are_the_spec_s_choices() -> None:
    assert set(BUILTIN) == set(LOSSES)


@pytest.mark.parametrize("loss", sorted(BUILTIN))
def test_stacked_sums_are_the_one_point_sums(loss: str) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (7,), generator=generator)
    stacked = batch_loss_sums(logits, labels, loss)
    assert stacked.shape == (3,)
    for k in range(3):
        assert stacked[k].item() == pytest.approx(batch_loss_sum(logits[k], labels, loss).item(), rel=1e-12)


def test_half_precision_logits_are_summed_in_float32() -> None:
    logits = torch.randn(5, 3).to(torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 0, 1])
    assert batch_loss_sum(logits, labels, "cross_entropy").dtype == torch.float32
    assert batch_loss_sums(logits.unsqueeze(0), labels, "mse").dtype == torch.float32


def test_an_unknown_loss_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        batch_loss_sum(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), "hinge")


def _numpy_sums(logits: np.ndarray, labels: np.ndarray, loss: str) -> np.ndarray:
    """Each point's summed loss over the batch, from the definitions (the paper's MSE:
    softmax outputs against one-hot labels, averaged over the classes)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    if loss == "cross_entropy":
        return -log_probs[:, np.arange(len(labels)), labels].sum(axis=1)
    one_hot = np.eye(logits.shape[-1])[labels]
    return ((np.exp(log_probs) - one_hot) ** 2).mean(axis=-1).sum(axis=1)


@pytest.mark.parametrize("loss", sorted(BUILTIN))
def test_both_shapes_match_numpy(loss: str) -> None:
    """Against numpy, not against each other: a mistake made in both would pass the test above."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, 5, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, 5, (7,), generator=generator)
    want = _numpy_sums(logits.numpy(), labels.numpy(), loss)
    np.testing.assert_allclose(batch_loss_sums(logits, labels, loss).numpy(), want, rtol=1e-12)
    for k in range(3):
        assert batch_loss_sum(logits[k], labels, loss).item() == pytest.approx(want[k], rel=1e-12)


@pytest.mark.parametrize("function", ["per_sample", "batch_mean"])
def test_a_python_loss_at_k_points_is_each_point_s_sum(tmp_path, monkeypatch, function: str) -> None:
    """``loss: python:...`` with K > 1: the user's function sees one point's logits at a
    time, and its per-sample losses or batch mean become that point's sum."""
    module = tmp_path / "k_point_losses.py"
    module.write_text(
        "import torch.nn.functional as F\n"
        "def per_sample(logits, labels):\n    return F.cross_entropy(logits, labels, reduction='none') * 2\n"
        "def batch_mean(logits, labels):\n    return F.cross_entropy(logits, labels) * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 6, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (6,), generator=generator)
    want = 2 * _numpy_sums(logits.numpy(), labels.numpy(), "cross_entropy")
    got = batch_loss_sums(logits, labels, f"python:k_point_losses:{function}")
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_an_unknown_loss_at_k_points_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="^unknown loss 'hinge'$"):
        batch_loss_sums(torch.zeros(2, 1, 2), torch.zeros(1, dtype=torch.long), "hinge")


@pytest.mark.parametrize("width", [None, 1, 3])
def test_stacked_mse_on_targets_is_each_points_mse(width) -> None:
    """K stacked points (points_per_forward > 1) sum (output − target)² per point as one point does."""
    g = torch.Generator().manual_seed(0)
    k, n = 4, 9
    logits = torch.randn(k, n, width or 1, generator=g, dtype=torch.float64)
    targets = torch.randn((n,) if width is None else (n, width), generator=g, dtype=torch.float64)
    stacked = batch_loss_sums(logits, targets, "mse")
    one = torch.stack([batch_loss_sum(point, targets, "mse") for point in logits])
    by_hand = ((logits - targets.reshape(1, n, -1)) ** 2).mean(dim=2).sum(dim=1)
    torch.testing.assert_close(stacked, by_hand, rtol=1e-14, atol=0)
    torch.testing.assert_close(one, by_hand, rtol=1e-14, atol=0)
