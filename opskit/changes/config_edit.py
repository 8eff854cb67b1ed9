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

Reading is one exec (`nginx -T` and the bytes of every file it names, base64); the plan is
changes/config.py's pure `plan_edit`; writing is changes/files.py's atomic write (owner,
group and mode kept, checked against the digest planned with). The validator runs with the
edited file in place, inside the same exec and under the undo lock; if it fails the original
is put back before the exec ends, so no reload — ours or anyone's — can load it. Kept apart
from config.py, which stays free of any shell text.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from opskit.changes.config import ConfigEditParams, plan_edit
from opskit.changes.files import beside, write_apply, write_undo
from opskit.errors import RemoteCommandError
from opskit.guard import PRELUDE_HELPERS
from opskit.probes.batch import new_fence
from opskit.shell import quote
from opskit.steps import Change, Context, Plan, register

Server = Literal["nginx", "php-fpm"]


class Reload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reload: Server


class ConfigEditStepParams(ConfigEditParams):
    prefix: str | None = None                       # nginx -p of the running server
    binary: str | None = None                       # the server's binary (default: nginx, php-fpm8.2)
    validate_with: Server | Literal["none"] | None = Field(default=None, alias="validate")
    handlers: list[Reload] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("prefix", "binary")
    @classmethod
    def _absolute_or_name(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or not value.strip()):
            raise ValueError("must be a path on one line")
        return value

    @property
    def validator(self) -> str:
        if self.validate_with:
            return self.validate_with
        return {"nginx": "nginx", "php-fpm": "php-fpm", "php-ini": "none"}[self.format]


def server_binary(server: str, params: ConfigEditStepParams) -> str:
    return params.binary or {"nginx": "nginx", "php-fpm": "php-fpm8.2"}[server]


def validate_command(server: str, params: ConfigEditStepParams) -> str:
    """The server's own test of its whole config, as the running server reads it."""
    binary = quote(server_binary(server, params))
    if server == "nginx":
        prefix = f" -p {quote(params.prefix)}" if params.prefix else ""
        return f"{binary} -t -q{prefix} -c {quote(params.file)}"
    return f"{binary} -t -y {quote(params.file)}"


def reload_body(server: str, params: ConfigEditStepParams) -> str:
    """A graceful reload: nginx -s reload (HUP to the master named by its pid file); php-fpm's
    master found by its config file and sent USR2. Through sudo -n when the change has
    become (the handler body sets BECOME)."""
    if server == "nginx":
        prefix = f" -p {quote(params.prefix)}" if params.prefix else ""
        command = f"as_root {quote(server_binary(server, params))} -s reload{prefix} -c {quote(params.file)}"
        return (f"if _h=$({command} 2>&1); then handled {quote('reloaded nginx (' + params.file + ')')}; "
                f"else handler_failed \"nginx -s reload: $_h\"; fi")
    conf = params.file
    return (f"_pid=$(ps -e -o pid= -o args= | awk -v c={quote('(' + conf + ')')} "
            "'index($0, \"php-fpm: master process \" c) {print $1; exit}')\n"
            f"if [ -n \"$_pid\" ] && as_root kill -USR2 \"$_pid\" 2>/dev/null; then handled {quote('reloaded php-fpm (' + conf + ')')}; "
            f"else handler_failed {quote('no php-fpm master running ' + conf + ' that this user may signal')}; fi")


def read_script(params: ConfigEditStepParams, fence: str, become: bool = False) -> str:
    """One exec: for nginx the `nginx -T` dump and every file it names; else the file itself
    (and a php-fpm main file's includes). Bytes travel as base64, so nothing is lost. Each
    file says whether the login user may replace it; with become, `sudo -n` is tried first."""
    lines = [f"BECOME={'1' if become else ''}"]
    if become:
        lines.append(f"echo '{fence} begin sudo'; sudo -n -- true 2>&1; s=$?; echo; echo '{fence} end sudo' $s")
    if params.format == "nginx":
        binary = "as_root " + quote(server_binary("nginx", params))
        prefix = f" -p {quote(params.prefix)}" if params.prefix else ""
        err = '"${TMPDIR:-/tmp}/.opskit-err.$$"'
        lines.append(f"echo '{fence} begin dump'; {binary} -T -q{prefix} -c {quote(params.file)} 2>{err}; s=$?; "
                     f"echo; echo '{fence} end dump' $s; echo '{fence} begin dump-errors'; cat {err}; rm -f {err}; "
                     f"echo; echo '{fence} end dump-errors' 0")
        lines.append(f"{binary} -T -q{prefix} -c {quote(params.file)} 2>/dev/null | "
                     "sed -n 's/^# configuration file \\(.*\\):$/\\1/p' > \"${TMPDIR:-/tmp}/.opskit-files.$$\"")
    else:
        lines.append(f"printf '%s\\n' {quote(params.file)} > \"${{TMPDIR:-/tmp}}/.opskit-files.$$\"")
        if params.format == "php-fpm":
            # include=GLOB lines of the main file, expanded by the shell as php-fpm does
            lines.append(f"sed -n 's/^[[:space:]]*include[[:space:]]*=[[:space:]]*//p' {quote(params.file)} | "
                         "while IFS= read -r pattern; do for f in $pattern; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done; done "
                         ">> \"${TMPDIR:-/tmp}/.opskit-files.$$\"")
    lines.append("while IFS= read -r f; do "
                 f"echo \"{fence} begin file:$f\"; as_root base64 \"$f\" 2>&1; s=$?; echo; echo \"{fence} end file:$f\" $s; "
                 "if [ -w \"$f\" ] && [ -w \"$(dirname \"$f\")\" ]; then w=1; else w=0; fi; "
                 f"echo \"{fence} begin writable:$f\"; printf '%s %s\\n' \"$w\" \"$(owner_of \"$f\")\"; echo; echo \"{fence} end writable:$f\" 0; "
                 "done < \"${TMPDIR:-/tmp}/.opskit-files.$$\"; rm -f \"${TMPDIR:-/tmp}/.opskit-files.$$\"")
    # owner_of and as_root come from the guard's shared helpers
    return PRELUDE_HELPERS + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReadAnswer:
    dump: str | None                  # nginx -T's output (None: not nginx, or it failed)
    files: dict[str, bytes]
    unreadable: dict[str, str]        # path → why
    writable: dict[str, tuple[bool, str]]   # path → (the login user may replace it, owner uid:gid)
    sudo_error: str | None = None     # become: sudo -n refused (its words)
    dump_errors: str = ""             # what nginx -T said on stderr


