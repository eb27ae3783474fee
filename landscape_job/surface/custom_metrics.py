"""Metrics from the user's code: ``metrics: [loss, python:package.module:function]``.

The reference names either a function ``fn(outputs, labels)`` that returns one value per
sample (shape ``(B,)``, summed here) or the batch's mean (a scalar, multiplied back by
the batch size), like a ``python:`` loss; or a ``metrics.Metric`` the user declared in
full. Either becomes a per-split metric in the registry (``metrics.register``), so the
evaluator, shards, merge, ``surface.h5`` (``train_<name>``, ``test_<name>``), the plots
and the viewer take it like a built-in one. A function may say what is better with an
attribute ``better = "min"`` or ``"max"``.

Registration happens in every process that evaluates (the ``Evaluator`` calls
``register_python_metrics``), after ``python.path`` made the user's module importable.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable

import torch

from landscape_job.base import pyref
from landscape_job.base.errors import UserError, shown
from landscape_job.spec import metrics as registry
from landscape_job.surface.losses import user_batch_sum

__all__ = ["is_python_metric", "register_python_metrics"]


def is_python_metric(item: str) -> bool:
    return pyref.is_ref(item)


def _batch_sum(ref: str, fn, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return user_batch_sum("metrics", ref, fn, outputs, labels, each="value")


def _from_function(ref: str, fn) -> registry.Metric:
    name = ref.rpartition(":")[2]
    better = getattr(fn, "better", None)
    if better not in registry.BETTER:
        raise UserError(f"metrics: {ref}: its attribute better must be 'min', 'max' or None, got {shown(better)}")

    def one(logits, labels, _loss_sum):
        return _batch_sum(ref, fn, logits, labels)

    def stacked(logits, labels, _loss_sums):
        # The user's function takes one point's outputs; it need not vmap.
        return torch.stack([_batch_sum(ref, fn, point, labels) for point in logits])

    return registry.Metric(name, ref, name.replace("_", " "), per_split=True, better=better,
                           statistic=registry.BatchStatistic(one=one, stacked=stacked))


def _metric(ref: str) -> registry.Metric:
    declared = _declared(ref)
    found = declared if isinstance(declared, registry.Metric) else pyref.resolve(ref, "metrics")
    if isinstance(found, registry.Metric):
        if not found.per_split:
            raise UserError(f"metrics: {ref} is a per-point metric; only per-split metrics (a batch statistic) "
                            "can come from python:")
        return dataclasses.replace(found, choice=ref)
    return _from_function(ref, found)


def _declared(ref: str) -> object:
    """A module attribute that is not callable (a ``Metric`` record) is not found by ``pyref.resolve``."""
    module_name, attr = pyref.split_ref(ref, "metrics")
    try:
        return getattr(importlib.import_module(module_name), attr, None)
    except Exception:  # noqa: BLE001 - resolve() reports the import failure in one line
        return None


def register_python_metrics(items: Iterable[str]) -> tuple[registry.Metric, ...]:
    """Registers each ``python:`` item of a spec's ``metrics:`` (once per process); returns them."""
    out = []
    for ref in (i for i in items if is_python_metric(i)):
        known = [m for m in registry.registered() if m.choice == ref]
        if known:
            out.extend(known)
            continue
        metric = _metric(ref)
        try:
            out.append(registry.register(metric))
        except ValueError as e:
            raise UserError(f"metrics: {ref}: {e}; rename it") from None
    return tuple(out)
