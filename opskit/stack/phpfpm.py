"""php-fpm's configuration: php-fpm.conf and the pool files it includes, read from
{path: text} (the probe cats them all in one exec), with each directive's file,
line and section, each pool's effective timeouts and limits, and php-fpm's time
syntax.

    config = parse({"/etc/php/8.2/fpm/php-fpm.conf": main_text,
                    "/etc/php/8.2/fpm/pool.d/www.conf": pool_text}, "/etc/php/8.2/fpm/php-fpm.conf")
    config.pools()                                                   # ('www',)
    effective(config, "www", "request_terminate_timeout")            # EffectiveValue('0', None, 'default')
    fpm_seconds("5m")                                                # 300

    tt = parse_tt(stderr_of_php_fpm_tt)                              # `php-fpm8.2 -tt`: effective values
    effective(tt, "www", "request_terminate_timeout").value          # '0s' (printed, defaults included)

As php-fpm does: `include=` expands a glob(3) pattern where it stands (a relative
path is relative to the prefix, /usr unless php-fpm runs with -p), the section
in force runs on through included files, and a later assignment in a pool wins.
Pools do not inherit from [global]. Edits: opskit.stack.ini.set_value/add_key on
a directive's line or after `FpmSection.last_key_line`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from opskit.stack import globs
from opskit.stack.effective import EffectiveValue
from opskit.stack.ini import parse_lines

GLOBAL = "global"
# php-fpm's defaults for what a pool leaves unset (listen and pm.max_children have none: they are required).
DEFAULTS: dict[str, str] = {
    "request_terminate_timeout": "0",
    "request_slowlog_timeout": "0",
    "pm.max_requests": "0",
}
# Keys whose value is a time (30s, 5m, 1h, 1d or plain seconds): "60" and "1m" are the same setting.
TIME_KEYS = frozenset({"request_terminate_timeout", "request_slowlog_timeout", "pm.process_idle_timeout",
                       "process_control_timeout", "emergency_restart_interval"})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class FpmDirective:
    key: str
    value: str
    file: str
    line: int
    section: str          # "global" or the pool's name


@dataclass(frozen=True)
class FpmSection:
    name: str
    file: str
    line: int             # the [name] line
    last_key_line: int    # its last key line in that file before the next header (the header's line if none)


@dataclass(frozen=True)
class FpmConfig:
    main: str
    directives: tuple[FpmDirective, ...]
    sections: tuple[FpmSection, ...]
    unresolved: tuple[FpmDirective, ...] = ()   # include= of a plain path that is not among the files

    def pools(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.name for s in self.sections if s.name != GLOBAL))

    def section(self, name: str) -> FpmSection | None:
        """The first [name] header."""
        return next((s for s in self.sections if s.name == name), None)


@dataclass(frozen=True)
class PoolSettings:
    """What a pool does about 502s; listen and slowlog with $pool expanded."""
    name: str
    listen: EffectiveValue
    pm_max_children: EffectiveValue
    request_terminate_timeout: EffectiveValue
    request_slowlog_timeout: EffectiveValue
    slowlog: EffectiveValue
    php_admin_values: dict[str, EffectiveValue] = field(default_factory=dict)   # {"max_execution_time": ...}
    php_values: dict[str, EffectiveValue] = field(default_factory=dict)


@dataclass
class _Reading:
    """The state of one parse: php-fpm's section in force carries across files."""
    files: Mapping[str, str]
    prefix: str
    section: str = GLOBAL
    directives: list[FpmDirective] = field(default_factory=list)
    sections: list[list] = field(default_factory=list)   # [name, file, line, last_key_line]
    unresolved: list[FpmDirective] = field(default_factory=list)


def parse(files: Mapping[str, str], main: str, prefix: str = "/usr") -> FpmConfig:
    """The configuration starting at `main`, includes taken from `files`."""
    if main not in files:
        raise ValueError(f"{main}: the main file is not among the files")
    reading = _Reading(files, prefix)
    _read(main, reading, including=())
    return FpmConfig(main, tuple(reading.directives), tuple(FpmSection(*s) for s in reading.sections),
                     tuple(reading.unresolved))


def _read(path: str, reading: _Reading, including: tuple[str, ...]) -> None:
    if path in including:
        raise ValueError("include loop: " + " -> ".join((*including, path)))
    header: list | None = None   # this file's last [section] line
    for line in parse_lines(reading.files[path]):
        if line.kind == "section":
            reading.section = line.name
            header = [line.name, path, line.number, line.number]
            reading.sections.append(header)
        elif line.kind == "key":
            directive = FpmDirective(line.name, line.value, path, line.number, reading.section)
            reading.directives.append(directive)
            if header is not None:
                header[3] = line.number
            if line.name == "include":
                _include(directive, reading, (*including, path))


