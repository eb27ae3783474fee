"""Figure titles: the user's ``plot.title``, checked, or a readable subject from the run's attributes.

One home for the rule, shared by the spec (checked when the spec is read, before any
work), the figures, and the viewer. No matplotlib, no spec: both import it.

A default title names the model and the data ("cnn on digits") when both are built-in
names; a ``python:pkg.mod:build`` reference or a path says nothing in a title
("python:pkg.mod:build on python:pkg.mod:load"), so the run's name is used instead.
"""

from __future__ import annotations

from typing import Mapping

from landscape_job.base.errors import UserError

__all__ = ["MAX_TITLE_CHARS", "checked_title", "subject", "figure_title"]

#: A title is one line above a 5-inch figure: longer would be cut or shrunk.
MAX_TITLE_CHARS = 80


def checked_title(value: object, key: str = "plot.title") -> str | None:
    """The title with its whitespace collapsed; a ``UserError`` naming ``key`` unless it is one
    printable line of 1 to ``MAX_TITLE_CHARS`` characters (the value itself is never echoed)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{key}: expected a string, got {type(value).__name__}")
    title = " ".join(value.split())
    if not title or len(title) > MAX_TITLE_CHARS or not title.isprintable():
        raise UserError(f"{key}: expected one printable line of 1 to {MAX_TITLE_CHARS} characters "
                        f"(got {len(value)})")
    return title


def _readable(name: str | None) -> bool:
    return bool(name) and not any(c in name for c in ":/\\")


#: The most of a title the ``directions.params`` part may take (a long pattern list is cut with "…").
MAX_PARAMS_CHARS = 48


def subject(attrs: Mapping[str, str]) -> str:
    """What a figure is of: ``title``, else "arch on dataset" (built-in names), else the run's name;
    then which parameters moved when ``directions.params`` chose them ("cnn on digits [only fc.*]")."""
    return _join(_who(attrs), _params(attrs))


def _who(attrs: Mapping[str, str]) -> str:
    if attrs.get("title"):
        return attrs["title"]
    arch, dataset, name = attrs.get("arch"), attrs.get("dataset"), attrs.get("name")
    if _readable(arch) and _readable(dataset):
        return f"{arch} on {dataset}"
    return name or next((v for v in (arch, dataset) if _readable(v)), "") or ""


def _params(attrs: Mapping[str, str]) -> str:
    """The surface's ``params`` attribute ("only h.0.*; not *.bias"), cut to fit beside a title."""
    text = " ".join(str(attrs.get("params") or "").split())
    if len(text) > MAX_PARAMS_CHARS:
        text = text[:MAX_PARAMS_CHARS - 1] + "…"
    return f"[{text}]" if text else ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def figure_title(what: str, attrs: Mapping[str, str]) -> str:
    """"train loss — cnn on digits": the figure's quantity, then its subject."""
    who = subject(attrs)
    return f"{what} — {who}" if who else what
