"""The loss switch: the summed loss of a batch, for every loss a spec can name.

Two shapes of the same question, kept side by side so they cannot drift apart:

* ``batch_loss_sum``: one point's logits ``(batch, classes)`` -> a scalar. The evaluator
  (one point per forward), the curvature probe (whose Hessian differentiates it) and the
  stages' output check call it.
* ``batch_loss_sums``: K stacked points' logits ``(K, batch, classes)`` -> ``(K,)``, for
  ``points_per_forward`` K > 1 (one vmapped forward evaluates K points).

Both return sums, not means: the evaluator adds them over the batches and divides once
by the split's size, so the surface holds the exact mean over the data set whatever the
batch size. Half-precision logits are summed in float32.

``mse`` compares softmax outputs with one-hot labels for class labels (the paper's), and
the outputs themselves with the targets for float targets (regression): per sample the
mean over the target's width of (output − target)².

For the language-model tasks (``task: causal_lm``, ``masked_lm``) the model's logits are
(batch, T, vocabulary) and the labels (batch, T) token ids, -100 where nothing is predicted
(padding, unmasked positions): ``token_view`` turns them into the predicted tokens' rows,
(tokens, vocabulary) and (tokens,), shifted by one for ``causal_lm`` as ``transformers``
does with ``labels=input_ids``, and everything after it (the loss switch, the metrics)
works on those rows as on a classifier's samples. The evaluator divides by the split's
predicted tokens (``predicted_tokens``), so the mean is token-weighted over the split
exactly as ``transformers`` weights one batch.

``loss: python:package.module:function`` is the user's loss besides the built-ins. The
function is called as ``fn(logits, labels)`` on each batch, like
``torch.nn.functional.cross_entropy``. It may return per-sample losses (shape ``(B,)``,
summed here) or one batch mean (a scalar, multiplied back by the batch size).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from landscape_job.base import pyref
from landscape_job.base.errors import UserError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The prefix of a loss taken from the user's code.
PYTHON_PREFIX = "python:"
#: A label position that takes no part in the loss (transformers' and PyTorch's convention).
IGNORE_INDEX = -100
#: The tasks whose labels are per token (spec.TOKEN_TASKS names the same).
TOKEN_TASKS = ("causal_lm", "masked_lm")


def _predicted(labels: torch.Tensor, task: str) -> torch.Tensor:
    """The labels each position is scored against: causal_lm predicts token t + 1 at position t."""
    return labels[:, 1:] if task == "causal_lm" else labels


def token_view(logits: torch.Tensor, labels: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A token task's (batch, T, V) logits and (batch, T) labels as the predicted tokens' rows:
    (tokens, V) and (tokens,), positions labelled IGNORE_INDEX dropped."""
    if task == "causal_lm":
        logits = logits[:, :-1]
    labels = _predicted(labels, task)
    keep = labels != IGNORE_INDEX
    return logits[keep], labels[keep]


def predicted_tokens(labels: torch.Tensor, task: str) -> int:
    """How many tokens of a split a token task scores: the denominator of its mean loss."""
    return int((_predicted(labels, task) != IGNORE_INDEX).sum())


def _cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="sum")


def _cross_entropy_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    k, n, classes = logits.shape
    per_sample = F.cross_entropy(logits.reshape(k * n, classes), labels.repeat(k), reduction="none")
    return per_sample.view(k, n).sum(dim=1)


