"""YAML loading that remembers where every value came from.

Validation errors must name the file, line and field, so loading keeps a map
from each value's path (a tuple of keys and list indexes) to its 1-based line.
Duplicate mapping keys are refused: YAML silently keeps the last one, which
hides typos in hand-written inventories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opskit.errors import InputError

PathKey = tuple[Any, ...]


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
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{file}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML: {exc}") from None
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
