"""The spec's inputs: checkpoints, direction files and data roots, as paths or URLs.

Any input may be a path (relative to the spec file's folder), ``file://``, ``s3://``,
``https://`` or the pinned form ``{url: ..., sha256: ...}``. The spec keeps remote URLs as
given (each stage fetches them, ``landscape_job.inputs.fetch``) and makes local paths absolute;
a pin is kept apart, by normalised URL, and written back by ``Spec.to_dict``. One module
for this form, so the parser, the normalised spec and the JSON Schema agree on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from landscape_job.base.errors import UserError, shown
from landscape_job.inputs.fetch import check_sha256, check_url, is_archive, is_remote
from landscape_job.storage.location import local_path
from landscape_job.base.schema import Section, type_name

#: JSON Schema of one input: a path or URL, or the pinned mapping form.
INPUT_SCHEMA: Mapping[str, Any] = {"anyOf": [
    {"type": "string"},
    {"type": "object", "properties": {"url": {"type": "string"},
                                      "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}},
     "required": ["url"], "additionalProperties": False}]}


def read_input(section: Section, name: str, base_dir: Path, must_exist: bool, pins: dict[str, str]) -> str:
    """The required input ``name`` of ``section``, resolved (see ``resolve_input``)."""
    value = section.get(name, (str, dict))
    return resolve_input(value, section.key(name), base_dir, must_exist, pins)


def _cut(path: str, limit: int = 240) -> str:
    """A path for a message: whole when it is a path's usual length, cut when it is not."""
    return path if len(path) <= limit else path[:limit - 3] + "..."


def resolve_file(value: str, key: str, base_dir: Path, must_exist: bool, folder: bool = False) -> str:
    """A local path made absolute against the spec's folder, so the spec means the same
    from any working directory; checked to exist when the files are local to this machine."""
    try:
        path = Path(local_path(value)).expanduser()
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if must_exist and folder and not (path.is_dir() or (is_archive(str(path)) and path.is_file())):
            raise UserError(f"{key}: folder not found: {_cut(str(path))}")
        if must_exist and not folder and not path.is_file():
            raise UserError(f"{key}: file not found: {_cut(str(path))}")
    except (OSError, ValueError, RuntimeError) as err:  # a name too long, a NUL byte, a ~user that is not there
        raise UserError(f"{key}: not a usable path: {shown(value)} ({getattr(err, 'strerror', None) or err})") from None
    return str(path)


def resolve_input(value: object, key: str, base_dir: Path, must_exist: bool, pins: dict[str, str],
                   folder: bool = False) -> str:
    """An input: a path, ``file://``, ``s3://`` or ``https://`` URL, or ``{url: ..., sha256: ...}``.

    Remote URLs are kept as given (each stage fetches them into its cache); a pin is
    recorded in ``pins`` under the normalised URL, so ``to_dict`` writes it back.
    """
    sha256 = None
    if isinstance(value, dict):
        section = Section(value, key)
        url = section.get("url", str)
        if isinstance(value.get("sha256"), (int, float)) and not isinstance(value.get("sha256"), bool):
            raise UserError(f"{key}.sha256: YAML read the hash as a number; put it in quotes")
        raw_pin = section.get("sha256", str, None)
        section.finish()
        sha256 = None if raw_pin is None else check_sha256(raw_pin, f"{key}.sha256")
    elif isinstance(value, str):
        url = value
    else:
        raise UserError(f"{key}: expected a path, a URL or {{url: ..., sha256: ...}}, got {type_name(value)}")
    if "://" in url and not url.startswith("file://"):
        if not is_remote(url):
            raise UserError(f"{key}: expected a path, file://, s3:// or https:// URL; got {shown(url)}")
        check_url(url, key, sha256)
        resolved = url
    else:
        resolved = resolve_file(url, key, base_dir, must_exist, folder)
    if sha256 is not None:
        pins[resolved] = sha256
    return resolved


def input_out(url: str | None, pins: Mapping[str, str]) -> Any:
    """An input as ``to_dict`` writes it: the URL, or the mapping form when it is pinned."""
    return {"url": url, "sha256": pins[url]} if url is not None and url in pins else url
