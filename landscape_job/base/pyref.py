"""``python:package.module:function`` references: the user's own code, named in the spec.

Models, data sets and losses can all come from the user's code instead of ours, so one
resolver turns every reference into a callable and every failure (bad form, module that
does not import, missing function) into one ``UserError`` naming the spec key. The
module's folder comes from ``python.path`` in the spec (a mounted volume on a cluster)
or from an installed package (``python.requirements``), see :func:`activate`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from landscape_job.base.cache import cache_dir
from landscape_job.base.errors import UserError, shown

PREFIX = "python:"


def is_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def one_line(exc: BaseException) -> str:
    """``TypeError: text`` on one line, at most 300 characters: user code's errors in our messages."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def split_ref(ref: str, key: str) -> tuple[str, str]:
    """``python:pkg.mod:fn`` -> ``("pkg.mod", "fn")``; a malformed reference names ``key``."""
    target = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
    module_name, sep, func_name = target.rpartition(":")
    if not sep or not module_name or not func_name or not func_name.isidentifier() \
            or not all(part.isidentifier() for part in module_name.split(".")):
        raise UserError(f"{key}: {shown(ref)} must look like python:package.module:function")
    return module_name, func_name


def resolve(ref: str, key: str) -> Callable[..., Any]:
    """The callable a reference names; any import failure of the user's module is one line naming ``key``."""
    module_name, func_name = split_ref(ref, key)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure of the user's module is the user's
        raise UserError(f"{key}: cannot import '{module_name}' ({one_line(e)}); make it importable: add its "
                        "folder to python.path in the spec, or its package to python.requirements") from None
    factory = getattr(module, func_name, None)
    if factory is None or not callable(factory):
        what = "has no" if factory is None else "has a non-callable"
        raise UserError(f"{key}: module '{module_name}' {what} function '{func_name}'")
    return factory


def call(ref: str, key: str, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Calls user code; whatever it raises becomes one line naming ``key`` and the reference."""
    try:
        return factory(*args, **kwargs)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - the factory is user code; report, don't crash
        raise UserError(f"{key}: {ref} raised {one_line(e)}") from None


#: What the JSON Schema allows in ``python.requirements`` (the parser below is the authority): no
#: leading ``-`` nor one after a space (a pip option), no ``/`` or ``\\`` (a path), no ``@`` (a direct URL reference).
REQUIREMENT_PATTERN = r"^(?!.*\s-)[A-Za-z0-9][^@/\\]*$"


def check_requirement(text: str, key: str) -> str:
    """One ``python.requirements`` item: a requirement specifier (name, extras, versions, marker), else one line.

    Items go on pip's command line, so an option (``--index-url=...``, ``-e``), a direct
    URL (``pkg @ https://...``) or a path (``./pkg``) would change where code comes from
    or how pip runs: all are refused. Parsed by the ``packaging`` library, pip's own
    grammar (PEP 508), with direct references and anything not starting with a name refused.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    stripped = text.strip()
    why = ""
    if stripped.startswith("-"):
        why = "a pip option"
    else:
        try:
            requirement = Requirement(stripped)
        except InvalidRequirement:
            why = "not a requirement specifier"
        else:
            if requirement.url:
                why = "a direct URL reference"
            elif "/" in stripped or "\\" in stripped:
                why = "a path"
    if why:
        raise UserError(f"{key}: {shown(text)} is {why}; python.requirements takes only requirement specifiers "
                        "(name[extras] version ; marker, e.g. 'mypkg[extra]>=1.2')")
    return stripped


def activate(paths: Sequence[str], requirements: Sequence[str], cache: Path | None = None) -> None:
    """Makes the spec's user code importable: its folders first on ``sys.path``, its pip requirements installed.

    Requirements go into a folder of the input cache keyed by their hash (``pip install
    --target``), because a pod's root file system is read-only and its site-packages
    cannot change; a later stage in the same pod (or a local rerun) finds them there.
    """
    for folder in reversed(list(paths)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if requirements:
        requirements = [check_requirement(r, f"python.requirements[{i}]") for i, r in enumerate(requirements)]
        base = cache or cache_dir()
        digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:24]
        target = base / "pip" / digest
        if not (target / ".complete").is_file():
            target.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
                       "--target", str(target), "--", *requirements]
            result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
            if result.returncode != 0:
                tail = " ".join((result.stderr or result.stdout).split())[-300:]
                raise UserError(f"python.requirements: pip could not install {', '.join(requirements)} ({tail})")
            (target / ".complete").write_text("ok\n")
        if str(target) not in sys.path:
            sys.path.insert(0, str(target))
    importlib.invalidate_caches()
