"""scikit-learn's 8x8 digits as this project splits them: read once a process, split the same everywhere.

Pure numpy (the tensors and the normalisation are ``builtin``'s): the split depends only on numpy's
frozen legacy ``RandomState`` stream, so it is the same in every worker, pod and library version.
"""

from __future__ import annotations

import functools

import numpy as np

#: digits split: fraction of each class held out as test, and the seed of the shuffle.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def digits_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: per class, a seeded shuffle and the first
    ``round(0.2 * n_class)`` to test.

    Written out (rather than sklearn's ``train_test_split``) so the split depends only
    on numpy's frozen legacy ``RandomState`` stream, not on sklearn's internals, and so
    stays the same across library versions. For the 1797 digits: 1438 train / 359 test.
    """
    rng = np.random.RandomState(DIGITS_SPLIT_SEED)
    test: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = int(round(DIGITS_TEST_FRACTION * len(members)))
        test.append(rng.permutation(members)[:count])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images, labels, train indices, test indices), read once a process:
    ``load_digits`` parses its bundled CSV on every call (~0.1 s), and a spec's splits, its check and a
    stage each load them. Read-only: each split is a copy (fancy indexing), so no caller can change them."""
    from sklearn.datasets import load_digits  # imported lazily: only this loader needs it

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    arrays = (images, labels, *digits_split(labels))
    for array in arrays:
        array.setflags(write=False)
    return arrays
