"""The pure plan of a config edit (nginx, php-fpm, php.ini / .user.ini): from the
bytes of the files the runner read on the host — and, for nginx, the `nginx -T`
dump, so include chains are resolved as nginx resolves them — to the new bytes of
the one file to change, a unified diff and a one-line summary.

    plan = plan_edit(ConfigEditParams(file="/etc/nginx/sites-enabled/example.com", format="nginx",
                                      directive="fastcgi_read_timeout", value="300s",
                                      server_name="example.com", location="~ \\\\.php$"),
                     files={"/etc/nginx/sites-enabled/example.com": b"..."}, dump=nginx_T_stdout)
    plan.summary  # 'nginx: fastcgi_read_timeout 120s → 300s at /etc/nginx/sites-enabled/example.com:29 (location ~ \\\\.php$)'

Where the edit lands:
- the value in force is set somewhere → that line is edited, in whichever file holds
  it (an included file, not necessarily `file`). For nginx that is the narrowest
  directive governing server_name/location, so a value inherited from http is edited
  at http (the summary says so);
- the value in force is the software's default → a new line in the narrowest
  governing block: nginx's location when one is named, else the server, else http;
  php-fpm's pool; php.ini's section (by default the top of the file, or its first
  section).
With `inherited: override` (nginx), a value inherited from an enclosing block is not edited
there but set in the site's own block, so other sites keep theirs.
A value already in force is a `noop`; a target that is ambiguous (no or several
server blocks for server_name, an unknown pool) or a file that was not read is
`blocked`, with the reason; `action` is None then. Bytes are kept exactly: files
are decoded as UTF-8 with surrogateescape and encoded back, CRLF stays CRLF.

No Change class here (the config_edit step wraps this), no host access, no clock.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from opskit.stack import apache, ini, nginx, phpfpm, phpini
from opskit.stack.effective import EffectiveValue
from opskit.stack.lines import split_lines

Format = Literal["nginx", "php-fpm", "php-ini", "apache"]


class ConfigEditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str                        # the file to edit (absolute on the host); nginx: the main file without a dump
    format: Format
    directive: str                   # fastcgi_read_timeout, request_terminate_timeout, max_execution_time...
    value: str
    server_name: str | None = None   # nginx: the server block that governs the site
    location: str | None = None      # nginx: the location block (its text, or a URI)
    pool: str | None = None          # php-fpm: the pool section (default: the only pool)
    section: str | None = None       # php-ini: the section (default: the top of the file, or its first section)
    inherited: Literal["edit", "override"] = "edit"   # nginx, apache: a value inherited from an enclosing
                                     # block is edited there (edit), or set in the site's own block (override)
    server_root: str | None = None   # apache: its -d (default: the main file's folder)

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path on the host")
        return value

    @field_validator("directive")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if not value or any(char.isspace() or char in ";{}=#\"'" for char in value):
            raise ValueError("must be one directive name")
        return value

    @field_validator("value")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if not value.strip() or "\n" in value or "\r" in value:
            raise ValueError("must be a non-empty value on one line")
        return value


@dataclass(frozen=True)
class EditPlan:
    path: str                      # the file the edit changes (or would have)
    old: bytes
    new: bytes
    diff: str                      # unified, labelled with the path; "" when nothing changes
    summary: str
    noop: str | None = None        # why nothing needs to change
    blocked: str | None = None     # why the edit cannot be planned
    line: int | None = None        # the line set or added (the governing line for a noop)
    action: Literal["set", "add"] | None = None

    @property
    def changes(self) -> bool:
        return self.action is not None


@dataclass(frozen=True)
class _Target:
    """Where the edit goes, found by a format's locator."""
    path: str
    action: Literal["set", "add"]
    line: int                      # set: the directive's line; add: the new line's
    current: EffectiveValue
    place: str                     # "location /", "[www]", "http, inherited by location /"
    edit: Callable[[str], str]     # old text → new text
    same: bool                     # the value in force is already the wanted one
    note: str = ""


class _Blocked(Exception):
    """A reason the edit cannot be planned (caught in plan_edit, never raised out)."""


