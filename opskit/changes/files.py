"""Generic file changes: rename a path, write a file. Both undo themselves carefully."""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import stat as stat_module

from pydantic import BaseModel, ConfigDict, Field

from opskit.shell import quote
from opskit.steps import Change, Context, Plan, register


class RenameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    src: str
    dst: str
    missing_ok: bool = True   # nothing at src → no-op (True) or the step fails (False)


def rename_undo(src: str, dst: str) -> str:
    """sh body: move dst back to src if the world is as we left it; never clobber."""
    s, d = quote(src), quote(dst)
    return (
        f"if [ -e {d} ] || [ -L {d} ]; then\n"
        f"  if [ -e {s} ] || [ -L {s} ]; then conflict {quote(f'{src} exists again; left {dst} in place, nothing overwritten')}\n"
        f"  elif mv {d} {s}; then undone {quote(f'renamed {dst} back to {src}')}\n"
        f"  else failed {quote(f'could not rename {dst} back to {src}')}; fi\n"
        f"elif [ -e {s} ] || [ -L {s} ]; then not_applied {quote(f'{src} is in place')}\n"
        f"else conflict {quote(f'neither {src} nor {dst} exists any more')}; fi"
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

    def apply(self, record: dict, ctx: Context) -> None:
        ctx.session.rename(record["src"], record["dst"])

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


@register
class WriteFile(Change):
    """Write a whole file atomically; undo restores the original (or removes a new file)
    only while the file still has exactly the content we wrote."""

    name = "write_file"
    Params = WriteFileParams

    def plan(self, params: WriteFileParams, ctx: Context) -> Plan:
        path = ctx.path(params.path)
        new = params.content.encode()
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
            "new_sha256": sha256(new),
            "mode": mode,
            "content": params.content,
        }
        verb = "edit" if old is not None else "create"
        return Plan(f"{verb} {path}", record=record, diff=unified_diff(path, old, new))

    def prepare(self, record: dict, tx_dir: str, index: int, ctx: Context) -> dict:
        if record["existed"]:
            backup = posixpath.join(tx_dir, "files", f"{index}.orig")
            ctx.session.mkdir_p(posixpath.dirname(backup))
            original = ctx.session.read(record["path"])
            if sha256(original) != record["orig_sha256"]:
                raise RuntimeError(f"{record['path']} changed while planning; not touching it")
            ctx.session.write_atomic(backup, original, 0o600)
            record = {**record, "backup": backup}
        return record

    def apply(self, record: dict, ctx: Context) -> None:
        ctx.session.write_atomic(record["path"], record["content"].encode(), record["mode"])

    def undo_script(self, record: dict) -> str:
        f = quote(record["path"])
        new = record["new_sha256"]
        if record["existed"]:
            backup = quote(record["backup"])
            restore_tmp = quote(record["path"] + ".opskit-restore")
            mode = format(record["orig_mode"], "o")
            return (
                f"cur=$(digest {f})\n"
                f"if [ ! -e {f} ]; then conflict {quote(record['path'] + ' was removed since opskit wrote it; original kept in ' + record['backup'])}\n"
                f"elif [ \"$cur\" = {new} ]; then\n"
                f"  if cp {backup} {restore_tmp} && chmod {mode} {restore_tmp} && mv -f {restore_tmp} {f}; then undone {quote('restored ' + record['path'])}\n"
                f"  else rm -f {restore_tmp}; failed {quote('could not restore ' + record['path'])}; fi\n"
                f"elif [ \"$cur\" = {record['orig_sha256']} ]; then not_applied {quote(record['path'] + ' has its original content')}\n"
                f"else conflict {quote(record['path'] + ' changed since opskit wrote it; left as is; original kept in ' + record['backup'])}; fi"
            )
        return (
            f"cur=$(digest {f})\n"
            f"if [ ! -e {f} ]; then not_applied {quote(record['path'] + ' is absent')}\n"
            f"elif [ \"$cur\" = {new} ]; then rm -f {f} && undone {quote('removed ' + record['path'])} || failed {quote('could not remove ' + record['path'])}\n"
            f"else conflict {quote(record['path'] + ' changed since opskit created it; left as is')}; fi"
        )
