"""nginx's timeouts for the site, from the nginx servers that really run on the host.

The snippet finds every nginx master in `ps` (its -c, -p and -e), and for each one prints
`nginx -T` (run as the login user when the master is the user's own, through `sudo -n` with
`become: sudo`), or, when nginx -T cannot run, the configuration files the user may read:
the main file and every file its include lines name. The parser (over opskit.stack.nginx)
picks the site's servers:

    origin  the server that passes the site's PHP to FastCGI: it listens where the
            inventory's `origin` points (address and port) and is named for the site
            (else it is that address's default server)
    edge    a server in front of it on this host: a proxy_pass to the origin (a reverse
            proxy standing in for the CDN edge), or, when nginx itself proxies the site's
            PHP to Apache (Plesk), that proxy

Example value (each timeout is a rules.facts.Setting):

    {"found": True, "fastcgi_read_timeout": {"seconds": 60, "raw": "60s", "source": "default", ...},
     "proxy_read_timeout": {"seconds": 3, "raw": "3s", "source": "set", "file": ".../gateway/nginx.conf",
                            "line": 31, "where": "http > server[site1.example.test] > location /"},
     "upstream": "unix:/srv/run/php-fpm.sock", "root": "/home/site1/public_html",
     "origin_error_log": "/srv/logs/nginx-error.log", "edge_error_log": "/srv/logs/gateway-error.log",
     "origin": {...}, "edge": {...}, "instances": [...], "reason": None}

A config this user cannot read gives Settings of source "unknown" with the reason, never a
guess; no nginx at all gives None for every timeout (nginx is not in the chain).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from opskit.probes._collect import Collected, collect, new_mark
from opskit.rules.facts import Setting
from opskit.stack import layouts, nginx
from opskit.steps import Context, Probe, register

TIMEOUTS = ("fastcgi_read_timeout", "fastcgi_send_timeout", "fastcgi_connect_timeout",
            "proxy_read_timeout", "proxy_send_timeout", "proxy_connect_timeout")
INCLUDES = r"s/^[[:space:]]*include[[:space:]][[:space:]]*\([^;]*\);.*$/\1/p"


class NginxTimeoutsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str | None = None       # the site's URL or host name (the inventory's wordpress.url)
    origin: str | None = None     # the inventory's origin, http(s)://ADDRESS[:PORT]
    become: str | None = None     # "sudo": nginx -T and the files through sudo -n
    location: str = "/index.php"  # a PHP URI of the site: whose location's values count


SCRIPT = r"""
procs
me=$(id -u)
ps -e -o pid= -o uid= -o args= 2>/dev/null | while read -r pid uid args; do
  case $args in "nginx: master process "*) ;; *) continue ;; esac
  set -f; set -- ${args#nginx: master process }; set +f
  bin=$1; [ $# -gt 0 ] && shift
  conf=""; prefix=""; elog=""
  while [ $# -gt 0 ]; do
    case $1 in -c) conf=$2; shift ;; -p) prefix=$2; shift ;; -e) elog=$2; shift ;; esac
    [ $# -gt 0 ] && shift
  done
  case $bin in /*) ;; *) bin=$(command -v "$bin" 2>/dev/null || command -v nginx 2>/dev/null) ;; esac
  built=$("$bin" -V 2>&1)
  [ -n "$prefix" ] || prefix=$(printf '%s\n' "$built" | sed -n 's/.*--prefix=\([^ ]*\).*/\1/p')
  [ -n "$conf" ] || conf=$(printf '%s\n' "$built" | sed -n 's/.*--conf-path=\([^ ]*\).*/\1/p')
  [ -n "$conf" ] || conf=conf/nginx.conf
  case $conf in /*) ;; *) conf="${prefix%/}/$conf" ;; esac
  [ -n "$elog" ] || elog=$(printf '%s\n' "$built" | sed -n 's/.*--error-log-path=\([^ ]*\).*/\1/p')
  printf '%s nginx %s\t%s\t%s\t%s\t%s\t%s\n' "$M" "$pid" "$uid" "$bin" "$conf" "$prefix" "$elog"
  _s=1
  if [ "$uid" = "$me" ] || [ "$me" = 0 ]; then
    if [ -n "$elog" ]; then run_block "nginx-T $pid" "$bin" -T -q -c "$conf" -p "$prefix" -e "$elog"
    else run_block "nginx-T $pid" "$bin" -T -q -c "$conf" -p "$prefix"; fi
  fi
  [ "$_s" = 0 ] || follow "$conf" '@INCLUDES@' "$(dirname -- "$conf")" ""
done
# /proc mounted with hidepid hides root's nginx from ps: then the layouts' main files, if readable
if ! [ -r /proc/1/cmdline ]; then echo hidepid=1; fi
if ! [ -r /proc/1/cmdline ] && ! ps -e -o args= 2>/dev/null | grep -q '^nginx: master process'; then
  for conf in @LAYOUT@; do
    [ -f "$conf" ] || continue
    printf '%s nginx 0		%s	%s	%s	
' "$M" "$(command -v nginx 2>/dev/null)" "$conf" "$(dirname -- "$conf")/"
    follow "$conf" '@INCLUDES@' "$(dirname -- "$conf")" ""
  done
fi
""".replace("@INCLUDES@", INCLUDES).replace("@LAYOUT@", " ".join(
    loc.path for loc in layouts.search("config", "nginx") if loc.path.endswith("/nginx.conf") and "*" not in loc.path))


@register
class NginxTimeouts(Probe):
    """The effective nginx read/connect/send timeouts of the site's PHP location (origin) and
    of the proxy in front of it (edge), with file:line for each value."""

    name = "nginx_timeouts"
    Params = NginxTimeoutsParams

    def script(self, params: NginxTimeoutsParams, ctx: Context) -> str:
        return collect(SCRIPT, new_mark(), become=params.become == "sudo")

    def parse(self, output: str, exit_status: int, params: NginxTimeoutsParams) -> dict[str, Any]:
        return analyse(Collected.parse(output), params)


# -- reading what the snippet printed ------------------------------------------------------

class Instance:
    """One nginx master and its configuration as read."""

    def __init__(self, fields: list[str]):
        fields = fields + [""] * (6 - len(fields))
        self.pid = int(fields[0]) if fields[0].isdigit() else 0
        self.uid = int(fields[1]) if fields[1].isdigit() else None
        self.binary, self.conf, self.prefix, self.error_log = fields[2], fields[3], fields[4], fields[5]
        self.config: nginx.NginxConfig | None = None
        self.source = "files"
        self.reason: str | None = None
        self.unreadable: list[str] = []

    def to_json(self) -> dict:
        return {"pid": self.pid or None, "conf": self.conf, "prefix": self.prefix,
                "found_by": "ps" if self.pid else "layout (no nginx master in ps)", "source": self.source,
                "readable": self.config is not None, "reason": self.reason, "unreadable": self.unreadable,
                "servers": len(nginx.servers(self.config)) if self.config else 0}


def instances(got: Collected) -> list[Instance]:
    found = []
    for kind, fields in got.events:
        if kind != "nginx":
            continue
        instance = Instance(fields)
        status, dump = got.blocks.get(f"nginx-T {instance.pid}", (None, ""))
        try:
            if status == 0:
                instance.config = nginx.parse_dump(dump)
                instance.source = "sudo nginx -T" if got.become == "sudo" else "nginx -T"
            elif instance.conf in got.files:
                instance.config = nginx.parse_files(got.files, instance.conf)
                conf_dir = posixpath.dirname(instance.conf)
                instance.unreadable = sorted(p for p in got.unreadable if p.startswith(conf_dir + "/") or p == conf_dir)
            else:
                instance.reason = got.why_not(instance.conf)
        except nginx.NginxConfigError as exc:
            instance.config, instance.reason = None, f"cannot read the configuration: {exc}"
        found.append(instance)
    return found


def _origin_endpoint(origin: str | None) -> tuple[str | None, int | None]:
    if not origin:
        return None, None
    parts = urlsplit(origin)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.hostname, port


def site_name(site: str | None) -> str | None:
    if not site:
        return None
    return re.sub(r"^[a-z]+://", "", site).split("/")[0].split(":")[0].lower() or None


def _listen(arg: str) -> tuple[str | None, int | None]:
    """A listen directive's address and port ("127.0.0.1:8080", "80", "[::]:443", "*:80")."""
    if arg.startswith("unix:"):
        return arg, None
    if arg.startswith("["):
        host, _, port = arg[1:].partition("]")
        port = port.lstrip(":")
        return host, int(port) if port.isdigit() else 80
    if arg.isdigit():
        return "*", int(arg)
    host, sep, port = arg.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return arg, 80


def listens(config: nginx.NginxConfig, server: nginx.Block) -> list[tuple[str | None, int | None]]:
    found = [_listen(d.args[0]) for d in config.children(server) if d.name == "listen" and d.args]
    return found or [("*", 80)]


def _listens_at(config, server, address: str | None, port: int | None) -> bool:
    for host, their_port in listens(config, server):
        if port is not None and their_port != port:
            continue
        if address is None or host in ("*", "0.0.0.0", "::", None) or host == address \
                or (host == "localhost" and address.startswith("127.")):
            return True
    return False


def _default_for(config, server) -> bool:
    return any(d.name == "listen" and ("default_server" in d.args or "default" in d.args)
               for d in config.children(server))


def _pick_server(config, name: str | None, address: str | None, port: int | None) -> nginx.Block | None:
    """The server nginx picks for Host: name on address:port (exact names only)."""
    candidates = [s for s in nginx.servers(config) if port is None or _listens_at(config, s, address, port)]
    if not candidates:
        return None
    if name:
        named = [s for s in candidates if name in (n.lower() for n in nginx.server_names(config, s))]
        if named:
            return named[0]
    if port is None:
        return None   # no address to go by: only a server named for the site counts
    return next((s for s in candidates if _default_for(config, s)), candidates[0])


def directive_at(config: nginx.NginxConfig, block: nginx.Block, name: str) -> nginx.Directive | None:
    """`name` in block or an enclosing block, else in the main context (error_log is often there)."""
    for holder in config.ancestors(block):
        found = [d for d in config.children(holder) if d.name == name and d.args]
        if found:
            return found[-1]
    found = [d for d in config.children(None) if d.name == name and d.args]
    return found[-1] if found else None


def setting(config: nginx.NginxConfig, block: nginx.Block, name: str) -> dict:
    value = nginx.value_at(config, block, name)
    seconds = nginx.nginx_seconds(value.value) if value.value else None
    if value.directive is not None:
        d = value.directive
        return Setting(seconds=seconds, raw=value.value, source=value.source, file=d.file, line=d.line,
                       where=d.block_path).model_dump(mode="json")
    return Setting(seconds=seconds, raw=value.value, source="default", where=block.block_path).model_dump(mode="json")


def unknown(reason: str) -> dict:
    return Setting(source="unknown", reason=reason).model_dump(mode="json")


def _upstream_servers(config, name: str) -> list[str]:
    """The servers of `upstream NAME { server X; }`, else NAME itself."""
    for block in config.blocks:
        if block.name == "upstream" and block.args and block.args[0] == name:
            return [d.args[0] for d in config.children(block) if d.name == "server" and d.args]
    return [name]


def _proxy_target(config, value: str) -> list[tuple[str, int]]:
    """proxy_pass http://127.0.0.1:8080/x → [("127.0.0.1", 8080)] (through an upstream block too)."""
    match = re.match(r"^(https?)://([^/]+)", value)
    if not match:
        return []
    scheme, host = match.groups()
    out = []
    for target in _upstream_servers(config, host):
        address, port = _listen(target)
        if ":" not in target or target.startswith("["):
            port = port if target.startswith("[") else {"http": 80, "https": 443}[scheme]
        out.append((address, port))
    return out


def _fastcgi_target(config, value: str) -> str | None:
    targets = _upstream_servers(config, value)
    return targets[0] if targets else None


def _log_path(directive: nginx.Directive | None, instance: Instance) -> str | None:
    path = directive.args[0] if directive is not None else instance.error_log or None
    if not path or path == "stderr" or path.startswith(("syslog:", "memory:")):
        return None
    return path if path.startswith("/") else posixpath.join(instance.prefix or "/", path)


def _root(config, block, instance: Instance) -> str | None:
    d = directive_at(config, block, "root")
    if d is None:
        return None
    path = d.args[0]
    return path if path.startswith("/") else posixpath.join(instance.prefix or "/", path)


def _place(instance: Instance, config, server, location) -> dict:
    block = location or server
    return {"pid": instance.pid, "conf": instance.conf, "server": server.block_path,
            "listen": [f"{h}:{p}" if p else h for h, p in listens(config, server)],
            "location": location.block_path if location else None,
            "error_log": _log_path(directive_at(config, block, "error_log"), instance)}


def analyse(got: Collected, params: NginxTimeoutsParams) -> dict[str, Any]:
    found = instances(got)
    name = site_name(params.site)
    address, port = _origin_endpoint(params.origin)
    value: dict[str, Any] = {"found": bool(found), "instances": [i.to_json() for i in found],
                             "origin": None, "edge": None, "upstream": None, "root": None,
                             "origin_error_log": None, "edge_error_log": None, "reason": None,
                             **{t: None for t in TIMEOUTS}}
    if not found:
        if got.kv.get("hidepid") == "1":
            value["reason"] = ("no nginx master process is visible to this user (/proc is mounted with hidepid) "
                               "and no nginx configuration was found where the common layouts keep it")
            value["fastcgi_read_timeout"] = unknown(value["reason"])
        else:
            value["reason"] = "no nginx master process runs on the host"
        return value
    readable = [i for i in found if i.config is not None]
    fastcgi: list[tuple[Instance, Any, Any, str]] = []
    proxies: list[tuple[Instance, Any, Any, str]] = []
    for instance in readable:
        config = instance.config
        server = _pick_server(config, name, address, port)
        candidates = [server] if server is not None else []
        # a proxy in front listens elsewhere: any server named for the site
        candidates += [s for s in nginx.servers(config) if s is not server and name
                       and name in (n.lower() for n in nginx.server_names(config, s))]
        for s in candidates:
            location = nginx.find_location(config, s, params.location)
            block = location or s
            pass_to = directive_at(config, block, "fastcgi_pass") if location is not None else None
            proxy = directive_at(config, block, "proxy_pass")
            if pass_to is not None and s is server:
                fastcgi.append((instance, s, location, pass_to.args[0]))
            elif proxy is not None and proxy.block and proxy.block[0] == "http":
                proxies.append((instance, s, location, proxy.args[0]))
    origin = fastcgi[0] if fastcgi else None
    if origin is not None:
        instance, server, location, target = origin
        config = instance.config
        block = location or server
        value["origin"] = _place(instance, config, server, location)
        value["upstream"] = _fastcgi_target(config, target)
        value["root"] = _root(config, block, instance)
        value["origin_error_log"] = value["origin"]["error_log"]
        for t in TIMEOUTS[:3]:
            value[t] = setting(config, block, t)
    # the proxy in front: it passes to the origin (by the inventory's address, else the origin
    # server's listen); or the origin server itself proxies PHP to a backend (Apache)
    wanted = {(address, port)} if port is not None else set()
    if origin is not None:
        wanted |= {(h, p) for h, p in listens(origin[0].config, origin[1]) if p is not None}
    edge = None
    for candidate in proxies:
        instance, server, location, target = candidate
        if candidate[1] is (origin[1] if origin else None):
            continue
        for host, their_port in _proxy_target(instance.config, target):
            if any(their_port == p and (host == h or h in ("*", "0.0.0.0", None)) for h, p in wanted):
                edge = candidate
                break
        if edge:
            break
    if edge is None and origin is None:
        # nginx proxies the site's PHP to a backend on this host (Plesk: nginx → Apache)
        edge = next((c for c in proxies if port is None or _listens_at(c[0].config, c[1], address, port)), None)
    if edge is not None:
        instance, server, location, target = edge
        block = location or server
        value["edge"] = {**_place(instance, instance.config, server, location), "proxy_pass": target}
        value["edge_error_log"] = value["edge"]["error_log"]
        for t in TIMEOUTS[3:]:
            value[t] = setting(instance.config, block, t)
    if origin is None:
        # an nginx whose configuration could not be read may be the one passing the site's PHP on
        unreadable = [i for i in found if i.config is None] or [i for i in found if i.unreadable]
        where = f"{name or 'the site'}" + (f" at {address}:{port}" if port is not None else "")
        if unreadable:
            why = "; ".join(i.reason or f"not readable: {', '.join(i.unreadable)}" for i in unreadable)
            value["reason"] = f"nginx runs but its configuration could not be read: {why}"
            value["fastcgi_read_timeout"] = unknown(value["reason"])
        elif got.kv.get("hidepid") == "1":
            value["reason"] = (f"no nginx server for {where} in the configuration the common layouts keep, and the "
                               "running nginx is not visible to this user (/proc is mounted with hidepid)")
            value["fastcgi_read_timeout"] = unknown(value["reason"])
        elif edge is None:
            value["reason"] = f"no nginx server for {where} passes PHP to FastCGI or proxies it"
    return value