def plan_edit(params: ConfigEditParams, files: dict[str, bytes], dump: str | None = None) -> EditPlan:
    """The edit setting params.directive to params.value (see the module docstring)."""
    locate = {"nginx": _locate_nginx, "php-fpm": _locate_fpm, "php-ini": _locate_ini,
              "apache": _locate_apache}[params.format]
    try:
        target = locate(params, files, dump)
    except _Blocked as reason:
        return _blocked(params, files, params.file, str(reason))
    if target.same:
        return _noop(params, files, target)
    if target.path not in files:
        return _blocked(params, files, target.path, f"{target.path} was not read from the host")
    old_text = _decode(files[target.path])
    try:
        new_text = target.edit(old_text)
    except ValueError as error:
        return _blocked(params, files, target.path, str(error))
    old = files[target.path]
    new = new_text.encode("utf-8", "surrogateescape")
    return EditPlan(target.path, old, new, unified_diff(target.path, old, new), _summary(params, target),
                    line=target.line, action=target.action)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _blocked(params: ConfigEditParams, files: dict[str, bytes], path: str, reason: str) -> EditPlan:
    data = files.get(path, b"")
    return EditPlan(path, data, data, "", f"{params.format}: cannot set {params.directive}: {reason}", blocked=reason)


def _noop(params: ConfigEditParams, files: dict[str, bytes], target: _Target) -> EditPlan:
    current = target.current
    if current.directive is not None:
        where = f"at {current.directive.file}:{current.directive.line} ({target.place})"
        path, line = current.directive.file, current.directive.line
    else:
        where = f"(the default) in {target.place}"
        path, line = target.path, None
    reason = f"{params.directive} is already {current.value} {where}"
    data = files.get(path, b"")
    return EditPlan(path, data, data, "", f"{params.format}: {reason}", noop=reason, line=line)


def _summary(params: ConfigEditParams, target: _Target) -> str:
    old = target.current.value if target.current.value is not None else "unset"
    if target.action == "add":
        if target.current.source == "inherited" and target.current.directive is not None:
            d = target.current.directive
            old += f" (inherited from {d.file}:{d.line})"
        else:
            old += " (default)" if target.current.value is not None else ""
        where = f"added at {target.path}:{target.line}"
    else:
        where = f"at {target.path}:{target.line}"
    return f"{params.format}: {params.directive} {old} → {params.value} {where} ({target.place}){target.note}"


def unified_diff(path: str, old: bytes, new: bytes) -> str:
    """`diff -u --label PATH --label PATH` of two versions of a file (for people: bytes
    that are not UTF-8 are shown as U+FFFD)."""
    old_lines = split_lines(old.decode("utf-8", "replace"))
    new_lines = split_lines(new.decode("utf-8", "replace"))
    out = []
    for line in difflib.unified_diff(old_lines, new_lines, path, path):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


# -- nginx ------------------------------------------------------------------

def _locate_nginx(params: ConfigEditParams, files: dict[str, bytes], dump: str | None) -> _Target:
    config = _nginx_config(params, files, dump)
    args = _nginx_args(params.value)
    block = _nginx_block(config, params)
    current = nginx.value_at(config, block, params.directive)
    in_force = current.directive.args if current.directive is not None else tuple((current.value or "").split())
    same = current.value is not None and nginx.same_value(params.directive, in_force, args)
    if current.directive is not None and not (current.source == "inherited" and params.inherited == "override"):
        directive = current.directive
        _check_dump_matches(config, files, directive.file, dump)
        place = directive.block[-1] if directive.block else "main"
        if current.source == "inherited":
            place += f", inherited by {block.label}"
        return _Target(directive.file, "set", directive.line, current, place,
                       lambda text: nginx.set_directive(text, directive.line, params.directive, args), same,
                       _shared_note(config, directive))
    _check_dump_matches(config, files, block.file, dump)
    return _Target(block.file, "add", nginx.insertion_line(config.files[block.file], block.open_line), current, block.label,
                   lambda text: nginx.add_directive(text, block.open_line, params.directive, args), same)


