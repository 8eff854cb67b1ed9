"""Apache's timeouts for the site when Apache hands its PHP on (mod_proxy_fcgi to php-fpm, or
mod_fcgid): Timeout, ProxyTimeout, FcgidIOTimeout, FcgidBusyTimeout, and its ErrorLog.

The snippet finds the Apache masters in `ps` (apache2/httpd processes whose parent is not
one), their -d and -f (else what `-V` says was compiled in), and prints the configuration
files the user may read: the main file, envvars beside it (Debian's ${APACHE_*}), and every
file Include/IncludeOptional names (folders and globs too). The parser is
opskit.stack.apache: the site's virtual host by ServerName/ServerAlias, its PHP handler.

Example value:

    {"found": True, "served_by": "apache-proxy-fcgi", "upstream": "unix:/run/php/php8.2-fpm.sock",
     "timeout": {"seconds": 300, "raw": "300", "source": "inherited", "file": "/etc/apache2/apache2.conf", ...},
     "proxy_timeout": {"source": "default", "seconds": 300, ...}, "fcgid_io_timeout": None, "fcgid_busy_timeout": None,
     "error_log": "/var/log/apache2/error.log", "vhost": "VirtualHost *:80", "instances": [...], "reason": None}

Settings are given only for the handler that serves the site's PHP (ProxyTimeout and Timeout
for mod_proxy_fcgi, Fcgid* for mod_fcgid): an Apache that does not run the site's PHP is not
in the chain. ProxySet/ProxyPassMatch `timeout=` parameters are not read yet.
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from opskit.probes._collect import Collected, collect, new_mark
from opskit.probes.nginx_timeouts import site_name
from opskit.rules.facts import Setting
from opskit.stack import apache
from opskit.steps import Context, Probe, register

INCLUDES = (r"s/^[[:space:]]*[Ii][Nn][Cc][Ll][Uu][Dd][Ee]\([Oo][Pp][Tt][Ii][Oo][Nn][Aa][Ll]\)\{0,1\}"
            r"[[:space:]][[:space:]]*\([^[:space:]]*\).*$/\2/p")

SCRIPT = r"""
cands=$(ps -e -o pid= -o ppid= -o args= 2>/dev/null | awk '{ b = $3; sub(".*/", "", b); if (b ~ /^(apache2|httpd)([.-].*)?$/) print }')
pids=" $(printf '%s\n' "$cands" | awk '{ print $1 }' | tr '\n' ' ')"
printf '%s\n' "$cands" | while read -r pid ppid args; do
  [ -n "$pid" ] || continue
  case $pids in *" $ppid "*) continue ;; esac
  set -f; set -- $args; set +f
  bin=$1; [ $# -gt 0 ] && shift
  root=""; conf=""; defines=""
  while [ $# -gt 0 ]; do
    case $1 in
      -d) root=$2; shift ;; -f) conf=$2; shift ;;
      -D) defines="$defines $2"; shift ;; -D*) defines="$defines ${1#-D}" ;;
    esac
    [ $# -gt 0 ] && shift
  done
  case $bin in /*) ;; *) bin=$(command -v "$bin" 2>/dev/null) ;; esac
  if [ -z "$root" ] || [ -z "$conf" ]; then
    built=$("$bin" -V 2>/dev/null)
    [ -n "$root" ] || root=$(printf '%s\n' "$built" | sed -n 's/.*HTTPD_ROOT="\([^"]*\)".*/\1/p')
    [ -n "$conf" ] || conf=$(printf '%s\n' "$built" | sed -n 's/.*SERVER_CONFIG_FILE="\([^"]*\)".*/\1/p')
  fi
  case $conf in /*) ;; *) conf="${root%/}/$conf" ;; esac
  printf '%s apache %s\t%s\t%s\t%s\t%s\n' "$M" "$pid" "$bin" "$root" "$conf" "$defines"
  [ -f "$(dirname -- "$conf")/envvars" ] && show "$(dirname -- "$conf")/envvars"
  follow "$conf" '@INCLUDES@' "$root" dirs
done
""".replace("@INCLUDES@", INCLUDES)


class ApacheTimeoutsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str | None = None       # the site's URL or host name (the inventory's wordpress.url)
    origin: str | None = None     # the inventory's origin: Apache's virtual host on that port wins
    become: str | None = None


@register
class ApacheTimeouts(Probe):
    """Apache's Timeout/ProxyTimeout (mod_proxy_fcgi) or FcgidIOTimeout/FcgidBusyTimeout
    (mod_fcgid) for the site, when Apache runs its PHP."""

    name = "apache_timeouts"
    Params = ApacheTimeoutsParams

    def script(self, params: ApacheTimeoutsParams, ctx: Context) -> str:
        return collect(SCRIPT, new_mark(), become=params.become == "sudo")

    def parse(self, output: str, exit_status: int, params: ApacheTimeoutsParams) -> dict[str, Any]:
        return analyse(Collected.parse(output), params)


def _setting(config: apache.ApacheConfig, site: str | None, name: str, where: str | None) -> dict:
    value = apache.effective(config, site, name, default=apache.DEFAULTS.get(name.lower()) if name != "ProxyTimeout" else None)
    d = value.directive
    if name == "ProxyTimeout" and (d is None or d.key != "proxytimeout"):
        # unset: mod_proxy waits Apache's Timeout (the rule says so)
        return Setting(seconds=apache.seconds(value.value), raw=value.value, source="default", where=where).model_dump(mode="json")
    seconds = apache.seconds(value.value)
    if d is None:
        return Setting(seconds=seconds, raw=value.value, source="default", where=where).model_dump(mode="json")
    return Setting(seconds=seconds, raw=value.value, source=value.source, file=d.file, line=d.line,
                   where=d.block_path or "server config").model_dump(mode="json")


def _vhost(config: apache.ApacheConfig, site: str | None, origin: str | None) -> apache.Section | None:
    hosts = config.virtual_hosts()
    if not hosts:
        return None
    port = None
    if origin:
        parts = urlsplit(origin)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    on_port = [h for h in hosts if port is not None and any(a.rsplit(":", 1)[-1] == str(port) for a in h.args)]
    if site:
        named = apache.find_virtual_host(config, site)
        names = [d for d in config.directives if named in d.block and d.key in ("servername", "serveralias")
                 and site in (a.lower().split(":")[0] for a in d.args)] if named else []
        if names and (not on_port or named in on_port):
            return named
    return on_port[0] if on_port else None


def analyse(got: Collected, params: ApacheTimeoutsParams) -> dict[str, Any]:
    site = site_name(params.site)
    value: dict[str, Any] = {"found": False, "instances": [], "served_by": None, "upstream": None, "vhost": None,
                             "timeout": None, "proxy_timeout": None, "fcgid_io_timeout": None,
                             "fcgid_busy_timeout": None, "error_log": None, "reason": None}
    for kind, fields in got.events:
        if kind != "apache":
            continue
        fields = fields + [""] * (5 - len(fields))
        pid, binary, root, conf, defines = fields[:5]
        value["found"] = True
        instance = {"pid": int(pid) if pid.isdigit() else None, "conf": conf, "server_root": root,
                    "readable": False, "reason": None}
        value["instances"].append(instance)
        if conf not in got.files:
            instance["reason"] = got.why_not(conf)
            continue
        envvars = posixpath.join(posixpath.dirname(conf), "envvars")
        variables = apache.parse_envvars(got.files[envvars]) if envvars in got.files else {}
        try:
            config = apache.parse_files(got.files, conf, root or None, variables, frozenset(defines.split()))
        except apache.ApacheConfigError as exc:
            instance["reason"] = f"cannot read the configuration: {exc}"
            continue
        instance["readable"] = True
        host = _vhost(config, site, params.origin)
        name = None
        if host is not None:
            names = [d.args[0] for d in config.directives if host in d.block and d.key == "servername" and d.args]
            name = names[0] if names else site
        handlers = apache.php_handlers(config, name) if host is not None else ()
        if not handlers or value["served_by"]:
            continue
        handler = handlers[-1]   # the last one merged wins (a vhost's own over the server's)
        value["vhost"] = host.label
        value["upstream"] = handler.target
        where = host.label
        log = apache.effective(config, name, "ErrorLog", default="logs/error_log").value
        if log and not log.startswith(("|", "syslog")):
            value["error_log"] = log if log.startswith("/") else posixpath.join(config.server_root, log)
        if handler.kind == "proxy_fcgi":
            value["served_by"] = "apache-proxy-fcgi"
            value["timeout"] = _setting(config, name, "Timeout", where)
            value["proxy_timeout"] = _setting(config, name, "ProxyTimeout", where)
        elif handler.kind == "fcgid":
            value["served_by"] = "apache-fcgid"
            value["fcgid_io_timeout"] = _setting(config, name, "FcgidIOTimeout", where)
            value["fcgid_busy_timeout"] = _setting(config, name, "FcgidBusyTimeout", where)
        else:
            value["served_by"] = "mod_php"
    if value["found"] and value["served_by"] is None:
        unreadable = [i for i in value["instances"] if not i["readable"]]
        value["reason"] = ("; ".join(i["reason"] or "" for i in unreadable) if unreadable
                           else f"Apache runs no PHP for {site or 'the site'}")
    elif not value["found"]:
        value["reason"] = "no Apache master process runs on the host"
    return value
