"""A real WordPress site on loopback, for tests and the demo.

``WordPressSite`` starts, as child processes of the calling Python process and
with every config, pid file, socket, log and database file under ``base_dir``:

* MariaDB (``mariadbd``), listening on ``address:<free port>``;
* php-fpm (master as root, one pool running as ``owner``) on a unix socket;
* nginx as the *origin* web server on ``address:http_port``;
* optionally a second nginx process, the *gateway* (a reverse proxy standing in
  for the CDN edge) on ``address:gateway_port``, so that a dead php-fpm gives a
  real 502 through the gateway and a slow origin a real 504.

It copies Debian's WordPress (``/usr/share/wordpress``) into
``home/public_html`` (owned by ``owner``), writes a normal ``wp-config.php``
(Debian's loader is not used), installs WordPress with ``wp_install()`` run by
PHP CLI as ``owner``, and installs + activates the CDN-Enabler test double from
``lab/plugins/cdn-enabler``.  The system's own services are never used.

WordPress's ``home``/``siteurl`` are ``http://<server_name>/``: clients reach the
origin at ``address:http_port`` and send ``Host: <server_name>`` (no DNS needed).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import glob
import grp
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

__all__ = [
    "CDN_HOSTNAME",
    "LabError",
    "PLUGIN_FILE",
    "PLUGIN_SLUG",
    "PLUGIN_SOURCE",
    "WORDPRESS_SOURCE",
    "WordPressSite",
    "free_port",
    "make_lab_dir",
]

WORDPRESS_SOURCE = Path("/usr/share/wordpress")
PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugins" / "cdn-enabler"
PLUGIN_SLUG = "cdn-enabler"
PLUGIN_FILE = "cdn-enabler/cdn-enabler.php"
CDN_HOSTNAME = "cdn.example.test"

# Extensions loaded into PHP (fpm and CLI) when the .so exists; mysqlnd must come
# before mysqli.  Debian 12's php8.2-{common,mysql,gd,opcache} provide these.
_PHP_EXTENSIONS = (
    "mysqlnd", "mysqli", "ctype", "fileinfo", "exif", "iconv", "tokenizer",
    "gd", "posix", "mbstring", "xml", "dom", "simplexml", "curl", "zip", "intl",
)
_REQUIRED_PHP_EXTENSIONS = ("mysqlnd", "mysqli")

_DEFAULT_TIMEOUT = 30.0


class LabError(RuntimeError):
    """A lab server could not be set up, started or queried."""


# --------------------------------------------------------------------------
# small helpers


def free_port(address: str) -> int:
    """A TCP port free on ``address``, outside the ephemeral range (see lab.sshd.free_port)."""
    from lab.sshd import free_port as _free_port

    return _free_port(address)


def make_lab_dir(prefix: str = "opskit-lab-", *, prefer_shm: bool = True) -> Path:
    """A fresh private temp dir for lab servers, mode 0755 (so a site owner's
    php-fpm workers can traverse it).  Prefers /dev/shm (tmpfs): copying
    WordPress there takes ~0.1 s instead of ~2 s on this VM's ext4 disk.
    The caller removes it (shutil.rmtree) when done."""
    parent = None
    shm = Path("/dev/shm")
    if prefer_shm and shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        parent = str(shm)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o755)
    return path


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _tcp_accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _unix_accepts(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _find_binary(*candidates: str) -> str:
    """First candidate found on PATH (plus the sbin dirs) or as a glob."""
    search = os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    )
    for cand in candidates:
        if any(ch in cand for ch in "*?["):
            hits = sorted(glob.glob(cand), reverse=True)
            if hits:
                return hits[0]
            continue
        found = shutil.which(cand, path=search)
        if found:
            return found
    raise LabError(
        f"none of {', '.join(candidates)} is installed (Debian packages: "
        "nginx-light, php-fpm, php-cli, php-mysql, mariadb-server, wordpress)"
    )


@functools.cache
def _php_extension_dir(php: str) -> str:
    out = subprocess.run(
        [php, "-n", "-r", "echo PHP_EXTENSION_DIR;"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    if not out or not Path(out).is_dir():
        raise LabError(f"{php} reports no usable extension dir ({out!r})")
    return out


def _php_settings(php: str) -> list[tuple[str, str]]:
    """php.ini settings (as ordered pairs) shared by php-fpm and PHP CLI."""
    ext_dir = _php_extension_dir(php)
    pairs: list[tuple[str, str]] = [("extension_dir", ext_dir)]
    if Path(ext_dir, "opcache.so").exists():
        pairs.append(("zend_extension", "opcache"))
    for ext in _PHP_EXTENSIONS:
        if Path(ext_dir, f"{ext}.so").exists():
            pairs.append(("extension", ext))
        elif ext in _REQUIRED_PHP_EXTENSIONS:
            raise LabError(f"PHP extension {ext} missing in {ext_dir} (install php-mysql)")
    pairs += [
        ("memory_limit", "256M"),
        ("max_execution_time", "30"),
        ("error_reporting", "E_ALL & ~E_DEPRECATED & ~E_STRICT"),
        ("log_errors", "On"),
        ("date.timezone", "UTC"),
        ("upload_max_filesize", "16M"),
        ("post_max_size", "16M"),
    ]
    return pairs


def _run(argv: Sequence[str], *, timeout: float, what: str, input: str | None = None,
         env: dict[str, str] | None = None, cwd: str | Path | None = None,
         log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a helper command in its own process group; kill the group on timeout."""
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        _killpg(proc.pid)
        proc.wait()
        raise
    finally:
        _killpg(proc.pid)  # stragglers (e.g. a bootstrap mariadbd) die with the group
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"$ {shlex.join(argv)}\n{out}{err}\n[exit {proc.returncode}]\n")
    result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if proc.returncode != 0:
        raise LabError(
            f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n"
            f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-4000:]}"
        )
    return result


