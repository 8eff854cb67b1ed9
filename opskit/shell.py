"""The one way values reach a remote shell: quoted.

Every snippet opskit sends is our own text; anything that came from an
inventory, a playbook or a host (paths, names, URLs) goes through `quote` (or
`render`, which quotes every value it fills in). A test feeds these `;`,
`$()`, quotes and newlines.
"""

from __future__ import annotations

import re
import shlex
import string


def quote(value: object) -> str:
    """POSIX-sh single-quoted form of str(value); safe for any byte but NUL."""
    text = str(value)
    if "\x00" in text:
        raise ValueError("a NUL byte cannot be passed to a shell")
    return shlex.quote(text)


class _Quoting(string.Formatter):
    def format_field(self, value, format_spec):
        if format_spec == "raw":  # our own shell text (another rendered snippet), never user data
            return str(value)
        return quote(value)


def render(template: str, **values: object) -> str:
    """Fill `{name}` fields of a shell template, quoting every value.

    `{name:raw}` inserts a value unquoted; use it only for text opskit itself
    rendered (a nested snippet), never for data.
    """
    return _Quoting().format(template, **values)


SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]+$")


def token(value: str) -> str:
    """A value we generate ourselves (run id, step index) that must stay plain."""
    if not SAFE_TOKEN.fullmatch(value):
        raise ValueError(f"unsafe token {value!r}")
    return value