def parse_read(stdout: str, fence: str) -> ReadAnswer:
    """Pure: read_script's output → ReadAnswer."""
    sections = _split_named(stdout, fence)
    dump = sections.pop("dump", None)
    dump_errors = sections.pop("dump-errors", ("", 0))[0].strip()
    sudo = sections.pop("sudo", None)
    writable = {}
    for name in [n for n in sections if n.startswith("writable:")]:
        words = sections.pop(name)[0].split()
        writable[name[len("writable:"):]] = (bool(words) and words[0] == "1", words[1] if len(words) > 1 else "")
    files, unreadable = {}, {}
    for name, (text, status) in sections.items():
        path = name[len("file:"):]
        if status != 0:
            unreadable[path] = text.strip().splitlines()[-1] if text.strip() else f"exit {status}"
            continue
        files[path] = base64.b64decode("".join(text.split()))
    sudo_error = None if sudo is None or sudo[1] == 0 else (sudo[0].strip() or f"exit {sudo[1]}")
    return ReadAnswer(dump[0] if dump and dump[1] == 0 else None, files, unreadable, writable, sudo_error, dump_errors)


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


@register
class ConfigEdit(Change):
    """Set one directive in a config file on the host (see the module docstring)."""

    name = "config_edit"
    Params = ConfigEditStepParams

    def plan(self, params: ConfigEditStepParams, ctx: Context) -> Plan:
        fence = new_fence()
        become = ctx.host.become == "sudo"
        result = ctx.session.exec(read_script(params, fence, become))
        answer = parse_read(result.stdout, fence)
        if answer.sudo_error:
            return Plan(f"edit {params.file}", blocked=f"become: sudo, but `sudo -n` refused: {answer.sudo_error} "
                                                       "(opskit never types a password: allow this user NOPASSWD for the commands)")
        dump, files, unreadable = answer.dump, answer.files, answer.unreadable
        if params.format == "nginx" and dump is None:
            said = answer.dump_errors.splitlines()[-1] if answer.dump_errors else result.tail()
            if "Permission denied" in answer.dump_errors and not become:
                return Plan(f"edit {params.file}", blocked=f"nginx -T cannot read {params.file} as the login user ({said}): "
                                                           "reading and editing it needs root; set `become: sudo` for this "
                                                           "host in the inventory (non-interactive sudo -n)")
            raise RemoteCommandError(f"{ctx.host.name}: nginx -T failed for {params.file}: {said}", result)
        if unreadable:
            path, why = next(iter(unreadable.items()))
            return Plan(f"edit {path}", blocked=f"cannot read {path}: {why}")
        edit = plan_edit(ConfigEditParams(**params.model_dump(include=set(ConfigEditParams.model_fields))), files, dump)
        if edit.blocked:
            return Plan(edit.summary, blocked=edit.blocked)
        if edit.noop:
            return Plan(edit.summary, noop=edit.noop)
        may_write, owner = answer.writable.get(edit.path, (False, ""))
        if not may_write and not become:
            return Plan(edit.summary, blocked=f"{edit.path} (owner {owner or 'unknown'}) is not writable by {ctx.host.user or 'the login user'}: "
                                              "editing it needs root; set `become: sudo` for this host in the inventory "
                                              "(non-interactive sudo -n)")
        try:
            content = edit.new.decode("utf-8")
        except UnicodeDecodeError:
            return Plan(edit.summary, blocked=f"{edit.path} is not UTF-8 text; opskit does not edit it")
        if "\x00" in content:
            return Plan(edit.summary, blocked=f"{edit.path} has a NUL byte")
        record = {
            "path": edit.path, "existed": True, "orig_sha256": hashlib.sha256(edit.old).hexdigest(),
            "new_sha256": hashlib.sha256(edit.new).hexdigest(), "content": content,
            "become": become,
            "validate": (("as_root " if become else "") + validate_command(params.validator, params)
                         if params.validator != "none" else None),
            "handlers": [f"BECOME={'1' if become else ''}\n" + reload_body(h.reload, params) for h in params.handlers],
        }
        return Plan(edit.summary, record=record, diff=edit.diff, original=edit.old)

    def prepare(self, record: dict, tx_dir: str, index: int, ctx: Context) -> dict:
        """Backup and temp names, and the file's owner, group and mode as they are now
        (kept by the write and by the undo)."""
        attrs = ctx.session.stat(record["path"])
        extra = {"temp": beside(record["path"], "tmp", ctx.run_id, index),
                 "restore_temp": beside(record["path"], "restore", ctx.run_id, index),
                 "backup": posixpath.join(tx_dir, "files", f"{index}.orig"), "backup_name": f"{index}.orig",
                 "orig_mode": (attrs.st_mode & 0o7777) if attrs else 0o644,
                 "orig_owner": f"{attrs.st_uid}:{attrs.st_gid}" if attrs else None}
        extra["mode"] = extra["orig_mode"]
        return {**record, **extra}

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
