"""``docs/spec-reference.md``: the spec's keys as tables, written from the JSON Schema.

The schema comes from the key declarations the parsers read (``launcher.spec_schema``),
so the reference cannot drift from what ``launcher validate`` accepts: ``launcher schema
--markdown > docs/spec-reference.md`` rewrites it, and a test fails when the file in the
repository differs from what this prints.
"""

from __future__ import annotations

import json
from typing import Any

from launcher.spec_schema import spec_json_schema

HEADER = """# Spec reference

Every key of a spec file, section by section: its type, its default and what it means.
Generated from the same declarations `launcher validate` checks (`launcher schema
--markdown > docs/spec-reference.md`; `tests/spec/test_spec_reference.py` fails when this file
is stale). Rules that involve several keys (a grid too large for the shards, keys that
depend on `directions.type`) are checked by `launcher validate` and named there.

"""


def _type(schema: dict[str, Any]) -> str:
    """A short reading of a key's schema: ``integer ≥ 1``, ``one of: a, b``, ``string``, ``list``."""
    if "enum" in schema:
        return "one of: " + ", ".join(f"`{v}`" for v in schema["enum"] if v is not None)
    if "const" in schema:
        return f"`{schema['const']}`"
    if "anyOf" in schema:
        parts = [_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    kind = schema.get("type")
    kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k and k != "null"]
    words = " or ".join({"array": "list", "object": "mapping"}.get(k, k) for k in kinds)
    if "minimum" in schema:
        words += f" ≥ {schema['minimum']}"
    if "exclusiveMinimum" in schema:
        words += f" > {schema['exclusiveMinimum']}"
    if "maximum" in schema:
        words += f" ≤ {schema['maximum']}"
    if "items" in schema and isinstance(schema["items"], dict) and "enum" in schema["items"]:
        words += " of " + _type(schema["items"]).removeprefix("one of: ")
    return words


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(prefix: str, schema: dict[str, Any], required: set[str]) -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        default = json.dumps(sub["default"], ensure_ascii=False) if "default" in sub else (
            "required" if name in required else "")
        rows.append(f"| `{key}` | {_cell(_type(sub))} | {_cell(default)} | {_cell(sub.get('description', ''))} |")
        nested = sub if "properties" in sub else next((s for s in sub.get("anyOf", []) if "properties" in s), None)
        if nested is not None and prefix == "":
            continue  # a section: its own table below
        if nested is not None:
            rows += _rows(f"{key}.", nested, set(nested.get("required", ())))
    return rows


def spec_reference() -> str:
    """The whole reference, one table for the top-level keys and one per section."""
    schema = spec_json_schema()
    out = [HEADER, "## Top level\n", "| key | type | default | meaning |", "|---|---|---|---|",
           *_rows("", schema, set(schema.get("required", ()))), ""]
    for name, sub in schema["properties"].items():
        section = sub if "properties" in sub else next((s for s in sub.get("anyOf", []) if "properties" in s), None)
        if section is None:
            continue
        out += [f"## `{name}`\n"]
        if sub.get("description"):
            out += [_cell(sub["description"]) + "\n"]
        out += ["| key | type | default | meaning |", "|---|---|---|---|",
                *_rows(f"{name}.", section, set(section.get("required", ()))), ""]
    return "\n".join(out).rstrip() + "\n"
