"""YAML loading that remembers where every value came from.

Validation errors must name the file, line and field, so loading keeps a map
from each value's path (a tuple of keys and list indexes) to its 1-based line.
Duplicate mapping keys are refused: YAML silently keeps the last one, which
hides typos in hand-written inventories.

Aliases and nesting are bounded while the document is composed: an alias is a
pointer, so a few lines of `&a [*b, *b, ...]` ("billion laughs") expand to
billions of values once anything walks them (our line map, pydantic, deepcopy),
and very deep nesting overflows Python's stack. Both are refused with file:line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opskit.errors import InputError

PathKey = tuple[Any, ...]

MAX_DEPTH = 64                 # nesting levels, counted through aliases; real inventories use < 10
MAX_ALIAS_NODES = 100_000      # values that aliases bring in, in total; a fleet of `<<: *defaults` stays far below


class _LimitError(Exception):
    def __init__(self, mark, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts what aliases expand to and how deep values nest.

    Each composed node's expanded size and height are known when it is complete, so an
    alias costs its target's size, and an alias to a node still being composed is a
    recursive structure (refused: nothing here can walk it).
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._stats: dict[int, tuple[int, int]] = {}   # id(node) → (expanded size, expanded height)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                stats = self._stats.get(id(target))
                if stats is None:
                    raise _LimitError(event.start_mark, f"alias *{event.anchor} refers to a value that contains it")
                size, height = stats
                self._alias_nodes += size
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise _LimitError(event.start_mark, f"aliases expand to more than {MAX_ALIAS_NODES} values "
                                      f"(at *{event.anchor}); write the values out or use fewer aliases")
                if self._depth + height > MAX_DEPTH:
                    raise _LimitError(event.start_mark, f"alias *{event.anchor} nests values more than "
                                      f"{MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)   # undefined aliases: PyYAML's own error
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(self.peek_event().start_mark, f"values nest more than {MAX_DEPTH} levels deep")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        child_stats = [self._stats[id(child)] for child in children]
        self._stats[id(node)] = (1 + sum(s for s, _ in child_stats), 1 + max((h for _, h in child_stats), default=0))
        return node


@dataclass
class Located:
    """A loaded YAML document plus the line of every value in it."""

    file: Path
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """Line of the deepest existing prefix of `path` (the field itself when it is there)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def where(self, path: PathKey) -> str:
        line = self.line_of(path)
        return f"{self.file}:{line}" if line else str(self.file)


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: Path) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise InputError(
                    f"{file}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first at line {seen[key]})"
                )
            seen[key] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, file)
            # a field's line is its key's, not its first child's (block mappings and lists)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, file)


def load(file: Path, what: str) -> Located:
    """Load one YAML file; errors say which file and line, never a traceback."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {file}: {exc}") from None
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _LimitError as exc:
        raise InputError(f"{file}:{exc.mark.line + 1}:{exc.mark.column + 1}: refused: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{file}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[PathKey, int] = {}
    if node is not None:
        _walk(node, (), lines, Path(file))
    return Located(Path(file), data, lines)


def describe_pydantic_error(located: Located, base: PathKey, error: dict) -> str:
    """One line for one pydantic error: file:line: field: message."""
    loc = tuple(error.get("loc", ()))
    path = base + loc
    field_name = ".".join(str(p) for p in path) or "(top level)"
    message = error.get("msg", "invalid")
    if error.get("type") == "extra_forbidden":
        message = "unknown field (check the spelling; see inventory.example.yaml)"
    return f"{located.where(path)}: {field_name}: {message}"
