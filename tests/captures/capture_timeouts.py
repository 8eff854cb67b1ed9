"""Capture the real log lines of every way a slow PHP request dies: php-fpm's
terminate timeout, an external SIGKILL, a CPU limit, nginx's read timeouts at the
origin and at a gateway, exhausted workers, a php-fpm that is down, PHP's own
max_execution_time, and the same through Apache with mod_proxy_fcgi.

    .venv/bin/python tests/captures/capture_timeouts.py [CASE ...]      (as root)
    .venv/bin/python tests/captures/capture_timeouts.py --readme       (only rewrite the README)

Each case starts its own servers on loopback (127.0.50.8 only), every file they
write under BASE/<case> = /tmp/opskit-capture/timeouts/<case> (a fixed path, so
the captures name the same files on every run): a php-fpm master (root) with one
pool `site1` running as `nobody`, a private php.ini, nginx as the origin and nginx
as the gateway (a reverse proxy standing in for the CDN edge), or Apache. It
writes tiny PHP scripts into the docroot, sets the case's config, sends the
requests, waits for the workers to finish, stops every server, and copies the
logs and a status.json (the HTTP codes, the config, the pids involved) to
tests/captures/php-fpm-8.2-debian12/logs/<case>/. The README there is rewritten.
A new capture has new pids and times: tests/unit/stack/test_logs.py names them, so
refresh it with the capture.
The servers are started the way lab/wordpress.py starts them (own session, no
daemon, private pid files and logs, nginx's temp paths under its prefix, `-e` so
nginx never opens /var/log/nginx), without WordPress and MariaDB: the cases only
need a script that sleeps or spins.

Nothing of the machine's is used or changed: no system service, no /etc, /run/php,
/var/log or /var/lib/nginx. Everything started is stopped before the script ends.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "tests" / "captures" / "php-fpm-8.2-debian12" / "logs"
BASE = Path("/tmp/opskit-capture/timeouts")
ADDRESS = "127.0.50.8"
PORTS = {"origin": 28080, "gateway": 28081, "apache": 28082}
SERVER_NAME = "site1.example.test"
POOL = "site1"
WORKER_USER = "nobody"      # the pool's user: an account every Debian has, nothing created
PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
PACKAGES = ("php8.2-fpm", "nginx-light", "apache2-bin")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "PHP_INI_SCAN_DIR": ""}

SCRIPTS = {
    # wall-clock time: what request_terminate_timeout and the read timeouts measure
    "sleep.php": "<?php\n$s = (int) ($_GET['s'] ?? 5);\nsleep($s);\necho \"slept $s s\\n\";\n",
    # CPU time: what max_execution_time (on Linux) and RLIMIT_CPU measure; counted in CPU
    # seconds, so a busy machine does not make the loop end before a limit fires
    "busy.php": ("<?php\n$s = (int) ($_GET['s'] ?? 5);\n$n = 0;\n"
                 "do {\n    for ($i = 0; $i < 100000; $i++) {\n        $n++;\n    }\n    $r = getrusage();\n"
                 "} while ($r['ru_utime.tv_sec'] + $r['ru_stime.tv_sec'] < $s);\n"
                 "echo \"spun $n times\\n\";\n"),
    "throw.php": "<?php\nthrow new RuntimeException('opskit capture: nobody caught this');\n",
}


# -- servers ---------------------------------------------------------------------

@dataclass
class Lab:
    """The servers of one case, all under BASE/<case>."""
    case: str
    dir: Path = field(init=False)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)   # pids and limits seen, for status.json
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.dir = BASE / self.case
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ("logs", "run", "docroot", "php", "origin/tmp", "gateway/tmp", "apache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        nobody = pwd.getpwnam(WORKER_USER)
        for path in (BASE.parent, BASE, self.dir, self.dir / "docroot"):
            os.chmod(path, 0o755)
        for name, text in SCRIPTS.items():
            (self.dir / "docroot" / name).write_text(text)
        php_error = self.dir / "logs" / "php-error.log"
        php_error.touch()
        os.chown(php_error, nobody.pw_uid, nobody.pw_gid)

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "php-fpm.sock"

    def spawn(self, name: str, argv: list[str], preexec: Callable[[], None] | None = None) -> subprocess.Popen:
        out = open(self.dir / "logs" / f"{name}.stdout", "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                cwd=self.dir, start_new_session=True, preexec_fn=preexec)
        out.close()
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        """Every server of the case, newest first: SIGTERM, then the whole process group."""
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if name == "php-fpm" else signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # a worker that outlived its master
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        self.procs.clear()

    # php-fpm

    def php_ini(self, error_log: bool) -> Path:
        ini = self.dir / "php" / "php.ini"
        lines = ["max_execution_time = 30", "log_errors = On", "display_errors = Off", "date.timezone = UTC",
                 "error_reporting = E_ALL"]
        if error_log:   # else Debian's default: no error_log, so PHP's errors go to the web server
            lines.append(f"error_log = {self.dir / 'logs' / 'php-error.log'}")
        ini.write_text("\n".join(lines) + "\n")
        return ini

    def fpm_conf(self, pool: dict[str, str]) -> Path:
        settings = {"user": WORKER_USER, "group": "nogroup", "listen": str(self.socket),
                    "listen.owner": "root", "listen.group": "root", "listen.mode": "0660",
                    "pm": "static", "pm.max_children": "1",
                    "rlimit_core": "0",     # core_pattern is "core": a SIGXCPU child would dump into chdir
                    "chdir": str(self.dir / "docroot"), **pool}
        conf = self.dir / "php" / "php-fpm.conf"
        conf.write_text("; written by tests/captures/capture_timeouts.py\n[global]\n"
                        f"pid = {self.dir / 'run' / 'php-fpm.pid'}\n"
                        f"error_log = {self.dir / 'logs' / 'php-fpm.log'}\n"
                        "log_level = notice\ndaemonize = no\n\n"
                        f"[{POOL}]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
        return conf

    def start_fpm(self, pool: dict[str, str] | None = None, error_log: bool = True) -> None:
        conf, ini = self.fpm_conf(pool or {}), self.php_ini(error_log)
        subprocess.run([PHP_FPM, "--test", "--fpm-config", str(conf), "-c", str(ini)], env=ENV, check=True,
                       capture_output=True, timeout=30)
        self.spawn("php-fpm", [PHP_FPM, "--nodaemonize", "--fpm-config", str(conf), "-c", str(ini)])
        wait_for(lambda: (self.dir / "run" / "php-fpm.pid").exists() and unix_accepts(self.socket), "php-fpm")
        self.facts["php_fpm_master_pid"] = self.procs["php-fpm"].pid

    def workers(self) -> list[int]:
        master = self.procs["php-fpm"].pid
        return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]

    # nginx

    def _nginx_conf(self, name: str, server: str) -> Path:
        prefix = self.dir / name
        for kind in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""# written by tests/captures/capture_timeouts.py
user root root;
worker_processes 1;
pid {self.dir / 'run' / (name + '.pid')};
error_log {self.dir / 'logs' / f'nginx-{name}-error.log'};

events {{
    worker_connections 64;
}}

http {{
    access_log {self.dir / 'logs' / f'nginx-{name}-access.log'};
    client_body_temp_path {prefix / 'tmp/body'};
    proxy_temp_path {prefix / 'tmp/proxy'};
    fastcgi_temp_path {prefix / 'tmp/fastcgi'};
    uwsgi_temp_path {prefix / 'tmp/uwsgi'};
    scgi_temp_path {prefix / 'tmp/scgi'};
    keepalive_timeout 15s;
{server}}}
""")
        return conf

    def _start_nginx(self, name: str, server: str) -> None:
        conf = self._nginx_conf(name, server)
        argv = [NGINX, "-p", f"{self.dir / name}/", "-c", str(conf), "-e", str(self.dir / "logs" / f"nginx-{name}-error.log")]
        subprocess.run([*argv, "-t", "-q"], env=ENV, check=True, capture_output=True, timeout=30)
        self.spawn(name, [*argv, "-g", "daemon off;"])
        wait_for(lambda: (self.dir / "run" / f"{name}.pid").exists() and tcp_accepts(PORTS[name]), name)

    def start_origin(self, fastcgi_read_timeout: str = "60s", upstream: str | None = None) -> None:
        """nginx serving the docroot over php-fpm; `upstream`: an upstream block's servers instead."""
        target = f"unix:{self.socket}"
        block = ""
        if upstream is not None:
            block, target = f"    upstream php {{\n{upstream}    }}\n", "php"
        self._start_nginx("origin", f"""{block}    server {{
        listen {ADDRESS}:{PORTS['origin']} default_server;
        server_name {SERVER_NAME};
        root {self.dir / 'docroot'};

        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass {target};
            fastcgi_read_timeout {fastcgi_read_timeout};
        }}
    }}
""")

    def start_gateway(self, proxy_read_timeout: str = "60s") -> None:
        self._start_nginx("gateway", f"""    server {{
        listen {ADDRESS}:{PORTS['gateway']} default_server;
        server_name {SERVER_NAME};

        location / {{
            proxy_pass http://{ADDRESS}:{PORTS['origin']};
            proxy_bind {ADDRESS};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_read_timeout {proxy_read_timeout};
        }}
    }}
""")

    # Apache

    def start_apache(self, proxy_timeout: str | None = None) -> None:
        root = self.dir / "apache"
        modules = ("mpm_event", "authz_core", "proxy", "proxy_fcgi")
        conf = root / "apache2.conf"
        conf.write_text("# written by tests/captures/capture_timeouts.py\n"
                        f"ServerRoot {root}\nServerName {SERVER_NAME}\n"
                        + "".join(f"LoadModule {m}_module {APACHE_MODULES / f'mod_{m}.so'}\n" for m in modules)
                        + f"DefaultRuntimeDir {self.dir / 'run'}\nPidFile {self.dir / 'run' / 'apache.pid'}\n"
                        f"Mutex file:{self.dir / 'run'} default\n"
                        f"User {WORKER_USER}\nGroup nogroup\nListen {ADDRESS}:{PORTS['apache']}\n"
                        "Timeout 60\n" + (f"ProxyTimeout {proxy_timeout}\n" if proxy_timeout else "")
                        + f"ErrorLog {self.dir / 'logs' / 'apache-error.log'}\nLogLevel warn\n"
                        'LogFormat "%h %l %u %t \\"%r\\" %>s %O %D" timing\n'
                        f"CustomLog {self.dir / 'logs' / 'apache-access.log'} timing\n"
                        f"<VirtualHost {ADDRESS}:{PORTS['apache']}>\n"
                        f"    ServerName {SERVER_NAME}\n    DocumentRoot {self.dir / 'docroot'}\n"
                        f"    <Directory {self.dir / 'docroot'}>\n        Require all granted\n    </Directory>\n"
                        '    <FilesMatch "\\.php$">\n'
                        f'        SetHandler "proxy:unix:{self.socket}|fcgi://localhost"\n'
                        "    </FilesMatch>\n</VirtualHost>\n")
        argv = [APACHE, "-d", str(root), "-f", str(conf)]
        subprocess.run([*argv, "-t"], env=ENV, check=True, capture_output=True, timeout=30)
        self.spawn("apache", [*argv, "-DFOREGROUND"])
        wait_for(lambda: (self.dir / "run" / "apache.pid").exists() and tcp_accepts(PORTS["apache"]), "apache")

    # requests

    def get(self, via: str, path: str, results: list[dict]) -> None:
        started = time.monotonic()
        record = {"via": via, "path": path, "sent_at": round(started - self.t0, 1)}
        connection = http.client.HTTPConnection(ADDRESS, PORTS[via], timeout=60, source_address=(ADDRESS, 0))
        try:
            connection.request("GET", path, headers={"Host": SERVER_NAME})
            response = connection.getresponse()
            response.read()
            record["status"] = response.status
        except OSError as error:
            record["error"] = f"{type(error).__name__}: {error}"
        finally:
            connection.close()
        record["seconds"] = round(time.monotonic() - started, 1)
        results.append(record)

    def concurrently(self, *requests: tuple[float, str, str]) -> list[dict]:
        """(delay, via, path) requests, each in its own thread; the records in the order sent."""
        results: list[dict] = []
        threads = []
        for delay, via, path in requests:
            time.sleep(delay)
            thread = threading.Thread(target=self.get, args=(via, path, results))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        return sorted(results, key=lambda r: r["sent_at"])


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.05)


def tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection((ADDRESS, port), timeout=0.5):
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


def proc_limits(pid: int) -> str:
    return Path(f"/proc/{pid}/limits").read_text()


# -- the cases ----------------------------------------------------------------
# Each returns (config shown in status.json, the request records).

def terminate_timeout(lab: Lab):
    pool = {"request_terminate_timeout": "2s"}
    lab.start_fpm(pool)
    lab.start_origin()
    lab.start_gateway()
    lab.facts["worker_limits"] = proc_limits(lab.workers()[0])
    results = lab.concurrently((0, "gateway", "/sleep.php?s=5"))
    return pool, results


def external_sigkill(lab: Lab):
    """What a kill script (or the OOM killer) does: SIGKILL the busy worker."""
    lab.start_fpm()
    lab.start_origin()
    lab.start_gateway()
    worker = lab.workers()[0]
    killer = threading.Timer(1.5, os.kill, (worker, signal.SIGKILL))
    killer.start()
    results = lab.concurrently((0, "gateway", "/sleep.php?s=5"))
    killer.join()
    lab.facts["killed_pid"] = worker
    return {"kill": f"SIGKILL to the worker (pid {worker}) 1.5 s after the request"}, results


def _cpu_limited(lab: Lab, soft: int, hard: int | None):
    lab.start_fpm()
    lab.start_origin()
    lab.start_gateway()
    worker = lab.workers()[0]
    # as a host's `ulimit -t` or an LVE would leave it: on the worker itself. prlimit runs as the
    # worker's user: root here lacks CAP_SYS_RESOURCE (a container), and a user may lower its own limits.
    shown = "unlimited" if hard is None else hard
    subprocess.run(["setpriv", f"--reuid={WORKER_USER}", "--regid=nogroup", "--clear-groups", "--",
                    "prlimit", f"--pid={worker}", f"--cpu={soft}:{shown}"], env=ENV, check=True, timeout=30)
    lab.facts["limited_pid"] = worker
    lab.facts["worker_limits"] = proc_limits(worker)
    results = lab.concurrently((0, "gateway", "/busy.php?s=5"))
    return {"RLIMIT_CPU of the worker": f"soft {soft} s, hard {shown}"}, results


