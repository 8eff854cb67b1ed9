"""`config_edit`: set a directive in place in a server's config on the host, validate the
result with the server's own validator before keeping it, and reload the server once after
the changes and once after the undos (the guard too).

    - change: config_edit
      with:
        file: /etc/nginx/nginx.conf            # nginx: the main file (-c) the running server uses
        format: nginx
        directive: fastcgi_read_timeout
        value: 120s
        server_name: example.com
        location: "~ \\.php$"
        prefix: /usr/share/nginx/              # nginx -p, when the server runs with one
        validate: nginx                        # default: the format's validator (none for php-ini)
        handlers: [{reload: nginx}]

    - change: config_edits                     # several, from a rule's value (tune-timeouts)
      with: {edits: "{{ steps.plan.edits }}"}   # each: config_edit's parameters

Formats: nginx, php-fpm, php-ini (php.ini, .user.ini: `create: true` makes a missing one; a
php.ini of php-fpm names `server_config:` its php-fpm.conf, for `php-fpm -t` and the reload),
apache (`server_root:` its -d; validated by `apache2 -t`, reloaded gracefully with USR1).
Before anything is edited the read also asks whether the config passes its validator as it is
and whether this user (or sudo -n) may signal the running server: no to either refuses.

Reading is one exec (`nginx -T` and the bytes of every file it names, base64; when nginx -T is
refused, or for Apache, the main file and the files its include lines name); the plan is
changes/config.py's pure `plan_edit`; writing is changes/files.py's atomic write (owner,
group and mode kept, checked against the digest planned with). The validator runs with the
edited file in place, inside the same exec and under the undo lock; if it fails the original
is put back before the exec ends, so no reload — ours or anyone's — can load it. Kept apart
from config.py, which stays free of any shell text.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from opskit.changes.config import ConfigEditParams, plan_edit
from opskit.changes.files import beside, write_apply, write_undo
from opskit.guard import PRELUDE_HELPERS
from opskit.probes.batch import new_fence
from opskit.shell import quote
from opskit.steps import Change, Context, Plan, register

Server = Literal["nginx", "php-fpm", "apache"]
INCLUDE_LINES = r"s/^[[:space:]]*include[[:space:]][[:space:]]*\([^;]*\);.*$/\1/p"
APACHE_INCLUDES = (r"s/^[[:space:]]*[Ii][Nn][Cc][Ll][Uu][Dd][Ee]\([Oo][Pp][Tt][Ii][Oo][Nn][Aa][Ll]\)\{0,1\}"
                   r"[[:space:]][[:space:]]*\(.*\)$/\2/p")


class Reload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reload: Server


class ConfigEditStepParams(ConfigEditParams):
    prefix: str | None = None                       # nginx -p of the running server
    binary: str | None = None                       # the server's binary (default: nginx, php-fpm8.2)
    error_log: str | None = None                    # nginx -e of the running server
    server_config: str | None = None                # the server's main file when `file` is not it
                                                    # (php.ini of php-fpm: its php-fpm.conf)
    create: bool = False                            # php-ini: a missing file (.user.ini) is created
    note: str | None = None                         # said after the summary
    validate_with: Server | Literal["none"] | None = Field(default=None, alias="validate")
    handlers: list[Reload] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("prefix", "binary", "error_log", "server_config")
    @classmethod
    def _absolute_or_name(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or not value.strip()):
            raise ValueError("must be a path on one line")
        return value

    @property
    def main(self) -> str:
        """The file the server is started with (-c, -y)."""
        return self.server_config or self.file

    @property
    def validator(self) -> str:
        if self.validate_with:
            return self.validate_with
        return {"nginx": "nginx", "php-fpm": "php-fpm", "php-ini": "none", "apache": "apache"}[self.format]


def binary_sh(server: str, params: ConfigEditStepParams) -> str:
    """The server's binary as sh text: the one named, else the one on PATH, else /usr/sbin's (a
    login shell's PATH often lacks /usr/sbin; sudo's secure_path has it)."""
    if params.binary:
        return quote(params.binary)
    name = server_binary(server, params)
    return f'"$(command -v {name} || echo /usr/sbin/{name})"'


def server_binary(server: str, params: ConfigEditStepParams) -> str:
    return params.binary or {"nginx": "nginx", "php-fpm": "php-fpm8.2", "apache": "apache2"}[server]


def _apache_flags(params: ConfigEditStepParams) -> str:
    root = f" -d {quote(params.server_root)}" if params.server_root else ""
    return f"{root} -f {quote(params.main)}"


def _nginx_flags(params: ConfigEditStepParams) -> str:
    prefix = f" -p {quote(params.prefix)}" if params.prefix else ""
    errors = f" -e {quote(params.error_log)}" if params.error_log else ""
    return f"{prefix}{errors} -c {quote(params.main)}"


def validate_command(server: str, params: ConfigEditStepParams) -> str:
    """The server's own test of its whole config, as the running server reads it."""
    binary = binary_sh(server, params)
    if server == "nginx":
        return f"{binary} -t -q{_nginx_flags(params)}"
    if server == "apache":
        return f"{binary} -t{_apache_flags(params)}"
    ini = f" -c {quote(params.file)}" if params.format == "php-ini" else ""
    return f"{binary} -t -y {quote(params.main)}{ini}"


