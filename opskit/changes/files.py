"""Generic file changes: rename a path, write a file. Both undo themselves carefully."""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import stat as stat_module

from pydantic import BaseModel, ConfigDict, Field

from opskit.guard import heredoc
from opskit.shell import quote
from opskit.steps import Change, Context, Plan, register


class RenameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    src: str
    dst: str
    missing_ok: bool = True   # nothing at src → no-op (True) or the step fails (False)


def rename_undo(src: str, dst: str) -> str:
    """sh body: move dst back to src if the world is as we left it; never clobber (the guard's
    safe_mv refuses to replace or enter a path that appeared at src, and checks the result)."""
    s, d = quote(src), quote(dst)
    return (
        f"if [ -e {d} ] || [ -L {d} ]; then\n"
        f"  safe_mv {d} {s}; case $? in\n"
        f"    0) undone {quote(f'renamed {dst} back to {src}')} ;;\n"
        f"    1) conflict {quote(f'{src} exists again; left {dst} in place, nothing overwritten')} ;;\n"
        f"    *) failed {quote(f'could not rename {dst} back to {src}: ')}\"$_mv_err\" ;;\n"
        f"  esac\n"
        f"elif [ -e {s} ] || [ -L {s} ]; then not_applied {quote(f'{src} is in place')}\n"
        f"else conflict {quote(f'neither {src} nor {dst} exists any more')}; fi"
    )


def rename_apply(src: str, dst: str) -> str:
    """sh body (inside guard.apply_script): rename src to dst, refusing to replace or enter dst."""
    s, d = quote(src), quote(dst)
    return (
        f"safe_mv {s} {d}; case $? in\n"
        f"  0) applied {quote(f'renamed {src} to {dst}')} ;;\n"
        f"  1) apply_failed {quote(f'{dst} already exists; refusing to overwrite it')} ;;\n"
        f"  2) apply_failed {quote(f'nothing at {src} to rename')} ;;\n"
        f"  *) apply_failed {quote(f'could not rename {src} to {dst}: ')}\"$_mv_err\" ;;\n"
        "esac"
    )


@register
class Rename(Change):
    """Rename a file or folder; undo renames it back unless something took its place."""

    name = "rename"
    Params = RenameParams

    def plan(self, params: RenameParams, ctx: Context) -> Plan:
        src, dst = ctx.path(params.src), ctx.path(params.dst)
        summary = f"rename {src} → {dst}"
        if ctx.session.stat(src) is None:
            if params.missing_ok:
                return Plan(summary, noop=f"nothing at {src}")
            return Plan(summary, blocked=f"nothing at {src} to rename")
        if ctx.session.stat(dst) is not None:
            return Plan(summary, blocked=f"{dst} already exists; refusing to overwrite it")
        return Plan(summary, record={"src": src, "dst": dst}, diff=f"- {src}\n+ {dst}\n")

    def apply_script(self, record: dict) -> str:
        return rename_apply(record["src"], record["dst"])

    def undo_script(self, record: dict) -> str:
        return rename_undo(record["src"], record["dst"])


class WriteFileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    content: str
    mode: int | None = Field(default=None, ge=0, le=0o7777)   # default: keep the file's mode, 0600 for new files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unified_diff(path: str, old: bytes | None, new: bytes) -> str:
    old_lines = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    new_lines = new.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(old_lines, new_lines, fromfile=f"a{path}" if old is not None else "/dev/null", tofile=f"b{path}"))


