"""Where the common hosting layouts keep the configs and logs that explain a 502: data
the probes search (in this order), which the inventory can add to or replace.

    [l.path for l in search("log", "php-fpm", layouts=("debian", "cpanel"))]
    # ['/var/log/php*-fpm.log', '/opt/cpanel/ea-php*/root/usr/var/log/php-fpm/error.log']
    expand("~/public_html/error_log", home="/home/bob")          # '/home/bob/public_html/error_log'
    expand("{docroot}/wp-content/debug.log", docroot="/home/bob/public_html")

A path is a glob(3) pattern (the probe's sh expands it; a pattern that matches nothing
is no error), "~" is the SSH user's home and "{docroot}" the site's WordPress folder.
Only the Debian layout is checked against real servers in this repo's tests; the
others are search paths from their vendors' documented layouts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Literal

Kind = Literal["config", "log", "killer"]


@dataclass(frozen=True)
class Location:
    layout: str      # "debian", "rhel", "cpanel", "plesk", "cloudlinux", "litespeed", "user"
    kind: Kind       # "config", "log", or "killer" (kill-script evidence)
    software: str    # "nginx", "php-fpm", "php", "apache", "wordpress", "cron", "csf", "lve", "litespeed"
    path: str
    holds: str       # what the file holds, for a person

    def to_json(self) -> dict:
        return asdict(self)


L = Location
LOCATIONS: tuple[Location, ...] = (
    # Debian / Ubuntu packages
    L("debian", "config", "nginx", "/etc/nginx/nginx.conf", "nginx's main file (nginx -T prints it and its includes)"),
    L("debian", "config", "nginx", "/etc/nginx/conf.d/*.conf", "http-level includes"),
    L("debian", "config", "nginx", "/etc/nginx/sites-enabled/*", "server blocks (symlinks to sites-available)"),
    L("debian", "config", "php-fpm", "/etc/php/*/fpm/php-fpm.conf", "php-fpm's main file, per PHP version"),
    L("debian", "config", "php-fpm", "/etc/php/*/fpm/pool.d/*.conf", "php-fpm pools"),
    L("debian", "config", "php", "/etc/php/*/fpm/php.ini", "php.ini of the FPM SAPI"),
    L("debian", "config", "php", "/etc/php/*/fpm/conf.d/*.ini", "ini files read after php.ini"),
    L("debian", "config", "apache", "/etc/apache2/apache2.conf", "Apache's main file"),
    L("debian", "config", "apache", "/etc/apache2/envvars", "${APACHE_*} values apache2.conf uses"),
    L("debian", "config", "apache", "/etc/apache2/sites-enabled/*", "virtual hosts"),
    L("debian", "log", "nginx", "/var/log/nginx/error.log", "nginx's error log"),
    L("debian", "log", "nginx", "/var/log/nginx/*error*.log", "per-site nginx error logs"),
    L("debian", "log", "php-fpm", "/var/log/php*-fpm.log", "php-fpm's master log (php8.2-fpm.log)"),
    L("debian", "log", "apache", "/var/log/apache2/error.log", "Apache's error log"),
    L("debian", "log", "apache", "/var/log/apache2/*error*.log", "per-site Apache error logs"),
    # RHEL, Rocky, Alma (Remi and AppStream PHP)
    L("rhel", "config", "nginx", "/etc/nginx/nginx.conf", "nginx's main file"),
    L("rhel", "config", "php-fpm", "/etc/php-fpm.conf", "php-fpm's main file"),
    L("rhel", "config", "php-fpm", "/etc/php-fpm.d/*.conf", "php-fpm pools"),
    L("rhel", "config", "php", "/etc/php.ini", "php.ini"),
    L("rhel", "config", "apache", "/etc/httpd/conf/httpd.conf", "Apache's main file"),
    L("rhel", "config", "apache", "/etc/httpd/conf.d/*.conf", "Apache includes and virtual hosts"),
    L("rhel", "log", "nginx", "/var/log/nginx/error.log", "nginx's error log"),
    L("rhel", "log", "php-fpm", "/var/log/php-fpm/error.log", "php-fpm's master log"),
    L("rhel", "log", "php-fpm", "/var/log/php-fpm/*slow.log", "php-fpm slow logs"),
    L("rhel", "log", "apache", "/var/log/httpd/error_log", "Apache's error log"),
    # cPanel with EasyApache 4
    L("cpanel", "config", "php-fpm", "/opt/cpanel/ea-php*/root/etc/php-fpm.conf", "EA4 php-fpm's main file, per version"),
    L("cpanel", "config", "php-fpm", "/opt/cpanel/ea-php*/root/etc/php-fpm.d/*.conf", "EA4 pools (one per domain)"),
    L("cpanel", "config", "php", "/opt/cpanel/ea-php*/root/etc/php.ini", "EA4 php.ini, per version"),
    L("cpanel", "config", "apache", "/etc/apache2/conf/httpd.conf", "EA4 Apache's main file (generated)"),
    L("cpanel", "config", "apache", "/etc/apache2/conf.d/*.conf", "EA4 Apache includes"),
    L("cpanel", "config", "apache", "/etc/apache2/conf.d/userdata/*/2_4/*/*/*.conf", "per-domain Apache includes"),
    L("cpanel", "config", "nginx", "/etc/nginx/conf.d/users/*.conf", "ea-nginx per-user server blocks"),
    L("cpanel", "log", "php-fpm", "/opt/cpanel/ea-php*/root/usr/var/log/php-fpm/error.log", "EA4 php-fpm master log"),
    L("cpanel", "log", "apache", "/usr/local/apache/logs/error_log", "Apache's error log (legacy path)"),
    L("cpanel", "log", "apache", "/etc/apache2/logs/error_log", "Apache's error log"),
    L("cpanel", "log", "nginx", "/var/log/nginx/error.log", "ea-nginx's error log"),
    # Plesk
    L("plesk", "config", "nginx", "/etc/nginx/plesk.conf.d/vhosts/*.conf", "per-domain nginx server blocks"),
    L("plesk", "config", "nginx", "/var/www/vhosts/system/*/conf/nginx.conf", "a domain's generated nginx config"),
    L("plesk", "config", "nginx", "/var/www/vhosts/system/*/conf/vhost_nginx.conf", "a domain's extra nginx directives"),
    L("plesk", "config", "apache", "/var/www/vhosts/system/*/conf/httpd.conf", "a domain's generated Apache config"),
    L("plesk", "config", "php", "/var/www/vhosts/system/*/conf/php.ini", "a domain's PHP settings"),
    L("plesk", "config", "php-fpm", "/opt/plesk/php/*/etc/php-fpm.d/*.conf", "Plesk PHP's pools (one per domain)"),
    L("plesk", "log", "nginx", "/var/www/vhosts/system/*/logs/proxy_error_log", "a domain's nginx error log"),
    L("plesk", "log", "apache", "/var/www/vhosts/system/*/logs/error_log", "a domain's Apache and PHP error log"),
    L("plesk", "log", "php-fpm", "/var/log/plesk-php*-fpm/error.log", "Plesk PHP's php-fpm master log"),
    # CloudLinux
    L("cloudlinux", "config", "php", "/opt/alt/php*/etc/php.ini", "alt-php's php.ini, per version"),
    L("cloudlinux", "config", "php", "/opt/alt/php*/etc/php.d/*.ini", "alt-php's extra ini files"),
    L("cloudlinux", "killer", "lve", "/proc/lve", "present when LVE limits apply (CPU, entry processes)"),
    # kill scripts and process killers
    L("debian", "killer", "cron", "/etc/crontab", "system crontab (with a user field)"),
    L("debian", "killer", "cron", "/etc/cron.d/*", "system crontabs (with a user field)"),
    L("debian", "killer", "cron", "/etc/cron.hourly/*", "scripts run hourly"),
    L("debian", "killer", "cron", "/etc/cron.daily/*", "scripts run daily"),
    L("rhel", "killer", "cron", "/var/spool/cron/*", "users' crontabs (root may read them)"),
    L("debian", "killer", "cron", "/var/spool/cron/crontabs/*", "users' crontabs (root may read them)"),
    L("cpanel", "killer", "csf", "/etc/csf/csf.conf", "CSF/lfd process tracking: PT_USERKILL, PT_USERTIME"),
    L("litespeed", "killer", "litespeed", "/usr/local/lsws/conf/httpd_config.conf", "LSAPI_MAX_PROCESS_TIME (env)"),
    L("litespeed", "killer", "litespeed", "/usr/local/lsws/conf/httpd_config.xml", "LSAPI_MAX_PROCESS_TIME (env)"),
    # what a shared-hosting user can read in their own account
    L("user", "log", "apache", "~/logs/*", "cPanel's per-domain access logs"),
    L("user", "log", "php", "~/public_html/error_log", "PHP's error log where cPanel's error_log = error_log puts it"),
    L("user", "log", "php", "{docroot}/error_log", "PHP's error log next to the site's scripts"),
    L("user", "log", "wordpress", "{docroot}/wp-content/debug.log", "WordPress's WP_DEBUG_LOG"),
    L("user", "config", "php", "{docroot}/.user.ini", "per-folder PHP settings (FPM/CGI)"),
    L("user", "config", "php", "{docroot}/.htaccess", "php_value lines (mod_php, LiteSpeed)"),
)
del L

LAYOUTS: tuple[str, ...] = tuple(dict.fromkeys(location.layout for location in LOCATIONS))


def search(kind: Kind | None = None, software: str | None = None,
           layouts: Iterable[str] | None = None) -> tuple[Location, ...]:
    """The locations of `kind` and `software` (None: any) in `layouts` (None: all), in
    LOCATIONS' order, a path listed by two layouts given once (its first)."""
    wanted = set(layouts) if layouts is not None else None
    unknown = (wanted or set()) - set(LAYOUTS)
    if unknown:
        raise ValueError(f"unknown layout(s): {', '.join(sorted(unknown))} (known: {', '.join(LAYOUTS)})")
    found: dict[str, Location] = {}
    for location in LOCATIONS:
        if (kind is None or location.kind == kind) and (software is None or location.software == software) \
                and (wanted is None or location.layout in wanted):
            found.setdefault(location.path, location)
    return tuple(found.values())


def expand(path: str, home: str | None = None, docroot: str | None = None) -> str | None:
    """`path` with "~" and "{docroot}" filled in; None when it needs one that is not known."""
    if path.startswith("~"):
        if home is None:
            return None
        path = home.rstrip("/") + path[1:]
    if "{docroot}" in path:
        if docroot is None:
            return None
        path = path.replace("{docroot}", docroot.rstrip("/"))
    return path