def cpu_limit(lab: Lab):
    return _cpu_limited(lab, 1, None)


def cpu_limit_hard(lab: Lab):
    return _cpu_limited(lab, 1, 1)


def fastcgi_read_timeout(lab: Lab):
    pool = {"request_slowlog_timeout": "1s", "slowlog": str(lab.dir / "logs" / "php-fpm-slow.log")}
    lab.start_fpm(pool)
    lab.start_origin(fastcgi_read_timeout="2s")
    results = lab.concurrently((0, "origin", "/sleep.php?s=5"))
    time.sleep(4)   # the worker goes on to the end of its sleep
    return {**pool, "fastcgi_read_timeout": "2s"}, results


def gateway_read_timeout(lab: Lab):
    lab.start_fpm()
    lab.start_origin(fastcgi_read_timeout="60s")
    lab.start_gateway(proxy_read_timeout="2s")
    results = lab.concurrently((0, "gateway", "/sleep.php?s=5"))
    time.sleep(4)
    return {"gateway proxy_read_timeout": "2s", "origin fastcgi_read_timeout": "60s"}, results


def max_children(lab: Lab):
    pool = {"pm": "dynamic", "pm.max_children": "1", "pm.start_servers": "1", "pm.min_spare_servers": "1",
            "pm.max_spare_servers": "1"}
    lab.start_fpm(pool)
    lab.start_origin()
    lab.start_gateway()
    results = lab.concurrently((0, "gateway", "/sleep.php?s=3"), (0.3, "gateway", "/sleep.php?s=3"))
    return pool, results


