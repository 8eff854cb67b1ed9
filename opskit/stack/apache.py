"""Apache httpd 2.4's configuration read from {path: text}: its directives with file,
line and the sections around them, the timeouts a virtual host really has, and which
PHP (php-fpm over mod_proxy_fcgi, mod_php, mod_fcgid) it hands .php files to.

    config = parse_files(files, "/etc/apache2/apache2.conf", variables=envvars)
    value = effective(config, "site1.example.test", "ProxyTimeout")
    value.value, value.source, value.directive.file, value.directive.line
    # ('120', 'set', '/etc/apache2/sites-enabled/site1.conf', 8)
    value.directive.block_path          # 'VirtualHost *:80'
    [(h.kind, h.target) for h in php_handlers(config, "site1.example.test")]
    # [('proxy_fcgi', 'unix:/run/php/php8.2-fpm.sock'),        Debian's conf-enabled/php8.2-fpm.conf
    #  ('proxy_fcgi', 'unix:/run/php/php8.2-fpm-site1.sock')]  the vhost's own, merged later: it wins

As Apache reads it: directive names are case-insensitive; a line ending in a
backslash goes on on the next; `#` starts a comment only at the start of a line;
`Include`/`IncludeOptional` read a file, every file of a folder (and its subfolders),
or a glob(3) pattern (sorted, a leading dot matched only by a dot) where they stand,
a relative path being relative to ServerRoot (the main file's folder unless set);
`${VAR}` comes from `Define` and the `variables` given (Debian's /etc/apache2/envvars).

What `effective` counts: the last setting in the virtual host, else at the server level
(outside any VirtualHost), else the default; inside <IfModule> only when the module is
loaded (LoadModule lines, plus the modules built into Debian's apache2), inside
<IfDefine> when the name is defined; never inside <Directory>, <Location>, <Files>,
<If> and their kin (the timeouts are server and virtual-host settings). A virtual host
is found by ServerName/ServerAlias (exact, case-insensitive; addresses and ports are
not compared), else the first one, as Apache's default for its address.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Mapping

from opskit.stack import globs
from opskit.stack.effective import EffectiveValue
from opskit.stack.lines import leading_space, newline_of, split_lines, strip_ending

# Apache's documented defaults (ProxyTimeout: unset means Timeout's value).
DEFAULTS: dict[str, str] = {
    "timeout": "60",
    "fcgidiotimeout": "40",
    "fcgidbusytimeout": "300",
    "keepalivetimeout": "5",
}
# Built into Debian 12's apache2 (`apache2 -l`): <IfModule> of these is always true.
BUILT_IN = frozenset({"core.c", "mod_so.c", "mod_watchdog.c", "http_core.c", "mod_log_config.c", "mod_logio.c",
                      "mod_version.c", "mod_unixd.c"})
# A module's <IfModule foo.c> name is its source file, not its .so: where the two differ.
_SOURCE_NAMES = {"php_module": "mod_php.c", "php7_module": "mod_php7.c", "php5_module": "mod_php5.c"}
# Sections whose directives apply to some requests only: not counted by effective().
_PER_REQUEST = frozenset({"directory", "directorymatch", "location", "locationmatch", "files", "filesmatch",
                          "if", "elseif", "else", "proxy", "proxymatch", "limit", "limitexcept"})
_CONDITIONAL = frozenset({"ifmodule", "ifdefine", "ifversion", "ifdirective", "iffile", "ifsection"})
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class ApacheConfigError(ValueError):
    """What Apache would refuse: an unclosed or stray section, an include loop or a missing Include."""

    def __init__(self, reason: str, file: str, line: int | None = None):
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")
        self.reason, self.file, self.line = reason, file, line


@dataclass(frozen=True)
class Section:
    name: str                  # as written: "VirtualHost", "IfModule"
    args: tuple[str, ...]
    file: str
    line: int

    @property
    def label(self) -> str:
        return " ".join((self.name, *self.args))


@dataclass(frozen=True)
class ApacheDirective:
    name: str                          # as written ("ProxyTimeout"); compare with .key
    args: tuple[str, ...]              # quotes removed, ${VAR} expanded
    file: str
    line: int
    block: tuple[Section, ...] = ()    # the sections around it, outermost first

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def value(self) -> str:
        return " ".join(self.args)

    @property
    def block_path(self) -> str:
        return " > ".join(section.label for section in self.block)

    def to_json(self) -> dict:
        return {"name": self.name, "args": list(self.args), "file": self.file, "line": self.line,
                "block": self.block_path}


@dataclass(frozen=True)
class ApacheConfig:
    main: str
    server_root: str
    directives: tuple[ApacheDirective, ...]
    files_read: tuple[str, ...]                       # in the order Apache reads them
    unresolved: tuple[ApacheDirective, ...] = ()      # IncludeOptional of a plain path not among the files
    defines: frozenset[str] = frozenset()

    def loaded_modules(self) -> frozenset[str] | None:
        """The module ids and source names LoadModule names ("proxy_module", "mod_proxy.c"),
        with Debian's built-in ones; None when no LoadModule was read (unknown)."""
        loads = [d for d in self.directives if d.key == "loadmodule" and len(d.args) == 2]
        if not loads:
            return None
        names = set(BUILT_IN)
        for d in loads:
            names.add(d.args[0])
            names.add(_SOURCE_NAMES.get(d.args[0], posixpath.basename(d.args[1]).removesuffix(".so") + ".c"))
        return frozenset(names)

    def virtual_hosts(self) -> tuple[Section, ...]:
        hosts = dict.fromkeys(s for d in self.directives for s in d.block if s.name.lower() == "virtualhost")
        return tuple(hosts)


