"""Package faces that import their modules on first use.

A folder's ``__init__`` names its public entry points without importing them: the merge
stage and the launcher import ``landscape_job`` packages but must not pay for torch
(1.5-5 s) or matplotlib, so a face resolves a name only when it is read.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable


def lazy_names(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` comes from ``package.<modules[name]>``."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{modules[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