def backlog_full(lab: Lab):
    pool = {"pm": "ondemand", "pm.max_children": "1", "listen.backlog": "0"}
    lab.start_fpm(pool)
    lab.start_origin()
    lab.start_gateway()
    results = lab.concurrently(*((0.3 if n else 0, "gateway", "/sleep.php?s=3") for n in range(4)))
    return pool, results


def fpm_down(lab: Lab):
    """No php-fpm: a socket file nobody listens on (refused) and no socket file at all."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(lab.socket))
    stale.close()
    missing = lab.dir / "run" / "missing.sock"
    upstream = f"        server unix:{lab.socket};\n        server unix:{missing};\n"
    lab.start_origin(upstream=upstream)
    lab.start_gateway()
    results = lab.concurrently((0, "gateway", "/sleep.php?s=1"), (1, "gateway", "/sleep.php?s=1"))
    return {"upstream php": [f"unix:{lab.socket} (stale socket file)", f"unix:{missing} (no file)"]}, results


def max_execution_time(lab: Lab):
    pool = {"php_admin_value[max_execution_time]": "1"}
    lab.start_fpm(pool)
    lab.start_origin()
    lab.start_gateway()
    results = lab.concurrently((0, "gateway", "/busy.php?s=5"), (3, "gateway", "/throw.php"))
    return pool, results


def fatal_to_nginx(lab: Lab):
    """Debian's php.ini sets no error_log: PHP's errors go to nginx over FastCGI."""
    pool = {"php_admin_value[max_execution_time]": "1"}
    lab.start_fpm(pool, error_log=False)
    lab.start_origin()
    lab.start_gateway()
    results = lab.concurrently((0, "gateway", "/busy.php?s=5"), (3, "gateway", "/throw.php"))
    return {**pool, "error_log": "unset (Debian's default)"}, results


APACHE_CAN_CONNECT = {"listen.owner": WORKER_USER, "listen.group": "nogroup"}   # Apache's children run as nobody


def apache_proxy_timeout(lab: Lab):
    lab.start_fpm(APACHE_CAN_CONNECT)
    lab.start_apache(proxy_timeout="2")
    results = lab.concurrently((0, "apache", "/sleep.php?s=5"))
    time.sleep(4)
    return {"Timeout": "60", "ProxyTimeout": "2"}, results


def apache_terminate_timeout(lab: Lab):
    pool = {"request_terminate_timeout": "2s", **APACHE_CAN_CONNECT}
    lab.start_fpm(pool)
    lab.start_apache()
    results = lab.concurrently((0, "apache", "/sleep.php?s=5"))
    return {**pool, "Timeout": "60"}, results


def apache_socket_denied(lab: Lab):
    """The socket as the other cases leave it (0660 root:root): Apache's children cannot connect."""
    lab.start_fpm()
    lab.start_apache()
    results = lab.concurrently((0, "apache", "/sleep.php?s=1"))
    return {"listen.owner": "root", "listen.group": "root", "listen.mode": "0660", "Apache User": WORKER_USER}, results


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Lab], tuple[dict, list[dict]]]
    what: str


