"""PHP's max_execution_time for the FPM SAPI of the site's pool: the value that wins, and where.

The snippet prints, for every php-fpm master, its configuration files and the php.ini
beside its php-fpm.conf (and conf.d/ or php.d/ beside it): that is where Debian
(/etc/php/8.2/fpm), RHEL (/etc), cPanel EA4 (/opt/cpanel/ea-phpNN/root/etc) and CloudLinux
alt-php (/opt/alt/phpNN/etc) keep the FPM SAPI's php.ini; a php-fpm started with `-c`
elsewhere is not seen. Then the docroot's .user.ini and .htaccess. The site's pool is
picked as opskit.probes.phpfpm_timeouts does.

What wins, lowest first (as PHP applies them): PHP's default (30) < php.ini < the scan
folder's *.ini (in name order) < the pool's php_value < the docroot's .user.ini (unless
user_ini.filename is empty) < the pool's php_admin_value (nothing overrides it). An
.htaccess php_value is read by mod_php and LiteSpeed only: php-fpm ignores it, and the value
says so in `notes`. A script's own set_time_limit() is not seen.

Example value:

    {"max_execution_time": {"seconds": 300, "raw": "300", "source": "set", "file": ".../pool.d/www.conf",
                            "line": 431, "where": "[www]", "text": "php_admin_value[max_execution_time] = 300"},
     "error_log": "/var/log/php_errors.log", "php_ini": "/etc/php/8.2/fpm/php.ini", "user_ini": None,
     "pool": "www", "layers": [...every place that sets it, lowest first...], "notes": [], "reason": None}
"""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.probes._collect import Collected, collect, new_mark
from opskit.probes.phpfpm_timeouts import (DISCOVER, FPM_INCLUDES, FPM_PREFIX, Master, masters,
                                           select_pool)
from opskit.rules.facts import Setting
from opskit.shell import quote
from opskit.stack import phpfpm, phpini
from opskit.steps import Context, Probe, register

PHP_SCRIPT = DISCOVER.replace("@EACH@", r"""
  follow "$conf" '@INCLUDES@' '@PREFIX@' ""
  d=$(dirname -- "$conf")
  show "$d/php.ini"
  for f in "$d"/conf.d/*.ini "$d"/php.d/*.ini; do [ -e "$f" ] && show "$f"; done
""").replace("@INCLUDES@", FPM_INCLUDES).replace("@PREFIX@", FPM_PREFIX)


class PhpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nginx_upstream: str | None = None
    apache_upstream: str | None = None
    become: str | None = None
    docroot: str | None = None      # the site's document root (the inventory's wordpress.root, else nginx's root)
    nginx_root: str | None = None   # nginx's root for the site, used when docroot is not given


@register
class PhpTimeouts(Probe):
    """max_execution_time for the site's php-fpm pool (php.ini, conf.d, the pool's
    php_value/php_admin_value, .user.ini), with where the winning value is set."""

    name = "php_timeouts"
    Params = PhpParams

    def script(self, params: PhpParams, ctx: Context) -> str:
        body = "procs\n" + PHP_SCRIPT
        root = params.docroot or params.nginx_root
        if root:
            root = ctx.path(root)
            body += f"r={quote(root)}\nprintf 'docroot=%s\\n' \"$r\"\nshow \"$r/.user.ini\"\nshow \"$r/.htaccess\"\n"
        return collect(body, new_mark(), become=params.become == "sudo")

    def parse(self, output: str, exit_status: int, params: PhpParams) -> dict[str, Any]:
        return analyse(Collected.parse(output), params)


def _ini_files(got: Collected, master: Master) -> tuple[str, list[str]]:
    folder = posixpath.dirname(master.conf)
    scan = sorted(p for p in got.files if posixpath.dirname(p) in (folder + "/conf.d", folder + "/php.d")
                  and p.endswith(".ini"))
    return folder + "/php.ini", scan


def _place(kind: str, file: str | None, line: int | None, value: str, text: str | None = None,
           where: str | None = None) -> dict:
    return {"kind": kind, "file": file, "line": line, "value": value, "text": text, "where": where}


