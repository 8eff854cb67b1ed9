"""php-fpm's side of the timeout chain, from the php-fpm masters that really run.

The snippet finds every php-fpm master in `ps` ("php-fpm: master process (CONF)") and its
workers ("php-fpm: pool NAME", by parent pid), runs `php-fpm -tt -y CONF` when it can (the
master is the user's own, or `become: sudo`: -tt prints every effective setting, defaults
included) and prints the configuration files the user may read (CONF and every include=),
for file:line. The parser (over opskit.stack.phpfpm) picks the site's pool:

    1. the pool listening where the web server passes PHP (nginx's fastcgi_pass, Apache's
       SetHandler proxy:unix:...) — the `nginx_upstream` / `apache_upstream` parameters
    2. else the pool running as the SSH user (shared hosting: one pool per account)
    3. else the only pool there is

Example value:

    {"found": True, "pool": "site1", "selected_by": "upstream", "master_pid": 812, "worker_pids": [815, 816],
     "request_terminate_timeout": {"seconds": 300, "raw": "300", "source": "set",
                                   "file": "/etc/php/8.2/fpm/pool.d/www.conf", "line": 412, "where": "[www]"},
     "request_slowlog_timeout": {...}, "pm": {"value": "dynamic", ...}, "pm_max_children": {"value": "5", ...},
     "listen": "/run/php/php8.2-fpm.sock", "slowlog": "/var/log/php8.2-fpm.slow.log",
     "error_log": "/var/log/php8.2-fpm.log", "conf": "/etc/php/8.2/fpm/php-fpm.conf", "source": "files",
     "masters": [...], "reason": None}

No php-fpm at all: request_terminate_timeout None (php-fpm is not in the chain). A master
whose configuration this user cannot read: the Settings are "unknown" with the reason.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.probes._collect import Collected, Proc, collect, new_mark
from opskit.rules.facts import ConfigValue, Setting
from opskit.stack import layouts, phpfpm
from opskit.steps import Context, Probe, register

FPM_INCLUDES = r"s/^[[:space:]]*include[[:space:]]*=[[:space:]]*//p"
FPM_PREFIX = "/usr"   # php-fpm's prefix for relative paths when not run with -p (Debian, RHEL)

# every php-fpm master, its binary (exact through /proc as its owner or root, else guessed from
# the config's path), then @EACH@ for it ($pid $uid $exe $conf set)
DISCOVER = r"""
me=$(id -u)
ps -e -o pid= -o uid= -o args= 2>/dev/null | while read -r pid uid args; do
  case $args in "php-fpm: master process ("*) ;; *) continue ;; esac
  conf=${args#php-fpm: master process (}; conf=${conf%)*}
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
  if [ -z "$exe" ] || ! [ -x "$exe" ]; then
    exe=""
    v=$(printf '%s\n' "$conf" | sed -n 's|^/etc/php/\([0-9.]*\)/fpm/.*|\1|p')
    for c in "${conf%/etc/*}/usr/sbin/php-fpm" "${conf%/etc/*}/sbin/php-fpm"; do
      case $conf in */etc/*) [ -x "$c" ] && exe=$c && break ;; esac
    done
    [ -n "$exe" ] || [ -z "$v" ] || exe=$(command -v "php-fpm$v" 2>/dev/null)
    for c in php-fpm php-fpm8.4 php-fpm8.3 php-fpm8.2 php-fpm8.1 php-fpm8.0 php-fpm7.4; do
      [ -n "$exe" ] && break; exe=$(command -v "$c" 2>/dev/null)
    done
  fi
  printf '%s fpm %s\t%s\t%s\t%s\n' "$M" "$pid" "$uid" "$exe" "$conf"
  @EACH@
done
# /proc mounted with hidepid hides root's php-fpm master from ps: then the layouts' main files, if readable
if ! [ -r /proc/1/cmdline ]; then echo hidepid=1; fi
if ! [ -r /proc/1/cmdline ] && ! ps -e -o args= 2>/dev/null | grep -q '^php-fpm: master process'; then
  for conf in @LAYOUT@; do
    [ -f "$conf" ] || continue
    pid=0; uid=""; exe=""
    printf '%s fpm %s\t%s\t%s\t%s\n' "$M" "$pid" "$uid" "$exe" "$conf"
    @EACH@
  done
fi
""".replace("@LAYOUT@", " ".join(loc.path for loc in layouts.search("config", "php-fpm")
                                 if loc.path.endswith("/php-fpm.conf")))

FPM_SCRIPT = DISCOVER.replace("@EACH@", r"""
  if [ -n "$exe" ] && { [ "$uid" = "$me" ] || [ "$me" = 0 ]; }; then run_block "fpm-tt $pid" "$exe" -tt -y "$conf"; fi
  follow "$conf" '@INCLUDES@' '@PREFIX@' ""
""") + r"""
for f in @LOGS@; do [ -e "$f" ] && printf '%s candidate %s\n' "$M" "$f"; done
""".replace("@LOGS@", " ".join(loc.path for loc in layouts.search("log", "php-fpm")))
FPM_SCRIPT = FPM_SCRIPT.replace("@INCLUDES@", FPM_INCLUDES).replace("@PREFIX@", FPM_PREFIX)


class FpmParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nginx_upstream: str | None = None    # nginx's fastcgi_pass for the site (unix:/path or host:port)
    apache_upstream: str | None = None   # Apache's proxy_fcgi target for the site
    become: str | None = None            # "sudo": php-fpm -tt and the files through sudo -n


@register
class PhpFpmTimeouts(Probe):
    """The site's php-fpm pool: request_terminate_timeout, pm, pm.max_children,
    request_slowlog_timeout, slowlog and error log, each with where it is set."""

    name = "phpfpm_timeouts"
    Params = FpmParams

    def script(self, params: FpmParams, ctx: Context) -> str:
        return collect("procs\n" + FPM_SCRIPT, new_mark(), become=params.become == "sudo")

    def parse(self, output: str, exit_status: int, params: FpmParams) -> dict[str, Any]:
        return analyse(Collected.parse(output), params)


# -- the masters, their pools and the site's pool ---------------------------------------------

@dataclass
class Master:
    pid: int
    uid: int | None
    exe: str
    conf: str
    files: phpfpm.FpmConfig | None = None     # from the files (file:line)
    tt: phpfpm.FpmConfig | None = None        # from php-fpm -tt (effective values)
    reason: str | None = None                 # why neither could be read
    workers: dict[str, list[Proc]] = field(default_factory=dict)   # pool → its worker processes

    @property
    def source(self) -> str:
        return "+".join(name for name, cfg in (("files", self.files), ("php-fpm -tt", self.tt)) if cfg) or "none"

    def pools(self) -> tuple[str, ...]:
        names = list((self.files.pools() if self.files else ()))
        names += [p for p in (self.tt.pools() if self.tt else ()) if p not in names]
        return tuple(names)

    def value(self, pool: str, key: str) -> tuple[phpfpm.EffectiveValue, str]:
        """(the effective value, where it was read: "files" or "php-fpm -tt")."""
        from_files = phpfpm.effective(self.files, pool, key) if self.files and pool in self.files.pools() else None
        from_tt = phpfpm.effective(self.tt, pool, key) if self.tt and pool in self.tt.pools() else None
        if from_files is not None and (from_tt is None or from_files.value is None and from_tt.value is None
                                       or from_files.value is not None and from_tt.value is not None
                                       and phpfpm.same_value(key, from_files.value, from_tt.value)):
            return from_files, "files"
        if from_tt is not None:
            return from_tt, "php-fpm -tt"
        return phpfpm.EffectiveValue(None, None, "default"), "none"

    def global_value(self, key: str) -> str | None:
        for cfg in (self.files, self.tt):
            if cfg is not None:
                found = phpfpm.effective(cfg, phpfpm.GLOBAL, key, default="")
                if found.value:
                    return found.value
        return None

    def to_json(self) -> dict:
        return {"pid": self.pid or None, "conf": self.conf, "binary": self.exe or None,
                "found_by": "ps" if self.pid else "layout (no php-fpm master in ps)", "source": self.source,
                "pools": list(self.pools()), "reason": self.reason,
                "workers": {pool: [p.pid for p in procs] for pool, procs in self.workers.items()}}


def masters(got: Collected) -> list[Master]:
    found = []
    for kind, fields in got.events:
        if kind != "fpm":
            continue
        fields = fields + [""] * (4 - len(fields))
        master = Master(int(fields[0]) if fields[0].isdigit() else 0,
                        int(fields[1]) if fields[1].isdigit() else None, fields[2], fields[3])
        if master.conf in got.files:
            try:
                master.files = phpfpm.parse(got.files, master.conf, FPM_PREFIX)
            except ValueError as exc:
                master.reason = str(exc)
        status, text = got.blocks.get(f"fpm-tt {master.pid}", (None, ""))
        if status == 0:
            try:
                master.tt = phpfpm.parse_tt(text)
            except ValueError:
                pass
        if master.files is None and master.tt is None and master.reason is None:
            master.reason = got.why_not(master.conf)
        elif master.files is not None and master.files.unresolved:
            missing = [got.why_not(_include_path(d.value)) for d in master.files.unresolved]
            master.reason = "; ".join(missing)
        found.append(master)
    for proc in got.procs:
        if proc.args.startswith("php-fpm: pool "):
            pool = proc.args[len("php-fpm: pool "):].strip()
            for master in found:
                # a master read from a layout's file (not in ps): its pools' workers, by name
                if master.pid == proc.ppid or (not master.pid and pool in master.pools()):
                    master.workers.setdefault(pool, []).append(proc)
    return found


def _include_path(value: str) -> str:
    return value if value.startswith("/") else FPM_PREFIX + "/" + value


def orphan_workers(got: Collected, found: list[Master]) -> dict[str, list[Proc]]:
    """Workers whose master is not visible (/proc mounted with hidepid): pool → processes."""
    pids = {m.pid for m in found}
    out: dict[str, list[Proc]] = {}
    for proc in got.procs:
        if proc.args.startswith("php-fpm: pool ") and proc.ppid not in pids:
            out.setdefault(proc.args[len("php-fpm: pool "):].strip(), []).append(proc)
    return out


def _socket(text: str | None) -> str | None:
    """A listen address or upstream, compared the same way: unix:/x → /x, localhost → 127.0.0.1."""
    if not text:
        return None
    text = text.strip().removeprefix("unix:").rstrip(":")
    if text.startswith("/"):
        return posixpath.normpath(text)
    host, sep, port = text.rpartition(":")
    if not sep:
        return f"127.0.0.1:{text}" if text.isdigit() else text
    host = host.strip("[]")
    return f"{'127.0.0.1' if host in ('localhost', '', '0.0.0.0', '*') else host}:{port}"


@dataclass
class Selection:
    master: Master | None = None
    pool: str | None = None
    by: str | None = None          # "upstream", "user", "only pool"
    reason: str | None = None      # why no pool was picked


def select_pool(found: list[Master], got: Collected, nginx_upstream: str | None,
                apache_upstream: str | None) -> Selection:
    pools = [(m, p) for m in found for p in m.pools()]
    targets = {t for t in (_socket(nginx_upstream), _socket(apache_upstream)) if t}
    if targets:
        for master, pool in pools:
            listen, _ = master.value(pool, "listen")
            if _socket((listen.value or "").replace("$pool", pool)) in targets:
                return Selection(master, pool, "upstream")
    user, uid = got.kv.get("user"), got.kv.get("uid")
    own = []
    for master, pool in pools:
        runs_as, _ = master.value(pool, "user")
        workers = master.workers.get(pool, [])
        if (runs_as.value and runs_as.value == user) or (uid and any(str(w.uid) == uid for w in workers)):
            own.append((master, pool))
    if len(own) == 1:
        return Selection(*own[0], "user")
    known = {p for _, p in pools}
    hidden = {pool: procs for pool, procs in orphan_workers(got, found).items() if pool not in known}
    # the only pool of a php-fpm.conf read from a layout's place (hidepid hides the running masters): it may
    # be a package's unused default, so it is not taken for the site's
    guessed = bool(found) and all(not m.pid for m in found)
    if len(pools) == 1 and not hidden and not guessed:
        return Selection(*pools[0], "only pool")
    if guessed and not hidden:
        return Selection(reason="the running php-fpm is not visible to this user (/proc is mounted with hidepid); "
                                f"the pools in {', '.join(m.conf for m in found)} ({', '.join(p for _, p in pools) or 'none'}) "
                                "neither listen where the web server passes PHP nor run as this user")
    if not found or hidden:
        if hidden:
            return Selection(reason=f"php-fpm workers run (pools {', '.join(hidden)}) but their master is not visible "
                                    "to this user (/proc mounted with hidepid?): its configuration cannot be read")
        if got.kv.get("hidepid") == "1":
            return Selection(reason="no php-fpm master process is visible to this user (/proc is mounted with "
                                    "hidepid) and no php-fpm.conf was found where the common layouts keep it")
        return Selection(reason="no php-fpm master process runs on the host")
    unreadable = [m for m in found if not m.pools()]
    if unreadable:
        return Selection(reason="; ".join(m.reason or f"{m.conf} was not read" for m in unreadable))
    if targets:
        return Selection(reason=f"no php-fpm pool listens on {', '.join(sorted(targets))} "
                                f"(pools: {', '.join(p for _, p in pools)})")
    return Selection(reason=f"several php-fpm pools ({', '.join(p for _, p in pools)}) and nothing says which "
                            "serves the site")


def fpm_setting(master: Master, pool: str, key: str) -> dict:
    found, read = master.value(pool, key)
    return setting_from(found, read, pool, key)


def setting_from(found: phpfpm.EffectiveValue, read: str, pool: str, key: str) -> dict:
    if found.value is None:
        return Setting(source="unknown", reason=f"{key} of pool [{pool}] could not be read").model_dump(mode="json")
    seconds = phpfpm.fpm_seconds(found.value)
    d = found.directive
    if read == "php-fpm -tt":
        default = phpfpm.DEFAULTS.get(key)
        if default is not None and seconds == phpfpm.fpm_seconds(default):
            return Setting(seconds=seconds, raw=found.value, source="default", where=f"[{pool}]").model_dump(mode="json")
        return Setting(seconds=seconds, raw=found.value, source="set", file=phpfpm.TT_FILE, line=d.line if d else None,
                       where=f"[{pool}]", text=f"{key} = {found.value} (as php-fpm -tt prints it)").model_dump(mode="json")
    if d is None:
        return Setting(seconds=seconds, raw=found.value, source="default", where=f"[{pool}]").model_dump(mode="json")
    return Setting(seconds=seconds, raw=found.value, source="set", file=d.file, line=d.line,
                   where=f"[{pool}]").model_dump(mode="json")


def config_value(master: Master, pool: str, key: str) -> dict | None:
    found, read = master.value(pool, key)
    if found.value is None:
        return None
    d = found.directive
    if d is None:
        return ConfigValue(value=found.value, source="default").model_dump(mode="json")
    file = d.file if read == "files" else phpfpm.TT_FILE
    return ConfigValue(value=found.value, source="set", file=file, line=d.line,
                       text=f"{key} = {found.value}").model_dump(mode="json")


def _path(value: str | None, pool: str) -> str | None:
    if not value or value.startswith("syslog"):
        return None
    value = value.replace("$pool", pool)
    return value if value.startswith("/") else posixpath.join(FPM_PREFIX, value)


def analyse(got: Collected, params: FpmParams) -> dict[str, Any]:
    found = masters(got)
    chosen = select_pool(found, got, params.nginx_upstream, params.apache_upstream)
    value: dict[str, Any] = {
        "found": bool(found) or bool(orphan_workers(got, found)),
        "masters": [m.to_json() for m in found], "pool": chosen.pool, "selected_by": chosen.by,
        "master_pid": chosen.master.pid if chosen.master else None, "worker_pids": [],
        "conf": chosen.master.conf if chosen.master else None,
        "source": chosen.master.source if chosen.master else None,
        "request_terminate_timeout": None, "request_slowlog_timeout": None, "pm": None, "pm_max_children": None,
        "listen": None, "slowlog": None, "error_log": None, "reason": chosen.reason,
    }
    candidates = [fields[0] for kind, fields in got.events if kind == "candidate"]
    if chosen.pool is None:
        if value["found"]:
            why = Setting(source="unknown", reason=chosen.reason).model_dump(mode="json")
            value["request_terminate_timeout"] = why
            value["request_slowlog_timeout"] = why
            value["error_log"] = candidates[0] if len(candidates) == 1 else None
        return value
    master, pool = chosen.master, chosen.pool
    value["worker_pids"] = [p.pid for p in master.workers.get(pool, [])]
    value["request_terminate_timeout"] = fpm_setting(master, pool, "request_terminate_timeout")
    value["request_slowlog_timeout"] = fpm_setting(master, pool, "request_slowlog_timeout")
    value["pm"] = config_value(master, pool, "pm")
    value["pm_max_children"] = config_value(master, pool, "pm.max_children")
    listen, _ = master.value(pool, "listen")
    value["listen"] = (listen.value or "").replace("$pool", pool) or None
    slowlog, _ = master.value(pool, "slowlog")
    value["slowlog"] = _path(slowlog.value, pool)
    error_log = master.global_value("error_log")
    value["error_log"] = _path(error_log, pool) if error_log else (candidates[0] if candidates else None)
    return value
