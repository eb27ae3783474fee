"""Strict YAML: PyYAML's safe loader with the limits a spec file needs (``base.schema.load_yaml``).

The text is scanned and parsed by libyaml (PyYAML's ``CParser``: ~10x the pure-Python
scanner, whose time a spec's load was: 8 ms for examples/digits.yaml, now under 1 ms) and
composed by PyYAML's Python composer, which is where the limits below are enforced, one node
at a time. libyaml's parser is a state machine, not recursive, and hands over one event at a
time, so a hostile text is refused at the first node past a limit, never parsed whole; its
own C composer is not used (it recurses once a level and overflows the C stack on ~100,000
nested brackets). Where PyYAML was built without libyaml, the pure-Python parser stands in.

Its own module so that PyYAML is imported only when YAML is read: the Python API builds
its spec from a dict and never pays for it.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from landscape_job.base.errors import UserError, shown

try:
    from yaml.cyaml import CParser as _Events  # libyaml: events only (see the module's docstring)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    class _Events(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        """The pure-Python reader, scanner and parser: the same events, slower."""

        def __init__(self, stream: Any):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)

#: Nodes in all (aliases expanded): a spec has a few hundred; the Python composer takes its time per node.
MAX_YAML_NODES = 5_000
#: Nesting deeper than this is no spec (the composer recurses once a level).
MAX_YAML_DEPTH = 64
#: Nodes that aliases may add in all (a "billion laughs" adds 10**9).
MAX_ALIAS_NODES = 10_000
#: Digits of an integer literal: a 64-bit value has 20; Python's int() refuses 4,300 with a traceback.
MAX_INT_DIGITS = 40


class StrictLoader(Composer, SafeConstructor, Resolver, _Events):
    """``yaml.SafeLoader``'s composer, constructor and resolver over libyaml's events, refusing what
    a spec never needs and an attack does.

    Duplicate keys (YAML says they are an error; PyYAML silently keeps the last), nesting
    beyond ``MAX_YAML_DEPTH``, aliases that would expand past ``MAX_ALIAS_NODES`` nodes,
    and integer literals of more than ``MAX_INT_DIGITS`` digits. Each is a
    ``yaml.constructor.ConstructorError`` with a mark, so the caller reports it as any
    other YAML mistake: one line with the line and column.
    """

    def __init__(self, stream: Any):
        _Events.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._alias_nodes = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            self._alias_nodes += self._size(node)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes", event.start_mark)
            return node
        self._depth += 1
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"more than {MAX_YAML_NODES:,} values; a spec is a page of YAML", self.peek_event().start_mark)
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.constructor.ConstructorError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _size(self, node: Any) -> int:
        """Nodes under ``node``, aliases expanded (memoised: the graph is a DAG)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._size(v) for v in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return size

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                k = self.construct_object(key_node, deep=True)
                try:
                    duplicate = k in seen
                    seen.add(k)
                except TypeError:
                    continue  # an unhashable key: the constructor names it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(k)} (YAML keeps only one; remove the other)",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> Any:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits; integers must lie within ±2**63", node.start_mark)
        return super().construct_yaml_int(node)


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)


def strict_load(text: str | bytes, source: str) -> Any:
    """The YAML value of ``text``, read by ``StrictLoader``; any mistake is one line naming ``source``."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - SafeLoader's constructor and resolver
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if problem == "found character that cannot start any token" and mark:  # libyaml's words: name it
            problem = f"found character {_char_at(text, mark.line, mark.column)!r} that cannot start any token"
        problem = problem if len(problem) <= 200 else problem[:197] + "..."
        raise UserError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UserError(f"{source}: not valid YAML: nested too deeply") from None


def _char_at(text: str | bytes, line: int, column: int) -> str:
    """The character at ``line``, ``column`` (0-based) of ``text``: a tab, mostly."""
    lines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).splitlines()
    return lines[line][column] if line < len(lines) and column < len(lines[line]) else "?"