CASES = (
    Case("terminate-timeout", terminate_timeout,
         "request_terminate_timeout = 2s, GET /sleep.php?s=5 through the gateway"),
    Case("external-sigkill", external_sigkill,
         "the worker SIGKILLed 1.5 s into GET /sleep.php?s=5 (a kill script, the OOM killer)"),
    Case("cpu-limit", cpu_limit,
         "RLIMIT_CPU soft 1 s (hard unlimited) set on the worker, GET /busy.php?s=5 "
         "(php-fpm has no rlimit_cpu pool option: set with prlimit, as `ulimit -S -t 1` would)"),
    Case("cpu-limit-hard", cpu_limit_hard,
         "RLIMIT_CPU soft = hard = 1 s on the worker (what `ulimit -t 1` sets), GET /busy.php?s=5"),
    Case("fastcgi-read-timeout", fastcgi_read_timeout,
         "origin fastcgi_read_timeout 2s, request_slowlog_timeout 1s, GET /sleep.php?s=5 straight to the origin"),
    Case("gateway-read-timeout", gateway_read_timeout,
         "gateway proxy_read_timeout 2s, origin fastcgi_read_timeout 60s, GET /sleep.php?s=5 through the gateway"),
    Case("max-children", max_children,
         "pm = dynamic, pm.max_children = 1, two GET /sleep.php?s=3 0.3 s apart through the gateway"),
    Case("backlog-full", backlog_full,
         "pm = ondemand, pm.max_children = 1, listen.backlog = 0, four GET /sleep.php?s=3 0.3 s apart"),
    Case("fpm-down", fpm_down,
         "no php-fpm; the origin's upstream: a stale socket file and a missing one; two requests 1 s apart"),
    Case("max-execution-time", max_execution_time,
         "php_admin_value[max_execution_time] = 1, GET /busy.php?s=5, then GET /throw.php (uncaught exception); "
         "PHP's error_log set"),
    Case("fatal-to-nginx", fatal_to_nginx,
         "as max-execution-time, with no PHP error_log (Debian's default): the errors reach nginx's log"),
    Case("apache-proxy-timeout", apache_proxy_timeout,
         "Apache 2.4 event MPM + mod_proxy_fcgi (SetHandler proxy:unix:...|fcgi://localhost), "
         "Timeout 60, ProxyTimeout 2, GET /sleep.php?s=5"),
    Case("apache-terminate-timeout", apache_terminate_timeout,
         "Apache as above (no ProxyTimeout), request_terminate_timeout = 2s, GET /sleep.php?s=5"),
    Case("apache-socket-denied", apache_socket_denied,
         "Apache as above, php-fpm's socket 0660 root:root while Apache's children run as nobody"),
)

