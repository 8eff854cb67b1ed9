"""Capture the real output of check-timeouts' probes (nginx_timeouts, apache_timeouts,
phpfpm_timeouts, php_timeouts, kill_evidence, log_scan, host_load) for the parser tests.

    .venv/bin/python tests/captures/refresh_timeout_probes.py [OUTDIR]      (as root; default tests/captures/probes)

It re-runs itself in a private PID namespace (`unshare --pid --fork --mount-proc`), so `ps`
sees only the servers it starts, not whatever else runs on the machine: the captures then
hold only what the situation is about, and the same pids. Inside, it starts lab/timeouts.py's
site (php-fpm master as root with one pool running as the capture user opskit-kcap, nginx
origin and nginx edge as root) on 127.0.70.200 with every file under BASE (a fixed path, so
the captures name the same files on every run), sets up each situation for real (a request
killed by request_terminate_timeout, a 504, a CPU limit set with prlimit, a crontab line, a
file made unreadable, an Apache with mod_proxy_fcgi, `become: sudo` through lab/sudo.py),
and runs each probe's own script, exactly as opskit sends it, as the capture user with
/bin/sh (dash). It writes

    OUTDIR/<probe>/<situation>.txt    the raw stdout, nothing added
    OUTDIR/<probe>/<situation>.json   {"exit_status", "params", "want"}
    OUTDIR/<probe>/README.md          what each situation is

"want" is the parser's value at capture time, written only once the script has checked its
key fields against what the lab itself knows (the pids it started, the lines it wrote the
directives on, the requests it made and what they got): those checks are the `expect`
functions below. Everything started is stopped, the user removed and BASE deleted at the end.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from lab.sshd import ensure_user, remove_user  # noqa: E402
from lab.sudo import sudo_for  # noqa: E402
from lab.timeouts import TimeoutSite, tcp_accepts, wait_for  # noqa: E402
from opskit.probes.apache_timeouts import ApacheTimeouts  # noqa: E402
from opskit.probes.host_load import HostLoad  # noqa: E402
from opskit.probes.kill_evidence import KillEvidence  # noqa: E402
from opskit.probes.log_scan import LogScanProbe  # noqa: E402
from opskit.probes.nginx_timeouts import NginxTimeouts  # noqa: E402
from opskit.probes.php_timeouts import PhpTimeouts  # noqa: E402
from opskit.probes.phpfpm_timeouts import PhpFpmTimeouts  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "probes"
BASE = Path("/tmp/opskit-capture/timeout-probes")
HOME = BASE / "home"
USER = "opskit-kcap"
ADDRESS = "127.0.70.200"
ORIGIN_PORT, EDGE_PORT, APACHE_PORT = 28180, 28181, 28182
SITE_URL = "http://site1.example.test/"
ORIGIN = f"http://{ADDRESS}:{ORIGIN_PORT}"
PACKAGES = ("php8.2-fpm", "nginx-light", "apache2-bin", "procps", "dash", "cron", "sudo")


class Ctx:
    """What the probes' script() needs of opskit.steps.Context: path() (absolute paths pass)."""

    run_id = "20261201-000000-beef"

    def path(self, path: str) -> str:
        return str(HOME / path[2:]) if path.startswith("~/") else path


def run_probe(probe, params: dict) -> tuple[str, int, dict, dict]:
    """The probe's script as opskit sends it, run as the capture user; (stdout, status, params, value)."""
    model = probe.Params(**params)
    script = probe.script(model, Ctx())
    user = pwd.getpwnam(USER)
    env = {"HOME": str(HOME), "PATH": "/usr/bin:/bin", "LC_ALL": "C", "USER": USER, "LOGNAME": USER}
    proc = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                           "/bin/sh", "-c", script], capture_output=True, text=True, env=env, cwd=HOME, timeout=120)
    value = probe.parse(proc.stdout, proc.returncode, model)
    return proc.stdout, proc.returncode, model.model_dump(), value


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().split("\n"), 1) if text in line)


class Capture:
    def __init__(self, out: Path):
        self.out = out
        self.written: dict[str, list[tuple[str, str]]] = {}

    def take(self, probe, name: str, what: str, params: dict, expect) -> dict:
        output, status, params, value = run_probe(probe, params)
        try:
            expect(value)
        except AssertionError as exc:
            raise SystemExit(f"{probe.name}/{name}: the parse disagrees with the lab: {exc}\n"
                             f"{json.dumps(value, indent=1)[:4000]}") from None
        folder = self.out / probe.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.txt").write_text(output)
        (folder / f"{name}.json").write_text(json.dumps({"exit_status": status, "params": params, "want": value},
                                                        indent=1, ensure_ascii=False) + "\n")
        self.written.setdefault(probe.name, []).append((name, what))
        print(f"{probe.name}/{name}", flush=True)
        return value


