"""Lines of a config file, kept byte for byte (a CRLF file stays CRLF).

Only "\\n" ends a line: str.splitlines() would also split on form feeds and
other separators that config files may hold inside values.

    >>> split_lines("a\\r\\nb")
    ['a\\r\\n', 'b']
    >>> newline_of("a\\r\\nb\\r\\n")
    '\\r\\n'
"""

from __future__ import annotations


def split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its own ending; joining them gives `text` back."""
    lines = text.split("\n")
    kept = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        kept.append(lines[-1])
    return kept


def strip_ending(line: str) -> str:
    """The line without its "\\n" or "\\r\\n"."""
    if line.endswith("\n"):
        line = line[:-1]
    return line[:-1] if line.endswith("\r") else line


def newline_of(text: str) -> str:
    """The line ending a new line should use: the file's first one (LF when it has none)."""
    end = text.find("\n")
    return "\r\n" if end > 0 and text[end - 1] == "\r" else "\n"


def leading_space(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def insert_line(text: str, after: int, new_line: str) -> str:
    """`text` with `new_line` (no ending) inserted after line `after` (0: before the first),
    ended with the file's newline; a last line without one gets it first."""
    newline = newline_of(text)
    lines = split_lines(text)
    if after > len(lines):
        raise ValueError(f"line {after} is past the end ({len(lines)} lines)")
    if after and not lines[after - 1].endswith("\n"):
        lines[after - 1] += newline
    lines.insert(after, new_line + newline)
    return "".join(lines)
