"""A lean PHP site for the timeout tests: php-fpm + nginx (origin) + nginx (edge) on loopback.

    site = TimeoutSite(base, "127.0.70.1", owner="opskit-k1", home=Path("/home/…")).start()
    site.configure(pool={"request_terminate_timeout": "2s"}, fastcgi_read_timeout="60s")   # restarts what changed
    site.get("edge", "/sleep.php?s=5")        # → 502
    site.workers(), site.reset_logs(), site.stop()

The servers run as child processes of the caller, as lab/wordpress.py starts them (own
session, no daemon, pid files, sockets and logs under `base`, `-e` so nginx never opens
/var/log/nginx) and as a shared host runs them: the php-fpm master as root with one pool
running as `owner` (the SSH user), both nginx masters as root; their config files are
readable by everyone (0644), the logs too unless a test says otherwise (php-fpm would create
its log 0600: it is made beforehand). The docroot is `home`/public_html, owned by `owner`,
with sleep.php (sleeps s seconds) and busy.php (spins for s seconds of CPU time).

Files (the captures name them, so their shape is stable):

    base/php/php-fpm.conf         [global] + include=base/php/pool.d/*.conf
    base/php/pool.d/site.conf     the pool (`pool` settings after the defaults below)
    base/php/php.ini              beside php-fpm.conf, where Debian keeps the FPM SAPI's
    base/nginx/nginx.conf         the origin's main file, including base/nginx/sites/*.conf
    base/nginx/sites/site.conf    the origin's server block
    base/edge/nginx.conf          the edge: a reverse proxy in front of the origin
    base/logs/                    php-fpm.log, php-fpm-slow.log, php-error.log, origin-error.log, edge-error.log, ...

Nothing of the machine's is used: no system service, no /etc, /run/php, /var/log, /var/lib/nginx.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "PHP_INI_SCAN_DIR": ""}
SERVER_NAME = "site1.example.test"

SCRIPTS = {
    "sleep.php": "<?php\n$s = (float) ($_GET['s'] ?? 5);\nusleep((int) ($s * 1000000));\necho \"slept $s s\\n\";\n",
    "busy.php": ("<?php\n$s = (float) ($_GET['s'] ?? 5);\n$n = 0;\n"
                 "do {\n    for ($i = 0; $i < 100000; $i++) {\n        $n++;\n    }\n    $r = getrusage();\n"
                 "} while ($r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6 < $s);\n"
                 "echo \"spun $n times\\n\";\n"),
}

POOL_DEFAULTS = {
    "pm": "static",
    "pm.max_children": "2",
    "request_slowlog_timeout": "1s",     # php-fpm checks its timeouts every third of the shortest one
    "request_terminate_timeout": "0",
}


def free_port(address: str) -> int:
    from lab.sshd import free_port as _free_port

    return _free_port(address)


@dataclass
class TimeoutSite:
    base: Path
    address: str
    owner: str
    home: Path
    server_name: str = SERVER_NAME
    origin_port: int = 0
    edge_port: int = 0
    pool: dict[str, str] = field(default_factory=dict)
    php_ini: dict[str, str] = field(default_factory=dict)
    fastcgi_read_timeout: str | None = None     # None: not set (nginx's default 60s)
    proxy_read_timeout: str = "100s"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- paths -------------------------------------------------------------------------------

    @property
    def docroot(self) -> Path:
        return self.home / "public_html"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def socket(self) -> Path:
        return self.base / "run" / "php-fpm.sock"

    @property
    def fpm_conf(self) -> Path:
        return self.base / "php" / "php-fpm.conf"

    @property
    def pool_conf(self) -> Path:
        return self.base / "php" / "pool.d" / "site.conf"

    @property
    def ini(self) -> Path:
        return self.base / "php" / "php.ini"

    @property
    def origin_conf(self) -> Path:
        return self.base / "nginx" / "nginx.conf"

    @property
    def site_conf(self) -> Path:
        return self.base / "nginx" / "sites" / "site.conf"

    @property
    def edge_conf(self) -> Path:
        return self.base / "edge" / "nginx.conf"

    @property
    def pool_name(self) -> str:
        return self.owner

    def log(self, name: str) -> Path:
        return self.logs / name

    @property
    def origin_url(self) -> str:
        return f"http://{self.address}:{self.origin_port}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "TimeoutSite":
        for sub in ("logs", "run", "php/pool.d", "nginx/sites", "nginx/tmp", "edge/tmp"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.base, *[p for p in self.base.rglob("*") if p.is_dir()]):
            os.chmod(path, 0o755)
        user = pwd.getpwnam(self.owner)
        self.docroot.mkdir(parents=True, exist_ok=True)
        for name, text in SCRIPTS.items():
            (self.docroot / name).write_text(text)
        for path in (self.docroot, *self.docroot.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.home, 0o755)
        os.chmod(self.docroot, 0o755)
        self.origin_port = self.origin_port or free_port(self.address)
        self.edge_port = self.edge_port or free_port(self.address)
        self.reset_logs()
        self._write_all()
        self._start_fpm()
        self._start_nginx("origin")
        self._start_nginx("edge")
        return self

    def stop(self) -> None:
        for name in list(self.procs):
            self._stop(name)

    def configure(self, pool: dict[str, str] | None = None, php_ini: dict[str, str] | None = None,
                  fastcgi_read_timeout: str | None = None, proxy_read_timeout: str = "100s") -> None:
        """Set a case's configuration and restart the servers whose files changed."""
        before = {p: p.read_text() for p in (self.fpm_conf, self.pool_conf, self.ini, self.origin_conf,
                                             self.site_conf, self.edge_conf)}
        self.pool, self.php_ini = dict(pool or {}), dict(php_ini or {})
        self.fastcgi_read_timeout, self.proxy_read_timeout = fastcgi_read_timeout, proxy_read_timeout
        self._write_all()
        changed = {p for p, text in before.items() if p.read_text() != text}
        if changed & {self.fpm_conf, self.pool_conf, self.ini} or "php-fpm" not in self.procs:
            self._stop("php-fpm")
            self._start_fpm()
        if changed & {self.origin_conf, self.site_conf}:
            self._stop("origin")
            self._start_nginx("origin")
        if self.edge_conf in changed:
            self._stop("edge")
            self._start_nginx("edge")

    def reset_logs(self) -> None:
        """Every log emptied (the servers keep writing to them: they append); mode 0644."""
        user = pwd.getpwnam(self.owner)
        for name in ("php-fpm.log", "php-fpm-slow.log", "php-error.log", "origin-error.log", "origin-access.log",
                     "edge-error.log", "edge-access.log"):
            path = self.log(name)
            with open(path, "w"):
                pass
            os.chmod(path, 0o644)
            if name in ("php-error.log", "php-fpm-slow.log"):
                os.chown(path, user.pw_uid, user.pw_gid)

    # -- config files --------------------------------------------------------------------------

    def _write_all(self) -> None:
        group = grp.getgrgid(pwd.getpwnam(self.owner).pw_gid).gr_name
        settings = {"user": self.owner, "group": group, "listen": str(self.socket), "listen.owner": "root",
                    "listen.group": "root", "listen.mode": "0660", **POOL_DEFAULTS,
                    "slowlog": str(self.log("php-fpm-slow.log")), "rlimit_core": "0", "chdir": "/",
                    "php_admin_value[error_log]": str(self.log("php-error.log")),
                    "php_admin_flag[log_errors]": "on", **self.pool}
        _write(self.fpm_conf, "; php-fpm.conf written by lab/timeouts.py\n[global]\n"
                              f"pid = {self.base / 'run' / 'php-fpm.pid'}\n"
                              f"error_log = {self.log('php-fpm.log')}\n"
                              "log_level = notice\ndaemonize = no\n\n"
                              f"include = {self.base / 'php' / 'pool.d'}/*.conf\n")
        _write(self.pool_conf, f"; the site's pool, written by lab/timeouts.py\n[{self.pool_name}]\n"
                               + "".join(f"{k} = {v}\n" for k, v in settings.items() if v is not None))
        ini = {"max_execution_time": "30", "log_errors": "On", "display_errors": "Off", "date.timezone": "UTC",
               "error_reporting": "E_ALL", **self.php_ini}
        _write(self.ini, "; php.ini of the lab's FPM SAPI\n" + "".join(f"{k} = {v}\n" for k, v in ini.items()))
        _write(self.origin_conf, self._nginx_main("origin", f"    include {self.base / 'nginx' / 'sites'}/*.conf;\n"))
        read = f"            fastcgi_read_timeout {self.fastcgi_read_timeout};\n" if self.fastcgi_read_timeout else ""
        _write(self.site_conf, f"""# the site at the origin, written by lab/timeouts.py
server {{
    listen {self.address}:{self.origin_port} default_server;
    server_name {self.server_name};
    root {self.docroot};
    index index.php;

    location ~ \\.php$ {{
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:{self.socket};
{read}    }}
}}
""")
        _write(self.edge_conf, self._nginx_main("edge", f"""    server {{
        listen {self.address}:{self.edge_port} default_server;
        server_name {self.server_name};

        location / {{
            proxy_pass http://{self.address}:{self.origin_port};
            proxy_bind {self.address};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_read_timeout {self.proxy_read_timeout};
        }}
    }}
"""))

    def _nginx_main(self, name: str, inner: str) -> str:
        prefix = self.base / ("nginx" if name == "origin" else "edge")
        for kind in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        return f"""# the {name}'s nginx, written by lab/timeouts.py
user root root;
worker_processes 1;
pid {self.base / 'run' / (name + '.pid')};
error_log {self.log(name + '-error.log')};

events {{
    worker_connections 128;
}}

http {{
    access_log {self.log(name + '-access.log')};
    client_body_temp_path {prefix / 'tmp/body'};
    proxy_temp_path {prefix / 'tmp/proxy'};
    fastcgi_temp_path {prefix / 'tmp/fastcgi'};
    uwsgi_temp_path {prefix / 'tmp/uwsgi'};
    scgi_temp_path {prefix / 'tmp/scgi'};
    keepalive_timeout 15s;
{inner}}}
"""

    # -- processes -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.stdout", "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                    cwd=self.base, start_new_session=True)
        finally:
            out.close()
        self.procs[name] = proc
        return proc

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # workers that outlived their master
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if name == "php-fpm":
            self.socket.unlink(missing_ok=True)

    def _start_fpm(self) -> None:
        argv = [PHP_FPM, "--nodaemonize", "--fpm-config", str(self.fpm_conf), "-c", str(self.ini)]
        check = subprocess.run([*argv[:1], "--test", *argv[2:]], env=ENV, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"php-fpm --test: {check.stderr}")
        (self.base / "run" / "php-fpm.pid").unlink(missing_ok=True)
        self._spawn("php-fpm", argv)
        wait_for(lambda: (self.base / "run" / "php-fpm.pid").exists() and unix_accepts(self.socket), "php-fpm")
        if self.pool.get("pm", POOL_DEFAULTS["pm"]) == "static":
            want = int(self.pool.get("pm.max_children", POOL_DEFAULTS["pm.max_children"]))
            wait_for(lambda: len(self.workers()) >= want, "php-fpm's workers")

    def _start_nginx(self, name: str) -> None:
        conf = self.origin_conf if name == "origin" else self.edge_conf
        prefix = conf.parent
        argv = [NGINX, "-p", f"{prefix}/", "-c", str(conf), "-e", str(self.log(name + "-error.log"))]
        check = subprocess.run([*argv, "-t", "-q"], env=ENV, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t ({name}): {check.stderr}")
        (self.base / "run" / f"{name}.pid").unlink(missing_ok=True)
        self._spawn(name, [*argv, "-g", "daemon off;"])
        port = self.origin_port if name == "origin" else self.edge_port
        wait_for(lambda: (self.base / "run" / f"{name}.pid").exists() and tcp_accepts(self.address, port), name)

    def workers(self) -> list[int]:
        proc = self.procs.get("php-fpm")
        if proc is None or proc.poll() is not None:
            return []
        try:
            return [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        except OSError:
            return []

    @property
    def fpm_master(self) -> int | None:
        proc = self.procs.get("php-fpm")
        return proc.pid if proc else None

    # -- requests ------------------------------------------------------------------------------

    def get(self, via: str, path: str, timeout: float = 60) -> int | str:
        return http_status(self.address, self.origin_port if via == "origin" else self.edge_port, path,
                           self.server_name, timeout)

    def concurrently(self, *requests: tuple[float, str, str]) -> list[int | str]:
        """(delay, via, path) requests, each in its own thread, sent `delay` seconds apart."""
        results: list = [None] * len(requests)
        threads = []
        for index, (delay, via, path) in enumerate(requests):
            time.sleep(delay)
            thread = threading.Thread(target=lambda i=index, v=via, p=path: results.__setitem__(i, self.get(v, p)))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        return results

    def exhaust_workers(self) -> list[int | str]:
        """One php-fpm worker, no listen backlog, four 2-second requests through the edge 0.3 s
        apart: the first holds the worker, the others are refused (nginx: 11: Resource
        temporarily unavailable → 502; php-fpm: server reached max_children). Their codes."""
        self.configure(pool={"pm": "ondemand", "pm.max_children": "1", "listen.backlog": "0"})
        return self.concurrently(*((0.3 if n else 0, "edge", "/sleep.php?s=2") for n in range(4)))


def http_status(address: str, port: int, path: str, server_name: str, timeout: float = 60) -> int | str:
    """GET path from address:port as server_name, sent from `address` itself: the status, or
    the error's name and text when there was no answer."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout, source_address=(address, 0))
    try:
        connection.request("GET", path, headers={"Host": server_name})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o644)


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.05)


def tcp_accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def remove(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def site_behind_sshd(name: str, prefix: str, subnet: str, site_class: type | None = None, **site: object):
    """A TimeoutSite (or `site_class`, a subclass) owned by the one host of a private sshd Lab,
    for a test module:

        with site_behind_sshd("tune", "opskit-tu", "127.0.90.", pool={...}) as (lab, site, base):
            ...

    Needs root; everything (servers, sshd, users, files under a fresh /tmp/opskit-NAME-*) is
    stopped and removed afterwards, however the block ends."""
    from lab.sshd import Lab

    if os.geteuid() != 0:
        raise PermissionError("the real-server tests need root (sshd, users, php-fpm's master); run them as root or in CI")
    base = Path(tempfile.mkdtemp(prefix=f"opskit-{name}-"))
    os.chmod(base, 0o755)
    lab = Lab(base / "lab", count=1, prefix=prefix, subnet=subnet)
    started = None
    try:
        lab.start()
        host = lab.hosts[0]
        started = (site_class or TimeoutSite)(base / "site", host.address, host.user, host.home, **site).start()
        yield lab, started, base
    finally:
        if started is not None:
            started.stop()
        lab.stop()
        lab.remove_users()
        remove(base)