def _include(directive: FpmDirective, reading: _Reading, including: tuple[str, ...]) -> None:
    pattern = directive.value if directive.value.startswith("/") else reading.prefix.rstrip("/") + "/" + directive.value
    targets = globs.expand(pattern, reading.files)
    if targets is None:
        reading.unresolved.append(directive)
    for target in targets or ():
        _read(target, reading, including)


def effective(config: FpmConfig, pool: str, key: str, default: str | None = None) -> EffectiveValue:
    """The value of `key` in `pool`: its last assignment there, else `default` (else DEFAULTS)."""
    found = [d for d in config.directives if d.section == pool and d.key == key]
    if found:
        return EffectiveValue(found[-1].value, found[-1], "set")
    return EffectiveValue(default if default is not None else DEFAULTS.get(key), None, "default")


def pool_settings(config: FpmConfig, pool: str) -> PoolSettings:
    def value(key: str) -> EffectiveValue:
        return effective(config, pool, key)

    def expanded(key: str) -> EffectiveValue:
        found = value(key)
        if found.value is None:
            return found
        return EffectiveValue(found.value.replace("$pool", pool), found.directive, found.source)

    return PoolSettings(pool, expanded("listen"), value("pm.max_children"), value("request_terminate_timeout"),
                        value("request_slowlog_timeout"), expanded("slowlog"),
                        _bracketed(config, pool, "php_admin_value"), _bracketed(config, pool, "php_value"))


def _bracketed(config: FpmConfig, pool: str, kind: str) -> dict[str, EffectiveValue]:
    """{"memory_limit": value} for the pool's kind[memory_limit] keys."""
    names = dict.fromkeys(d.key[len(kind) + 1:-1] for d in config.directives
                          if d.section == pool and d.key.startswith(kind + "[") and d.key.endswith("]"))
    return {name: effective(config, pool, f"{kind}[{name}]") for name in names}


def fpm_seconds(text: str) -> int | None:
    """php-fpm's time syntax in seconds: 30s, 5m, 1h, 1d or plain seconds; None if it is not one."""
    text = text.strip()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    return int(number) * _UNITS[unit] if number.isascii() and number.isdigit() else None


def same_value(key: str, a: str, b: str) -> bool:
    """Whether two values set `key` alike (for a time: 60 and 1m)."""
    if a.strip() == b.strip():
        return True
    if key in TIME_KEYS:
        seconds = fpm_seconds(a), fpm_seconds(b)
        return None not in seconds and seconds[0] == seconds[1]
    return False


# -- php-fpm -tt --------------------------------------------------------------------

TT_FILE = "php-fpm -tt"   # the `file` of the directives parse_tt returns: their line is the dump's line
_TT_LINE = re.compile(r"^(?:\[[^\]]*\] )?NOTICE: (.*)$")
_TT_SUCCESS = re.compile(r"configuration file (.+) test is successful")


def parse_tt(text: str) -> FpmConfig:
    """The effective configuration `php-fpm -tt` prints on stderr ("[date] NOTICE: [pool]",
    "[date] NOTICE: \tkey = value"), as an FpmConfig: every setting php-fpm resolved,
    defaults included, $pool expanded, each with the dump's line number and file TT_FILE,
    so effective() and pool_settings() read it as they read the files. php-fpm prints
    "undefined" for a setting left unset: such settings are left out (effective() then
    gives DEFAULTS, or None). Raises ValueError when the text is no -tt dump (php-fpm
    printed errors instead: see tt_succeeded)."""
    directives: list[FpmDirective] = []
    sections: list[list] = []
    for number, line in enumerate(text.split("\n"), 1):
        match = _TT_LINE.match(line.rstrip("\r"))
        if match is None:
            continue
        body = match.group(1)
        stripped = body.strip()
        if stripped.startswith("[") and stripped.endswith("]") and not body.startswith("\t"):
            sections.append([stripped[1:-1], TT_FILE, number, number])
        elif body.startswith("\t") and " = " in body and sections:
            key, _, value = body[1:].partition(" = ")
            sections[-1][3] = number
            if value != "undefined":
                directives.append(FpmDirective(key.strip(), value, TT_FILE, number, sections[-1][0]))
    if not any(section[0] == GLOBAL for section in sections):
        raise ValueError("no '[global]' NOTICE line: not the output of php-fpm -tt")
    return FpmConfig(TT_FILE, tuple(directives), tuple(FpmSection(*section) for section in sections))


def tt_succeeded(text: str) -> str | None:
    """The main file php-fpm -t/-tt tested, when it printed "test is successful"; else None."""
    match = _TT_SUCCESS.search(text)
    return match.group(1) if match else None