def beside(path: str, label: str, run_id: str, index: int) -> str:
    """A temp name in path's own folder (so a rename onto path is atomic), unique to this
    run's step and recorded in its undo record, so undo and recovery can remove it."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.opskit-{label}-{run_id}-{index}")


@register
class WriteFile(Change):
    """Write a whole file atomically, keeping its owner, group and mode; undo restores the
    original (or removes a new file) only while the file still has exactly the content we
    wrote. Temp files are created 0600 and never hold content under a wider mode."""

    name = "write_file"
    Params = WriteFileParams

    def plan(self, params: WriteFileParams, ctx: Context) -> Plan:
        path = ctx.path(params.path)
        new = params.content.encode()
        if b"\x00" in new:
            return Plan(f"write {path}", blocked="the content has a NUL byte")
        attrs = ctx.session.stat(path)
        if attrs is not None and not stat_module.S_ISREG(attrs.st_mode or 0):
            return Plan(f"write {path}", blocked=f"{path} exists and is not a regular file")
        old = ctx.session.read(path) if attrs is not None else None
        mode = params.mode if params.mode is not None else (stat_module.S_IMODE(attrs.st_mode) if attrs else 0o600)
        if old == new and (attrs is None or stat_module.S_IMODE(attrs.st_mode) == mode):
            return Plan(f"write {path}", noop=f"{path} already has this content")
        record = {
            "path": path,
            "existed": old is not None,
            "orig_sha256": sha256(old) if old is not None else None,
            "orig_mode": stat_module.S_IMODE(attrs.st_mode) if attrs else None,
            "orig_owner": f"{attrs.st_uid}:{attrs.st_gid}" if attrs else None,
            "new_sha256": sha256(new),
            "mode": mode,
            "content": params.content,
        }
        verb = "edit" if old is not None else "create"
        return Plan(f"{verb} {path}", record=record, diff=unified_diff(path, old, new), original=old)

    def prepare(self, record: dict, tx_dir: str, index: int, ctx: Context) -> dict:
        """Where the backup and the temp files go: named in the record before anything is written."""
        extra = {"temp": beside(record["path"], "tmp", ctx.run_id, index),
                 "restore_temp": beside(record["path"], "restore", ctx.run_id, index)}
        if record["existed"]:
            extra["backup"] = posixpath.join(tx_dir, "files", f"{index}.orig")
            extra["backup_name"] = f"{index}.orig"
        return {**record, **extra}

    def apply_script(self, record: dict) -> str:
        return write_apply(record)

    def undo_script(self, record: dict) -> str:
        return write_undo(record)


def write_apply(record: dict) -> str:
    """sh body (inside guard.apply_script): back up the original (checked against the digest
    we planned with), write the new bytes to a 0600 temp file beside the target, give it the
    original owner, group and mode, then rename it over the target."""
    path = record["path"]
    f, t = quote(path), quote(record["temp"])
    owner = record.get("orig_owner")
    become = bool(record.get("become"))
    root = "as_root " if become else ""
    lines = [f"BECOME={'1' if become else ''}", f"{root}rm -f {t}"]
    if record["existed"]:
        b = quote(record["backup"])
        lines += [
            f"[ -f {f} ] || apply_conflict {quote(f'{path} is gone since opskit read it; not writing')}",
            f"[ \"$(digest {f})\" = {record['orig_sha256']} ] || apply_conflict {quote(f'{path} changed since opskit read it; not touching it')}",
            f"mkdir -p \"$TX/files\" && {'as_root cat -- ' + f + ' > ' + b if become else 'cp ' + f + ' ' + b} "
            f"&& [ \"$(digest {b})\" = {record['orig_sha256']} ] "
            f"|| {{ rm -f {b}; apply_failed {quote(f'could not back up {path} (disk full or over quota?); not writing')}; }}",
        ]
    else:
        lines.append(f"{{ [ -e {f} ] || [ -L {f} ]; }} && apply_conflict {quote(f'{path} appeared since opskit looked; not writing')}")
    temp = record["temp"]
    lines += [
        heredoc(t, record["content"], exact=True, as_root=become).rstrip("\n").replace(
            "\n", f" || {{ {root}rm -f {t}; apply_failed {quote('could not write ' + temp)}; }}\n", 1),
        f"[ \"$(digest {t})\" = {record['new_sha256']} ] || {{ {root}rm -f {t}; apply_failed {quote('could not write ' + temp + ' (disk full or over quota?)')}; }}",
    ]
    if owner:
        lines.append(f"keep_owner {t} {quote(owner)} || {{ {root}rm -f {t}; apply_failed "
                     f"{quote(f'cannot give the new {path} its owner:group {owner} (not a member of the group?); not writing')}; }}")
    lines += [
        f"{root}chmod {format(record['mode'], 'o')} {t} && {root}mv -f {t} {f} || {{ {root}rm -f {t}; apply_failed {quote(f'could not replace {path}')}; }}",
        f"applied {quote(('edited ' if record['existed'] else 'created ') + path)}",
    ]
    return "\n".join(lines)


def write_undo(record: dict) -> str:
    """sh body: restore the original bytes, owner, group and mode (or remove a file we
    created) while the file still has exactly the content we wrote; a temp file of an
    interrupted write is removed first."""
    path = record["path"]
    f, new = quote(path), record["new_sha256"]
    root = "as_root " if record.get("become") else ""
    cleanup = f"BECOME={'1' if root else ''}\n"
    cleanup += f"{root}rm -f {quote(record['temp'])} {quote(record['restore_temp'])}\n" if record.get("temp") else ""
    if record["existed"]:
        backup = quote(record["backup"])
        r = quote(record.get("restore_temp") or path + ".opskit-restore")
        mode = format(record["orig_mode"], "o")
        owner = record.get("orig_owner")
        keep = (f" && {{ keep_owner {r} {quote(owner)} || {{ _err={quote('cannot give it its owner:group ' + owner)}; false; }}; }}"
                if owner else "")
        same = new == record["orig_sha256"]   # only the mode was changed
        restore_ok = f"undone {quote('restored ' + path)}"
        return cleanup + (
            f"cur=$(digest {f})\n"
            f"if [ ! -e {f} ]; then conflict {quote(path + ' was removed since opskit wrote it; original kept in ' + record['backup'])}\n"
            + (f"elif [ \"$cur\" = {new} ]; then {root}chmod {mode} {f} && {restore_ok} || failed {quote('could not restore the mode of ' + path)}\n" if same else
               f"elif [ \"$cur\" = {new} ]; then\n"
               f"  if [ \"$(digest {backup})\" != {record['orig_sha256']} ]; then conflict {quote('the backup of ' + path + ' is missing or damaged; left ' + path + ' as opskit wrote it')}\n"
               f"  elif _err=$({root}cp {backup} {r} 2>&1){keep} && _err=$({root}chmod {mode} {r} 2>&1 && {root}mv -f {r} {f} 2>&1); then {restore_ok}\n"
               f"  else {root}rm -f {r}; failed {quote('could not restore ' + path + ': ')}\"$_err\"; fi\n"
               f"elif [ \"$cur\" = {record['orig_sha256']} ]; then not_applied {quote(path + ' has its original content')}\n")
            + f"else conflict {quote(path + ' changed since opskit wrote it; left as is; original kept in ' + record['backup'])}; fi"
        )
    return cleanup + (
        f"cur=$(digest {f})\n"
        f"if [ ! -e {f} ]; then not_applied {quote(path + ' is absent')}\n"
        f"elif [ \"$cur\" = {new} ]; then {root}rm -f {f} && undone {quote('removed ' + path)} || failed {quote('could not remove ' + path)}\n"
        f"else conflict {quote(path + ' changed since opskit created it; left as is')}; fi"
    )
