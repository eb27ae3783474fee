"""How a spec is read: typed values out of YAML mappings, keys declared once on dataclass fields.

Two parsers read user YAML the same strict way — ``landscape_job.spec.sections`` (the surface spec)
and ``launcher.kubernetes.section`` (its ``kubernetes:`` section): every mistake is one
``UserError`` naming the key path, a typo gets a did-you-mean, and nothing unknown is
silently ignored. This module is that shared reading machinery, public so neither
parser reaches into the other's internals.

A key's type, choices, lower bound, description and default are declared once, on the
field of the typed record it fills (``batch_size: int = key(1024, kind=int, minimum=1)``).
``Section.read`` takes all of that from the declaration, so a default is never written a
second time in a parser, and ``object_schema`` turns the same declarations into JSON
Schema (``launcher schema``), so the editor's view of the spec cannot drift from the
parser's. Rules that involve several keys, or messages that need more than the generic
wording, stay small functions in the parsers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

from landscape_job.base.errors import UserError, UserErrors, shown


class _Required:
    """The default of a key the user must give; distinct from every value YAML can hold."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

#: How a YAML value's type is named in messages ("expected an integer, got a string 'four'").
KIND_NAMES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
              int: "an integer", float: "a number", type(None): "null",
              object: "a string"}

#: The JSON Schema type of each Python kind a key may declare.
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}

_METADATA = "landscape.key"


def type_name(value: object) -> str:
    """The value's type as a message names it: ``a mapping``, ``an integer``, ``null``."""
    return KIND_NAMES.get(type(value), type(value).__name__)


#: The largest value of an integer key that declares none: 2**31 - 1, what a C ``int`` holds
#: (counts and sizes beyond it overflow inside torch, numpy or h5py after the compute began).
MAX_INTEGER = 2**31 - 1


def _maximum(spec: "Key") -> int:
    return spec.maximum if spec.maximum is not None else MAX_INTEGER


@dataclass(frozen=True)
class Key:
    """What a spec key accepts, declared on the record field it fills.

    ``kind``: the Python type(s) YAML must give (a float key also takes an integer, no key
    takes a boolean it did not ask for). ``choices``: the strings allowed. ``minimum``: the
    smallest integer. ``positive``: a number that must be above 0. ``auto``: the string
    ``auto`` is allowed besides ``kind`` (``int``: a positive integer; ``bool``: true/false).
    ``json``: the whole JSON Schema of a key its parser reads by hand (paths, lists, forms
    the generic readers do not cover); it replaces the one derived from the other fields.
    ``computed``: for a field the record always holds but the user may leave out, what the
    parser fills in then (the spec file's name, ``./runs``); the key is optional in JSON Schema.
    """

    kind: type | tuple[type, ...] = str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    positive: bool = False
    auto: bool = False
    description: str = ""
    #: The largest integer: every integer key has one (default ``MAX_INTEGER``), so that no
    #: value validate accepts overflows a C integer in torch, numpy or h5py after the compute.
    maximum: int | None = None
    json: Mapping[str, Any] | None = None
    computed: str = ""


