"""The code a spec makes the launcher and the pods run: what ``validate`` names before it imports it.

A spec is code (docs/security.md): ``python:package.module:function`` references are
imported and called, ``python.requirements`` are installed by pip (an sdist runs its
build backend), and ``python.path`` folders go first on ``sys.path``, where they can
shadow any module. Parsing a spec executes none of it; ``launcher validate --static``
stops there and lists it, the full ``validate`` prints the list before it imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from landscape_job.base.pyref import is_ref, split_ref
from landscape_job.spec.sections import Spec


@dataclass(frozen=True)
class UserCode:
    """One piece of user code: the spec key naming it, what it is (``import``, ``pip``, ``path``), the text."""

    key: str
    kind: str
    target: str

    def describe(self) -> str:
        if self.kind == "import":
            module, function = split_ref(self.target, self.key)
            return f"{self.key}: imports {module} and calls {function}"
        if self.kind == "pip":
            return f"{self.key}: pip installs {self.target} (its build may run code)"
        return f"{self.key}: {self.target} goes first on sys.path"


def user_code(spec: Spec) -> list[UserCode]:
    """Every reference, requirement and folder of user code the spec names, in the order a stage meets them."""
    found = [UserCode(f"python.path[{i}]", "path", p) for i, p in enumerate(spec.python.path)]
    found += [UserCode(f"python.requirements[{i}]", "pip", r) for i, r in enumerate(spec.python.requirements)]
    refs = [("model.arch", spec.model.arch), ("data.dataset", spec.data.dataset), ("loss", spec.loss)]
    refs += [(f"metrics[{i}]", m) for i, m in enumerate(spec.metrics)]
    found += [UserCode(key, "import", ref) for key, ref in refs if is_ref(ref)]
    return found
