"""Load, cores, memory and the site's php-fpm workers' resident size: what the overload rule reads.

    {"load": {"load1": 0.4, "load5": 0.3, "load15": 0.2, "cores": 2},
     "memory": {"mem_total": 2030000, "mem_available": 1240000, "swap_total": 0, "swap_free": 0},
     "worker_rss_mb": 41.5, "workers": 2}

A value that cannot be read is None.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.shell import quote
from opskit.stack.keyvalues import key_values
from opskit.steps import Context, Probe, register


class LoadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    master_pid: int | None = None   # the site's php-fpm master: its workers' RSS sizes the advice


@register
class HostLoad(Probe):
    name = "host_load"
    Params = LoadParams

    def script(self, params: LoadParams, ctx: Context) -> str:
        master = quote(str(params.master_pid or ""))
        return (
            "[ -r /proc/loadavg ] && echo \"loadavg=$(cat /proc/loadavg)\"\n"
            "echo \"cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)\"\n"
            "[ -r /proc/meminfo ] && sed -n 's/^\\(MemTotal\\|MemAvailable\\|SwapTotal\\|SwapFree\\): *\\([0-9]*\\).*/\\1=\\2/p' /proc/meminfo\n"
            f"m={master}\n"
            "[ -n \"$m\" ] && ps -e -o ppid= -o rss= -o args= 2>/dev/null | awk -v m=\"$m\" "
            "'$1 == m && $3 == \"php-fpm:\" { n++; s += $2 } END { if (n) printf \"workers=%d\\nrss_kb=%d\\n\", n, s }'\n"
            "true"
        )

    def parse(self, output: str, exit_status: int, params: LoadParams) -> dict[str, Any]:
        kv = key_values(output)
        load = kv.get("loadavg", "").split()
        cores = int(kv["cores"]) if kv.get("cores", "").isdigit() and int(kv["cores"]) > 0 else None
        value: dict[str, Any] = {"load": None, "memory": None, "worker_rss_mb": None, "workers": None}
        if len(load) >= 3 and cores:
            try:
                value["load"] = {"load1": float(load[0]), "load5": float(load[1]), "load15": float(load[2]),
                                 "cores": cores}
            except ValueError:
                pass
        numbers = {k: int(v) for k, v in kv.items() if k in ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")
                   and v.isdigit()}
        if numbers.get("MemTotal") and "MemAvailable" in numbers:
            value["memory"] = {"mem_total": numbers["MemTotal"], "mem_available": numbers["MemAvailable"],
                               "swap_total": numbers.get("SwapTotal", 0), "swap_free": numbers.get("SwapFree", 0)}
        if kv.get("workers", "").isdigit() and kv.get("rss_kb", "").isdigit() and int(kv["workers"]):
            value["workers"] = int(kv["workers"])
            value["worker_rss_mb"] = round(int(kv["rss_kb"]) / int(kv["workers"]) / 1024, 1)
        return value