def master_pid_sh(server: str, params: ConfigEditStepParams) -> str:
    """sh setting $_pid to the running server's master (empty: none found): nginx's from its
    pid file (as the dump names it, else /run/nginx.pid), php-fpm's by its process title."""
    if server == "nginx":
        binary = binary_sh(server, params)
        prefix = quote(params.prefix.rstrip("/") + "/") if params.prefix else "''"
        return (f"_pf=$(as_root {binary} -T -q{_nginx_flags(params)} 2>/dev/null | "
                "sed -n 's/^[[:space:]]*pid[[:space:]][[:space:]]*\\([^;]*\\);.*$/\\1/p' | head -n 1)\n"
                f"case ${{_pf:=/run/nginx.pid}} in /*) ;; *) _pf={prefix}$_pf ;; esac\n"
                "_pid=$(as_root cat \"$_pf\" 2>/dev/null | tr -cd 0-9)")
    if server == "apache":   # the master is root's; its children (www-data, nobody) have the same command line
        return (f"_pid=$(ps -e -o pid= -o uid= -o args= | awk -v c={quote(' -f ' + params.main)} "
                "'$2 == 0 && index($0, c) && $3 !~ /^(sudo|sh|awk)$/ {print $1; exit}')")
    conf = params.main
    return (f"_pid=$(ps -e -o pid= -o args= | awk -v c={quote('(' + conf + ')')} "
            "'index($0, \"php-fpm: master process \" c) {print $1; exit}')")


def reload_body(server: str, params: ConfigEditStepParams) -> str:
    """A graceful reload: nginx -s reload (HUP to the master named by its pid file); php-fpm's
    master found by its config file and sent USR2. Through sudo -n when the change has
    become (the handler body sets BECOME)."""
    if server == "nginx":
        command = f"as_root {binary_sh(server, params)} -s reload{_nginx_flags(params)}"
        return (f"if _h=$({command} 2>&1); then handled {quote('reloaded nginx (' + params.main + ')')}; "
                f"else handler_failed \"nginx -s reload: $_h\"; fi")
    if server == "apache":   # USR1: a graceful restart, requests in flight finish
        return (master_pid_sh(server, params) + "\n"
                f"if [ -n \"$_pid\" ] && as_root kill -USR1 \"$_pid\" 2>/dev/null; then handled {quote('reloaded apache (' + params.main + ')')}; "
                f"else handler_failed {quote('no Apache master running ' + params.main + ' that this user may signal')}; fi")
    conf = params.main
    return (master_pid_sh(server, params) + "\n"
            f"if [ -n \"$_pid\" ] && as_root kill -USR2 \"$_pid\" 2>/dev/null; then handled {quote('reloaded php-fpm (' + conf + ')')}; "
            f"else handler_failed {quote('no php-fpm master running ' + conf + ' that this user may signal')}; fi")


