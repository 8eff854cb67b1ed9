"""PHP fatal errors and uncaught exceptions in the site's logs, counted by signature (defective code).

Reads the tail (`bytes`, 512 kB by default: fatals repeat, a short tail is enough) of PHP's
error_log, php-fpm's log (a worker's stderr), the origin's nginx error log (FastCGI stderr) and
WordPress's wp-content/debug.log (WP_DEBUG_LOG) under the site's root, and groups the fatal
lines of each by signature (opskit.stack.php_errors). Value:

    {"groups": [{"signature": "Uncaught Error: Call to undefined function x() in /p/a.php:3",
                 "kind": "fatal", "count": 4, "first": "...", "last": "...", "sample": "...",
                 "log": "/home/site1/public_html/wp-content/debug.log", "line": 12,
                 "code_file": "/p/a.php", "code_line": 3}, ...],
     "logs": [{"role": "debug", "file": "...", "readable": True, "reason": None, "size": 812}, ...]}

`line` is the sample's line in the file when the whole file was read, else None.
"""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from opskit.probes._collect import Collected
from opskit.probes.log_scan import tails_script
from opskit.stack import php_errors
from opskit.steps import Context, Probe, register

DEFAULT_BYTES = 512 * 1024


class AppErrorsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    php: str | None = None        # PHP's error_log (php_timeouts' error_log)
    fpm: str | None = None        # php-fpm's error log
    web: str | None = None        # the origin's web server error log
    wp_root: str | None = None    # WordPress's root: its wp-content/debug.log is read
    debug_log: str | None = None  # another debug.log (the inventory's logs.debug)
    bytes: int = Field(default=DEFAULT_BYTES, ge=4096, le=8 * 1024 * 1024)
    become: str | None = None

    def chosen(self) -> dict[str, str]:
        paths = {role: getattr(self, role) for role in ("php", "fpm", "web") if getattr(self, role)}
        debug = self.debug_log or (posixpath.join(self.wp_root, "wp-content", "debug.log") if self.wp_root else None)
        if debug:
            paths["debug"] = debug
        return paths


@register
class AppErrors(Probe):
    """PHP fatal errors, grouped by signature, in PHP's, php-fpm's, nginx's logs and WordPress's debug.log."""

    name = "app_errors"
    Params = AppErrorsParams

    def script(self, params: AppErrorsParams, ctx: Context) -> str:
        return tails_script(params.chosen(), ctx, params.bytes, params.become == "sudo")

    def parse(self, output: str, exit_status: int, params: AppErrorsParams) -> dict[str, Any]:
        got = Collected.parse(output)
        groups, logs, seen = [], [], set()
        for kind, fields in got.events:
            if kind != "log" or len(fields) < 2 or fields[1] in seen:
                continue
            role, path = fields[0], fields[1]
            seen.add(path)
            if path not in got.tails:
                logs.append({"role": role, "file": path, "readable": False,
                             "reason": got.unreadable.get(path, "not read"), "size": None})
                continue
            size, text = got.tails[path]
            whole = size <= params.bytes
            found = php_errors.group(text, path, partial_first_line=not whole)
            for g in found:
                entry = g.to_json()
                if not whole:
                    entry["line"] = None
                groups.append(entry)
            logs.append({"role": role, "file": path, "readable": True, "reason": None, "size": size})
        return {"groups": merge(groups), "logs": logs}


def merge(groups: list[dict]) -> list[dict]:
    """One group per (kind, signature) over every log: counts summed, first/last widened, the
    newest sample kept with its log and line; `logs` lists where it was seen. Most frequent first."""
    merged: dict[tuple[str, str], dict] = {}
    for g in groups:
        key = (g["kind"], g["signature"])
        if key not in merged:
            merged[key] = {**g, "logs": [g["log"]]}
            continue
        m = merged[key]
        times = [t for t in (m["first"], m["last"], g["first"], g["last"]) if t]
        newest = g if (g["last"] or "") >= (m["last"] or "") else m
        merged[key] = {**m, "count": m["count"] + g["count"], "first": min(times, default=None),
                       "last": max(times, default=None), "sample": newest["sample"], "log": newest["log"],
                       "line": newest["line"], "logs": [*m["logs"], g["log"]]}
    return sorted(merged.values(), key=lambda g: (-g["count"], g["signature"]))
