"""Mask secret-looking values in diffs and config text before anyone sees them.

Pure: text in, text out. ``mask_secrets(diff)`` replaces each secret *value* with
``***`` and keeps everything around it (the key, the quotes, ``;``, ``,``, a comment,
the diff's ``-``/``+``/`` `` column, the line ending), so a diff stays readable and
every line without a secret comes back byte for byte::

    -define( 'DB_PASSWORD', 'old pass' );        -define( 'DB_PASSWORD', '***' );
    +define( 'DB_PASSWORD', 'n3w\\'pass' );   →   +define( 'DB_PASSWORD', '***' );
    +env[DB_PASSWORD] = hunter2                   +env[DB_PASSWORD] = ***

What counts as a secret, by the name the value is given to (case-insensitive):

* WordPress's keys and salts: ``AUTH_KEY``, ``SECURE_AUTH_KEY``, ``LOGGED_IN_KEY``,
  ``NONCE_KEY`` and every ``*_SALT``;
* any name containing ``password``, ``passwd``, ``passphrase``, ``secret``, ``token``,
  ``api_key`` (``apikey``, ``api-key``) or ``private_key`` (so ``DB_PASSWORD``,
  ``mysql.default_password``, ``$config['smtp_password']``, ``GITHUB_TOKEN``);
* exactly the names in ``extra_names`` (the inventory's ``secret_names``).

Where a name gives a value (each form also inside a diff line or after a hunk header's
``@@ ... @@``):

* ``define('NAME', 'value')`` — every string literal among the value's top-level tokens;
* ``'name' => 'value'`` and ``"name": "value"`` anywhere on a line (PHP arrays, JSON);
* at the start of a line: ``name = value``, ``name: value``, ``NAME=value``,
  ``export NAME=value``, ``$name = 'value';``, ``env[NAME] = value`` (php-fpm pools),
  ``- name: value`` (a YAML list item), also commented out (``#``, ``;``, ``//``);
* the directives ``fastcgi_param``/``uwsgi_param``/``scgi_param NAME value;`` (nginx) and
  ``SetEnv``/``php_value``/``php_admin_value NAME value`` (Apache).

Quote-aware: a quoted value ends at its closing quote, past backslash escapes and doubled
quotes (``'it''s'``); what follows it is kept. A value that is not one clean literal (an
unterminated quote, ``"abc"def``) and an unquoted value are masked to the end of the line
(minus trailing blanks and one ``;``): in doubt, hide more. Empty values stay empty. A value
is one line: the continuation of a multi-line value (a YAML block scalar) is not masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

WORDPRESS_KEYS = frozenset({"AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY"})
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "api_key", "apikey", "api-key", "private_key")

# A key at the start of a line (after a diff column, indentation, a YAML "- ", "export ").
_LEAD = r"[-+ ]?[ \t]*(?:(?:#+|;+|//)[ \t]*)?(?:-[ \t]+)?(?:export[ \t]+)?"   # a commented-out secret is one too
_KEY = r"(?P<kq>['\"]?)(?P<key>\$?[A-Za-z_][\w.\-]*(?:\[[^\]\r\n]*\])*)(?P=kq)"
_ASSIGNMENT = re.compile(_LEAD + _KEY + r"[ \t]*(?:=>|=(?!=)|:(?!:))[ \t]*")   # not == or ::
_DIRECTIVE = re.compile(
    _LEAD + r"(?i:fastcgi_param|uwsgi_param|scgi_param|setenv|php_value|php_admin_value)[ \t]+"
    r"(?P<kq>['\"]?)(?P<key>[\w.\-]+)(?P=kq)[ \t]+")
# Anywhere on a line: a quoted key, then => or :, then a quoted value.
_QUOTED_KEY = re.compile(r"(?P<q>['\"])(?P<key>[^'\"\\\r\n]{1,200})(?P=q)[ \t]*(?:=>|:)[ \t]*(?=['\"])")
_DEFINE = re.compile(r"\bdefine[ \t]*\([ \t]*(?P<q>['\"])(?P<key>[^'\"\\\r\n]{1,200})(?P=q)[ \t]*,[ \t]*", re.I)
# What may follow a clean quoted value: punctuation, a comment, or nothing.
_AFTER_LITERAL = re.compile(r"[ \t\r]*(?:[;,)\]}]|#|//|$)")


def _candidates(key: str) -> list[str]:
    """The names a key stands for: `$config['db_pass']` → $config['db_pass'], config['db_pass'], db_pass."""
    names = [key, key.lstrip("$")]
    names += [inner.strip("'\" \t") for inner in re.findall(r"\[([^\]]*)\]", key)]
    names.append(re.split(r"[\[]", key.lstrip("$"))[0].rsplit(".", 1)[-1])
    return [n for n in names if n]


def _is_secret(key: str, extra: frozenset[str]) -> bool:
    lower = key.lower()
    if any(word in lower for word in SECRET_WORDS):
        return True
    for name in _candidates(key):
        upper = name.upper()
        if upper in WORDPRESS_KEYS or upper.endswith("_SALT") or name.lower() in extra:
            return True
    return False


def _literal_end(line: str, start: int) -> int | None:
    """line[start] is a quote: the index just past its closing quote, or None (unterminated)."""
    quote = line[start]
    i = start + 1
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
        elif char == quote:
            if i + 1 < len(line) and line[i + 1] == quote:
                i += 2   # doubled quote: 'it''s' (YAML, SQL, sh concatenation)
            else:
                return i + 1
        else:
            i += 1
    return None


def _line_end(line: str) -> int:
    """End of the line's text: before the line ending and trailing blanks."""
    return len(line.rstrip(" \t\r\n"))