def key(default: Any = REQUIRED, *, default_factory: Any = None, kind: type | tuple[type, ...] = str,
        choices: tuple[str, ...] = (), minimum: int | None = None, positive: bool = False, auto: bool = False,
        description: str = "", json: Mapping[str, Any] | None = None, computed: str = "",
        maximum: int | None = None) -> Any:
    """A dataclass field that is also a spec key: its default is the key's default, once."""
    metadata = {_METADATA: Key(kind=kind, choices=choices, minimum=minimum, positive=positive, auto=auto,
                               description=description, json=json, computed=computed, maximum=maximum)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field(record: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(record):
        if f.name == name:
            return f
    raise KeyError(f"{record.__name__} has no field {name!r}")


def declared(record: type, name: str) -> Key:
    """The declaration of ``record``'s key ``name``."""
    found = _field(record, name).metadata.get(_METADATA)
    if found is None:
        raise KeyError(f"{record.__name__}.{name} is not declared with schema.key()")
    return found


def default_of(record: type, name: str) -> Any:
    """The default the record's field declares (a fresh one from a factory), or ``REQUIRED``."""
    f = _field(record, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def declared_keys(record: type) -> list[str]:
    """The record's fields that are spec keys, in declaration order."""
    return [f.name for f in dataclasses.fields(record) if _METADATA in f.metadata]


# --------------------------------------------------------------------------------------
# Reading YAML text: bounded, strict
# --------------------------------------------------------------------------------------

#: A spec is a page of YAML; anything far larger is a mistake (or an attack), refused before parsing.
MAX_YAML_BYTES = 256 << 10


def load_yaml(text: str | bytes, source: str) -> Any:
    """The YAML value of ``text``, read by ``base.strict_yaml.StrictLoader``; any mistake is one line naming
    ``source``. PyYAML is imported here, on first use: a spec given as a dict (the Python API) needs none."""
    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"{source}: {len(text):,} bytes is more than the {MAX_YAML_BYTES:,} a spec may have")
    from landscape_job.base.strict_yaml import strict_load

    return strict_load(text, source)


#: The integers every key takes: what a 64-bit seed or count holds (torch, numpy and HDF5 take no more).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def checked_number(value: Any, where: str) -> Any:
    """``value`` itself; a number must be finite and an integer fit 64 bits (one line naming ``where``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        raise UserError(f"{where}: {shown(value)} is out of range; integers must lie within ±2**63")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value}")
    return value


class Section:
    """A mapping in the spec being read: hands out typed values and rejects unknown keys.

    Every key read is remembered, so ``finish`` can name the first key nobody asked for
    and suggest the nearest one that was.
    """

    def __init__(self, raw: object, path: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping, got {type_name(raw)}")
        self.raw: dict[str, Any] = raw
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = REQUIRED) -> Any:
        """The value of ``name`` if it has one of ``kind``'s types; null or absent: ``default``."""
        self.seen.add(name)
        value = self.raw.get(name)
        if value is None:
            if default is REQUIRED:
                raise UserError(f"{self.key(name)}: required key is missing")
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # YAML's 1 is an int; accept it where a float is asked for, but never a bool.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise UserError(f"{self.key(name)}: expected {KIND_NAMES[kinds[0]]}, got a boolean")
        if not isinstance(value, kinds):
            raise UserError(f"{self.key(name)}: expected {KIND_NAMES[kinds[0]]}, got {type_name(value)} {shown(value)}")
        return checked_number(value, self.key(name))

    def choice(self, name: str, choices: tuple[str, ...], default: Any = REQUIRED) -> Any:
        value = self.get(name, str, default)
        if value is not None and value not in choices:
            raise UserError(f"{self.key(name)}: expected one of {', '.join(choices)}; got {shown(value)}")
        return value

    def integer(self, name: str, default: Any = REQUIRED, minimum: int | None = None,
                maximum: int | None = MAX_INTEGER) -> Any:
        value = self.get(name, int, default)
        if value is not None and minimum is not None and value < minimum:
            raise UserError(f"{self.key(name)}: must be at least {minimum}, got {shown(value)}")
        if value is not None and maximum is not None and value > maximum:
            raise UserError(f"{self.key(name)}: must be at most {maximum:,}, got {shown(value)}")
        return value

    def positive(self, name: str, default: Any = REQUIRED) -> Any:
        value = self.get(name, float, default)
        if value is not None and value <= 0:
            raise UserError(f"{self.key(name)}: must be positive, got {value}")
        return value

    def auto_or(self, name: str, kind: type, default: Any = "auto", maximum: int | None = MAX_INTEGER) -> Any:
        """``auto``, or a value of ``kind``: a positive integer (``int``, at most ``maximum``) or true/false."""
        self.seen.add(name)
        value = default if self.raw.get(name) is None else self.raw[name]
        if kind is int and isinstance(value, int) and not isinstance(value, bool) and maximum is not None \
                and value > maximum:
            raise UserError(f"{self.key(name)}: must be at most {maximum:,}, got {shown(value)}")
        if value == "auto" or (isinstance(value, bool) if kind is bool else
                               isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        wanted = "auto, true or false" if kind is bool else "auto or a positive integer"
        raise UserError(f"{self.key(name)}: expected {wanted}, got {type_name(value)} {shown(value)}")

    def read(self, record: type, name: str) -> Any:
        """The value of ``record``'s key ``name``, checked and defaulted as the field declares."""
        spec, default = declared(record, name), default_of(record, name)
        if spec.auto:
            return self.auto_or(name, spec.kind, default, _maximum(spec))  # type: ignore[arg-type]
        if spec.choices:
            return self.choice(name, spec.choices, default)
        if spec.kind is int:
            return self.integer(name, default, spec.minimum, _maximum(spec))
        if spec.positive:
            return self.positive(name, default)
        return self.get(name, spec.kind, default)

    def read_all(self, record: type, names: tuple[str, ...] | None = None) -> dict[str, Any]:
        """``read`` of each of ``names`` (default: every declared key), in that order; every
        wrong key is named (``UserErrors``), not only the first."""
        values, errors = {}, []
        for name in names or declared_keys(record):
            try:
                values[name] = self.read(record, name)
            except UserError as err:
                errors.append(err)
        UserErrors.raise_if_any(errors)
        return values

    def section(self, record: type, name: str) -> "Section":
        """The nested mapping of ``record``'s key ``name``: absent or null is empty (all its
        defaults), unless the field has no default, when it is a required key."""
        required = default_of(record, name) is REQUIRED
        return Section(self.get(name, dict, REQUIRED if required else {}), self.key(name))

    #: Unknown keys of one section named one a line, at most this many (a pasted blob has thousands).
    MAX_UNKNOWN = 10

    def finish(self) -> None:
        """Refuses the keys nobody asked for, each on its own line with the nearest known key."""
        unknown = [k for k in self.raw if k not in self.seen]
        errors = []
        for name in unknown[:self.MAX_UNKNOWN]:
            hint = difflib.get_close_matches(str(name), sorted(self.seen), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; expected one of {', '.join(sorted(self.seen))}"
            text = str(name) if isinstance(name, str) and str(name).isprintable() else shown(name)
            where = self.key(text)
            where = where if len(where) <= 80 else where[:77] + "..."
            errors.append(UserError(f"{where}: unknown key{suggestion}"))
        if len(unknown) > self.MAX_UNKNOWN:
            errors.append(UserError(f"{self.path or 'spec'}: {len(unknown) - self.MAX_UNKNOWN} more unknown keys"))
        UserErrors.raise_if_any(errors)


# --------------------------------------------------------------------------------------
# JSON Schema (draft 2020-12) from the same declarations
# --------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Null stands for "absent" (the default) in every key that has one."""
    if "enum" in schema:
        schema = {k: v for k, v in schema.items() if k != "type"}
        return {**schema, "enum": [*schema["enum"], None]}
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def one_or_list(item: Mapping[str, Any], choices: bool = True) -> dict[str, Any]:
    """The JSON Schema of a key that takes one item or a list of them (``splits: train``);
    a list of ``choices`` names at least one, each once."""
    items: dict[str, Any] = {"type": "array", "items": dict(item)}
    return {"anyOf": [dict(item), {**items, "minItems": 1, "uniqueItems": True} if choices else items]}


def key_schema(spec: Key) -> dict[str, Any]:
    """The JSON Schema of one declared key's value (without null and default)."""
    if spec.json is not None:
        return dict(spec.json)
    if dataclasses.is_dataclass(spec.kind):
        return object_schema(spec.kind)  # type: ignore[arg-type]
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    types = [_JSON_TYPES[k] for k in kinds]
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if spec.choices:
        schema["enum"] = list(spec.choices)
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if int in kinds and not spec.auto:
        schema["maximum"] = _maximum(spec)
    if spec.positive:
        schema["exclusiveMinimum"] = 0
    if spec.auto:
        value = {"type": "boolean"} if bool in kinds else {"type": "integer", "minimum": 1,
                                                           "maximum": _maximum(spec)}
        schema = {"anyOf": [{"const": "auto"}, value]}
    return schema


def object_schema(record: type, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                  description: str = "") -> dict[str, Any]:
    """The JSON Schema of a record's mapping: its declared keys, nothing else.

    A key with a default also takes null (the parsers read null as absent) and carries
    its default, which editors show; ``overrides`` replace the schema of named keys whose
    form is decided outside the record (``kubernetes``, ``storage``).
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name in declared_keys(record):
        spec, default = declared(record, name), default_of(record, name)
        schema = dict((overrides or {}).get(name) or key_schema(spec))
        if default is REQUIRED and not spec.computed:
            required.append(name)
        else:
            schema = _nullable(schema)
            if default is not REQUIRED and not dataclasses.is_dataclass(default):
                schema["default"] = _jsonable(default)
        words = "; ".join(w for w in (spec.description, spec.computed and f"default: {spec.computed}") if w)
        if words:
            schema = {"description": words, **schema}
        properties[name] = schema
    result: dict[str, Any] = {"type": "object"}
    if description:
        result["description"] = description
    result["properties"] = properties
    if required:
        result["required"] = required
    result["additionalProperties"] = False
    return result