def versions() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                         capture_output=True, text=True).stdout
    return ", ".join(line for line in out.splitlines() if line.split()[1:])


# -- the situations ------------------------------------------------------------------------------

WEB = {"site": SITE_URL, "origin": ORIGIN}


def start_apache(site: TimeoutSite) -> subprocess.Popen:
    root = BASE / "apache"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    modules = Path("/usr/lib/apache2/modules")
    conf = root / "apache2.conf"
    conf.write_text("# written by tests/captures/refresh_timeout_probes.py\n"
                    f"ServerRoot {root}\nServerName site1.example.test\n"
                    + "".join(f"LoadModule {m}_module {modules / f'mod_{m}.so'}\n"
                              for m in ("mpm_event", "authz_core", "proxy", "proxy_fcgi"))
                    + f"DefaultRuntimeDir {BASE / 'site' / 'run'}\nPidFile {BASE / 'site' / 'run' / 'apache.pid'}\n"
                    f"Mutex file:{BASE / 'site' / 'run'} default\nUser {USER}\nGroup {USER}\n"
                    f"Listen {ADDRESS}:{APACHE_PORT}\nTimeout 60\n"
                    f"ErrorLog {site.log('apache-error.log')}\nLogLevel warn\n"
                    f"<VirtualHost {ADDRESS}:{APACHE_PORT}>\n    ServerName site1.example.test\n"
                    f"    DocumentRoot {site.docroot}\n    ProxyTimeout 2\n"
                    '    <FilesMatch "\\.php$">\n'
                    f'        SetHandler "proxy:unix:{site.socket}|fcgi://localhost"\n'
                    "    </FilesMatch>\n</VirtualHost>\n")
    conf.chmod(0o644)
    argv = ["/usr/sbin/apache2", "-d", str(root), "-f", str(conf)]
    subprocess.run([*argv, "-t"], check=True, capture_output=True, env={"PATH": "/usr/sbin:/usr/bin:/bin"})
    proc = subprocess.Popen([*argv, "-DFOREGROUND"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/bin"})
    wait_for(lambda: tcp_accepts(ADDRESS, APACHE_PORT), "apache")
    return proc


def situations(cap: Capture) -> None:
    site = TimeoutSite(BASE / "site", ADDRESS, USER, HOME, origin_port=ORIGIN_PORT, edge_port=EDGE_PORT)
    nginx, apache, fpm, php = NginxTimeouts(), ApacheTimeouts(), PhpFpmTimeouts(), PhpTimeouts()
    kills, scan, load = KillEvidence(), LogScanProbe(), HostLoad()

    # nothing runs yet
    cap.take(nginx, "absent", "no nginx master runs", WEB,
             lambda v: _eq(v["found"], False) or _eq(v["fastcgi_read_timeout"], None))
    cap.take(fpm, "absent", "no php-fpm master runs", {}, lambda v: _eq(v["found"], False)
             or _eq(v["request_terminate_timeout"], None))
    cap.take(apache, "absent", "no Apache runs (none does in the other situations but proxy-fcgi)", WEB,
             lambda v: _eq(v["found"], False) or _eq(v["served_by"], None))
    try:
        site.start()
        _web_situations(cap, site, nginx)
        _fpm_situations(cap, site, fpm, php)
        _kill_situations(cap, site, kills)
        _log_situations(cap, site, scan)
        cap.take(load, "present", "load, memory and the pool's workers' RSS", {"master_pid": site.fpm_master},
                 lambda v: _eq(v["workers"], 2) or _true(v["load"] is not None and v["memory"] is not None))
        proc = start_apache(site)
        try:
            cap.take(apache, "proxy-fcgi", "Apache 2.4 (event MPM, mod_proxy_fcgi: SetHandler proxy:unix:…|fcgi://"
                     "localhost in <FilesMatch>), Timeout 60 at the server level, ProxyTimeout 2 in the site's "
                     "<VirtualHost> on the inventory's origin port", {**WEB, "origin": f"http://{ADDRESS}:{APACHE_PORT}"},
                     lambda v: _eq(v["served_by"], "apache-proxy-fcgi") or _eq(v["upstream"], f"unix:{site.socket}")
                     or _eq(v["proxy_timeout"]["seconds"], 2) or _eq(v["timeout"]["seconds"], 60)
                     or _eq(v["proxy_timeout"]["line"], line_of(BASE / "apache" / "apache2.conf", "ProxyTimeout")))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    finally:
        site.stop()


def _web_situations(cap: Capture, site: TimeoutSite, nginx) -> None:
    def chain(v, source):
        _eq(v["origin"]["pid"], site.procs["origin"].pid)
        _eq(v["edge"]["pid"], site.procs["edge"].pid)
        _eq(v["upstream"], f"unix:{site.socket}")
        _eq(v["root"], str(site.docroot))
        _eq(v["fastcgi_read_timeout"]["source"], "default")
        _eq((v["proxy_read_timeout"]["file"], v["proxy_read_timeout"]["line"], v["proxy_read_timeout"]["seconds"]),
            (str(site.edge_conf), line_of(site.edge_conf, "proxy_read_timeout"), 100))
        _eq({i["source"] for i in v["instances"]}, {source})
        _eq((v["origin_error_log"], v["edge_error_log"]), (str(site.log("origin-error.log")), str(site.log("edge-error.log"))))

    cap.take(nginx, "origin-and-edge-files", "nginx origin (its server block in an included file) and an nginx "
             "edge proxying to it, both masters root: nginx -T cannot run as the user, so the files are read",
             WEB, lambda v: chain(v, "files"))
    with sudo_for(USER):
        cap.take(nginx, "origin-and-edge-sudo", "the same with become: sudo: `sudo -n nginx -T`",
                 {**WEB, "become": "sudo"}, lambda v: chain(v, "sudo nginx -T"))
    site.configure(fastcgi_read_timeout="2s", proxy_read_timeout="3s")
    cap.take(nginx, "set-timeouts", "fastcgi_read_timeout 2s in the PHP location, proxy_read_timeout 3s at the edge",
             WEB, lambda v: _eq((v["fastcgi_read_timeout"]["raw"], v["fastcgi_read_timeout"]["line"]),
                                ("2s", line_of(site.site_conf, "fastcgi_read_timeout")))
             or _eq(v["proxy_read_timeout"]["raw"], "3s"))
    site.configure()
    os.chmod(site.origin_conf.parent, 0o700)   # the origin's folder: root's only
    try:
        cap.take(nginx, "origin-config-unreadable", "the origin's config folder 0700 root: its timeouts are unknown "
                 "(said with the reason), the edge is still read", WEB,
                 lambda v: _eq(v["fastcgi_read_timeout"]["source"], "unknown")
                 or _true("Permission denied" in v["fastcgi_read_timeout"]["reason"])
                 or _eq(v["proxy_read_timeout"]["source"], "set"))
    finally:
        os.chmod(site.origin_conf.parent, 0o755)
    with hidepid():
        cap.take(nginx, "hidepid", "/proc remounted with hidepid=2: the user sees only its own processes, so the "
                 "root-owned nginx masters are hidden; the layouts' /etc/nginx/nginx.conf (this machine's Debian "
                 "package files) is read instead and has no server for the site: unknown, with the reason", WEB,
                 lambda v: _eq(v["fastcgi_read_timeout"]["source"], "unknown")
                 or _true("hidepid" in v["reason"]) or _true(all(i["pid"] is None for i in v["instances"])))
    cap.take(nginx, "no-server-for-the-site", "the inventory's origin names a port no nginx listens on, and another "
             "site's name", {"site": "http://other.example.test/", "origin": f"http://{ADDRESS}:28199"},
             lambda v: _eq((v["origin"], v["edge"], v["fastcgi_read_timeout"]), (None, None, None))
             or _true("no nginx server" in v["reason"]))


def _fpm_situations(cap: Capture, site: TimeoutSite, fpm, php) -> None:
    upstream = {"nginx_upstream": f"unix:{site.socket}"}
    pool_line = lambda key: line_of(site.pool_conf, key)  # noqa: E731

    def pool(v, source, rtt="0"):
        _eq((v["pool"], v["selected_by"], v["source"]), (USER, "upstream", source))
        _eq(v["master_pid"], site.fpm_master)
        _eq(sorted(v["worker_pids"]), sorted(site.workers()))
        _eq(v["request_terminate_timeout"]["raw"], rtt)
        _eq((v["error_log"], v["slowlog"]), (str(site.log("php-fpm.log")), str(site.log("php-fpm-slow.log"))))

    site.configure(pool={"request_terminate_timeout": "45s"})
    cap.take(fpm, "pool-files", "one pool (as the user) in an include=d file, request_terminate_timeout 45s; "
             "php-fpm -tt cannot run as the user (the master is root's)", upstream,
             lambda v: pool(v, "files", "45s") or _eq(v["request_terminate_timeout"]["line"],
                                                    pool_line("request_terminate_timeout")))
    with sudo_for(USER):
        cap.take(fpm, "pool-sudo-tt", "the same with become: sudo: php-fpm -tt runs too (its values agree with the "
                 "files, which give file:line)", {**upstream, "become": "sudo"},
                 lambda v: pool(v, "files+php-fpm -tt", "45s"))
    other = site.pool_conf.parent / "other.conf"
    other.write_text(f"[other]\nuser = nobody\ngroup = nogroup\nlisten = {BASE / 'site' / 'run' / 'other.sock'}\n"
                     "pm = static\npm.max_children = 1\nrequest_terminate_timeout = 5s\n")
    other.chmod(0o644)
    site._stop("php-fpm")
    site._start_fpm()
    try:
        cap.take(fpm, "two-pools-by-upstream", "two pools; the one nginx passes to is picked", upstream,
                 lambda v: _eq((v["pool"], v["selected_by"]), (USER, "upstream")))
        cap.take(fpm, "two-pools-by-user", "two pools and no web server hint: the one running as the SSH user", {},
                 lambda v: _eq((v["pool"], v["selected_by"]), (USER, "user")))
    finally:
        other.unlink()
        site._stop("php-fpm")
        site._start_fpm()
    with hidepid():
        cap.take(fpm, "hidepid", "/proc remounted with hidepid=2: the root master is hidden, the pool's workers "
                 "(the user's own) are not; the layouts' php-fpm.conf (this machine's Debian package files, pool www) "
                 "has not the workers' pool: unknown, with the reason", upstream,
                 lambda v: _eq(v["request_terminate_timeout"]["source"], "unknown")
                 or _true("hidepid" in v["reason"]))
    os.chmod(site.fpm_conf.parent, 0o700)
    try:
        cap.take(fpm, "config-unreadable", "php-fpm's config folder 0700 root: unknown, with the reason", upstream,
                 lambda v: _eq(v["request_terminate_timeout"]["source"], "unknown")
                 or _true("Permission denied" in v["request_terminate_timeout"]["reason"]))
        cap.take(php, "config-unreadable", "php-fpm's folder (php.ini and the pool) 0700 root",
                 {**upstream, "docroot": str(site.docroot)},
                 lambda v: _eq(v["max_execution_time"]["source"], "unknown"))
    finally:
        os.chmod(site.fpm_conf.parent, 0o755)

    docroot = {**upstream, "docroot": str(site.docroot)}
    site.configure()
    cap.take(php, "php-ini", "php.ini beside php-fpm.conf sets max_execution_time = 30", docroot,
             lambda v: _eq((v["max_execution_time"]["seconds"], v["max_execution_time"]["file"],
                            v["max_execution_time"]["line"]), (30, str(site.ini), line_of(site.ini, "max_execution_time")))
             or _eq(v["error_log"], str(site.log("php-error.log"))))
    user_ini, htaccess = site.docroot / ".user.ini", site.docroot / ".htaccess"
    user_ini.write_text("; the site's own\nmax_execution_time = 120\n")
    htaccess.write_text("php_value max_execution_time 500\n")
    try:
        site.configure(pool={"php_value[max_execution_time]": "60"})
        cap.take(php, "user-ini-wins", "php.ini 30 < the pool's php_value 60 < .user.ini 120 (.htaccess's 500 is "
                 "ignored by php-fpm: a note)", docroot,
                 lambda v: _eq((v["max_execution_time"]["seconds"], v["max_execution_time"]["file"]),
                               (120, str(user_ini))) or _eq(len(v["notes"]), 1))
        site.configure(pool={"php_admin_value[max_execution_time]": "40", "php_value[max_execution_time]": "60"})
        cap.take(php, "admin-value-wins", "the pool's php_admin_value 40 wins over .user.ini 120", docroot,
                 lambda v: _eq((v["max_execution_time"]["seconds"], v["max_execution_time"]["line"]),
                               (40, pool_line("php_admin_value[max_execution_time]"))))
    finally:
        user_ini.unlink()
        htaccess.unlink()
        site.configure()


def _kill_situations(cap: Capture, site: TimeoutSite, kills) -> None:
    subprocess.run(["crontab", "-r", "-u", USER], capture_output=True)
    master = {"master_pid": site.fpm_master, "pool": USER}
    cap.take(kills, "quiet", "no crontab, no CSF, no LVE, the workers unlimited (Debian's /etc/cron.* as installed)",
             master, lambda v: _eq(v["cron"], []) or _eq(v["worker_limits"]["cpu_soft"], None)
             or _eq(v["worker_limits"]["readable"], True))
    line = "*/5 * * * * pkill -9 --older 300 -f php-fpm"
    subprocess.run(["crontab", "-u", USER, "-"], input=f"MAILTO=\"\"\n{line}\n", text=True, check=True)
    try:
        cap.take(kills, "cron-kill-line", "the user's crontab kills php-fpm processes older than 300 s with SIGKILL",
                 master, lambda v: _eq([(c["file"], c["line"], c["age"], c["signal"], c["own"]) for c in v["cron"]],
                                       [("crontab -l", 2, 300, "KILL", True)]))
    finally:
        subprocess.run(["crontab", "-r", "-u", USER], capture_output=True)
    for worker in site.workers():
        subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", "--", "prlimit",
                        f"--pid={worker}", "--cpu=1:unlimited"], check=True)
    cap.take(kills, "cpu-limit", "RLIMIT_CPU soft 1 s set on the workers with prlimit (as `ulimit -S -t 1` would)",
             master, lambda v: _eq((v["worker_limits"]["cpu_soft"], v["worker_limits"]["cpu_hard"]), (1, None)))
    site._stop("php-fpm")
    site._start_fpm()
    # the readiness check's connection makes ondemand start a worker: let it idle out
    site.configure(pool={"pm": "ondemand", "pm.max_children": "1", "pm.process_idle_timeout": "1s"})
    time.sleep(1.5)
    wait_for(lambda: not site.workers(), "the idle worker's exit", timeout=15)
    cap.take(kills, "no-worker", "pm = ondemand and no request: no worker to read the limits of",
             {"master_pid": site.fpm_master, "pool": USER},
             lambda v: _eq(v["worker_limits"]["readable"], False))
    site.configure()


