"""The zoo's table: each model family registers its ``model.arch`` names where it is defined.

A family is a set of listed names and, optionally, a pattern for names it accepts beyond
them (``resnet<6n+2>``, ``wrn<d>_<k>``), each mapped to a builder called as
``builder(arch, num_classes, input_shape, **model.kwargs)``. Adding a family is a module
in this folder that calls :func:`register` at its end, imported by the package's
``__init__``; ``build_model`` and ``available_models`` read only this table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from landscape_job.base.errors import UserError

#: ``builder(arch, num_classes, input_shape, **kwargs) -> nn.Module``.
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class Family:
    """One family of zoo models: its listed names and, for unlisted ones, a pattern.

    ``pattern``'s match is handed to ``from_match``, which returns the builder for that
    name (or None: the name is not one of the family's after all).
    """

    name: str
    builders: dict[str, Builder]
    pattern: re.Pattern[str] | None = None
    from_match: Callable[[re.Match[str]], Builder | None] | None = field(default=None)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Adds a family; a name another family already lists is refused (two builders for one arch)."""
    for other in _FAMILIES.values():
        clash = sorted(set(other.builders) & set(family.builders))
        if other.name != family.name and clash:
            raise ValueError(f"model family {family.name!r} lists {clash}, already in family {other.name!r}")
    _FAMILIES[family.name] = family
    return family


def builder_for(arch: str) -> Builder | None:
    """A listed name first (any family), then the families' patterns in registration order."""
    for family in _FAMILIES.values():
        if arch in family.builders:
            return family.builders[arch]
    for family in _FAMILIES.values():
        if family.pattern is not None and family.from_match is not None:
            if (m := family.pattern.fullmatch(arch)) and (built := family.from_match(m)) is not None:
                return built
    return None


def listed_names() -> list[str]:
    """Every listed name, sorted (pattern-only variants are not enumerated)."""
    return sorted(name for family in _FAMILIES.values() for name in family.builders)


def image_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The zoo's conv nets need (C, H, W) samples; say so instead of failing in forward()."""
    if len(input_shape) != 3:
        raise UserError(f"model.arch: '{arch}' takes images of shape (C, H, W) but the data's samples "
                        f"have shape {tuple(input_shape)}; choose 'mlp' or an image data set")
    c, h, w = input_shape
    return c, h, w