LOGS = ("php-fpm.log", "php-error.log", "php-fpm-slow.log", "nginx-origin-error.log", "nginx-origin-access.log",
        "nginx-gateway-error.log", "nginx-gateway-access.log", "apache-error.log", "apache-access.log")


def capture(case: Case) -> dict:
    lab = Lab(case.name)
    try:
        config, results = case.run(lab)
        time.sleep(1.5)   # php-fpm's master notices an exit on its next tick (1 s)
    finally:
        lab.stop()
    out = OUT / case.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    kept = []
    for name in LOGS:
        log = lab.dir / "logs" / name
        if log.exists() and (log.stat().st_size or name == "php-error.log"):
            shutil.copyfile(log, out / name)
            kept.append(name)
    facts = dict(lab.facts)
    limits = facts.pop("worker_limits", None)
    if limits is not None:
        (out / "worker-limits.txt").write_text(limits)
        kept.append("worker-limits.txt")
    status = {"case": case.name, "what": case.what, "config": config, "requests": results, **facts,
              "base": str(lab.dir), "files": kept}
    (out / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def versions() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                         capture_output=True, text=True, check=True).stdout
    return ", ".join(out.splitlines())


NOTES = """
## What these logs show that a reader might not expect

- php-fpm 8.2 has no `rlimit_cpu` pool option (`php-fpm -t`: "unknown entry 'rlimit_cpu'"): the CPU cases set
  RLIMIT_CPU on the running worker with prlimit(1) instead. With soft < hard the worker dies of SIGXCPU
  (cpu-limit); with soft = hard, which is what `ulimit -t N` sets, the kernel sends SIGKILL (cpu-limit-hard),
  so a CPU limit can look exactly like an external SIGKILL in php-fpm's log. /proc/<pid>/limits tells them apart.
- Every dead worker (terminate, SIGKILL, SIGXCPU) gave nginx the same line, `recv() failed (104: Connection reset
  by peer) while reading response header from upstream`; `upstream prematurely closed connection` never appeared.
- A read timeout leaves php-fpm's log silent: the worker runs on (fastcgi-read-timeout shows only the slow log),
  and when the gateway gives up first, the origin logs a 499 in its access log and nothing in its error log.
- pm.max_children alone queues requests (max-children: both 200, the second after 5.7 s); a 502 with
  `(11: Resource temporarily unavailable)` needs the listen queue full too (backlog-full: listen.backlog = 0).
  The dynamic pool's warning is `server reached pm.max_children setting (1)`, ondemand's `server reached
  max_children setting (1)`.
- nginx logs a missing socket file (2: No such file or directory) at [crit], the other connect() errors at [error].
- Apache (mod_proxy_fcgi) answers 503, not 502, when the worker dies or the socket cannot be opened, and 504 on
  ProxyTimeout: `(104)Connection reset by peer: ... AH01075`, `(13)Permission denied: AH02454`,
  `(70007)The timeout specified has expired: ... AH01075`.
"""