def layers(got: Collected, master: Master, pool: str, key: str, docroot: str | None) -> tuple[list[dict], list[str], list[str]]:
    """Every place that sets `key` for the pool, lowest precedence first; (places, notes, unread)."""
    places, notes, unread = [], [], []
    ini_path, scan = _ini_files(got, master)
    user_ini_name = ".user.ini"
    if ini_path in got.files:
        ini = phpini.parse(got.files[ini_path], ini_path)
        found = phpini.effective(ini, key, section=f"PATH={docroot}" if docroot else None, default="")
        if found.directive is not None:
            d = found.directive
            places.append(_place("php.ini", d.file, d.line, found.value,
                                 where=f"[{d.section}]" if d.section else None))
        name = phpini.effective(ini, "user_ini.filename", default=".user.ini")
        user_ini_name = name.value if name.value is not None else ".user.ini"
    else:
        unread.append(ini_path)
    for path in scan:
        ini = phpini.parse(got.files[path], path)
        found = phpini.effective(ini, key, default="")
        if found.directive is not None:
            places.append(_place("conf.d", path, found.directive.line, found.value))
    for kind in ("php_value", "php_admin_value"):
        found, read = master.value(pool, f"{kind}[{key}]")
        if found.value is not None and found.directive is not None:
            d = found.directive
            places.append(_place(kind, d.file if read == "files" else phpfpm.TT_FILE, d.line, found.value,
                                 text=f"{kind}[{key}] = {found.value}", where=f"[{pool}]"))
        if kind == "php_value" and docroot:
            user_ini = posixpath.join(docroot, user_ini_name) if user_ini_name else None
            if user_ini and user_ini in got.files:
                ini = phpini.parse(got.files[user_ini], user_ini)
                found = phpini.effective(ini, key, default="")
                if found.directive is not None:
                    places.append(_place(".user.ini", user_ini, found.directive.line, found.value))
            elif user_ini and got.unreadable.get(user_ini) == "Permission denied":
                unread.append(user_ini)
    htaccess = posixpath.join(docroot, ".htaccess") if docroot else None
    if htaccess in got.files:
        for number, line in enumerate(got.files[htaccess].split("\n"), 1):
            words = line.split()
            if len(words) >= 3 and words[0].lower() in ("php_value", "php_admin_value") and words[1] == key:
                notes.append(f"{htaccess}:{number}: {line.strip()} — read by mod_php and LiteSpeed only; "
                             "php-fpm ignores it")
    # php_admin_value wins over .user.ini: keep the order of precedence
    places.sort(key=lambda p: ["php.ini", "conf.d", "php_value", ".user.ini", "php_admin_value"].index(p["kind"]))
    return places, notes, unread


def _setting(places: list[dict], unread: list[str], got: Collected, key: str) -> dict:
    if places and places[-1]["kind"] == "php_admin_value":
        winner = places[-1]   # nothing unread can override it
    elif unread:
        return Setting(source="unknown", reason="; ".join(got.why_not(p) for p in unread)).model_dump(mode="json")
    elif places:
        winner = places[-1]
    else:
        default = phpini.DEFAULTS.get(key)
        return Setting(seconds=_seconds(default), raw=default, source="default").model_dump(mode="json")
    seconds = _seconds(winner["value"])
    if seconds is None:
        return Setting(source="unknown", raw=winner["value"], file=winner["file"], line=winner["line"],
                       reason=f"{key} = {winner['value']!r} is not a number of seconds").model_dump(mode="json")
    return Setting(seconds=seconds, raw=winner["value"], source="set", file=winner["file"], line=winner["line"],
                   where=winner["where"], text=winner["text"]).model_dump(mode="json")


def _seconds(text: str | None) -> float | None:
    text = (text or "").strip()
    return float(int(text)) if text.isdigit() else None


def _error_log(places: list[dict], docroot: str | None) -> str | None:
    if not places:
        return None
    value = places[-1]["value"].strip()
    if not value or value == "syslog":
        return None
    if value.startswith("/"):
        return value
    # relative: to the running script's folder (cPanel's error_log = error_log)
    return posixpath.join(docroot, value) if docroot else None


def analyse(got: Collected, params: PhpParams) -> dict[str, Any]:
    found = masters(got)
    chosen = select_pool(found, got, params.nginx_upstream, params.apache_upstream)
    docroot = got.kv.get("docroot") or params.docroot or params.nginx_root
    value: dict[str, Any] = {"max_execution_time": None, "error_log": None, "php_ini": None, "user_ini": None,
                             "docroot": docroot, "pool": chosen.pool, "layers": [], "notes": [],
                             "reason": chosen.reason}
    if chosen.pool is None:
        value["max_execution_time"] = Setting(
            source="unknown", reason=chosen.reason or "the site's php-fpm pool was not found").model_dump(mode="json")
        return value
    master, pool = chosen.master, chosen.pool
    places, notes, unread = layers(got, master, pool, "max_execution_time", docroot)
    value["layers"], value["notes"] = places, notes
    value["max_execution_time"] = _setting(places, unread, got, "max_execution_time")
    ini_path, _ = _ini_files(got, master)
    value["php_ini"] = ini_path if ini_path in got.files else None
    user_ini = [p["file"] for p in places if p["kind"] == ".user.ini"]
    value["user_ini"] = user_ini[0] if user_ini else None
    log_places, _, _ = layers(got, master, pool, "error_log", docroot)
    value["error_log"] = _error_log(log_places, docroot)
    return value
