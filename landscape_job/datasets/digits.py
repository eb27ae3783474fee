"""scikit-learn's 8x8 digits as this project splits them: read once a process, split the same everywhere.

Pure numpy (the tensors and the normalisation are ``builtin``'s): the split depends only on numpy's
frozen legacy ``RandomState`` stream, so it is the same in every worker, pod and library version.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

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


#: scikit-learn's digits as it ships them, inside its package: 1797 rows of 64 pixels (0..16) and the label.
DIGITS_FILE = ("datasets", "data", "digits.csv.gz")


def digits_file() -> Path | None:
    """scikit-learn's bundled digits file, found without importing scikit-learn (``None`` where it is not).

    Importing ``sklearn.datasets`` for ``load_digits`` takes about 1.2 s of CPU (scipy, joblib and
    more come with it), paid by every stage process that loads digits; parsing the file takes ~0.05 s.
    """
    found = importlib.util.find_spec("sklearn")
    for folder in (found.submodule_search_locations or []) if found is not None else []:
        path = Path(folder).joinpath(*DIGITS_FILE)
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images, labels, train indices, test indices), read once a process:
    a spec's splits, its check and a stage each load them. Read-only: each split is a copy (fancy
    indexing), so no caller can change them.

    The file is parsed as ``load_digits`` parses it (a comma-separated table, the label last;
    tests/datasets/test_data.py compares the two); a scikit-learn that keeps it elsewhere is asked.
    """
    path = digits_file()
    if path is not None:
        with gzip.open(path, "rt") as rows:
            table = np.loadtxt(rows, delimiter=",")
        images, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, labels = bunch.images, bunch.target
    images = np.asarray(images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    labels = np.asarray(labels, dtype=np.int64)
    arrays = (images, labels, *digits_split(labels))
    for array in arrays:
        array.setflags(write=False)
    return arrays
