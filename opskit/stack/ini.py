"""The line grammar of PHP's ini parser, which reads php.ini, .user.ini and php-fpm's
own config alike: `key = value`, `[section]`, `;` comments, quoted values, with
each value's place on its line so an edit keeps every other byte.

    >>> line = parse_line('max_execution_time = 30 ; seconds', 1)
    >>> line.kind, line.name, line.value, line.text[line.value_start:line.value_end]
    ('key', 'max_execution_time', '30', '30')

Limits: one assignment per line (PHP lets a double-quoted value run on over several
lines; such a value is read to the end of its first line); constants, ${VAR} and
the operators of error_reporting are kept as text, not evaluated. Lines starting
with '#' count as comments (PHP 7 stopped reading them as such, but they set nothing
anyone means).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opskit.stack.lines import insert_line, leading_space, split_lines, strip_ending


@dataclass(frozen=True)
class IniLine:
    number: int
    kind: str                 # "blank", "comment", "section", "key" or "other"
    text: str                 # the line without its ending
    name: str | None = None   # the section's name or the key ("php_admin_value[memory_limit]")
    value: str | None = None  # a key's value, quotes removed
    value_start: int = 0      # where the value's text (quotes included) starts and ends in `text`
    value_end: int = 0
    separator: str = ""       # between the key and the value: " = ", "="


def parse_line(text: str, number: int) -> IniLine:
    """One line (its ending, if any, is ignored)."""
    body = strip_ending(text)
    stripped = body.strip()
    if not stripped:
        return IniLine(number, "blank", body)
    if stripped[0] in ";#":
        return IniLine(number, "comment", body)
    if stripped.startswith("["):
        close = stripped.find("]")
        if close > 0:
            return IniLine(number, "section", body, stripped[1:close].strip())
        return IniLine(number, "other", body)
    equals = body.find("=")
    key = _normal_key(body[:equals]) if equals > 0 else ""
    if not key or ";" in key:
        return IniLine(number, "other", body)
    start = equals + 1
    while start < len(body) and body[start] in " \t":
        start += 1
    value, end = _value(body, start)
    separator = body[len(body[:equals].rstrip()):start]
    return IniLine(number, "key", body, key, value, start, end, separator)


def _normal_key(raw: str) -> str:
    """The key as PHP reads it: `php_admin_value [ memory_limit]` is php_admin_value[memory_limit]
    (PHP drops the spaces around '[', and keeps those before ']')."""
    return re.sub(r"\s*\[\s*", "[", raw.strip())


def _value(body: str, start: int) -> tuple[str, int]:
    """(value, end offset) of the value starting at `start`."""
    if body.startswith('"', start):
        end = start + 1
        while end < len(body) and body[end] != '"':
            end += 2 if body[end] == "\\" else 1
        end = min(end, len(body))
        return body[start + 1:end].replace('\\"', '"'), min(end + 1, len(body))
    if body.startswith("'", start):
        end = body.find("'", start + 1)
        end = len(body) if end < 0 else end
        return body[start + 1:end], min(end + 1, len(body))
    comment = body.find(";", start)
    end = len(body[:comment if comment >= 0 else len(body)].rstrip())
    end = max(end, start)
    return body[start:end], end


def parse_lines(text: str) -> list[IniLine]:
    return [parse_line(line, number) for number, line in enumerate(split_lines(text), 1)]


def quote_value(value: str, like_quoted: bool = False) -> str:
    """A value as it must be written: in double quotes when it holds ';' or '=' or
    starts or ends with a space (or when the old value was quoted). Operators such as
    E_ALL & ~E_NOTICE stay bare: quoting would make them a string."""
    if '"' in value or "\n" in value or "\r" in value:
        raise ValueError(f"a value with a double quote or a line break cannot be written: {value!r}")
    if like_quoted or any(char in value for char in ";=") or value != value.strip():
        return f'"{value}"'
    return value


def set_value(text: str, line: int, key: str, value: str) -> str:
    """`text` with the value of `key` on `line` replaced, every other byte kept
    (a double-quoted value stays quoted)."""
    lines = split_lines(text)
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is past the end ({len(lines)} lines)")
    parsed = parse_line(lines[line - 1], line)
    if parsed.kind != "key" or parsed.name != key:
        raise ValueError(f"line {line} does not set {key}")
    was_quoted = parsed.text.startswith('"', parsed.value_start)
    raw = lines[line - 1]
    lines[line - 1] = raw[:parsed.value_start] + quote_value(value, was_quoted) + raw[parsed.value_end:]
    return "".join(lines)


def add_key(text: str, after_line: int, key: str, value: str, like: int | None = None) -> str:
    """`text` with `key = value` on a new line after line `after_line` (0: first),
    written in the style (indentation, spacing around '=') of the key line `like`."""
    indent, separator = "", " = "
    if like:
        model = parse_line(split_lines(text)[like - 1], like)
        if model.kind == "key":
            indent, separator = leading_space(model.text), model.separator or "="
    return insert_line(text, after_line, f"{indent}{key}{separator}{quote_value(value)}")
