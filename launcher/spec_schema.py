"""``launcher schema``: the spec's JSON Schema (draft 2020-12), for editors and CI checks.

Generated from the same key declarations the parsers read (``landscape_job.base.schema``), so
it cannot drift from what ``launcher validate`` accepts: types, choices, bounds, defaults
and descriptions. It is assembled here, in the launcher, because the ``kubernetes:``
section is declared by the launcher alone. Some rules stay with the parser only (files
exist, keys that depend on ``directions.type``, ``vmin < vmax``): a spec the schema
accepts may still be refused by ``launcher validate``, with one line naming the key.

Point an editor at it (VS Code with the YAML extension):

    launcher schema > surface.schema.json
    # first line of surface.yaml:
    # yaml-language-server: $schema=./surface.schema.json
"""

from __future__ import annotations

import json
from typing import Any

from landscape_job.base.schema import object_schema
from landscape_job.storage.location import StorageOptions
from landscape_job.spec.sections import Spec
from launcher.kubernetes.section import kubernetes_schema
from launcher.slurm.section import slurm_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _storage_schema() -> dict[str, Any]:
    """``storage``: a folder or URL, or the mapping form with the S3 options (never credentials)."""
    options = {name: {"type": "string"} for name in StorageOptions.NAMES}
    return {"anyOf": [{"type": "string"},
                      {"type": "object", "properties": {"url": {"type": "string"}, **options},
                       "required": ["url"], "additionalProperties": False}]}


def spec_json_schema() -> dict[str, Any]:
    """The whole spec file's JSON Schema."""
    body = object_schema(Spec, overrides={"storage": _storage_schema(), "kubernetes": kubernetes_schema(),
                                                 "slurm": slurm_schema()})
    return {"$schema": DIALECT, "title": "landscape surface spec",
            "description": "A loss-landscape run: model, data, directions, grid, compute, storage. "
                           "See the README's 'The spec'.", **body}


def print_schema() -> None:
    print(json.dumps(spec_json_schema(), indent=2, ensure_ascii=False))