def _rest_span(line: str, start: int) -> tuple[int, int] | None:
    """An unquoted value (or one that is no clean literal): to the end of the line, keeping
    trailing blanks and one ';' (nginx, php)."""
    end = _line_end(line)
    if end > start and line[end - 1] == ";":
        end -= 1
    end = len(line[:end].rstrip(" \t"))
    return (start, end) if end > start else None


def _value_span(line: str, start: int) -> tuple[int, int] | None:
    """The secret part of the value that starts at `start` (quotes excluded)."""
    if start >= len(line) or line[start] in "\r\n":
        return None
    if line[start] in "'\"":
        end = _literal_end(line, start)
        if end is None:
            return _rest_span(line, start + 1)
        if not _AFTER_LITERAL.match(line, end):
            return _rest_span(line, start)
        return (start + 1, end - 1) if end - 1 > start + 1 else None
    return _rest_span(line, start)


def _define_spans(line: str, start: int) -> list[tuple[int, int]]:
    """The string literals at the top level of a define()'s value, up to its ')'."""
    spans = []
    depth = 0
    i = start
    while i < len(line):
        char = line[i]
        if char in "'\"":
            end = _literal_end(line, i)
            if end is None:
                rest = _rest_span(line, i + 1)
                return spans + ([rest] if rest and depth == 0 else [])
            if depth == 0 and end - 1 > i + 1:
                spans.append((i + 1, end - 1))
            i = end
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        elif char == ";" and depth == 0:
            break
        i += 1
    return spans


def _line_spans(line: str, extra: frozenset[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for match in _DEFINE.finditer(line):
        if _is_secret(match["key"], extra):
            spans += _define_spans(line, match.end())
    for match in _QUOTED_KEY.finditer(line):
        if _is_secret(match["key"], extra):
            span = _value_span(line, match.end())
            spans += [span] if span else []
    starts = [0]
    if line.startswith("@@"):
        close = line.find("@@", 2)
        if close > 0:
            starts = [close + 2]   # a hunk header's function context is a line of the file
    for pattern in (_ASSIGNMENT, _DIRECTIVE):
        for pos in starts:
            match = pattern.match(line, pos)
            if match and _is_secret(match["key"], extra):
                span = _value_span(line, match.end())
                spans += [span] if span else []
    return spans


def _apply(line: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return line
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, pos = [], 0
    for start, end in merged:
        out += [line[pos:start], MASK]
        pos = end
    out.append(line[pos:])
    return "".join(out)


def mask_secrets(text: str, extra_names: Iterable[str] = ()) -> str:
    """`text` (a unified diff, a config file) with every secret-looking value replaced by ***.

    Lines are split at \\n only (a \\r stays with its line; str.splitlines would also break
    at \\v, \\f and U+2028, which a config value may hold)."""
    extra = frozenset(name.lower() for name in extra_names if name)
    return "\n".join(_apply(line, _line_spans(line, extra)) for line in text.split("\n"))
