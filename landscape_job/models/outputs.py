"""``model.output``: the prediction out of a model that returns a dict, a tuple or a dataclass.

Hugging Face models return a ``ModelOutput`` (``.logits``), detection and multi-task
models a dict or a tuple with auxiliary heads. Everything downstream (losses, metrics,
the Hessian) wants one tensor, so the choice is made once, in a forward hook on the
model: every call of the model (plain, ``functional_call`` under ``vmap``, compiled, the
Hessian's double backward) then returns the chosen tensor, and the module's parameter
names and state_dict stay exactly the user's (a wrapper module would prefix them).
A model whose output cannot be used is one line that lists what it returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from landscape_job.base.errors import UserError, shown

__all__ = ["describe_output", "pick_output", "select_output"]

#: The most entries a message lists of what a model returned.
_LISTED = 8


def _item(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    return type(value).__name__


def _entries(outputs: Any) -> list[tuple[str, Any]] | None:
    """(name, value) of a structured output's parts, or None for anything unstructured."""
    if isinstance(outputs, Mapping):
        return [(shown(k, 30) if not isinstance(k, str) else k, v) for k, v in outputs.items()]
    if dataclasses.is_dataclass(outputs) and not isinstance(outputs, type):
        return [(f.name, getattr(outputs, f.name)) for f in dataclasses.fields(outputs)]
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):  # a namedtuple: by name and index
        return [(f"{i} ({name})", v) for i, (name, v) in enumerate(zip(outputs._fields, outputs))]
    if isinstance(outputs, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(outputs)]
    return None


def describe_output(outputs: Any) -> str:
    """``a dict with logits: tensor (2, 10), aux: tensor (2, 3)``: what a model returned, on one line."""
    if isinstance(outputs, torch.Tensor):
        return f"a tensor of shape {tuple(outputs.shape)}"
    entries = _entries(outputs)
    if entries is None:
        return f"a {type(outputs).__name__}"
    listed = ", ".join(f"{name}: {_item(value)}" for name, value in entries[:_LISTED])
    more = f" and {len(entries) - _LISTED} more" if len(entries) > _LISTED else ""
    return f"a {type(outputs).__name__} with {listed}{more}" if entries else f"an empty {type(outputs).__name__}"


def pick_output(outputs: Any, output: str | int | None) -> Any:
    """The part of ``outputs`` that ``model.output`` names (``outputs`` itself when it is None).

    A string is a key of a mapping or else an attribute (a dataclass, a ModelOutput, a
    namedtuple); an integer is an index of a tuple or list.
    """
    if output is None:
        return outputs
    found: Any = _MISSING
    if isinstance(output, int):
        if isinstance(outputs, (tuple, list)) and -len(outputs) <= output < len(outputs):
            found = outputs[output]
    elif isinstance(outputs, Mapping) and output in outputs:
        found = outputs[output]
    elif not isinstance(outputs, Mapping):
        found = getattr(outputs, output, _MISSING)
    if found is _MISSING:
        raise UserError(f"model.output: {shown(output)} is not among the model's outputs; it returned "
                        f"{describe_output(outputs)}")
    if not isinstance(found, torch.Tensor):
        raise UserError(f"model.output: {shown(output)} is {describe_output(found)}, not a tensor of predictions; "
                        f"the model returned {describe_output(outputs)}")
    return found


_MISSING = object()


def select_output(model: nn.Module, output: str | int | None) -> nn.Module:
    """Makes every call of ``model`` return ``pick_output(outputs, output)``; the model itself is returned.

    Nothing is attached when ``output`` is None, so a model returning a tensor runs as it always did.
    """
    if output is not None:
        model.register_forward_hook(lambda _module, _args, outputs: pick_output(outputs, output))
    return model