def precheck_script(params: ConfigEditStepParams, fence: str) -> str:
    """Before anything is edited: does the server's config pass its validator as it is, and
    may this user (or sudo -n) signal the running server for the reload?"""
    lines = []
    if params.validator not in ("none", "nginx"):   # nginx -T above tests the config already
        lines.append(f"echo '{fence} begin valid'; as_root {validate_command(params.validator, params)} 2>&1; s=$?; "
                     f"echo; echo '{fence} end valid' $s")
    for handler in params.handlers:
        lines.append(master_pid_sh(handler.reload, params))
        lines.append(f"echo '{fence} begin reload:{handler.reload}'; "
                     "if [ -z \"$_pid\" ]; then echo 'no running master found'; s=2; "
                     "elif _e=$(as_root kill -0 \"$_pid\" 2>&1); then s=0; else echo \"pid $_pid: $_e\"; s=1; fi; "
                     f"echo; echo '{fence} end reload:{handler.reload}' $s")
    return "\n".join(lines) + ("\n" if lines else "")


def read_script(params: ConfigEditStepParams, fence: str, become: bool = False) -> str:
    """One exec: for nginx the `nginx -T` dump and every file it names; else the file itself
    (and a php-fpm main file's includes). Bytes travel as base64, so nothing is lost. Each
    file says whether the login user may replace it, its owner and its mode; a missing file
    says so. With become, `sudo -n` is tried first. Then precheck_script's answers."""
    lines = [f"BECOME={'1' if become else ''}"]
    if become:
        lines.append(f"echo '{fence} begin sudo'; sudo -n -- true 2>&1; s=$?; echo; echo '{fence} end sudo' $s")
    if params.format == "nginx":
        binary = "as_root " + binary_sh("nginx", params)
        flags = _nginx_flags(params)
        err = '"${TMPDIR:-/tmp}/.opskit-err.$$"'
        lines.append(f"echo '{fence} begin dump'; {binary} -T -q{flags} 2>{err}; s=$?; "
                     f"echo; echo '{fence} end dump' $s; echo '{fence} begin dump-errors'; cat {err}; rm -f {err}; "
                     f"echo; echo '{fence} end dump-errors' 0")
        lines.append(f"{binary} -T -q{flags} 2>/dev/null | "
                     "sed -n 's/^# configuration file \\(.*\\):$/\\1/p' > \"${TMPDIR:-/tmp}/.opskit-files.$$\"")
        # nginx -T refused (a login user without root): the main file and the files its include
        # lines name, as nginx would read them
        lines.append(f"if [ ! -s \"${{TMPDIR:-/tmp}}/.opskit-files.$$\" ]; then "
                     f"{_follow_sh(params.main, posixpath.dirname(params.main), INCLUDE_LINES)}; fi")
    elif params.format == "apache":   # the main file and what its Include lines name (relative: to ServerRoot)
        lines.append(_follow_sh(params.main, params.server_root or posixpath.dirname(params.main), APACHE_INCLUDES))
    else:
        lines.append(f"printf '%s\\n' {quote(params.file)} > \"${{TMPDIR:-/tmp}}/.opskit-files.$$\"")
        if params.format == "php-fpm":
            # include=GLOB lines of the main file, expanded by the shell as php-fpm does
            lines.append(f"sed -n 's/^[[:space:]]*include[[:space:]]*=[[:space:]]*//p' {quote(params.file)} | "
                         "while IFS= read -r pattern; do for f in $pattern; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done; done "
                         ">> \"${TMPDIR:-/tmp}/.opskit-files.$$\"")
    lines.append("while IFS= read -r f; do "
                 "if [ ! -e \"$f\" ] && [ ! -L \"$f\" ]; then "
                 f"echo \"{fence} begin missing:$f\"; echo; echo \"{fence} end missing:$f\" 0; "
                 "else "
                 f"echo \"{fence} begin file:$f\"; as_root base64 \"$f\" 2>&1; s=$?; echo; echo \"{fence} end file:$f\" $s; "
                 "fi; "
                 "if { [ ! -e \"$f\" ] || [ -w \"$f\" ]; } && [ -w \"$(dirname \"$f\")\" ]; then w=1; else w=0; fi; "
                 f"echo \"{fence} begin writable:$f\"; printf '%s %s %s\\n' \"$w\" \"$(owner_of \"$f\")\" "
                 "\"$(ls -nd -- \"$f\" 2>/dev/null | cut -c2-10)\"; "
                 f"echo; echo \"{fence} end writable:$f\" 0; "
                 "done < \"${TMPDIR:-/tmp}/.opskit-files.$$\"; rm -f \"${TMPDIR:-/tmp}/.opskit-files.$$\"")
    # owner_of and as_root come from the guard's shared helpers
    return PRELUDE_HELPERS + "\n".join(lines) + "\n" + precheck_script(params, fence)


