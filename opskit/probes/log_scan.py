"""The signatures of each 502/504 cause, counted in the tail of the site's logs.

The logs come from the configs the earlier probes read (php-fpm's error_log, the pool's
slowlog, PHP's error_log, the origin's and the edge's nginx error_log, Apache's ErrorLog);
the inventory's `logs:` names them instead: `logs: {fpm: PATH, php: PATH, web: PATH,
edge: PATH, slow: PATH}`, and any other name adds a log to scan. Each is read with a bounded
`tail -c` (`bytes`, 2 MB by default, 8 MB at most: never the whole of a big log), counted by
opskit.stack.logs, and given as a rules.facts.LogScan; `kernel` is the OOM killer's lines of
`dmesg -T` (readable by root only where kernel.dmesg_restrict is 1, Debian's default):

    {"fpm": {"file": "/var/log/php8.2-fpm.log", "readable": True, "bytes_read": 48211, "size": 48211,
             "signatures": {"fpm-terminate": {"count": 3, "first": "2026-12-01T10:15:02", "last": ...,
                                              "sample": "[01-Dec-2026 ...] WARNING: ...", "line": 412, ...}}},
     "web": {...}, "edge": None, "php": {...}, "slow": {...}, "extra": {}, "logs": [...],
     "kernel": {"file": "dmesg -T", "readable": False, "reason": "dmesg: read kernel buffer failed: ..."}}

A log this user may not read is {"readable": False, "reason": "Permission denied"}: the rules
say so and conclude nothing from it. `line` is the sample's line in the file when the whole
file was read, else None. In php-fpm's log, exits on SIGKILL or SIGTERM with no "execution
timed out" of the same pool and pid before them are counted as external-kill and
external-term (opskit.stack.logs.child_exits).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from opskit.probes._collect import Collected, collect, new_mark
from opskit.rules.facts import LogScan
from opskit.shell import quote
from opskit.stack import logs
from opskit.steps import Context, Probe, register

ROLES = ("fpm", "slow", "php", "web", "apache", "edge")
# other names an inventory may use for the roles
ALIASES = {"php_fpm": "fpm", "php-fpm": "fpm", "fpm_error": "fpm", "php_error": "php", "nginx_error": "web",
           "nginx": "web", "apache_error": "web", "edge_error": "edge", "slowlog": "slow"}
DEFAULT_BYTES = 2 * 1024 * 1024
MAX_BYTES = 8 * 1024 * 1024


class LogScanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fpm: str | None = None       # php-fpm's error_log
    slow: str | None = None      # the pool's slowlog
    php: str | None = None       # PHP's error_log
    web: str | None = None       # the origin's nginx error_log
    apache: str | None = None    # Apache's ErrorLog (the web log when nginx does not run the PHP)
    edge: str | None = None      # the edge proxy's nginx error_log
    overrides: dict[str, str] = Field(default_factory=dict)   # the inventory's logs: {name: path}
    bytes: int = Field(default=DEFAULT_BYTES, ge=4096, le=MAX_BYTES)
    become: str | None = None
    kernel: bool = True          # also the kernel's OOM-killer lines (`dmesg -T`; root only on Debian)

    def chosen(self) -> dict[str, str]:
        """role → path: the inventory's first, then what the configs said; web falls back to Apache's."""
        paths = {role: getattr(self, role) for role in ROLES if getattr(self, role)}
        paths.update({ALIASES.get(name, name): path for name, path in self.overrides.items() if path})
        if "web" not in paths and "apache" in paths:
            paths["web"] = paths["apache"]
        paths.pop("apache", None)
        return paths


@register
class LogScanProbe(Probe):
    """Count each 502/504 signature in the tail of php-fpm's, PHP's, nginx's and Apache's logs."""

    name = "log_scan"
    Params = LogScanParams

    def script(self, params: LogScanParams, ctx: Context) -> str:
        return tails_script(params.chosen(), ctx, params.bytes, params.become == "sudo",
                            KERNEL_SCRIPT if params.kernel else "")

    def parse(self, output: str, exit_status: int, params: LogScanParams) -> dict[str, Any]:
        return analyse(Collected.parse(output), params)


# The OOM killer's lines from the kernel's ring buffer: only "Killed process" (one per kill,
# naming the process), the last 50; when dmesg may not be read (kernel.dmesg_restrict, Debian's
# default, without become), its own message, as the block's text with a failing status.
KERNEL_SCRIPT = """_oom() { _k=$(dmesg -T 2>&1) || { printf '%s' "$_k" | head -c 300; return 1; }
  printf '%s\\n' "$_k" | grep -E 'Killed process [0-9]+ ' | tail -n 50; return 0; }
