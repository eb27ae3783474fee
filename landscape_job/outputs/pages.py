"""Self-contained pages from template files: the surface's viewer and a series' page.

A page is ``templates/<name>.html`` of its package with ``templates/<name>.js`` and the
data (JSON) inlined, so it opens from ``file://`` with no server and no CDN. The script
lives in a file of its own (read, linted and diffed as JavaScript, never as a Python
string); the data go into a ``type="application/json"`` script element with ``<``, ``>``
and ``&`` escaped, so no value can close the element.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

DATA_MARK = "__LANDSCAPE_DATA__"
SCRIPT_MARK = "/*__LANDSCAPE_SCRIPT__*/"


def template(package: str, name: str) -> str:
    return resources.files(package).joinpath("templates", name).read_text(encoding="utf-8")


def inline_page(package: str, name: str, payload: Any, fields: dict[str, str] | None = None) -> str:
    """``<name>.html`` with ``<name>.js`` and ``payload`` inlined; ``fields`` (mark -> text, already
    escaped for HTML) are filled into the template first, so no data can be taken for a mark."""
    data = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script = template(package, f"{name}.js").replace("</", "<\\/")
    page = template(package, f"{name}.html")
    for mark, text in (fields or {}).items():
        page = page.replace(mark, text)
    return page.replace(SCRIPT_MARK, script).replace(DATA_MARK, data)
