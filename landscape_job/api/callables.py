"""Python functions where a spec names ``python:`` references: ``loss=fn``, ``metrics={"name": fn}``, ``batch_fn``.

The engine under the API reads its loss and metrics from the spec as strings (so a run
and a notebook compute the same thing), and a ``python:module:attr`` reference is
resolved by importing the module. A function from a notebook has no importable module,
so it is bound here instead: an attribute of this module's ``bound`` namespace,
``python:landscape_job.api.callables:<name>``, that calls the function given last under
that name. The spec, its hash and the surface file then name the function
(``loss_myloss``, ``acc5``), and the CLI's own ``python:`` references stay as they are.

The attribute is a trampoline created once per name: the metric registry and the loss
cache keep what they resolved first, so re-running a notebook cell with an edited
function under the same name takes the edited one.

``batch_fn(model, (inputs, labels)) -> per-sample loss (B,)`` (or the batch mean) is for a
loss that is not a function of (outputs, labels): a model with several inputs, a loss that
needs the model itself. The evaluator and the Hessian call it in place of the
forward-and-loss; with it only the loss (and the Hessian) can be computed.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, Mapping

from landscape_job.base.errors import UserError

__all__ = ["bind_loss", "bind_metrics", "BOUND_MODULE", "batch_loss_ref"]

#: The module the references name; its attributes are the trampolines.
BOUND_MODULE = "landscape_job.api.callables_bound"
_bound = sys.modules.setdefault(BOUND_MODULE, types.ModuleType(BOUND_MODULE, "functions bound by the Python API"))
_current: dict[str, Callable[..., Any]] = {}


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", type(fn).__name__)
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name).strip("_") or "fn"
    return cleaned if not cleaned[0].isdigit() else f"fn_{cleaned}"


def _bind(attr: str, fn: Callable[..., Any]) -> str:
    _current[attr] = fn
    if not hasattr(_bound, attr):
        def trampoline(*args: Any, **kwargs: Any) -> Any:
            return _current[attr](*args, **kwargs)

        trampoline.__name__ = attr
        setattr(_bound, attr, trampoline)
    getattr(_bound, attr).better = getattr(fn, "better", None)
    return f"python:{BOUND_MODULE}:{attr}"


def bind_loss(loss: str | Callable[..., Any]) -> str:
    """A loss for the spec: a string as given; a function ``fn(outputs, labels)`` bound as ``loss_<its name>``."""
    if isinstance(loss, str):
        return loss
    if not callable(loss):
        raise UserError(f"loss: expected a loss name, a python: reference or a function, got {type(loss).__name__}")
    return _bind(f"loss_{_name_of(loss)}", loss)


def batch_loss_ref(fn: Callable[..., Any]) -> str:
    """The spec's ``loss`` for a ``batch_fn``: names it, so the file says which loss made the surface."""
    if not callable(fn):
        raise UserError(f"batch_fn: expected a function (model, batch) -> per-sample loss, got {type(fn).__name__}")
    return _bind(f"batch_{_name_of(fn)}", fn)


def bind_metrics(metrics: Any) -> list[str]:
    """The spec's ``metrics``: strings as given; ``{"name": fn}`` bound under each name (the datasets are
    ``train_<name>``, ``test_<name>``); a list may mix names, references and functions (named by ``__name__``)."""
    if isinstance(metrics, str):
        return [metrics]
    items: list[tuple[str | None, Any]] = list(metrics.items()) if isinstance(metrics, Mapping) else \
        [(None, m) for m in metrics]
    out = []
    for name, item in items:
        if isinstance(item, str) and name is None:
            out.append(item)
            continue
        if not callable(item):
            raise UserError(f"metrics: {name or item!r}: expected a function (outputs, labels) -> per-sample values, "
                            f"got {type(item).__name__}")
        label = name if name is not None else _name_of(item)
        if not isinstance(label, str) or not label.isidentifier():
            raise UserError(f"metrics: {label!r}: a metric's name must be a Python identifier (it names datasets)")
        out.append(_bind(label, item))
    return out