def _follow_sh(main: str, folder: str, includes: str) -> str:
    """sh writing `main` and, three levels deep, the files its include lines name (the sed script
    `includes` prints their patterns; relative ones under `folder`) to the read's file list."""
    m, d = quote(main), quote(folder)
    return (f"_l={m}; _all={m}; for _round in 1 2 3; do _next=''; for _c in $_l; do "
            f"for _p in $(sed -n {quote(includes)} \"$_c\" 2>/dev/null | tr -d \"\\\"'\"); do "
            f"case $_p in /*) ;; *) _p={d}/$_p ;; esac; "
            "for _f in $_p; do [ -f \"$_f\" ] || continue; case \" $_all \" in *\" $_f \"*) ;; *) "
            "_all=\"$_all $_f\"; _next=\"$_next $_f\" ;; esac; done; done; done; _l=$_next; done; "
            "for _f in $_all; do printf '%s\\n' \"$_f\"; done > \"${TMPDIR:-/tmp}/.opskit-files.$$\"")


def _mode(text: str) -> int | None:
    """ls's rwxr-xr-x (set-id and sticky bits kept) → 0o755; None when not given."""
    if len(text) != 9:
        return None
    mode = 0
    for i, (char, bit) in enumerate(zip(text, "rwxrwxrwx")):
        if char in (bit, "s", "t"):
            mode |= 1 << (8 - i)
    special = {2: 0o4000, 5: 0o2000, 8: 0o1000}
    for i, bit in special.items():
        if text[i] in "sStT":
            mode |= bit
    return mode


@dataclass(frozen=True)
class ReadAnswer:
    dump: str | None                  # nginx -T's output (None: not nginx, or it failed)
    files: dict[str, bytes]
    unreadable: dict[str, str]        # path → why
    writable: dict[str, tuple[bool, str]]   # path → (the login user may replace it, owner uid:gid)
    sudo_error: str | None = None     # become: sudo -n refused (its words)
    dump_errors: str = ""             # what nginx -T said on stderr
    modes: dict[str, int] = field(default_factory=dict)    # path → permission bits
    missing: frozenset[str] = frozenset()                  # paths that do not exist
    invalid: str | None = None        # the validator refused the config as it is (its words)
    unreloadable: dict[str, str] = field(default_factory=dict)   # server → why it cannot be signalled