@dataclass(frozen=True)
class PhpHandler:
    """Where Apache sends .php files."""
    kind: str                 # "proxy_fcgi" (php-fpm), "mod_php", "fcgid"
    target: str | None        # "unix:/run/php/php8.2-fpm.sock", "127.0.0.1:9000"; None for mod_php/fcgid
    directive: ApacheDirective

    def to_json(self) -> dict:
        return {"kind": self.kind, "target": self.target, "directive": self.directive.to_json()}


# -- reading -------------------------------------------------------------------------

@dataclass
class _Reading:
    files: Mapping[str, str]
    server_root: str
    variables: dict[str, str]
    directives: list[ApacheDirective] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    unresolved: list[ApacheDirective] = field(default_factory=list)
    defines: set[str] = field(default_factory=set)


def parse_files(files: Mapping[str, str], main: str, server_root: str | None = None,
                variables: Mapping[str, str] | None = None, defines: frozenset[str] = frozenset()) -> ApacheConfig:
    """The configuration starting at `main`, its includes taken from `files`. `server_root`:
    Apache's -d (default: the main file's folder; a ServerRoot directive changes it);
    `variables`: ${VAR} values from the environment (e.g. parse_envvars(envvars_text));
    `defines`: the -D names Apache was started with."""
    if main not in files:
        raise ApacheConfigError("the main file is not among the files", main)
    reading = _Reading(files, server_root or posixpath.dirname(main), dict(variables or {}), defines=set(defines))
    _read(main, reading, (), ())
    return ApacheConfig(main, reading.server_root, tuple(reading.directives), tuple(reading.files_read),
                        tuple(reading.unresolved), frozenset(reading.defines))


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(number of the first line, text) of each line, backslash continuations joined,
    comments and blank lines left out."""
    joined: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not pending:
            start = number
            if line.strip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        if line.strip():
            joined.append((start, line.strip()))
    if pending.strip():
        joined.append((start, pending.strip()))
    return joined


def split_args(text: str) -> tuple[str, ...]:
    """Apache's word splitting (ap_getword_conf): spaces separate, "..." and '...' quote,
    a backslash escapes the quote inside them."""
    words: list[str] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        quote = text[position] if text[position] in "\"'" else None
        if quote:
            end, word = position + 1, []
            while end < len(text) and text[end] != quote:
                if text[end] == "\\" and end + 1 < len(text) and text[end + 1] == quote:
                    end += 1
                word.append(text[end])
                end += 1
            words.append("".join(word))
            position = end + 1
        else:
            end = position
            while end < len(text) and not text[end].isspace():
                end += 1
            words.append(text[position:end])
            position = end
    return tuple(words)


def _expand(text: str, reading: _Reading) -> str:
    # an undefined ${VAR} stays as written, as Apache leaves it (with a warning)
    return _VARIABLE.sub(lambda m: reading.variables.get(m.group(1), m.group(0)), text)


def _read(path: str, reading: _Reading, including: tuple[str, ...], block: tuple[Section, ...]) -> None:
    if path in including:
        raise ApacheConfigError("include loop: " + " -> ".join((*including, path)), path)
    reading.files_read.append(path)
    stack = list(block)
    for number, line in logical_lines(reading.files[path]):
        if line.startswith("</"):
            name = line[2:].rstrip(">").strip()
            if len(stack) == len(block) or stack[-1].name.lower() != name.lower():
                raise ApacheConfigError(f"</{name}> without matching <{name}> section", path, number)
            stack.pop()
            continue
        if line.startswith("<"):
            body = line[1:-1] if line.endswith(">") else line[1:]
            words = split_args(_expand(body, reading))
            if not words:
                raise ApacheConfigError("empty section", path, number)
            stack.append(Section(words[0], words[1:], path, number))
            continue
        words = split_args(_expand(line, reading))
        directive = ApacheDirective(words[0], words[1:], path, number, tuple(stack))
        reading.directives.append(directive)
        _apply(directive, reading, (*including, path))
    if len(stack) > len(block):
        raise ApacheConfigError(f"<{stack[-1].name}> was not closed", path, stack[-1].line)


def _apply(directive: ApacheDirective, reading: _Reading, including: tuple[str, ...]) -> None:
    """What a directive changes for the rest of the reading."""
    key = directive.key
    if key == "serverroot" and directive.args:
        reading.server_root = directive.args[0]
    elif key == "define" and directive.args:
        reading.defines.add(directive.args[0])
        if len(directive.args) > 1:
            reading.variables[directive.args[0]] = directive.args[1]
    elif key in ("include", "includeoptional") and directive.args:
        for target in _include_targets(directive, reading):
            _read(target, reading, including, directive.block)


def _include_targets(directive: ApacheDirective, reading: _Reading) -> list[str]:
    pattern = directive.args[0]
    full = posixpath.normpath(pattern if pattern.startswith("/") else posixpath.join(reading.server_root, pattern))
    optional = directive.key == "includeoptional"
    if globs.has_magic(full):
        found = globs.expand(full, reading.files) or []
        if not found and not optional:
            raise ApacheConfigError(f"Include {pattern}: no file matches", directive.file, directive.line)
        return found
    if full in reading.files:
        return [full]
    inside = sorted((p for p in reading.files if p.startswith(full + "/")), key=lambda p: p.encode())
    if inside:   # a folder: every file in it and below it
        return inside
    if not optional:
        raise ApacheConfigError(f"Include {pattern}: not among the files", directive.file, directive.line)
    reading.unresolved.append(directive)
    return []


def parse_envvars(text: str) -> dict[str, str]:
    """The `export NAME=value` lines of Debian's /etc/apache2/envvars (no suffix: the
    main instance), $SUFFIX and other shell expansions dropped."""
    variables: dict[str, str] = {}
    for line in text.split("\n"):
        match = re.match(r"\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)", line)
        if match:
            value = match.group(2).strip("'\"").replace("$SUFFIX", "").replace("${SUFFIX}", "")
            variables[match.group(1)] = value
    return variables


# -- what applies to a virtual host --------------------------------------------------

def find_virtual_host(config: ApacheConfig, server_name: str) -> Section | None:
    """The <VirtualHost> naming `server_name` in ServerName/ServerAlias, else the first one."""
    wanted = server_name.lower()
    hosts = config.virtual_hosts()
    for host in hosts:
        for d in config.directives:
            if d.block and host in d.block and d.key in ("servername", "serveralias") and _applies(config, d, host):
                names = [arg.lower().split(":")[0] for arg in d.args]
                if wanted in names:
                    return host
    return hosts[0] if hosts else None


def _applies(config: ApacheConfig, directive: ApacheDirective, host: Section | None) -> bool:
    """Whether `directive` is a setting of `host` (None: the server level): its sections are
    `host` itself and conditions that hold, nothing per-request."""
    sections = list(directive.block)
    if host is None:
        if any(s.name.lower() == "virtualhost" for s in sections):
            return False
    else:
        if host not in sections:
            return False
        sections = sections[sections.index(host) + 1:]
    return all(_condition_holds(config, s) for s in sections)


def _condition_holds(config: ApacheConfig, section: Section) -> bool:
    kind = section.name.lower()
    if kind in _PER_REQUEST or kind == "virtualhost" or kind not in _CONDITIONAL:
        return False
    argument = section.args[0] if section.args else ""
    negated = argument.startswith("!")
    name = argument[1:] if negated else argument
    if kind == "ifmodule":
        modules = config.loaded_modules()
        if modules is None:
            return True   # unknown: counted, as the config reads
        return (name in modules) != negated
    if kind == "ifdefine":
        return (name in config.defines) != negated
    return True   # IfVersion, IfDirective, IfFile, IfSection: assumed to hold


def effective(config: ApacheConfig, server_name: str | None, name: str, default: str | None = None) -> EffectiveValue:
    """The value of `name` for requests to `server_name` (None: the server level).
    ProxyTimeout left unset takes Timeout's value (that EffectiveValue, as it is)."""
    key = name.lower()
    host = find_virtual_host(config, server_name) if server_name is not None else None
    levels = ((host, "set"), (None, "inherited")) if host is not None else ((None, "set"),)
    for level, source in levels:
        found = [d for d in config.directives if d.key == key and d.args and _applies(config, d, level)]
        if found:
            return EffectiveValue(found[-1].value, found[-1], source)
    if key == "proxytimeout" and default is None:
        return effective(config, server_name, "Timeout")
    return EffectiveValue(default if default is not None else DEFAULTS.get(key), None, "default")