def _log_situations(cap: Capture, site: TimeoutSite, scan) -> None:
    logs = {"fpm": str(site.log("php-fpm.log")), "slow": str(site.log("php-fpm-slow.log")),
            "php": str(site.log("php-error.log")), "web": str(site.log("origin-error.log")),
            "edge": str(site.log("edge-error.log"))}
    site.reset_logs()
    site.configure(pool={"request_terminate_timeout": "2s"})
    assert site.get("edge", "/sleep.php?s=4") == 502
    time.sleep(1.5)
    cap.take(scan, "terminate", "request_terminate_timeout 2s ended GET /sleep.php?s=4 through the edge", logs,
             lambda v: _eq(v["fpm"]["signatures"]["fpm-terminate"]["count"], 1)
             or _eq(v["web"]["signatures"]["nginx-upstream-reset"]["count"], 1)
             or _eq(v["fpm"]["signatures"]["fpm-terminate"]["line"] is not None, True))
    site.reset_logs()
    site.configure(fastcgi_read_timeout="2s", proxy_read_timeout="60s")
    assert site.get("origin", "/sleep.php?s=3") == 504
    site.configure(proxy_read_timeout="1s")
    assert site.get("edge", "/sleep.php?s=2") == 504
    time.sleep(2.5)
    cap.take(scan, "gateway-504s", "fastcgi_read_timeout 2s (a 504 at the origin), then proxy_read_timeout 1s "
             "(a 504 at the edge)", logs,
             lambda v: _eq(v["web"]["signatures"]["nginx-upstream-timeout"]["count"], 1)
             or _eq(v["edge"]["signatures"]["nginx-upstream-timeout"]["count"], 1))
    site.reset_logs()
    site.configure(pool={"request_terminate_timeout": "2s"})
    site.get("edge", "/sleep.php?s=3")
    time.sleep(1.5)
    os.chmod(site.log("php-fpm.log"), 0o600)
    try:
        cap.take(scan, "unreadable-and-missing", "php-fpm's log 0600 root (as php-fpm creates it), and an inventory "
                 "override naming a log that does not exist", {**logs, "overrides": {"php": str(BASE / "nope.log")}},
                 lambda v: _eq((v["fpm"]["readable"], v["fpm"]["reason"]), (False, "Permission denied"))
                 or _eq((v["php"]["readable"], v["php"]["reason"]), (False, "no such file"))
                 or _eq(v["web"]["signatures"]["nginx-upstream-reset"]["count"], 1))
    finally:
        os.chmod(site.log("php-fpm.log"), 0o644)
    site.reset_logs()
    site.configure(pool={"pm": "ondemand", "pm.max_children": "1", "listen.backlog": "0"})
    codes = site.concurrently(*((0.3 if n else 0, "edge", "/sleep.php?s=2") for n in range(4)))
    assert 502 in codes, codes
    time.sleep(1.5)
    cap.take(scan, "max-children", "pm ondemand, pm.max_children 1, listen.backlog 0: four requests 0.3 s apart",
             {**logs, "bytes": 4096},
             lambda v: _true(v["fpm"]["signatures"]["fpm-max-children"]["count"] >= 1)
             or _true(v["web"]["signatures"]["nginx-backlog-full"]["count"] >= 1))
    site.configure()


