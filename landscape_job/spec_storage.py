"""Where a run lives: the spec's ``storage`` key, a folder or URL with optional S3 options.

Kept apart from the rest of the spec because the storage backends (``landscape_job.s3``)
check the same options when a run is opened from its URL alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from landscape_job.errors import UserError
from landscape_job.schema import Section


#: Keys of the mapping form of ``storage``, besides ``url``; the S3 backend reads them.
STORAGE_OPTIONS = ("endpoint_url", "region", "addressing_style", "request_checksum")


def check_storage_options(url: str, options: Mapping[str, Any] | None) -> dict[str, str]:
    """The options that are set, checked: a typo is a user error, not a silent default."""
    chosen = {k: str(v) for k, v in (options or {}).items() if v not in (None, "")}
    for key in chosen:
        if key not in STORAGE_OPTIONS:
            raise UserError(f"storage.{key}: unknown S3 option for {url}; "
                            f"expected one of {', '.join(STORAGE_OPTIONS)}")
    endpoint = chosen.get("endpoint_url")
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise UserError(f"storage.endpoint_url: expected http(s)://host[:port], got {endpoint!r}")
    if chosen.get("addressing_style", "auto") not in ("auto", "path", "virtual"):
        raise UserError(f"storage.addressing_style: expected one of auto, path, virtual; "
                        f"got {chosen['addressing_style']!r}")
    if chosen.get("request_checksum", "when_supported") not in ("when_supported", "when_required"):
        raise UserError(f"storage.request_checksum: expected when_supported or when_required; "
                        f"got {chosen['request_checksum']!r}")
    return chosen


def parse_storage(top: Section, base_dir: Path, override: str | None) -> tuple[str, dict[str, Any]]:
    """``storage`` is a URL, or a mapping with ``url`` and the S3 options; credentials never go here."""
    raw = top.get("storage", (str, dict), None)
    options: dict[str, Any] = {}
    if isinstance(raw, dict):
        section = Section(raw, "storage")
        url = section.get("url", str)
        for key in STORAGE_OPTIONS:
            value = section.get(key, str, None)
            if value is not None:
                options[key] = value
        for key in section.raw:
            if any(word in key.lower() for word in ("secret", "access_key", "password", "token")):
                raise UserError(f"storage.{key}: credentials never go in the spec; set AWS_ACCESS_KEY_ID/"
                                f"AWS_SECRET_ACCESS_KEY in the environment or name a Kubernetes Secret")
        section.finish()
        options = check_storage_options(url, options)
    else:
        url = raw
    value = override if override is not None else url
    if value is None:
        return "file://" + str(Path.cwd() / "runs"), options
    if value.startswith("s3://"):
        if len(value) <= len("s3://") or value[len("s3://"):].startswith("/"):
            raise UserError(f"storage: expected s3://bucket/prefix, got {value!r}")
        return value.rstrip("/"), options
    if "://" in value and not value.startswith("file://"):
        raise UserError(f"storage: expected a folder, file:///path or s3://bucket/prefix; got {value!r}")
    if options:
        raise UserError(f"storage.{next(iter(options))}: only for s3:// storage")
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() if override is not None else base_dir) / path
    return "file://" + str(path.resolve()), options