def _killpg(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_status(proc: subprocess.Popen) -> int | None:
    """The exit status of ``proc`` if it has exited, else None -- without
    reaping it: while it is a zombie its pid (= its process group id, as every
    server runs in its own session) cannot be reused, so stop() can still kill
    stragglers of that group safely."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll()
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _http_session() -> requests.Session:
    """A requests session that talks to the lab directly: no proxy from the
    environment (http_proxy & co.), no ~/.netrc."""
    session = requests.Session()
    session.trust_env = False
    return session


def _php_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_LIVE_SITES: weakref.WeakSet[WordPressSite] = weakref.WeakSet()


@atexit.register
def _stop_live_sites() -> None:
    """Safety net: stop sites whose owner forgot (or never reached) stop()."""
    for site in list(_LIVE_SITES):
        try:
            site.stop()
        except Exception:
            pass


@dataclass
class _Server:
    name: str
    proc: subprocess.Popen
    log: Path            # the server's own error log (tail shown on failure)
    stop_signal: int = signal.SIGTERM


# --------------------------------------------------------------------------


@dataclass(eq=False)  # identity semantics: a handle on running servers
class WordPressSite:
    """A WordPress site served by real MariaDB + php-fpm + nginx on loopback.

    ``base_dir`` holds the servers' state and must be traversable by ``owner``
    (php-fpm workers running as ``owner`` write their PHP error log there);
    ``start()`` makes ``base_dir`` itself mode 0755 and checks its parents.
    """

    base_dir: Path
    address: str
    owner: str
    home: Path
    server_name: str = "site1.example.test"
    multisite: bool = False
    gateway: bool = False
    http_port: int = 0                      # 0: pick a free port on ``address``
    gateway_port: int = 0
    gateway_read_timeout: float = 3.0       # proxy_read_timeout of the gateway (s)
    fastcgi_read_timeout: float = 60.0      # fastcgi_read_timeout of the origin (s)
    fpm_pool_settings: dict[str, str] = field(default_factory=dict)  # extra pool directives
    site_title: str = "opskit lab site"
    admin_user: str = "opskit-admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    admin_email: str = "admin@example.test"
    cdn_hostname: str = CDN_HOSTNAME
    db_name: str = "wordpress"
    db_user: str = "wordpress"
    db_password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    table_prefix: str = "wp_"
    timeout: float = _DEFAULT_TIMEOUT       # per readiness wait / PHP run

    # filled in by start()
    db_port: int = field(default=0, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _servers: dict[str, _Server] = field(default_factory=dict, init=False, repr=False)
    _bins: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    # ---------------------------------------------------------------- paths

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()
        self.home = Path(self.home)

    @property
    def docroot(self) -> Path:
        return self.home / "public_html"

    @property
    def wp_config_path(self) -> Path:
        return self.docroot / "wp-config.php"

    @property
    def plugins_dir(self) -> Path:
        return self.docroot / "wp-content" / "plugins"

    @property
    def plugin_dir(self) -> Path:
        return self.plugins_dir / PLUGIN_SLUG

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def fpm_socket(self) -> Path:
        return self.run_dir / "php-fpm.sock"

    @property
    def db_socket(self) -> Path:
        return self.run_dir / "mysqld.sock"

    @property
    def nginx_conf(self) -> Path:
        return self.base_dir / "nginx" / "nginx.conf"

    @property
    def gateway_conf(self) -> Path:
        return self.base_dir / "gateway" / "nginx.conf"

    @property
    def fpm_conf(self) -> Path:
        return self.base_dir / "php" / "php-fpm.conf"

    @property
    def php_ini(self) -> Path:
        return self.base_dir / "php" / "php.ini"

    @property
    def php_error_log(self) -> Path:
        return self.logs_dir / "php-error.log"

    @property
    def origin_url(self) -> str:
        return f"http://{self.address}:{self.http_port}/"

    @property
    def gateway_url(self) -> str:
        if not self.gateway:
            raise LabError("this site was created with gateway=False")
        return f"http://{self.address}:{self.gateway_port}/"

    @property
    def site_url(self) -> str:
        """WordPress's own home/siteurl (reach it via origin_url + Host header)."""
        return f"http://{self.server_name}/"

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.owner).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.owner).pw_gid

    def __enter__(self) -> WordPressSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> WordPressSite:
        """Start MariaDB, php-fpm, nginx (and the gateway), install WordPress
        and the CDN Enabler double, and wait until the home page answers 200.
        On any failure everything already started is stopped before raising."""
        if self._started:
            raise LabError("site already started")
        self._started = True
        _LIVE_SITES.add(self)
        t0 = time.monotonic()
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise
        self.timings["start_total"] = time.monotonic() - t0
        return self

    def _start(self, t0: float) -> None:
        try:
            pw = pwd.getpwnam(self.owner)
        except KeyError:
            raise LabError(f"unix user {self.owner!r} does not exist") from None
        if not WORDPRESS_SOURCE.joinpath("wp-settings.php").exists():
            raise LabError(f"{WORDPRESS_SOURCE} has no WordPress (apt-get install wordpress)")
        self._bins = {
            "mariadbd": _find_binary("mariadbd", "mysqld"),
            "install_db": _find_binary("mariadb-install-db", "mysql_install_db"),
            "mysql": _find_binary("mariadb", "mysql"),
            "php_fpm": _find_binary("php-fpm", "/usr/sbin/php-fpm*"),
            "php": _find_binary("php"),
            "nginx": _find_binary("nginx"),
            "setpriv": _find_binary("setpriv"),
        }
        if not self.home.is_dir():
            raise LabError(f"home {self.home} of {self.owner} does not exist")
        if self.docroot.exists() and any(self.docroot.iterdir()):
            raise LabError(f"docroot {self.docroot} already exists and is not empty")

        for d in (self.base_dir, self.logs_dir, self.run_dir, self.base_dir / "php",
                  self.base_dir / "nginx", self.base_dir / "mysql"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        os.chmod(self.logs_dir, 0o755)
        self._check_traversable(self.base_dir, pw)
        self._check_traversable(self.home, pw)
        if not self.http_port:
            self.http_port = free_port(self.address)
        if self.gateway and not self.gateway_port:
            self.gateway_port = free_port(self.address)
        self.db_port = free_port(self.address)

        # The WordPress files (~60 MB) are copied in a thread while MariaDB's
        # data dir is created and the server boots (copyfile/sendfile and the
        # child processes do not hold the GIL).
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wp-copy") as pool:
            copying = pool.submit(self._copy_wordpress, pw)
            self._start_mariadb()  # on error, leaving the with-block waits for the copy
            self.timings["mariadb_spawned"] = time.monotonic() - t0
        copying.result()  # re-raises a copy error
        self.timings["files_copied"] = time.monotonic() - t0
        self._write_wp_config(multisite_ready=False)
        self._start_php_fpm(pw)
        self._start_nginx()
        if self.gateway:
            self._start_gateway()
        self._wait_mariadb()
        self.timings["mariadb_ready"] = time.monotonic() - t0
        self._wait_php_fpm()
        # nginx writes its pid file only after it has bound its listen sockets,
        # so a foreign process answering on the port cannot fake readiness.
        self._wait(lambda: (self.run_dir / "nginx.pid").exists()
                   and _tcp_accepts(self.address, self.http_port), "nginx")
        if self.gateway:
            self._wait(lambda: (self.run_dir / "gateway.pid").exists()
                       and _tcp_accepts(self.address, self.gateway_port), "gateway")
        self.timings["servers_ready"] = time.monotonic() - t0
        self._install_wordpress()
        self.timings["wordpress_installed"] = time.monotonic() - t0
        resp = self.fetch_home()
        if resp.status_code != 200:
            raise LabError(
                f"home page answered {resp.status_code} after install\n{resp.text[:2000]}\n"
                + self._logs_summary()
            )

    def stop(self) -> None:
        """Stop every server this site started (gateway, nginx, php-fpm,
        MariaDB, in that order) and wait for them; idempotent."""
        t0 = time.monotonic()
        for name in ("gateway", "nginx", "php-fpm", "mariadb"):
            server = self._servers.pop(name, None)
            if server is not None:
                self._stop_server(server)
        for server in list(self._servers.values()):
            self._stop_server(server)
        self._servers.clear()
        _LIVE_SITES.discard(self)
        self.timings["stop_total"] = time.monotonic() - t0

    def stop_php_fpm(self) -> None:
        """Stop only php-fpm (the origin then answers 502, and so does the gateway)."""
        server = self._servers.pop("php-fpm", None)
        if server is not None:
            self._stop_server(server)

    def start_php_fpm(self) -> None:
        """Start php-fpm again after stop_php_fpm()."""
        if "php-fpm" in self._servers:
            return
        self._start_php_fpm(pwd.getpwnam(self.owner))
        self._wait_php_fpm()

    def running(self) -> dict[str, int]:
        """name -> pid of the servers still running."""
        return {n: s.proc.pid for n, s in self._servers.items()
                if _exit_status(s.proc) is None}

    # --------------------------------------------------------- WordPress API

    def php(self, code: str, *, load_wordpress: bool = True, timeout: float | None = None,
            prelude: str = "") -> str:
        """Run PHP statements as ``owner`` (PHP CLI, cwd = docroot) with
        WordPress loaded via wp-load.php, as for a front-end request to
        ``http://server_name/``.  Returns stdout; raises LabError on a non-zero
        exit (PHP fatal errors exit 255) with stdout and stderr."""
        code = code.strip()
        if code.startswith("<?php"):
            code = code[len("<?php"):]
        script = "<?php\n" + self._cli_prelude() + prelude + "\n"
        if load_wordpress:
            script += f"require_once {_php_quote(str(self.docroot / 'wp-load.php'))};\n"
        script += code + "\n"
        return self._run_php(script, timeout=timeout, what="PHP snippet").stdout

    def active_plugins(self) -> list[str]:
        """The ``active_plugins`` option, read through WordPress (get_option)."""
        out = self.php(
            "echo json_encode(array_values((array) get_option('active_plugins', array())));"
        )
        return json.loads(out)

    def network_active_plugins(self) -> list[str]:
        """Keys of the ``active_sitewide_plugins`` site option; [] unless multisite."""
        if not self.multisite:
            return []
        out = self.php(
            "echo json_encode(is_multisite() ? array_keys((array) "
            "get_site_option('active_sitewide_plugins', array())) : array());"
        )
        return json.loads(out)

    def fetch_home(self, *, via_gateway: bool = False, timeout: float = 15.0,
                   path: str = "") -> requests.Response:
        """GET the home page (origin, or the gateway) with ``Host: server_name``,
        bypassing caches (``Cache-Control: no-cache`` + a unique query string)."""
        base = self.gateway_url if via_gateway else self.origin_url
        url = f"{base}{path.lstrip('/')}?nocache={secrets.token_hex(6)}"
        with _http_session() as session:
            return session.get(
                url,
                headers={"Host": self.server_name, "Cache-Control": "no-cache",
                         "Pragma": "no-cache"},
                timeout=timeout,
                allow_redirects=False,
            )

    def login(self) -> requests.Session:
        """A requests.Session logged into wp-admin through the real login form
        (wp-login.php) on the origin, with ``Host: server_name``."""
        session = _http_session()
        session.headers.update({"Host": self.server_name, "Cache-Control": "no-cache"})
        login_url = self.origin_url + "wp-login.php"
        # GET first: WordPress sets wordpress_test_cookie and refuses logins without it.
        r = session.get(login_url, timeout=15, allow_redirects=False)
        if r.status_code != 200:
            raise LabError(f"GET wp-login.php answered {r.status_code}\n{r.text[:1000]}")
        r = session.post(
            login_url,
            data={
                "log": self.admin_user,
                "pwd": self.admin_password,
                "wp-submit": "Log In",
                "redirect_to": self.site_url + "wp-admin/",
                "testcookie": "1",
            },
            timeout=15,
            allow_redirects=False,
        )
        if r.status_code != 302 or not any(
            c.name.startswith("wordpress_logged_in_") for c in session.cookies
        ):
            raise LabError(
                f"wp-login.php did not log {self.admin_user} in "
                f"(status {r.status_code}, cookies {[c.name for c in session.cookies]})\n"
                f"{r.text[:2000]}"
            )
        return session

    def open_plugins_admin_page(self) -> int:
        """Do what an administrator's browser does: log in through wp-login.php
        and GET /wp-admin/plugins.php (real HTTP requests through nginx and
        php-fpm).  plugins.php calls validate_active_plugins(), which
        deactivates every active plugin whose main file no longer exists.
        Returns the HTTP status of plugins.php (200 when all went well)."""
        session = self.login()
        r = session.get(self.origin_url + "wp-admin/plugins.php", timeout=30,
                        allow_redirects=False)
        if r.status_code == 200 and "wp-admin" not in r.text:
            raise LabError(f"plugins.php did not render the admin page\n{r.text[:2000]}")
        return r.status_code

    def activate_plugin(self, plugin: str = PLUGIN_FILE, *,
                        network_wide: bool | None = None) -> None:
        """activate_plugin() through WordPress (network-wide on a multisite by default)."""
        if network_wide is None:
            network_wide = self.multisite
        network = "true" if network_wide else "false"
        self.php(
            "require_once ABSPATH . 'wp-admin/includes/plugin.php';\n"
            f"$r = activate_plugin({_php_quote(plugin)}, '', {network});\n"
            "if (is_wp_error($r)) { fwrite(STDERR, $r->get_error_message()); exit(3); }\n"
        )

    def deactivate_plugin(self, plugin: str = PLUGIN_FILE, *,
                          network_wide: bool | None = None) -> None:
        """deactivate_plugins() through WordPress, as an admin clicking Deactivate."""
        if network_wide is None:
            network_wide = self.multisite
        network = "true" if network_wide else "false"
        self.php(
            "require_once ABSPATH . 'wp-admin/includes/plugin.php';\n"
            f"deactivate_plugins({_php_quote(plugin)}, false, {network});\n"
        )

    # ------------------------------------------------------------- internals

    def _wait(self, ready: Callable[[], bool], what: str, server: str | None = None) -> None:
        """Poll ``ready`` until it is true; fail early if the server died."""
        server = server or what
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            if ready():
                return
            srv = self._servers.get(server)
            status = _exit_status(srv.proc) if srv is not None else None
            if status is not None:
                raise LabError(
                    f"{what} exited with {status} before it was ready\n"
                    f"--- tail of {srv.log} ---\n{_tail(srv.log)}"
                )
            if time.monotonic() > deadline:
                log = srv.log if srv else None
                raise LabError(
                    f"{what} not ready after {self.timeout:.0f}s\n"
                    f"--- tail of {log} ---\n{_tail(log)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def _wait_php_fpm(self) -> None:
        self._wait(lambda: (self.run_dir / "php-fpm.pid").exists()
                   and _unix_accepts(self.fpm_socket), "php-fpm")

    def _spawn(self, name: str, argv: list[str], log: Path, *,
               stop_signal: int = signal.SIGTERM, env: dict[str, str] | None = None) -> None:
        out = open(self.logs_dir / f"{name}.stdout.log", "ab")
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, cwd=self.base_dir,
            )
        finally:
            out.close()
        self._servers[name] = _Server(name, proc, log, stop_signal)

    def _stop_server(self, server: _Server, timeout: float = 15.0) -> None:
        proc = server.proc
        if proc.returncode is not None:  # already reaped elsewhere: nothing safe to kill
            return
        if _exit_status(proc) is None:
            proc.send_signal(server.stop_signal)
            if not self._until_exited(proc, timeout):
                _killpg(proc.pid)
                self._until_exited(proc, timeout)
        # The master is a zombie now, so its process group id is still ours:
        # kill any worker that outlived it, then reap the master.
        _killpg(proc.pid)
        proc.wait(timeout=timeout)

    @staticmethod
    def _until_exited(proc: subprocess.Popen, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while _exit_status(proc) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        return True

    def _check_traversable(self, path: Path, pw: pwd.struct_passwd) -> None:
        groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if self.owner in g.gr_mem}
        for p in [path, *path.parents]:
            st = p.stat()
            if st.st_uid == pw.pw_uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid in groups:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                raise LabError(
                    f"{p} (mode {stat.filemode(st.st_mode)}) cannot be traversed by "
                    f"{self.owner}; php-fpm workers run as {self.owner} and need {path}"
                )

    def _logs_summary(self) -> str:
        parts = []
        for log in (self.logs_dir / "nginx-error.log", self.logs_dir / "php-fpm.log",
                    self.php_error_log, self.logs_dir / "mariadb.log"):
            if log.exists():
                parts.append(f"--- tail of {log} ---\n{_tail(log, 20)}")
        return "\n".join(parts)

    # MariaDB ---------------------------------------------------------------

    def _mariadb_common_args(self) -> list[str]:
        return [
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=4M",
            "--innodb-flush-log-at-trx-commit=2",
        ]

    def _start_mariadb(self) -> None:
        datadir = self.base_dir / "mysql" / "data"
        log = self.logs_dir / "mariadb.log"
        if not (datadir / "mysql").exists():
            _run(
                [self._bins["install_db"], "--no-defaults", f"--datadir={datadir}",
                 "--user=root", "--auth-root-authentication-method=normal",
                 "--skip-test-db", "--skip-name-resolve", *self._mariadb_common_args()],
                timeout=120, what="mariadb-install-db", log=self.logs_dir / "mariadb-install.log",
            )
        self._spawn(
            "mariadb",
            [self._bins["mariadbd"], "--no-defaults", f"--datadir={datadir}",
             f"--socket={self.db_socket}", f"--bind-address={self.address}",
             f"--port={self.db_port}", f"--pid-file={self.run_dir / 'mysqld.pid'}",
             f"--log-error={log}", "--user=root", "--skip-name-resolve",
             "--skip-log-bin", "--max-connections=50", "--character-set-server=utf8mb4",
             "--collation-server=utf8mb4_unicode_ci", *self._mariadb_common_args()],
            log,
        )

    def _wait_mariadb(self) -> None:
        self._wait(lambda: _tcp_accepts(self.address, self.db_port) and self.db_socket.exists(),
                   "mariadb")
        if any(c in self.db_password for c in "'\\") or not re.fullmatch(r"\w+", self.db_name) \
                or not re.fullmatch(r"[\w-]+", self.db_user):
            raise LabError("db_name/db_user/db_password contain characters the lab does not quote")
        sql = (
            f"CREATE DATABASE IF NOT EXISTS `{self.db_name}` CHARACTER SET utf8mb4 "
            f"COLLATE utf8mb4_unicode_ci;\n"
            f"CREATE USER IF NOT EXISTS '{self.db_user}'@'%' IDENTIFIED BY '{self.db_password}';\n"
            f"GRANT ALL PRIVILEGES ON `{self.db_name}`.* TO '{self.db_user}'@'%';\n"
        )
        _run([self._bins["mysql"], "--no-defaults", f"--socket={self.db_socket}", "-uroot"],
             input=sql, timeout=self.timeout, what="creating the WordPress database")

    # WordPress files -------------------------------------------------------

    def _copy_wordpress(self, pw: pwd.struct_passwd) -> None:
        def ignore(directory: str, names: list[str]) -> set[str]:
            d = Path(directory)
            skip = set()
            if d == WORDPRESS_SOURCE:
                # Debian's wp-config.php is a loader for /etc/wordpress; .htaccess
                # is a symlink to /etc/wordpress/htaccess (Apache only).
                skip |= {"wp-config.php", ".htaccess"}
            if d == WORDPRESS_SOURCE / "wp-content":
                skip |= {"languages"}  # wordpress-l10n, 31 MB, not needed for en_US
            return skip & set(names)

        self.docroot.mkdir(exist_ok=True)
        # symlinks=False: a symlinked wp-content (into /var/lib/wordpress) becomes a real dir.
        shutil.copytree(WORDPRESS_SOURCE, self.docroot, symlinks=False, ignore=ignore,
                        ignore_dangling_symlinks=True, dirs_exist_ok=True,
                        copy_function=shutil.copyfile)
        plugin_dst = self.plugin_dir
        shutil.copytree(PLUGIN_SOURCE, plugin_dst, copy_function=shutil.copyfile)
        (self.docroot / "wp-content" / "uploads").mkdir(exist_ok=True)
        for root, _dirs, files in os.walk(self.docroot):
            os.chown(root, pw.pw_uid, pw.pw_gid)
            os.chmod(root, 0o755)
            for f in files:
                p = os.path.join(root, f)
                os.chown(p, pw.pw_uid, pw.pw_gid)
                os.chmod(p, 0o644)

    def _write_wp_config(self, *, multisite_ready: bool) -> None:
        salts = "\n".join(
            f"define( {_php_quote(k)}, {_php_quote(secrets.token_urlsafe(48))} );"
            for k in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
                      "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")
        ) if not self.wp_config_path.exists() else self._existing_salts()
        multisite = ""
        if self.multisite:
            multisite = "define( 'WP_ALLOW_MULTISITE', true );\n"
            if multisite_ready:
                multisite += (
                    "define( 'MULTISITE', true );\n"
                    "define( 'SUBDOMAIN_INSTALL', false );\n"
                    f"define( 'DOMAIN_CURRENT_SITE', {_php_quote(self.server_name)} );\n"
                    "define( 'PATH_CURRENT_SITE', '/' );\n"
                    "define( 'SITE_ID_CURRENT_SITE', 1 );\n"
                    "define( 'BLOG_ID_CURRENT_SITE', 1 );\n"
                )
        text = f"""<?php
/**
 * wp-config.php written by opskit's lab (lab/wordpress.py).
 */

// ** Database settings ** //
define( 'DB_NAME', {_php_quote(self.db_name)} );
define( 'DB_USER', {_php_quote(self.db_user)} );
define( 'DB_PASSWORD', {_php_quote(self.db_password)} );
define( 'DB_HOST', {_php_quote(f"{self.address}:{self.db_port}")} );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );

// ** Authentication unique keys and salts ** //
{salts}

$table_prefix = {_php_quote(self.table_prefix)};

define( 'WP_DEBUG', false );
define( 'DISABLE_WP_CRON', true );
define( 'WP_AUTO_UPDATE_CORE', false );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
// The lab has no internet: never wait on api.wordpress.org.
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
define( 'FS_METHOD', 'direct' );

/* Multisite */
{multisite}
/* That's all, stop editing! Happy publishing. */

if ( ! defined( 'ABSPATH' ) ) {{
	define( 'ABSPATH', __DIR__ . '/' );
}}

require_once ABSPATH . 'wp-settings.php';
"""
        tmp = self.wp_config_path.with_name(".wp-config.php.tmp")
        tmp.write_text(text)
        os.chown(tmp, self.uid, self.gid)
        os.chmod(tmp, 0o640)
        os.replace(tmp, self.wp_config_path)

    def _existing_salts(self) -> str:
        text = self.wp_config_path.read_text()
        lines = [ln for ln in text.splitlines()
                 if re.match(r"define\( '(AUTH|SECURE_AUTH|LOGGED_IN|NONCE)_(KEY|SALT)'", ln)]
        return "\n".join(lines)

    # php-fpm ---------------------------------------------------------------

    def _start_php_fpm(self, pw: pwd.struct_passwd) -> None:
        php = self._bins["php"]
        ini = "".join(f"{k} = {v}\n" for k, v in _php_settings(php))
        ini += "display_errors = Off\nopcache.enable = 1\nopcache.enable_cli = 0\n"
        self.php_ini.write_text(ini)
        self.php_error_log.touch()
        os.chown(self.php_error_log, pw.pw_uid, pw.pw_gid)
        slowlog = self.logs_dir / "php-fpm-slow.log"
        group = grp.getgrgid(pw.pw_gid).gr_name
        pool = {
            "user": self.owner,
            "group": group,
            "listen": str(self.fpm_socket),
            "listen.owner": "root",
            "listen.group": "root",
            "listen.mode": "0660",
            "pm": "dynamic",
            "pm.max_children": "5",
            "pm.start_servers": "2",
            "pm.min_spare_servers": "1",
            "pm.max_spare_servers": "3",
            "catch_workers_output": "yes",
            "slowlog": str(slowlog),
            "request_slowlog_timeout": "0",
            "chdir": "/",
            "php_admin_value[error_log]": str(self.php_error_log),
            "php_admin_flag[log_errors]": "on",
        }
        pool.update(self.fpm_pool_settings)
        conf = (
            "; php-fpm.conf written by opskit's lab (lab/wordpress.py)\n"
            "[global]\n"
            f"pid = {self.run_dir / 'php-fpm.pid'}\n"
            f"error_log = {self.logs_dir / 'php-fpm.log'}\n"
            "log_level = notice\n"
            "daemonize = no\n\n"
            f"[{re.sub(r'[^A-Za-z0-9_-]', '_', self.owner)}]\n"
            + "".join(f"{k} = {v}\n" for k, v in pool.items())
        )
        self.fpm_conf.write_text(conf)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PHP_INI_SCAN_DIR": ""}
        argv = [self._bins["php_fpm"], "--nodaemonize", "--fpm-config", str(self.fpm_conf),
                "-c", str(self.php_ini)]
        _run([*argv, "--test"], timeout=self.timeout, what="php-fpm --test", env=env)
        for stale in (self.run_dir / "php-fpm.pid", self.fpm_socket):
            stale.unlink(missing_ok=True)
        # SIGQUIT = graceful stop (workers finish their request); SIGTERM = immediate.
        self._spawn("php-fpm", argv, self.logs_dir / "php-fpm.log", env=env)

    # nginx -----------------------------------------------------------------

    def _nginx_common(self, prefix: Path, name: str) -> str:
        tmp = prefix / "tmp"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        return f"""# written by opskit's lab (lab/wordpress.py)
user root root;
worker_processes 1;
pid {self.run_dir / (name + '.pid')};
error_log {self.logs_dir / (name + '-error.log')} notice;

events {{
    worker_connections 256;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {self.logs_dir / (name + '-access.log')};
    client_body_temp_path {tmp / 'body'};
    proxy_temp_path {tmp / 'proxy'};
    fastcgi_temp_path {tmp / 'fastcgi'};
    uwsgi_temp_path {tmp / 'uwsgi'};
    scgi_temp_path {tmp / 'scgi'};
    sendfile on;
    keepalive_timeout 15s;
    server_tokens on;
"""

    def _start_nginx(self) -> None:
        prefix = self.base_dir / "nginx"
        conf = self._nginx_common(prefix, "nginx") + f"""
    # the origin: WordPress over php-fpm
    server {{
        listen {self.address}:{self.http_port} default_server;
        server_name {self.server_name};
        root {self.docroot};
        index index.php index.html;
        client_max_body_size 16m;

        location / {{
            try_files $uri $uri/ /index.php?$args;
        }}

        location ~ \\.php$ {{
            try_files $uri =404;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{self.fpm_socket};
            fastcgi_read_timeout {self.fastcgi_read_timeout:g}s;
        }}
    }}
}}
"""
        self.nginx_conf.write_text(conf)
        self._nginx_test_and_spawn("nginx", prefix, self.nginx_conf)

    def _start_gateway(self) -> None:
        prefix = self.base_dir / "gateway"
        prefix.mkdir(exist_ok=True)
        conf = self._nginx_common(prefix, "gateway") + f"""
    # the gateway / CDN edge: a reverse proxy in front of the origin
    server {{
        listen {self.address}:{self.gateway_port} default_server;
        server_name {self.server_name};

        location / {{
            proxy_pass http://{self.address}:{self.http_port};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout {self.gateway_read_timeout:g}s;
            proxy_send_timeout {self.gateway_read_timeout:g}s;
            add_header X-Lab-Gateway {self.address}:{self.gateway_port} always;
        }}
    }}
}}
"""
        self.gateway_conf.write_text(conf)
        self._nginx_test_and_spawn("gateway", prefix, self.gateway_conf)

    def _nginx_test_and_spawn(self, name: str, prefix: Path, conf: Path) -> None:
        err = self.logs_dir / f"{name}-error.log"
        base = [self._bins["nginx"], "-p", f"{prefix}/", "-c", str(conf), "-e", str(err)]
        res = _run([*base, "-t", "-q"], timeout=self.timeout, what=f"{name} -t")
        if res.stderr.strip():
            raise LabError(f"{name} -t printed warnings:\n{res.stderr}")
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        self._spawn(name, [*base, "-g", "daemon off;"], err, stop_signal=signal.SIGTERM)

    # install ---------------------------------------------------------------

    def _cli_env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "USER": self.owner,
            "LOGNAME": self.owner,
            "LANG": "C.UTF-8",
            "PHP_INI_SCAN_DIR": "",
        }

    def _cli_prelude(self) -> str:
        # What wp-cli does too: look like a request for the site's front page.
        sn = _php_quote(self.server_name)
        return (
            f"$_SERVER['HTTP_HOST'] = {sn};\n"
            f"$_SERVER['SERVER_NAME'] = {sn};\n"
            "$_SERVER['SERVER_PORT'] = '80';\n"
            "$_SERVER['REQUEST_URI'] = '/';\n"
            "$_SERVER['REQUEST_METHOD'] = 'GET';\n"
            "$_SERVER['REMOTE_ADDR'] = '127.0.0.1';\n"
            "$_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';\n"
            "if (!defined('WP_USE_THEMES')) { define('WP_USE_THEMES', false); }\n"
        )

    def _run_php(self, script: str, *, timeout: float | None, what: str
                 ) -> subprocess.CompletedProcess[str]:
        php = self._bins.get("php") or _find_binary("php")
        setpriv = self._bins.get("setpriv") or _find_binary("setpriv")
        argv = [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--",
                php, "-n"]
        for k, v in _php_settings(php):
            argv += ["-d", f"{k}={v}"]
        argv += ["-d", "display_errors=stderr", "-d", "log_errors=0"]
        return _run(argv, input=script, timeout=timeout or self.timeout * 2, what=what,
                    env=self._cli_env(), cwd=self.docroot)

    def _install_wordpress(self) -> None:
        plugin = _php_quote(PLUGIN_FILE)
        settings = (
            f"array('cdn_hostname' => {_php_quote(self.cdn_hostname)}, "
            "'included_file_extensions' => "
            "\".css\\n.gif\\n.jpeg\\n.jpg\\n.js\\n.png\\n.svg\\n.webp\\n.woff2\", "
            "'excluded_strings' => '')"
        )
        offline = (
            "define('WP_INSTALLING', true);\n"
            # No outgoing HTTP during the install (the permalink loopback test).
            "$GLOBALS['wp_filter']['pre_http_request'][10]['opskit_lab_offline'] = array(\n"
            "  'function' => function () {\n"
            "    return new WP_Error('opskit_lab_offline', 'no HTTP in the lab'); },\n"
            "  'accepted_args' => 1);\n"
            # wp_install() mails the admin; there is no MTA here.
            "function wp_new_blog_notification() {}\n"
        )
        install = f"""
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$r = wp_install({_php_quote(self.site_title)}, {_php_quote(self.admin_user)},
    {_php_quote(self.admin_email)}, true, '', {_php_quote(self.admin_password)});
if (empty($r['user_id'])) {{ fwrite(STDERR, 'wp_install failed'); exit(2); }}
update_option('siteurl', {_php_quote(self.site_url.rstrip('/'))});
update_option('home', {_php_quote(self.site_url.rstrip('/'))});
update_option('permalink_structure', '/%postname%/');
update_option('cdn_enabler', {settings});
"""
        if self.multisite:
            install += f"""
require_once ABSPATH . 'wp-admin/includes/network.php';
foreach ($wpdb->tables('ms_global') as $table => $prefixed_table) {{
    $wpdb->$table = $prefixed_table;
}}
install_network();
$r = populate_network(1, {_php_quote(self.server_name)}, {_php_quote(self.admin_email)},
    {_php_quote(self.site_title + ' network')}, '/', false);
if (is_wp_error($r)) {{ fwrite(STDERR, 'populate_network: ' . $r->get_error_message()); exit(2); }}
"""
        else:
            install += f"""
$r = activate_plugin({plugin});
if (is_wp_error($r)) {{ fwrite(STDERR, 'activate_plugin: ' . $r->get_error_message()); exit(2); }}
"""
        install += "echo 'installed';\n"
        out = self.php(install, prelude=offline, timeout=120)
        if "installed" not in out:
            raise LabError(f"WordPress install printed no confirmation:\n{out}")
        if self.multisite:
            self._write_wp_config(multisite_ready=True)
            out = self.php(f"""
require_once ABSPATH . 'wp-admin/includes/plugin.php';
if (!is_multisite()) {{ fwrite(STDERR, 'not multisite after populate_network'); exit(2); }}
$r = activate_plugin({plugin}, '', true);
if (is_wp_error($r)) {{ fwrite(STDERR, 'activate_plugin: ' . $r->get_error_message()); exit(2); }}
echo 'network-activated';
""")
            if "network-activated" not in out:
                raise LabError(f"network activation printed no confirmation:\n{out}")