def parse_read(stdout: str, fence: str) -> ReadAnswer:
    """Pure: read_script's output → ReadAnswer."""
    sections = _split_named(stdout, fence)
    dump = sections.pop("dump", None)
    dump_errors = sections.pop("dump-errors", ("", 0))[0].strip()
    sudo = sections.pop("sudo", None)
    valid = sections.pop("valid", None)
    unreloadable = {}
    for name in [n for n in sections if n.startswith("reload:")]:
        text, status = sections.pop(name)
        if status != 0:
            unreloadable[name[len("reload:"):]] = text.strip() or f"exit {status}"
    writable, modes = {}, {}
    for name in [n for n in sections if n.startswith("writable:")]:
        words = sections.pop(name)[0].split()
        path = name[len("writable:"):]
        writable[path] = (bool(words) and words[0] == "1", words[1] if len(words) > 2 else "")
        mode = _mode(words[2]) if len(words) > 2 else None
        if mode is not None:
            modes[path] = mode
    missing = frozenset(n[len("missing:"):] for n in [n for n in sections if n.startswith("missing:")])
    files, unreadable = {}, {}
    for name, (text, status) in sections.items():
        if not name.startswith("file:"):
            continue
        path = name[len("file:"):]
        if status != 0:
            unreadable[path] = text.strip().splitlines()[-1] if text.strip() else f"exit {status}"
            continue
        files[path] = base64.b64decode("".join(text.split()))
    sudo_error = None if sudo is None or sudo[1] == 0 else (sudo[0].strip() or f"exit {sudo[1]}")
    invalid = None if valid is None or valid[1] == 0 else (valid[0].strip() or f"exit {valid[1]}")
    return ReadAnswer(dump[0] if dump and dump[1] == 0 else None, files, unreadable, writable, sudo_error, dump_errors,
                      modes, missing, invalid, unreloadable)


def _split_named(stdout: str, fence: str) -> dict[str, tuple[str, int]]:
    # split_batch keys sections by a token; file names are not tokens, so split here the same way
    out: dict[str, tuple[str, int]] = {}
    current, lines = None, []
    for line in stdout.split("\n"):
        if line.startswith(fence + " begin "):
            current, lines = line[len(fence) + 7:], []
        elif line.startswith(fence + " end ") and current is not None:
            status = line.rsplit(" ", 1)[-1]
            out[current] = ("\n".join(lines), int(status) if status.isdigit() else 1)
            current = None
        elif current is not None:
            lines.append(line)
    return out


NEEDS_ROOT = "set `become: sudo` for this host in the inventory (non-interactive sudo -n)"