def _nginx_config(params: ConfigEditParams, files: dict[str, bytes], dump: str | None) -> nginx.NginxConfig:
    try:
        if dump is not None:
            return nginx.parse_dump(dump)
        if params.file not in files:
            raise _Blocked(f"{params.file} was not read from the host")
        return nginx.parse_files({path: _decode(data) for path, data in files.items()}, params.file)
    except nginx.NginxConfigError as error:
        raise _Blocked(f"nginx would not read this config: {error}") from None


def _nginx_args(value: str) -> tuple[str, ...]:
    tokens = nginx.tokenize(value)
    if not tokens or any(token.kind not in ("word", "quoted") for token in tokens):
        raise _Blocked(f"{value!r} is not a list of nginx arguments")
    return tuple(token.value for token in tokens)


def _nginx_block(config: nginx.NginxConfig, params: ConfigEditParams) -> nginx.Block:
    """The narrowest block governing server_name/location, or a _Blocked reason."""
    if config.unresolved:
        missing = config.unresolved[0]
        raise _Blocked(f"include {missing.args[0]} ({missing.file}:{missing.line}) names a file that was not read")
    if params.server_name is None:
        if params.location is not None:
            raise _Blocked("a location needs a server_name")
        http = nginx.http_block(config)
        if http is None:
            raise _Blocked("the config has no http block")
        return http
    named = nginx.servers_named(config, params.server_name)
    if not named:
        known = sorted({n for s in nginx.servers(config) for n in nginx.server_names(config, s)})
        raise _Blocked(f"no server block has server_name {params.server_name} (there are: {', '.join(known) or 'none'})")
    if params.location is None:
        if len(named) > 1:
            raise _Blocked(f"server_name {params.server_name} is in {len(named)} server blocks ({_places(named)}); "
                           "name a location to choose")
        return named[0]
    found = [(s, loc) for s in named if (loc := nginx.find_location(config, s, params.location)) is not None]
    if not found:
        raise _Blocked(f"no location matches {params.location} in {_places(named)}")
    if len(found) > 1:
        raise _Blocked(f"location {params.location} of {params.server_name} is in {len(found)} server blocks "
                       f"({_places([s for s, _ in found])})")
    return found[0][1]


def _places(blocks: list[nginx.Block] | tuple[nginx.Block, ...]) -> str:
    return ", ".join(f"{b.label} at {b.file}:{b.line}" for b in blocks)


def _check_dump_matches(config: nginx.NginxConfig, files: dict[str, bytes], path: str, dump: str | None) -> None:
    """The dump's lines must be the file's lines, or the edit would land on the wrong one."""
    if dump is None or path not in files:
        return
    dumped, read = config.files.get(path), _decode(files[path])
    if dumped is not None and dumped != read and dumped.replace("\r\n", "\n") != read.replace("\r\n", "\n"):
        raise _Blocked(f"{path} differs from the copy in the nginx -T dump: it changed since, run again")


def _shared_note(config: nginx.NginxConfig, directive: nginx.Directive) -> str:
    uses = sum(1 for d in config.directives
               if (d.file, d.line, d.name) == (directive.file, directive.line, directive.name))
    return f"; {directive.file} is included {uses} times, the edit applies to all" if uses > 1 else ""


# -- php-fpm ----------------------------------------------------------------

def _locate_fpm(params: ConfigEditParams, files: dict[str, bytes], dump: str | None) -> _Target:
    if params.file not in files:
        raise _Blocked(f"{params.file} was not read from the host")
    try:
        config = phpfpm.parse({path: _decode(data) for path, data in files.items()}, params.file)
    except ValueError as error:
        raise _Blocked(str(error)) from None
    if config.unresolved:
        missing = config.unresolved[0]
        raise _Blocked(f"include={missing.value} ({missing.file}:{missing.line}) names a file that was not read")
    pool = _fpm_pool(config, params.pool)
    key = params.directive
    current = phpfpm.effective(config, pool, key)
    same = current.value is not None and phpfpm.same_value(key, current.value, params.value)
    if current.directive is not None:
        line = current.directive.line
        return _Target(current.directive.file, "set", line, current, f"[{pool}]",
                       lambda text: ini.set_value(text, line, key, params.value), same)
    section = config.section(pool)
    after = section.last_key_line
    like = after if after != section.line else None
    return _Target(section.file, "add", after + 1, current, f"[{pool}]",
                   lambda text: ini.add_key(text, after, key, params.value, like), same)


