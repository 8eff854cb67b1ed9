"""The one way values reach a remote shell: quoted.

Every snippet opskit sends is our own text; anything that came from an
inventory, a playbook or a host (paths, names, URLs) goes through `quote` (or
`render`, which quotes every value it fills in). A test feeds these `;`,
`$()`, quotes and newlines.
"""

from __future__ import annotations

import re
import secrets
import shlex
import string


# random per process: no text from a host or an inventory can carry it by accident
HOME_MARK = f"\x01home-{secrets.token_hex(8)}\x01"


class HomeUnknown(ValueError):
    """A path under the home was used in a way the host's shell cannot expand."""


class UnderHome(str):
    """A path under the login user's home, sent before opskit knows the home (the first exec
    of a read-only run): `quote` turns it into "$HOME"/'rest', which the host expands.
    Its text holds a mark, so a string made from it by hand is refused, not sent wrong."""

    rest: str

    def __new__(cls, rest: str) -> "UnderHome":
        self = super().__new__(cls, HOME_MARK + ("/" + rest if rest else ""))
        self.rest = rest
        return self


def quote(value: object) -> str:
    """POSIX-sh single-quoted form of str(value); safe for any byte but NUL."""
    if isinstance(value, UnderHome):
        return '"$HOME"' + ("/" + shlex.quote(value.rest) if value.rest else "")
    text = str(value)
    if "\x00" in text:
        raise ValueError("a NUL byte cannot be passed to a shell")
    if HOME_MARK in text:
        raise HomeUnknown(f"a path under the home was changed before quoting: {text!r}")
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