def plan_from(params: ConfigEditStepParams, answer: ReadAnswer, become: bool, user: str | None,
              files: dict[str, bytes] | None = None, dump: str | None | bool = True,
              optional: bool = False) -> tuple[Plan, bytes | None]:
    """Pure: one edit's Plan from what read_script found (and the new bytes it would write).
    `files`/`dump` override the answer's (a later edit of the same step sees the earlier ones'
    bytes, and no stale dump). optional (config_edits): a file only root may write, without
    become, is for the host to change — a noop saying so, with the lines — not a refusal."""
    if answer.sudo_error:
        return Plan(f"edit {params.file}", blocked=f"become: sudo, but `sudo -n` refused: {answer.sudo_error} "
                                                   "(opskit never types a password: allow this user NOPASSWD for the commands)"), None
    files = dict(answer.files if files is None else files)
    dump = answer.dump if dump is True else dump
    if params.format == "nginx" and answer.dump is None:
        said = answer.dump_errors.splitlines()[-1] if answer.dump_errors else "no output"
        if "Permission denied" in answer.dump_errors and not become and params.main in files and optional:
            dump = None   # planned from the files the login user may read (include lines followed)
        elif "Permission denied" in answer.dump_errors and not become:
            if optional:
                return Plan(f"nginx: {params.directive} → {params.value} ({params.file})",
                            noop=f"needs the host: nginx -T cannot read {params.file} as {user or 'the login user'}",
                            record={"needs_host": {"file": params.file, "set": f"{params.directive} {params.value};",
                                                   "where": params.location or params.server_name or "http",
                                                   "why": "the nginx config is readable by root only"}}), None
            return Plan(f"edit {params.file}", blocked=f"nginx -T cannot read {params.file} as the login user ({said}): "
                                                       f"reading and editing it needs root; {NEEDS_ROOT}"), None
        else:
            return Plan(f"edit {params.file}", blocked=f"the nginx config {params.main} is already invalid before opskit "
                                                       f"touches it, so nothing is changed: {said}"), None
    for path in answer.missing:
        if path == params.file and params.create and params.format == "php-ini":
            files.setdefault(path, b"")
        elif path == params.file:
            return Plan(f"edit {path}", blocked=f"{path} does not exist"), None
    if answer.unreadable:
        path, why = next(iter(answer.unreadable.items()))
        return Plan(f"edit {path}", blocked=f"cannot read {path}: {why}"), None
    edit = plan_edit(ConfigEditParams(**params.model_dump(include=set(ConfigEditParams.model_fields))), files, dump)
    if edit.blocked:
        return Plan(edit.summary, blocked=edit.blocked), None
    if edit.noop:
        return Plan(edit.summary, noop=edit.noop), None
    summary = edit.summary + (f" — {params.note}" if params.note else "")
    may_write, owner = answer.writable.get(edit.path, (False, ""))
    if not may_write and not become:
        why = (f"{edit.path} (owner {owner or 'unknown'}) is not writable by {user or 'the login user'}")
        if optional:
            added = [line[1:].strip() for line in edit.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
            return Plan(summary, noop=f"needs the host: {why}", diff=edit.diff,
                        record={"needs_host": {"file": edit.path, "line": edit.line, "action": edit.action,
                                               "set": "\n".join(added), "summary": edit.summary, "why": why}}), None
        return Plan(summary, blocked=f"{why}: editing it needs root; {NEEDS_ROOT}"), None
    if answer.invalid:
        return Plan(summary, blocked=f"the {params.validator} config {params.main} is already invalid before "
                                     f"opskit touches it, so nothing is changed: {answer.invalid}"), None
    for server, why in answer.unreloadable.items():
        return Plan(summary, blocked=f"cannot reload {server} ({params.main}) as {'root (sudo -n)' if become else user or 'the login user'}: "
                                     f"{why}; refusing the edit, nothing is changed"
                                     + ("" if become else f" ({NEEDS_ROOT} if root runs it)")), None
    try:
        content = edit.new.decode("utf-8")
    except UnicodeDecodeError:
        return Plan(summary, blocked=f"{edit.path} is not UTF-8 text; opskit does not edit it"), None
    if "\x00" in content:
        return Plan(summary, blocked=f"{edit.path} has a NUL byte"), None
    existed = edit.path not in answer.missing
    record = {
        "path": edit.path, "existed": existed, "orig_sha256": hashlib.sha256(edit.old).hexdigest() if existed else None,
        "new_sha256": hashlib.sha256(edit.new).hexdigest(), "content": content,
        "become": become,
        "validate": (("as_root " if become else "") + validate_command(params.validator, params)
                     if params.validator != "none" else None),
        "handlers": [f"BECOME={'1' if become else ''}\n" + reload_body(h.reload, params) for h in params.handlers],
    }
    if existed and edit.path in answer.modes:
        record["orig_mode"] = answer.modes[edit.path]
        record["orig_owner"] = owner or None
    return Plan(summary, record=record, diff=edit.diff, original=edit.old if existed else None), edit.new


@register
class ConfigEdit(Change):
    """Set one directive in a config file on the host (see the module docstring)."""

    name = "config_edit"
    Params = ConfigEditStepParams

    def plan(self, params: ConfigEditStepParams, ctx: Context) -> Plan:
        fence = new_fence()
        become = ctx.host.become == "sudo"
        result = ctx.session.exec(read_script(params, fence, become))
        plan, _ = plan_from(params, parse_read(result.stdout, fence), become, ctx.host.user)
        return plan

    def prepare(self, record: dict, tx_dir: str, index: int, ctx: Context) -> dict:
        """Backup and temp names, and the file's owner, group and mode as they are now
        (kept by the write and by the undo): from the read, else (an older record) a stat."""
        extra = {"temp": beside(record["path"], "tmp", ctx.run_id, index),
                 "restore_temp": beside(record["path"], "restore", ctx.run_id, index),
                 "backup": posixpath.join(tx_dir, "files", f"{index}.orig"), "backup_name": f"{index}.orig"}
        if "orig_mode" not in record:
            attrs = ctx.session.stat(record["path"]) if record.get("existed", True) else None
            extra["orig_mode"] = (attrs.st_mode & 0o7777) if attrs else 0o644
            extra["orig_owner"] = f"{attrs.st_uid}:{attrs.st_gid}" if attrs else None
        merged = {**record, **extra}
        merged["mode"] = merged["orig_mode"]
        return merged

    def apply_script(self, record: dict) -> str:
        """The atomic write, then the validator with the edited file in place; a failing
        validator puts the original back (still under the undo lock) and refuses."""
        body = write_apply(record)
        if not record.get("validate"):
            return body
        write, applied = body.rsplit("\n", 1)
        f, b, r = quote(record["path"]), quote(record["backup"]), quote(record["restore_temp"])
        owner = record.get("orig_owner")
        keep = f" && keep_owner {r} {quote(owner)}" if owner else ""
        root = "as_root " if record.get("become") else ""
        return (f"{write}\n"
                f"if ! _v=$({record['validate']} 2>&1); then\n"
                f"  if {root}cp {b} {r}{keep} && {root}chmod {format(record['orig_mode'], 'o')} {r} && {root}mv -f {r} {f}; then\n"
                f"    apply_failed \"the validator refused the edit (original restored): $_v\"\n"
                f"  else rm -f {r}; apply_failed \"the validator refused the edit and the original could not be put back "
                f"(it is in {record['backup']}): $_v\"; fi\n"
                f"fi\n{applied}")

    def undo_script(self, record: dict) -> str:
        return write_undo(record)

    def handlers(self, record: dict) -> list[str]:
        return list(record.get("handlers") or [])


class PlannedEdit(ConfigEditStepParams):
    """One edit of a plan (timeout_plan's `edits`): config_edit's parameters, and what the plan
    says about it (ignored here)."""
    layer: str | None = None
    from_seconds: float | None = Field(default=None, alias="from")
    to: float | None = None


class ConfigEditsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edits: list[PlannedEdit] = Field(default_factory=list)


_READ_KEYS = {"format", "file", "prefix", "binary", "error_log", "server_config", "validate_with", "handlers"}


@register
class ConfigEdits(ConfigEdit):
    """Several config edits from one list (a rule's value: `edits: "{{ steps.plan.edits }}"`),
    read in one exec, each its own change with its own undo. Planned all before any applies:
    one refusal (a config already invalid, a server this user cannot reload, a file changed
    since the dump) refuses them all, nothing changed. A file only root may write, without
    become, is left for the host (a noop that says so and carries the lines), not a refusal.
    Two edits of one file: the second is planned on the first's result."""

    name = "config_edits"
    Params = ConfigEditsParams

    def plan(self, params: ConfigEditsParams, ctx: Context) -> Plan:
        raise TypeError("config_edits plans several changes: use plans()")

    def plans(self, params: ConfigEditsParams, ctx: Context) -> list[Plan]:
        if not params.edits:
            return []
        become = ctx.host.become == "sudo"
        fences: dict[str, str] = {}
        scripts = []
        for edit in params.edits:
            key = edit.model_dump_json(include=_READ_KEYS)
            if key not in fences:
                fences[key] = new_fence()
                scripts.append(read_script(edit, fences[key], become))
        result = ctx.session.exec("\n".join(scripts))
        answers = {key: parse_read(result.stdout, fence) for key, fence in fences.items()}
        written: dict[str, bytes] = {}
        out = []
        for edit in params.edits:
            answer = answers[edit.model_dump_json(include=_READ_KEYS)]
            if answer.missing & set(written):   # created by an earlier edit of this step: it exists then
                answer = dataclasses.replace(answer, missing=answer.missing - set(written))
            known = set(answer.files) | set(answer.missing) | set(written)
            earlier = {path: data for path, data in written.items() if path in known}
            plan, new = plan_from(edit, answer, become, ctx.host.user, files={**answer.files, **earlier},
                                  dump=None if earlier else True, optional=True)
            if new is not None:
                written[plan.record["path"]] = new
            out.append(plan)
        return out
