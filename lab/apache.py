"""Apache 2.4 (Debian's /usr/sbin/apache2) with mod_proxy_fcgi in front of the lab's php-fpm,
as many VPS and cPanel hosts run PHP:

    front = ApacheFront(site)                    # site: a started lab.timeouts.TimeoutSite
    front.start(proxy_timeout="2")               # nginx (origin and edge) stopped, Apache on a free port
    front.get("/sleep.php?s=5")                  # → 504 from Apache after 2 s
    front.stop()                                 # Apache gone, the site's nginx back

Apache runs as a child process of the caller (own session, `-DFOREGROUND`, no daemon): its
ServerRoot, configuration, pid file, mutexes and logs are under the site's `base` (never
/etc/apache2, /var/log/apache2, /run/apache2), the modules are loaded from
/usr/lib/apache2/modules. The master runs as root, its children as `nobody`:`nogroup`, so
the pool's socket is handed to them (`listen.owner`/`listen.group`, see CAN_CONNECT). The
site's docroot is served with `SetHandler "proxy:unix:SOCK|fcgi://localhost"` for .php.
Its files are readable by everyone (0644), as the SSH user's probes read them.

    base/apache/apache2.conf      the whole configuration (one file, no Include)
    base/logs/apache-error.log    ErrorLog (LogLevel warn: AH01075 is an error)
    base/logs/apache-access.log   CustomLog with %D (the request's microseconds)

`apache_conf()` is the configuration text alone, the same one tests/captures/capture_timeouts.py
writes for its Apache captures.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.timeouts import ENV, TimeoutSite, _write, free_port, http_status, tcp_accepts, wait_for

APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
MODULES = ("mpm_event", "authz_core", "proxy", "proxy_fcgi")   # unixd, log_config, core: built in (apache2 -l)
USER, GROUP = "nobody", "nogroup"
CAN_CONNECT = {"listen.owner": USER, "listen.group": GROUP}     # the pool settings that let Apache's children in
LOGS = ("apache-error.log", "apache-access.log")


def available() -> bool:
    return os.access(APACHE, os.X_OK) and all((APACHE_MODULES / f"mod_{m}.so").exists() for m in MODULES)


def apache_conf(*, root: Path, run: Path, logs: Path, address: str, port: int, server_name: str, docroot: Path,
                socket: Path, timeout: str | None = "60", proxy_timeout: str | None = None,
                user: str = USER, group: str = GROUP, written_by: str = "lab/apache.py") -> str:
    """One Apache configuration file: a virtual host passing .php to php-fpm's socket."""
    return (f"# written by {written_by}\n"
            f"ServerRoot {root}\nServerName {server_name}\n"
            + "".join(f"LoadModule {m}_module {APACHE_MODULES / f'mod_{m}.so'}\n" for m in MODULES)
            + f"DefaultRuntimeDir {run}\nPidFile {run / 'apache.pid'}\n"
            f"Mutex file:{run} default\n"
            f"User {user}\nGroup {group}\nListen {address}:{port}\n"
            + (f"Timeout {timeout}\n" if timeout else "")
            + (f"ProxyTimeout {proxy_timeout}\n" if proxy_timeout else "")
            + f"ErrorLog {logs / 'apache-error.log'}\nLogLevel warn\n"
            'LogFormat "%h %l %u %t \\"%r\\" %>s %O %D" timing\n'
            f"CustomLog {logs / 'apache-access.log'} timing\n"
            f"<VirtualHost {address}:{port}>\n"
            f"    ServerName {server_name}\n    DocumentRoot {docroot}\n"
            f"    <Directory {docroot}>\n        Require all granted\n    </Directory>\n"
            '    <FilesMatch "\\.php$">\n'
            f'        SetHandler "proxy:unix:{socket}|fcgi://localhost"\n'
            "    </FilesMatch>\n</VirtualHost>\n")


@dataclass
class ApacheFront:
    site: TimeoutSite
    port: int = 0

    @property
    def root(self) -> Path:
        return self.site.base / "apache"

    @property
    def conf(self) -> Path:
        return self.root / "apache2.conf"

    @property
    def pid_file(self) -> Path:
        return self.site.base / "run" / "apache.pid"

    @property
    def url(self) -> str:
        return f"http://{self.site.address}:{self.port}"

    def start(self, proxy_timeout: str | None = None, timeout: str | None = "60") -> "ApacheFront":
        """Apache in place of the site's nginx (both stopped: Apache alone runs the PHP)."""
        site = self.site
        site._stop("origin")
        site._stop("edge")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.port = self.port or free_port(site.address)
        self.reset_logs()
        _write(self.conf, apache_conf(root=self.root, run=site.base / "run", logs=site.logs, address=site.address,
                                      port=self.port, server_name=site.server_name, docroot=site.docroot,
                                      socket=site.socket, timeout=timeout, proxy_timeout=proxy_timeout))
        argv = [APACHE, "-d", str(self.root), "-f", str(self.conf)]
        check = subprocess.run([*argv, "-t"], env=ENV, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"apache2 -t: {check.stderr}")
        self.pid_file.unlink(missing_ok=True)
        site._spawn("apache", [*argv, "-DFOREGROUND"])
        wait_for(lambda: self.pid_file.exists() and tcp_accepts(site.address, self.port), "apache")
        return self

    def stop(self) -> None:
        """Apache gone, the site's nginx (origin and edge) running again."""
        site = self.site
        site._stop("apache")
        for name in ("origin", "edge"):
            if name not in site.procs:
                site._start_nginx(name)

    def reset_logs(self) -> None:
        for name in LOGS:
            path = self.site.log(name)
            with open(path, "w"):
                pass
            os.chmod(path, 0o644)

    def line_of(self, text: str) -> int:
        return next(n for n, line in enumerate(self.conf.read_text().split("\n"), 1) if text in line)

    def get(self, path: str, timeout: float = 60) -> int | str:
        return http_status(self.site.address, self.port, path, self.site.server_name, timeout)