class hidepid:
    """/proc (this namespace's own) remounted with hidepid=2 for a while: a shared host's usual setting."""

    def __enter__(self):
        subprocess.run(["mount", "-o", "remount,hidepid=2", "/proc"], check=True)

    def __exit__(self, *exc):
        subprocess.run(["mount", "-o", "remount,hidepid=0", "/proc"], check=True)


def _eq(got, want) -> None:
    assert got == want, f"{got!r} != {want!r}"


def _true(condition: bool) -> None:
    assert condition


READMES = {
    "nginx_timeouts": "nginx_timeouts: the origin's and the edge's effective timeouts",
    "apache_timeouts": "apache_timeouts: Apache's Timeout/ProxyTimeout when it runs the site's PHP",
    "phpfpm_timeouts": "phpfpm_timeouts: the site's pool, its request_terminate_timeout, pm, logs",
    "php_timeouts": "php_timeouts: max_execution_time for the FPM SAPI, and where it is set",
    "kill_evidence": "kill_evidence: crontab kill lines, CSF, LVE, LiteSpeed, the workers' CPU limit",
    "log_scan": "log_scan: each 502/504 signature counted in the tail of the logs",
    "host_load": "host_load: load, memory and the workers' RSS",
}


def write_readmes(cap: Capture) -> None:
    for probe, cases in cap.written.items():
        rows = "\n".join(f"- {name}: {what}" for name, what in cases)
        (cap.out / probe / "README.md").write_text(
            f"# {READMES[probe]}\n\nCaptured on Debian 12 (bookworm) with {versions()} by "
            "`tests/captures/refresh_timeout_probes.py` (as root; see its docstring): the probe's own script, run as "
            f"the capture user {USER} with /bin/sh (dash), in a PID namespace of its own so `ps` lists only the "
            f"capture's servers (lab/timeouts.py on {ADDRESS}, files under {BASE}). Each <situation>.json holds the "
            "exit status, the parameters and the parse, checked against the lab before it was written.\n\n"
            f"{rows}\n")


def main(out: Path) -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: php-fpm's master and nginx run as root, the probes as a user of their own")
    if os.environ.get("OPSKIT_CAPTURE_NAMESPACE") != "1":
        env = {**os.environ, "OPSKIT_CAPTURE_NAMESPACE": "1"}
        sys.exit(subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, __file__, str(out)],
                                env=env).returncode)
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    for path in (BASE.parent, BASE):
        os.chmod(path, 0o755)
    ensure_user(USER, HOME)
    cap = Capture(out)
    try:
        for probe in READMES:
            shutil.rmtree(out / probe, ignore_errors=True)
        situations(cap)
        write_readmes(cap)
    finally:
        subprocess.run(["crontab", "-r", "-u", USER], capture_output=True)
        remove_user(USER)
        if os.environ.get("OPSKIT_CAPTURE_KEEP") != "1":   # keep BASE to look at what went wrong
            shutil.rmtree(BASE, ignore_errors=True)
            try:
                BASE.parent.rmdir()   # /tmp/opskit-capture, when no other capture uses it
            except OSError:
                pass


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
