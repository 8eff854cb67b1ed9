"""php.ini and .user.ini: each setting with file:line and section, the value a
setting has in the file, and where a new setting goes.

    ini = parse(text, "/etc/php/8.2/fpm/php.ini")
    effective(ini, "max_execution_time")              # EffectiveValue('30', <line 409>, 'set')
    insertion_line(ini, None)                         # the line a new key goes after

As PHP reads it: a later assignment wins; section names other than [PATH=...] and
[HOST=...] only group lines (their settings apply everywhere); a [PATH=/dir] or
[HOST=name] section applies to that folder or host only, on top of the rest.
Within one file: the conf.d/*.ini files PHP reads after php.ini, and php-fpm's
php_admin_value, override it (the rules combine them).
"""

from __future__ import annotations

from dataclasses import dataclass

from opskit.stack.effective import EffectiveValue
from opskit.stack.ini import parse_lines

# PHP's built-in defaults (main/main.c) of the settings opskit reads and tunes.
DEFAULTS: dict[str, str] = {
    "max_execution_time": "30",
    "max_input_time": "-1",
    "memory_limit": "128M",
    "post_max_size": "8M",
    "upload_max_filesize": "2M",
    "default_socket_timeout": "60",
}
_SCOPED = ("PATH=", "HOST=")


@dataclass(frozen=True)
class IniDirective:
    key: str
    value: str
    file: str
    line: int
    section: str | None   # None: before any [section]


@dataclass(frozen=True)
class IniSection:
    name: str | None      # None: the lines before the first [section]
    line: int             # the [name] line (0 for the top)
    last_key_line: int    # its last key line (the header's line, or 0, if none)


@dataclass(frozen=True)
class PhpIni:
    file: str
    directives: tuple[IniDirective, ...]
    sections: tuple[IniSection, ...]   # the top first, then each header in order
    line_count: int

    def section(self, name: str | None) -> IniSection | None:
        wanted = name.lower() if name else None
        return next((s for s in self.sections if (s.name.lower() if s.name else None) == wanted), None)


def is_scoped(section: str | None) -> bool:
    """[PATH=...] and [HOST=...] apply to one folder or host; other sections apply everywhere."""
    return bool(section) and section.upper().startswith(_SCOPED)


def parse(text: str, file: str) -> PhpIni:
    directives: list[IniDirective] = []
    sections: list[list] = [[None, 0, 0]]
    lines = parse_lines(text)
    for line in lines:
        if line.kind == "section":
            sections.append([line.name, line.number, line.number])
        elif line.kind == "key":
            directives.append(IniDirective(line.name, line.value, file, line.number, sections[-1][0]))
            sections[-1][2] = line.number
    return PhpIni(file, tuple(directives), tuple(IniSection(*s) for s in sections), len(lines))


def effective(ini: PhpIni, key: str, section: str | None = None, default: str | None = None) -> EffectiveValue:
    """The value of `key` in this file: for a [PATH=]/[HOST=] `section`, set there or
    inherited from the unscoped settings; otherwise the last unscoped assignment."""
    def last(directives) -> IniDirective | None:
        found = [d for d in directives if d.key == key]
        return found[-1] if found else None

    unscoped = last(d for d in ini.directives if not is_scoped(d.section))
    if is_scoped(section):
        scoped = last(d for d in ini.directives if d.section is not None and d.section.lower() == section.lower())
        if scoped is not None:
            return EffectiveValue(scoped.value, scoped, "set")
        if unscoped is not None:
            return EffectiveValue(unscoped.value, unscoped, "inherited")
    elif unscoped is not None:
        return EffectiveValue(unscoped.value, unscoped, "set")
    return EffectiveValue(default if default is not None else DEFAULTS.get(key), None, "default")


def target_section(ini: PhpIni, section: str | None) -> IniSection | None:
    """Where a new key goes: the named section; by default the top of the file when
    it holds settings or there is no [section], else the first section."""
    if section is not None:
        return ini.section(section)
    top = ini.sections[0]
    return top if top.last_key_line or len(ini.sections) == 1 else ini.sections[1]


def insertion_line(ini: PhpIni, section: IniSection) -> int:
    """The line a new key of `section` goes after: its last key line; for a section
    without keys, its header; for a file without sections or keys, the last line."""
    if section.last_key_line:
        return section.last_key_line
    return section.line if section.name is not None else ini.line_count
