"""A user's own data set and loss, as the spec's ``python:`` references find them.

Nothing here imports landscape: a factory returns any torch Dataset of (input, label)
items (or a (train, test) pair), and a loss is fn(logits, labels). This one rebuilds the
digits split of the built-in ``digits`` data set by hand, so examples/custom-data.yaml
gives the same surface as examples/digits.yaml.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class Digits(Dataset):
    """scikit-learn's 8x8 digits, normalised like landscape's built-in ``digits``."""

    MEAN, STD = 0.30577476, 0.37656184  # of the train split's pixels / 16

    def __init__(self, split: str, test_fraction: float = 0.2, seed: int = 0):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        labels = np.asarray(bunch.target, dtype=np.int64)
        rng = np.random.RandomState(seed)
        test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:int(round(test_fraction * (labels == c).sum()))]
                                       for c in np.unique(labels)]))
        index = test if split == "test" else np.setdiff1d(np.arange(len(labels)), test)
        images = np.asarray(bunch.images, dtype=np.float32)[index] / 16.0
        self.inputs = torch.from_numpy((images - self.MEAN) / self.STD).unsqueeze(1)
        self.labels = torch.from_numpy(labels[index])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.inputs[i], int(self.labels[i])


def load(split: str) -> Dataset:
    """Called once per split (it takes ``split``); other arguments come from data.options."""
    return Digits(split)


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One loss per sample; landscape sums them and divides by the split's size."""
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.1)