def _mse_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax outputs against one-hot labels, as the paper does; for float targets
    (regression) the outputs themselves against the targets."""
    if labels.is_floating_point():
        n = labels.shape[0]
        return ((logits.reshape(n, -1) - labels.reshape(n, -1)) ** 2).mean(dim=1).sum()
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return ((F.softmax(logits, dim=1) - one_hot) ** 2).mean(dim=1).sum()


def _mse_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.is_floating_point():
        k, n = logits.shape[:2]
        return ((logits.reshape(k, n, -1) - labels.reshape(1, n, -1)) ** 2).mean(dim=2).sum(dim=1)
    one_hot = F.one_hot(labels, logits.shape[2]).to(logits.dtype).unsqueeze(0)
    return ((F.softmax(logits, dim=2) - one_hot) ** 2).mean(dim=2).sum(dim=1)


#: Built-in loss name -> (one point's sum, K stacked points' sums). spec.LOSSES names the same keys.
BUILTIN: dict[str, tuple[LossFn, LossFn]] = {
    "cross_entropy": (_cross_entropy_sum, _cross_entropy_sums),
    "mse": (_mse_sum, _mse_sums),
}


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def batch_loss_sum(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Summed loss of a batch at one point: logits (batch, classes) -> scalar."""
    logits = _upcast(logits)
    if loss in BUILTIN:
        return BUILTIN[loss][0](logits, labels)
    if loss.startswith(PYTHON_PREFIX):
        return custom_loss_sum(logits, labels, loss)
    raise ValueError(f"unknown loss {loss!r}")


def batch_loss_sums(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Summed loss of a batch for each of K stacked points: logits (K, batch, classes) -> (K,)."""
    logits = _upcast(logits)
    if loss in BUILTIN:
        return BUILTIN[loss][1](logits, labels)
    if loss.startswith(PYTHON_PREFIX):
        # The user's function takes one point's (batch, classes) logits, as with K = 1.
        return torch.stack([custom_loss_sum(point, labels, loss) for point in logits])
    raise ValueError(f"unknown loss {loss!r}")


@functools.lru_cache(maxsize=8)
def resolve_loss(ref: str) -> LossFn:
    """The user's loss function, imported once per process, not once per batch."""
    return pyref.resolve(ref, "loss")


def custom_loss_sum(logits: torch.Tensor, labels: torch.Tensor, ref: str) -> torch.Tensor:
    """The batch's summed loss from the user's function; a wrong return shape is one line naming ``loss``."""
    return user_batch_sum("loss", ref, resolve_loss(ref), logits, labels, each="loss")


def user_batch_sum(key: str, ref: str, fn: Callable, outputs: torch.Tensor, labels: torch.Tensor,
                   each: str) -> torch.Tensor:
    """A user's ``python:`` function (a loss, a metric) of a batch, as the batch's sum: it may return
    the batch mean (a scalar) or one ``each`` per sample; anything else is one line naming ``key``."""
    value = pyref.call(ref, key, fn, outputs, labels)
    if not isinstance(value, torch.Tensor):
        raise UserError(f"{key}: {ref} returned {type(value).__name__}, not a tensor")
    if value.dim() == 0:
        return value * labels.shape[0]
    if value.shape == (labels.shape[0],):
        return value.sum()
    raise UserError(f"{key}: {ref} returned shape {tuple(value.shape)}; return a scalar batch mean "
                    f"or one {each} per sample ({labels.shape[0]},)")


#: ``batch_fn(model, (inputs, labels))``: the per-sample losses (B,) or the batch mean of one batch (the API's hook).
BatchFn = Callable[[torch.nn.Module, tuple], torch.Tensor]


def batch_fn_sum(fn: BatchFn, model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The batch's summed loss from the user's ``batch_fn``: a scalar is the batch mean (times B), a (B,)
    tensor the per-sample losses (summed); anything else, or an exception, is one line naming ``batch_fn``."""
    value = pyref.call("batch_fn", "batch_fn", fn, model, (inputs, labels))
    if not isinstance(value, torch.Tensor):
        raise UserError(f"batch_fn: returned {type(value).__name__}, not a tensor")
    value = _upcast(value)
    if value.dim() == 0:
        return value * labels.shape[0]
    if value.shape == (labels.shape[0],):
        return value.sum()
    raise UserError(f"batch_fn: returned shape {tuple(value.shape)}; return the per-sample losses "
                    f"({labels.shape[0]},) or their mean (a scalar)")
