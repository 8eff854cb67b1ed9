"""Kill-script evidence: what besides the timeout chain may end the site's PHP workers.

The snippet prints, in one exec: the login user's `crontab -l`; /etc/crontab, /etc/cron.d/*,
the scripts in /etc/cron.hourly and /etc/cron.daily (and, as root with `become: sudo`, every
user's crontab in /var/spool/cron); CSF's process-tracking lines of /etc/csf/csf.conf
(PT_*); CloudLinux's /proc/lve and the kernel's name; LiteSpeed's LSAPI_* settings; and
/proc/<pid>/limits of the site's php-fpm WORKERS (the pool's children, by the master's pid:
the SSH shell's own `ulimit` says nothing about them). The parsers are opskit.stack.crontab
and opskit.stack.killers.

Example value:

    {"cron": [{"file": "crontab -l", "line": 3, "text": "pkill -9 --older 60 -f php-fpm", "schedule": "* * * * *",
               "age": 60, "signal": "KILL", "user": None, "own": True}],
     "csf": None, "lve": {"present": False, "evidence": []}, "litespeed": False, "lsapi_max_process_time": None,
     "worker_limits": {"readable": True, "cpu_soft": None, "cpu_hard": None, "text": "Max cpu time  unlimited ...",
                       "file": "/proc/815/limits", "process": "php-fpm: pool www (pid 815)"},
     "read": [...], "unreadable": {...}}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.probes._collect import Collected, collect, new_mark
from opskit.rules.facts import ConfigValue, Setting
from opskit.shell import quote
from opskit.stack import crontab, killers
from opskit.steps import Context, Probe, register

CRON_SCRIPT = r"""
show /etc/crontab 262144
for f in /etc/cron.d/* /etc/cron.hourly/* /etc/cron.daily/*; do [ -f "$f" ] && show "$f" 262144; done
if [ "$(id -u)" = 0 ]; then
  for f in /var/spool/cron/crontabs/* /var/spool/cron/*; do [ -f "$f" ] && show "$f" 262144; done
fi
if [ -e /etc/csf/csf.conf ]; then
  if [ -r /etc/csf/csf.conf ]; then run_block csf grep -n '^[[:space:]]*PT_' /etc/csf/csf.conf
  else printf '%s denied %s\n' "$M" /etc/csf/csf.conf; fi
fi
[ -e /proc/lve ] && echo proc_lve=1
[ -r /proc/lve/list ] && run_block lve head -c 4096 /proc/lve/list
printf 'kernel=%s\n' "$(uname -r 2>/dev/null)"
for f in /usr/local/lsws/conf/httpd_config.conf /usr/local/lsws/conf/httpd_config.xml; do
  if [ -r "$f" ]; then run_block "lsapi $f" grep -n 'LSAPI_' "$f"; elif [ -e "$f" ]; then printf '%s denied %s\n' "$M" "$f"; fi
done
ps -e -o args= 2>/dev/null | grep -q '^[^ ]*lsphp' && echo lsphp=1
me=$(id -u); n=0
ps -e -o pid= -o ppid= -o uid= -o args= 2>/dev/null | while read -r pid ppid uid args; do
  case $args in "php-fpm: pool "*) ;; *) continue ;; esac
  if [ -n "$MASTER" ]; then [ "$ppid" = "$MASTER" ] || continue
  elif [ "$uid" != "$me" ]; then continue; fi
  n=$((n + 1)); [ "$n" -le 8 ] || break
  printf '%s worker %s\t%s\n' "$M" "$pid" "$args"
  show "/proc/$pid/limits"
done
"""


class KillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    master_pid: int | None = None   # the site's php-fpm master (phpfpm_timeouts' master_pid)
    pool: str | None = None         # its pool, for the report
    become: str | None = None


@register
class KillEvidence(Probe):
    """Crontab lines that kill PHP, CSF PT_USERKILL, CloudLinux LVE, LiteSpeed's
    LSAPI_MAX_PROCESS_TIME, and the php-fpm worker's own CPU limit."""

    name = "kill_evidence"
    Params = KillParams

    def script(self, params: KillParams, ctx: Context) -> str:
        master = f"MASTER={quote(str(params.master_pid))}\n" if params.master_pid else "MASTER=\n"
        return collect(master + CRON_SCRIPT, new_mark(), become=params.become == "sudo",
                       outside='run_block "crontab -l" crontab -l')

    def parse(self, output: str, exit_status: int, params: KillParams) -> dict[str, Any]:
        return analyse(Collected.parse(output), params)


def _cron(got: Collected) -> list[dict]:
    user = got.kv.get("user")
    found: list[crontab.KillLine] = []
    owned: dict[int, bool] = {}
    status, text = got.blocks.get("crontab -l", (None, ""))
    if status == 0:
        for line in crontab.kill_lines(text, "crontab -l", "user"):
            owned[id(line)] = True
            found.append(line)
    for path, text in got.files.items():
        if path == "/etc/crontab" or path.startswith("/etc/cron.d/"):
            kind = "system"
        elif path.startswith(("/etc/cron.hourly/", "/etc/cron.daily/")):
            kind = "script"
        elif path.startswith("/var/spool/cron/"):
            kind = "user"
        else:
            continue
        for line in crontab.kill_lines(text, path, kind):
            owned[id(line)] = kind == "user" and path.rsplit("/", 1)[-1] == user
            found.append(line)
    return [{"file": k.file, "line": k.line, "text": k.command, "schedule": k.schedule, "age": k.age_seconds,
             "signal": k.signal, "user": k.user, "own": owned[id(k)], "tool": k.tool, "targets": list(k.targets)}
            for k in found]


def _csf(got: Collected) -> dict | None:
    status, text = got.blocks.get("csf", (None, ""))
    if status is None:
        return None
    lines: dict[int, str] = {}
    for raw in text.split("\n"):
        number, sep, line = raw.partition(":")
        if sep and number.isdigit():
            lines[int(number)] = line
    sparse = "\n".join(lines.get(n, "") for n in range(1, max(lines, default=0) + 1))
    csf = killers.parse_csf(sparse)

    def value(name: str) -> dict | None:
        s = csf.settings.get(name)
        return None if s is None else ConfigValue(value=s.value, file=s.file, line=s.line,
                                                  text=f'{name} = "{s.value}"').model_dump(mode="json")

    usertime = csf.settings.get("PT_USERTIME")
    return {"pt_userkill": value("PT_USERKILL"), "pt_skip_http": value("PT_SKIP_HTTP"),
            "pt_usertime": None if usertime is None else Setting(
                seconds=float(usertime.value) if usertime.value.isdigit() else None, raw=usertime.value,
                source="set" if usertime.value.isdigit() else "unknown", file=usertime.file, line=usertime.line,
                text=f'PT_USERTIME = "{usertime.value}"').model_dump(mode="json")}


def _lve(got: Collected) -> dict:
    kernel = got.kv.get("kernel", "")
    found = killers.cloudlinux(kernel, got.kv.get("proc_lve") == "1")
    evidence = []
    if found.proc_lve:
        evidence.append("/proc/lve exists (the LVE kernel module is loaded)")
    if found.lve_kernel:
        evidence.append(f"uname -r: {kernel}")
    return {"present": found.present, "evidence": evidence, "limits": {}}


def _limits(got: Collected, params: KillParams) -> dict:
    workers = [(fields[0], fields[1] if len(fields) > 1 else "") for kind, fields in got.events if kind == "worker"]
    if not workers:
        who = f"pool {params.pool}" if params.pool else "the site's pool"
        return {"readable": False, "reason": f"no php-fpm worker of {who} is running (pm = ondemand starts them "
                                             "only for requests)" if params.master_pid else
                f"no php-fpm worker of {who} was found", "cpu_soft": None, "cpu_hard": None,
                "text": None, "file": None, "process": None}
    best = None
    for pid, args in workers:
        path = f"/proc/{pid}/limits"
        if path not in got.files:
            continue
        try:
            cpu = killers.parse_proc_limits(got.files[path]).get("Max cpu time")
        except ValueError:
            continue
        if cpu is None:
            continue
        text = next((line for line in got.files[path].split("\n") if line.startswith("Max cpu time")), None)
        entry = {"readable": True, "reason": None, "cpu_soft": cpu.soft, "cpu_hard": cpu.hard,
                 "text": text.rstrip() if text else None, "file": path,
                 "process": f"{args} (pid {pid})"}
        if best is None or (best["cpu_soft"] is None and cpu.soft is not None):
            best = entry
    if best is None:
        pid = workers[0][0]
        return {"readable": False, "reason": got.why_not(f"/proc/{pid}/limits"), "cpu_soft": None, "cpu_hard": None,
                "text": None, "file": f"/proc/{pid}/limits", "process": workers[0][1]}
    return best


def _lsapi(got: Collected) -> tuple[bool, dict | None]:
    settings: list[killers.LsapiSetting] = []
    present = got.kv.get("lsphp") == "1"
    for name, (status, text) in got.blocks.items():
        if not name.startswith("lsapi "):
            continue
        present = True
        file = name[len("lsapi "):]
        for raw in text.split("\n"):
            number, sep, line = raw.partition(":")
            if sep and number.isdigit():
                for s in killers.parse_lsapi(line, file):
                    settings.append(killers.LsapiSetting(s.name, s.value, file, int(number), s.text))
    if not present:
        return False, None
    seconds, found = killers.lsapi_max_process_time(tuple(settings))
    if found is None:
        return True, Setting(seconds=seconds, raw=str(seconds), source="default").model_dump(mode="json")
    return True, Setting(seconds=seconds, raw=str(found.value), source="set", file=found.file, line=found.line,
                         text=found.text).model_dump(mode="json")


def analyse(got: Collected, params: KillParams) -> dict[str, Any]:
    litespeed, lsapi = _lsapi(got)
    return {"cron": _cron(got), "csf": _csf(got), "lve": _lve(got), "litespeed": litespeed,
            "lsapi_max_process_time": lsapi, "worker_limits": _limits(got, params),
            "read": sorted(got.files), "unreadable": dict(sorted(got.unreadable.items()))}
