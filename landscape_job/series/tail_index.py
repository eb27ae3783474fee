"""The tail index α of heavy-tailed samples: the estimator of Mohammadi, Mohammadpour and Ogata (2014).

Şimşekli, Sagun and Gürbüzbalaban (ICML 2019) model stochastic gradient noise as
symmetric α-stable and estimate α with Corollary 2.4 of Mohammadi et al.: for samples
X_1..X_K of a symmetric α-stable law, K = K1·K2, the block sums
Y_i = Σ_{j=1..K1} X_{(i−1)K1 + j} are α-stable with scale K1^{1/α} times X's, so

    1/α̂ = (1 / log K1) · ( (1/K2) Σ_i log|Y_i| − (1/K) Σ_j log|X_j| ).

The estimator needs no knowledge of the scale and is exact in expectation for stable
laws (α = 2, the Gaussian, included). The block size follows the seed literature's
code: K1 is the largest divisor of K not above √K, so every sample is used and both
means average over many terms.

Two estimators (``series.noise_estimator``):

* ``default`` (``tail_index``): exact zeros are left out (a coordinate the loss does not
  touch says nothing of the tail), and when K's largest divisor below √K is under
  ⌊√K⌋/2 (a prime or near-prime K: blocks of 1, 2 or 3) K is first cut to the nearest
  smaller count with a real block size (``usable_count``): 152,504 values become 152,500
  in blocks of 305 rather than blocks of 88.
* ``reference`` (``tail_index_reference``): the seed's code (Şimşekli et al.'s
  ``alpha_estimator`` with the block size its ``main.py`` picks): every value, zeros
  included with log(|x| + ε), ε = 2⁻⁵² (numpy's ``spacing(1)``), K1 the largest divisor
  of K up to ⌊√K⌋ with no cut, so a near-prime K gets small blocks, and a prime K (K1 = 1,
  log K1 = 0) has no estimate (NaN).

Plain numpy: the launcher and the tests use it without torch.
"""

from __future__ import annotations

import math

import numpy as np

#: Below this many samples the two means are too noisy to say anything about α.
MIN_SAMPLES = 16


def block_size(count: int) -> int:
    """The largest divisor of ``count`` that is at most √count (1 for a prime)."""
    if count < 1:
        raise ValueError("block_size needs a positive count")
    for k1 in range(math.isqrt(count), 0, -1):
        if count % k1 == 0:
            return k1
    return 1  # pragma: no cover - 1 always divides


def usable_count(count: int) -> int:
    """The largest n ≤ count whose block size is at least ⌊√n⌋/2: a prime or near-prime count
    (blocks of 1, 2 or 3) is cut to a count with a real block size, losing a few samples."""
    for n in range(count, 0, -1):
        if block_size(n) * 2 >= math.isqrt(n):
            return n
    return count  # pragma: no cover


#: ``series.noise_estimator``'s choices.
ESTIMATORS = ("default", "reference")
#: The seed code's ε inside the logarithms: numpy's spacing(1) = 2⁻⁵².
REFERENCE_EPS = float(np.spacing(1))


def reference_block_size(count: int) -> int:
    """The seed's ``main.py`` choice: the last i in 1..⌊√count⌋ that divides count (no cut for a near-prime)."""
    if count < 1:
        raise ValueError("reference_block_size needs a positive count")
    chosen = 1
    for i in range(1, 1 + int(math.sqrt(count))):
        if count % i == 0:
            chosen = i
    return chosen


def tail_index_reference(samples: np.ndarray) -> float:
    """α̂ as the seed's code computes it, over every value in the order given (row after row).

    Blocks of ``reference_block_size(K)`` consecutive values; both means over log(|·| + ε).
    NaN where its block size is 1 (a prime count), where the seed would divide 0 by log 1.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return float("nan")
    m = reference_block_size(x.size)
    if m < 2:
        return float("nan")
    blocks = x.reshape(x.size // m, m).sum(axis=1)
    inverse = (np.mean(np.log(np.abs(blocks) + REFERENCE_EPS)) - np.mean(np.log(np.abs(x) + REFERENCE_EPS))) \
        / math.log(m)
    with np.errstate(divide="ignore"):
        return float(np.float64(1.0) / inverse)


def estimate(samples: np.ndarray, estimator: str = "default") -> float:
    """α̂ by the chosen estimator (``ESTIMATORS``)."""
    if estimator == "reference":
        return tail_index_reference(samples)
    if estimator == "default":
        return tail_index(samples)
    raise ValueError(f"unknown tail-index estimator {estimator!r}")


def tail_index(samples: np.ndarray) -> float:
    """α̂ of the samples (flattened, in the order given).

    Not clipped to the stable range (0, 2]: a value above 2 says the samples' tails are
    lighter than a Gaussian's (bounded noise), which a clip to 2 would hide.

    NaN when there are fewer than ``MIN_SAMPLES`` finite non-zero samples: exact zeros
    (a parameter the loss does not touch) carry no information about the tail and would
    send log|X| to −∞, so they are left out.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x) & (x != 0)]
    count = usable_count(len(x))
    if count < MIN_SAMPLES:
        return float("nan")
    x = x[:count]
    k1 = block_size(count)
    if k1 < 2:
        return float("nan")
    blocks = x.reshape(count // k1, k1).sum(axis=1)
    blocks = blocks[blocks != 0]
    inverse = (np.mean(np.log(np.abs(blocks))) - np.mean(np.log(np.abs(x)))) / math.log(k1)
    if not np.isfinite(inverse) or inverse <= 0:
        return float("nan")
    return float(1.0 / inverse)
