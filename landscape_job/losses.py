"""``loss: python:package.module:function``: the user's loss, besides cross-entropy and MSE.

The function is called as ``fn(logits, labels)`` on each batch, like
``torch.nn.functional.cross_entropy``. It may return per-sample losses (shape ``(B,)``,
summed here) or one batch mean (a scalar, multiplied back by the batch size): either
way the evaluator sums over the batches and divides by the split's size, so the surface
holds the exact mean over the data set, as for the built-in losses.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from landscape_job import pyref
from landscape_job.errors import UserError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=8)
def resolve_loss(ref: str) -> LossFn:
    """The user's loss function, imported once per process, not once per batch."""
    return pyref.resolve(ref, "loss")


def custom_loss_sum(logits: torch.Tensor, labels: torch.Tensor, ref: str) -> torch.Tensor:
    """The batch's summed loss from the user's function; a wrong return shape is one line naming ``loss``."""
    value = pyref.call(ref, "loss", resolve_loss(ref), logits, labels)
    if not isinstance(value, torch.Tensor):
        raise UserError(f"loss: {ref} returned {type(value).__name__}, not a tensor")
    if value.dim() == 0:
        return value * labels.shape[0]
    if value.shape == (labels.shape[0],):
        return value.sum()
    raise UserError(f"loss: {ref} returned shape {tuple(value.shape)}; return a scalar batch mean "
                    f"or one loss per sample ({labels.shape[0]},)")
