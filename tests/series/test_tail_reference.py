"""``series.noise_estimator: reference`` against the seed's code (Şimşekli et al. 2019, github
umutsimsekli/sgd_tail_index), transcribed here step by step: its evaluation loop over an
unshuffled loader, its centring on the mean of the batch gradients, its block-size loop
and its ``alpha_estimator``. The option must agree with it to 1e-12 on the same noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.series.probe import model_batch_loss, noise_columns, reference_noise
from landscape_job.series.tail_index import block_size, reference_block_size, tail_index, tail_index_reference, \
    usable_count
from landscape_job.spec.series import SeriesSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seed_block_size(n: int) -> int:
    """main.py: ``for i in range(1, 1 + int(math.sqrt(N))): if N % i == 0: m = i``."""
    m = None
    for i in range(1, 1 + int(math.sqrt(n))):
        if n % i == 0:
            m = i
    return m


def seed_alpha_estimator(m: int, x: torch.Tensor) -> float:
    """utils.py's ``alpha_estimator(m, X)``, X an (N, d) matrix (the seed passes (N, 1))."""
    n = int(len(x) / m)
    y = torch.sum(x.view(n, m, -1), 1)
    eps = np.spacing(1)
    y_log_norm = torch.log(y.norm(dim=1) + eps).mean()
    x_log_norm = torch.log(x.norm(dim=1) + eps).mean()
    diff = (y_log_norm - x_log_norm) / math.log(m)
    return float(1 / diff)


def seed_alpha(noise: torch.Tensor) -> float:
    return seed_alpha_estimator(seed_block_size(noise.numel()), noise.reshape(-1, 1))


def test_the_block_size_is_main_pys_with_no_cut() -> None:
    # The issue's count: 44 minibatches x 3,466 coordinates = 152,504 values.
    assert reference_block_size(152_504) == seed_block_size(152_504) == 88
    assert block_size(usable_count(152_504)) == 305 and usable_count(152_504) == 152_500  # the default cuts first
    assert all(reference_block_size(n) == seed_block_size(n) for n in range(1, 3000))


@pytest.mark.parametrize("shape,alpha", [((44, 3466), 1.7), ((7, 311), 2.0), ((16, 900), 1.3)])
def test_reference_equals_the_seeds_estimator_on_the_same_noise(shape: tuple[int, int], alpha: float) -> None:
    rng = np.random.default_rng(3)
    from scipy.stats import levy_stable  # here, not at the top: 1.6 s of every worker's collection
    noise = levy_stable.rvs(alpha, 0.0, scale=0.01, size=shape, random_state=rng)
    noise[0, :5] = 0.0  # exact zeros: the seed keeps them, inside log(|x| + eps)
    expected = seed_alpha(torch.from_numpy(noise))
    assert tail_index_reference(noise) == pytest.approx(expected, abs=1e-12, rel=1e-12)


def test_a_prime_count_has_no_reference_estimate() -> None:
    assert math.isnan(tail_index_reference(np.random.default_rng(0).normal(size=(1, 97))))


def test_the_smallest_blocks_and_no_samples() -> None:
    """Blocks of 2 and 3 (6 and 9 values, zeros kept) as the seed computes them; no samples, no estimate."""
    for values in ([1.5, -0.5, 2.0, 0.0, 3.0, -1.0], [0.5, 1.0, -2.0, 0.0, 4.0, 0.25, -1.0, 3.0, 0.75]):
        assert reference_block_size(len(values)) == len(values) // 3
        assert tail_index_reference(np.array(values)) == pytest.approx(
            seed_alpha(torch.tensor(values, dtype=torch.float64)), rel=1e-12)
    assert math.isnan(tail_index_reference(np.array([])))


def test_the_default_and_the_reference_differ_where_the_issue_found_them() -> None:
    from scipy.stats import levy_stable  # here, not at the top: 1.6 s of every worker's collection
    noise = levy_stable.rvs(1.6, 0.0, size=(44, 3466), random_state=np.random.default_rng(8))
    assert tail_index_reference(noise) != pytest.approx(tail_index(noise), abs=1e-6)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_the_probes_reference_noise_is_the_seeds_eval_loop() -> None:
    """103 samples in batches of 10 (the last one of 3 kept), every tensor, cross-entropy: the
    seed's eval() and ``noise_columns`` with the reference estimator give the same α, also per layer."""
    torch.manual_seed(0)
    net = _Net().double().eval()
    inputs = torch.randn(103, 6, dtype=torch.float64)
    labels = torch.randint(0, 3, (103,))
    # The seed's eval(): an unshuffled loader, mean loss per batch, backward, the flat gradient.
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, labels), batch_size=10, shuffle=False)
    crit = nn.CrossEntropyLoss()
    grads = []
    for x, y in loader:
        net.zero_grad()
        crit(net(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]).clone())
    grads = torch.stack(grads)
    noise = grads - grads.sum(0) / len(grads)
    expected = seed_alpha(noise)

    params = list(net.parameters())
    batch_loss = model_batch_loss(net, inputs, labels, "cross_entropy")
    # The same noise matrix: batches in order, the partial one kept, centred on the batch gradients' mean.
    formed = reference_noise(params, batch_loss, 103, 10)
    assert formed.shape == (11, sum(p.numel() for p in params))
    np.testing.assert_allclose(formed, noise.numpy(), rtol=1e-9, atol=1e-15)
    series = SeriesSpec(checkpoints=("x",), lr=0.1, noise_batch_size=10, noise_per_layer=True,
                        noise_estimator="reference")
    out = noise_columns(params, batch_loss, torch.zeros(formed.shape[1], dtype=torch.float64), 103, series)
    assert out["tail_index"] == pytest.approx(seed_alpha(torch.from_numpy(formed)), abs=1e-12, rel=1e-12)
    assert out["tail_index"] == pytest.approx(expected, rel=1e-9)  # and the seed's own gradients, to rounding
    start = 0
    for i, p in enumerate(params):
        block = torch.from_numpy(formed[:, start:start + p.numel()])
        layer = seed_alpha(block) if seed_block_size(block.numel()) > 1 else float("nan")
        got = out[f"tail_index_layers[{i}]"]
        assert (math.isnan(got) and math.isnan(layer)) or got == pytest.approx(layer, abs=1e-12, rel=1e-12)
        start += p.numel()
    assert out["noise_norm"] == pytest.approx(float(np.linalg.norm(formed, axis=1).mean()), rel=1e-12)


def test_the_spec_key() -> None:
    from landscape_job.spec.parse import parse_spec

    def spec(**series):
        return parse_spec({"name": "t", "model": {"arch": "digits_cnn", "checkpoint": "c.pt"},
                           "data": {"dataset": "digits"}, "storage": "/tmp/x",
                           "series": {"checkpoints": ["a_1.pt"], "lr": 0.1, **series}}, base_dir=Path("/tmp"),
                          check_files=False)

    assert "noise_estimator" not in spec().series.to_dict({})  # old runs keep their hashes
    assert spec(noise_estimator="reference").series.to_dict({})["noise_estimator"] == "reference"
    with pytest.raises(UserError, match="series.noise_batches"):
        spec(noise_estimator="reference", noise_batches=4)
    with pytest.raises(UserError, match="series.noise_estimator"):
        spec(noise_estimator="seed")