def seconds(value: str | None) -> float | None:
    """Apache's timeouts in seconds: a number of seconds, or with "ms" (Timeout 500ms) or "s"."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s)?\s*", value)
    if match is None:
        return None
    return int(match.group(1)) / 1000 if match.group(2) == "ms" else float(match.group(1))


# -- which PHP ------------------------------------------------------------------------

_PROXY_TARGET = re.compile(r"^(?:proxy:)?(?:unix:(?P<socket>[^|]+)\|)?fcgi://(?P<host>[^/]*)")


def proxy_target(url: str) -> str | None:
    """"proxy:unix:/run/php/x.sock|fcgi://localhost" → "unix:/run/php/x.sock";
    "proxy:fcgi://127.0.0.1:9000" or "fcgi://127.0.0.1:9000/var/www/$1" → "127.0.0.1:9000"."""
    match = _PROXY_TARGET.match(url)
    if match is None:
        return None
    return f"unix:{match['socket']}" if match["socket"] else match["host"]


def php_handlers(config: ApacheConfig, server_name: str | None) -> tuple[PhpHandler, ...]:
    """The handlers that could run .php files for `server_name`, in config order: SetHandler
    and ProxyPass/ProxyPassMatch to fcgi:// (php-fpm through mod_proxy_fcgi), SetHandler or
    AddHandler application/x-httpd-php (mod_php), FcgidWrapper (mod_fcgid). Per-request
    sections (FilesMatch, Directory) are where these live, so they count here; unmet
    <IfModule>/<IfDefine> conditions do not."""
    host = find_virtual_host(config, server_name) if server_name is not None else None
    handlers: list[PhpHandler] = []
    for d in config.directives:
        if not d.args or not _in_scope(config, d, host):
            continue
        if d.key == "sethandler" and "fcgi://" in d.args[0]:
            handlers.append(PhpHandler("proxy_fcgi", proxy_target(d.args[0]), d))
        elif d.key in ("proxypass", "proxypassmatch") and len(d.args) > 1 and "fcgi://" in d.args[1]:
            handlers.append(PhpHandler("proxy_fcgi", proxy_target(d.args[1]), d))
        elif d.key in ("sethandler", "addhandler") and d.args[0] == "application/x-httpd-php":
            handlers.append(PhpHandler("mod_php", None, d))
        elif d.key == "fcgidwrapper":
            handlers.append(PhpHandler("fcgid", None, d))
    return tuple(handlers)


def _in_scope(config: ApacheConfig, directive: ApacheDirective, host: Section | None) -> bool:
    """In `host` or at the server level, every condition around it holding; per-request sections allowed."""
    sections = list(directive.block)
    hosts = [s for s in sections if s.name.lower() == "virtualhost"]
    if hosts and hosts[0] != host:
        return False
    for section in sections:
        kind = section.name.lower()
        if kind in _CONDITIONAL and not _condition_holds(config, section):
            return False
    return True


# -- editing a directive, keeping every other byte -------------------------------------------

def format_args(args: tuple[str, ...] | list[str]) -> str:
    """Arguments as Apache reads them back: a word with a space or a quote is double-quoted."""
    out = []
    for arg in args:
        if not arg or any(c.isspace() or c in "\"'" for c in arg):
            arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(arg)
    return " ".join(out)


def set_directive(text: str, line: int, name: str, args: tuple[str, ...] | list[str]) -> str:
    """`text` with the directive on `line` (1-based) given `args`: its indentation, its name as
    written and its line ending kept, every other line untouched. A directive continued over
    several lines (a trailing backslash) is refused (ValueError): opskit does not re-flow it."""
    lines = split_lines(text)
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is past the end of the file")
    raw = lines[line - 1]
    body = strip_ending(raw)
    if body.rstrip().endswith("\\"):
        raise ValueError(f"the directive on line {line} goes on over several lines; edit it by hand")
    words = body.split(None, 1)
    if not words or words[0].lower() != name.lower():
        raise ValueError(f"line {line} does not set {name}")
    ending = raw[len(body):]
    lines[line - 1] = f"{leading_space(body)}{words[0]} {format_args(args)}{ending}"
    return "".join(lines)


def add_directive(text: str, section_line: int, name: str, args: tuple[str, ...] | list[str]) -> str:
    """`text` with `name args` as the first line inside the section opened on `section_line`
    (`<VirtualHost ...>`), indented like the section's first line (else 4 spaces more than
    the section), with the file's line ending."""
    lines = split_lines(text)
    if not 1 <= section_line <= len(lines):
        raise ValueError(f"line {section_line} is past the end of the file")
    opening = lines[section_line - 1]
    if not opening.lstrip().startswith("<"):
        raise ValueError(f"line {section_line} does not open a section")
    indent = leading_space(opening) + "    "
    for following in lines[section_line:]:
        if strip_ending(following).strip():
            inner = leading_space(following)
            if len(inner) > len(leading_space(opening)) and not following.lstrip().startswith("</"):
                indent = inner
            break
    ending = newline_of(text)
    if not opening.endswith("\n"):
        lines[section_line - 1] = opening + ending
    lines.insert(section_line, f"{indent}{name} {format_args(args)}{ending}")
    return "".join(lines)