def _fpm_pool(config: phpfpm.FpmConfig, pool: str | None) -> str:
    pools = config.pools()
    if pool is None:
        if len(pools) != 1:
            raise _Blocked(f"{len(pools)} pools ({', '.join(pools) or 'none'}): name the pool")
        return pools[0]
    if pool not in pools and not (pool == phpfpm.GLOBAL and config.section(pool)):
        raise _Blocked(f"no pool [{pool}] (pools: {', '.join(pools) or 'none'})")
    return pool


# -- php.ini / .user.ini ----------------------------------------------------

def _locate_ini(params: ConfigEditParams, files: dict[str, bytes], dump: str | None) -> _Target:
    if params.file not in files:
        raise _Blocked(f"{params.file} was not read from the host")
    parsed = phpini.parse(_decode(files[params.file]), params.file)
    if params.section is not None and parsed.section(params.section) is None:
        raise _Blocked(f"{params.file} has no [{params.section}] section")
    key = params.directive
    current = phpini.effective(parsed, key, params.section)
    same = current.value is not None and current.value.strip() == params.value.strip()
    if current.directive is not None:
        line = current.directive.line
        place = f"[{current.directive.section}]" if current.directive.section else "top of the file"
        return _Target(params.file, "set", line, current, place,
                       lambda text: ini.set_value(text, line, key, params.value), same)
    section = phpini.target_section(parsed, params.section)
    after = phpini.insertion_line(parsed, section)
    like = after if after == section.last_key_line and after else None
    place = f"[{section.name}]" if section.name else "top of the file"
    return _Target(params.file, "add", after + 1, current, place,
                   lambda text: ini.add_key(text, after, key, params.value, like), same)


# -- Apache -----------------------------------------------------------------------

def _locate_apache(params: ConfigEditParams, files: dict[str, bytes], dump: str | None) -> _Target:
    """The directive for the site's <VirtualHost> (server_name; None: the server level): set
    where the value in force is set, else (a default; inherited, with override) added first
    in the virtual host."""
    if params.file not in files:
        raise _Blocked(f"{params.file} was not read from the host")
    try:
        config = apache.parse_files({path: _decode(data) for path, data in files.items()}, params.file,
                                    params.server_root)
    except apache.ApacheConfigError as error:
        raise _Blocked(f"Apache would not read this config: {error}") from None
    if config.unresolved:
        missing = config.unresolved[0]
        raise _Blocked(f"{missing.name} {missing.value} ({missing.file}:{missing.line}) names a file that was not read")
    args = apache.split_args(params.value)
    if not args:
        raise _Blocked(f"{params.value!r} is not a list of Apache arguments")
    host = apache.find_virtual_host(config, params.server_name) if params.server_name else None
    if params.server_name and host is None:
        raise _Blocked(f"no <VirtualHost> for {params.server_name}")
    current = apache.effective(config, params.server_name, params.directive, default="(unset)")
    if current.directive is None:
        current = EffectiveValue(None, None, "default")
    same = current.directive is not None and tuple(current.directive.args) == tuple(args)
    place = host.label if host is not None else "server config"
    if current.directive is not None and not (current.source == "inherited" and params.inherited == "override"):
        directive = current.directive
        return _Target(directive.file, "set", directive.line, current,
                       directive.block_path or "server config",
                       lambda text: apache.set_directive(text, directive.line, params.directive, args), same)
    if host is None:
        raise _Blocked(f"{params.directive} is set nowhere and no <VirtualHost> is named to add it in")
    return _Target(host.file, "add", host.line + 1, current, place,
                   lambda text: apache.add_directive(text, host.line, params.directive, args), same)