if command -v dmesg >/dev/null 2>&1; then run_block dmesg _oom; fi"""
KERNEL_SOURCE = "dmesg -T"


def tails_script(paths: dict[str, str], ctx: Context, limit: int, become: bool, extra: str = "") -> str:
    """sh printing `MARK log ROLE<TAB>PATH` then the last `limit` bytes of each log (Collected's
    events and tails), then `extra`; shared with app_errors."""
    lines = []
    for role, path in paths.items():
        full = ctx.path(path)
        lines.append(f"printf '%s log %s\\t%s\\n' \"$M\" {quote(role)} {quote(full)}; tailf {quote(full)} {int(limit)}")
    if extra:
        lines.append(extra)
    return collect("\n".join(lines) or "true", new_mark(), become=become)


def scan_kernel(got: Collected) -> dict | None:
    """The OOM kills in `dmesg -T` as a LogScan (lines are not file lines: `line` is None);
    unreadable with dmesg's own words when it refused; None when the host has no dmesg."""
    if "dmesg" not in got.blocks:
        return None
    status, text = got.blocks["dmesg"]
    if status != 0:
        reason = text.strip().splitlines()[-1] if text.strip() else f"dmesg exited {status}"
        return LogScan(file=KERNEL_SOURCE, readable=False, reason=reason).model_dump(mode="json")
    signatures = {name: {**count.to_json(), "line": None} for name, count in logs.scan(text, KERNEL_SOURCE).items()}
    return LogScan(file=KERNEL_SOURCE, readable=True, bytes_read=len(text.encode()),
                   signatures=signatures).model_dump(mode="json")


def scan_log(got: Collected, path: str, limit: int) -> dict:
    if path not in got.tails:
        reason = got.unreadable.get(path, "not read")
        return LogScan(file=path, readable=False, reason=reason).model_dump(mode="json") | {"size": None}
    size, text = got.tails[path]
    return scan_text(text, path, size, limit)


def scan_text(text: str, path: str, size: int, limit: int = DEFAULT_BYTES) -> dict:
    """A log's tail as a LogScan (with its size): pure, shared with the measurement."""
    whole = size <= limit
    counted = logs.scan(text, path, partial_first_line=not whole)
    signatures = {}
    for name, count in counted.items():
        entry = count.to_json()
        entry["line"] = count.sample_line if whole else None
        signatures[name] = entry
    exits = [e for e in logs.child_exits(text) if e.cause in ("external-kill", "external-term")]
    for cause in ("external-kill", "external-term"):
        mine = [e for e in exits if e.cause == cause]
        if mine:
            times = [e.at for e in mine if e.at]
            signatures[cause] = {"count": len(mine), "first": min(times) if times else None,
                                 "last": max(times) if times else None, "sample": mine[-1].line,
                                 "source": path, "line": mine[-1].line_number if whole else None,
                                 "where": sorted({e.pool for e in mine})}
    scan = LogScan(file=path, readable=True, bytes_read=len(text.encode()), signatures=signatures)
    return scan.model_dump(mode="json") | {"size": size}


def analyse(got: Collected, params: LogScanParams) -> dict[str, Any]:
    value: dict[str, Any] = {role: None for role in ROLES if role != "apache"}
    value["extra"] = {}
    value["logs"] = []
    value["kernel"] = scan_kernel(got) if params.kernel else None
    for kind, fields in got.events:
        if kind != "log" or len(fields) < 2:
            continue
        role, path = fields[0], fields[1]
        scan = scan_log(got, path, params.bytes)
        if role in value and role != "extra" and role != "logs":
            value[role] = scan
        else:
            value["extra"][role] = scan
        value["logs"].append({"role": role, "file": path, "readable": scan["readable"], "reason": scan["reason"],
                              "size": scan["size"], "bytes_read": scan["bytes_read"],
                              "signatures": {k: v["count"] for k, v in scan["signatures"].items()}})
    return value