def write_readme(statuses: list[dict]) -> None:
    rows = []
    for status in statuses:
        codes = ", ".join(str(r.get("status", r.get("error"))) for r in status["requests"])
        rows.append(f"| {status['case']} | {status['what']} | {codes} |")
    (OUT / "README.md").write_text(f"""# Real logs of each way a slow PHP request dies (php-fpm 8.2, nginx 1.22, Apache 2.4)

Made by `.venv/bin/python tests/captures/capture_timeouts.py` (as root) on Debian 12 (bookworm) with
{versions()}. Every server ran on 127.0.50.8 with its files under {BASE}/<case>
(php-fpm master as root, pool `{POOL}` as `{WORKER_USER}`; nginx origin :{PORTS['origin']}, nginx gateway
:{PORTS['gateway']} proxying to the origin, Apache :{PORTS['apache']}), started and stopped by the script; the
logs are copied unchanged. The docroot's scripts: sleep.php (sleep(s)), busy.php (a loop for s seconds
of CPU time), throw.php (an uncaught exception). nginx logs at its default level (error),
php-fpm at notice, Apache at warn.

Each folder: the logs the case wrote (php-fpm.log, php-error.log, php-fpm-slow.log, nginx-origin-*.log,
nginx-gateway-*.log, apache-*.log; an empty log is left out, except php-error.log), worker-limits.txt
(`/proc/<worker pid>/limits` of the php-fpm worker, where the case read it) and status.json: the case's
config, each request (via which server, path, when sent in seconds after the servers started, HTTP
status, how long it took) and the pids involved.

| case | what | HTTP status of each request |
|---|---|---|
""" + "\n".join(rows) + "\n" + NOTES)


def main(names: list[str]) -> None:
    if names == ["--readme"]:   # rewrite the README from the captures already made
        write_readme([json.loads((OUT / case.name / "status.json").read_text()) for case in CASES])
        return
    if os.geteuid() != 0:
        sys.exit("run as root: the php-fpm master switches its pool to the user nobody")
    unknown = set(names) - {case.name for case in CASES}
    if unknown:
        sys.exit(f"no such case: {', '.join(sorted(unknown))}")
    for port in PORTS.values():
        if tcp_accepts(port):
            sys.exit(f"{ADDRESS}:{port} is taken")
    statuses = []
    for case in CASES:
        kept = OUT / case.name / "status.json"
        if names and case.name not in names:
            if kept.exists():   # a case not asked for keeps its last capture
                statuses.append(json.loads(kept.read_text()))
            continue
        status = capture(case)
        print(case.name, [r.get("status", r.get("error")) for r in status["requests"]], flush=True)
        statuses.append(status)
    write_readme(statuses)
    shutil.rmtree(BASE, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
