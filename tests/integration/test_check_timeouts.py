"""check-timeouts on real servers: php-fpm 8.2 + nginx 1.22 (origin) + nginx (the edge, a
reverse proxy standing in for the CDN) on loopback (lab/timeouts.py), owned the way a shared
host owns them (masters as root, the pool as the SSH user), behind a real sshd host of a
private lab (users opskit-k*, addresses 127.0.70.x: never the main suite's).

Each case configures the servers for real, provokes what it is about (a request killed by
php-fpm's terminate timeout, by a test-side kill script, by a CPU limit; a 504 at the origin
and at the edge; exhausted workers; the same site behind Apache with mod_proxy_fcgi, lab/apache.py), runs `opskit run check-timeouts --json` and asserts the
finding's cause and evidence. One server setup for the module; each case reconfigures it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab import apache
from lab.sshd import Lab
from lab.sudo import sudo_for
from lab.timeouts import TimeoutSite, site_behind_sshd
from tests.conftest import cli_command, run_cli, wait_until

pytestmark = pytest.mark.integration

SITE = "site1.example.test"


class Env:
    def __init__(self, lab: Lab, site: TimeoutSite, inventory: Path, base: Path):
        self.lab, self.site, self.inventory, self.base = lab, site, inventory, base
        self.host = lab.hosts[0]

    def inventory_with(self, name: str, **fields) -> Path:
        return self.lab.inventory(self.base / f"{name}.yaml", hosts={"h1": {**self.fields(), **fields}})

    def fields(self) -> dict:
        return {"wordpress": {"root": "~/public_html", "url": f"http://{SITE}/"}, "origin": self.site.origin_url,
                "cdn": {"provider": "cloudflare", "timeout": 100}}

    def run(self, *more: str, inventory: Path | None = None, timeout: float = 120) -> tuple[int, dict]:
        result = run_cli("-i", str(inventory or self.inventory), "run", "check-timeouts", "--host", "h1", "--json",
                         *more, timeout=timeout)
        doc = result.json["hosts"]["h1"]
        assert doc["error"] is None, (doc["error"], result.stderr[-3000:])
        return result.returncode, doc


@pytest.fixture(scope="module")
def env():
    if os.geteuid() != 0:
        pytest.fail("the real-server tests need root (sshd, users, php-fpm's master); run them as root or in CI")
    with site_behind_sshd("ktimeouts", "opskit-k", "127.0.70.") as (lab, site, base):
        the = Env(lab, site, base / "inventory.yaml", base)
        the.inventory = the.inventory_with("inventory")
        yield the


@pytest.fixture
def case(env):
    """A clean start for each case: the defaults, empty logs, no crontab, nothing of opskit's held."""
    subprocess.run(["crontab", "-r", "-u", env.host.user], capture_output=True)
    env.site.configure()
    env.site.reset_logs()
    yield env
    subprocess.run(["crontab", "-r", "-u", env.host.user], capture_output=True)


def findings(doc: dict, cause: str) -> list[dict]:
    return [f for f in doc["findings"] if f["cause"] == cause]


def one(doc: dict, cause: str, contains: str = "") -> dict:
    found = [f for f in findings(doc, cause) if contains in f["summary"]]
    assert found, f"no {cause} finding{' about ' + contains if contains else ''}: " + \
        "\n".join(f"{f['cause']}: {f['summary']}" for f in doc["findings"])
    notes = os.environ.get("OPSKIT_TIMEOUTS_NOTES")   # a file: each asserted finding as the report prints it
    if notes:
        with open(notes, "a") as out:
            out.write(f"== {os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\n{printed(found[0])}\n")
    return found[0]


def evidence_with(finding: dict, text: str) -> str:
    found = [e for e in finding["evidence"] if text in e]
    assert found, f"no evidence with {text!r} in {finding['evidence']}"
    return found[0]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().split("\n"), 1) if text in line)


def settle() -> None:
    time.sleep(1.3)   # php-fpm's master logs a child's exit on its next tick


def step_value(doc: dict, step_id: str):
    return next(s for s in doc["steps"] if s["id"] == step_id).get("value")


def printed(finding: dict) -> str:
    """The finding as the human report prints it (for the closing note)."""
    return f"{finding['cause']}: {finding['summary']}\n" + "\n".join("    " + e for e in finding["evidence"])


# -- the cases -------------------------------------------------------------------------------

def test_fpm_terminate_timeout_shorter_than_the_script(case):
    site = case.site
    site.configure(pool={"request_terminate_timeout": "2s"})
    assert site.get("edge", "/sleep.php?s=5") == 502
    settle()
    code, doc = case.run()
    assert code == 0 and doc["status"] == "ok"
    found = one(doc, "fpm-timeout")
    assert found["severity"] == "error"
    terminate = evidence_with(found, "execution timed out")
    assert terminate.startswith(f"{site.log('php-fpm.log')}:") and "/sleep.php" in terminate
    line = line_of(site.pool_conf, "request_terminate_timeout")
    evidence_with(found, f"{site.pool_conf}:{line}: request_terminate_timeout = 2s (in [{site.pool_name}])")
    evidence_with(found, "recv() failed (104: Connection reset by peer)")
    chain = one(doc, "timeout-chain")
    assert "php-fpm request_terminate_timeout fires first, after 2s" in chain["summary"]
    # read-only without --measure: no change can happen, so no lock, no guard, no transaction
    home = case.host.home
    assert not (home / ".opskit" / "lock").exists()
    assert "opskit-guard" not in subprocess.run(["crontab", "-l", "-u", case.host.user], capture_output=True,
                                                 text=True).stdout
    assert not any(p.name.startswith("opskit-measure-") for p in site.docroot.iterdir())
    tx = home / ".opskit" / "tx"
    assert not (tx.exists() and list(tx.iterdir())), list(tx.iterdir())
    assert not [s for s in doc["steps"] if s["kind"] == "change" and s["status"] != "skipped"]


def test_a_kill_script_sigkills_a_long_running_worker(case):
    site = case.site
    site.configure(pool={"pm.max_children": "1"})
    worker = site.workers()[0]
    killer = threading.Timer(1.5, os.kill, (worker, signal.SIGKILL))   # the test-side "kill script"
    killer.start()
    assert site.get("edge", "/sleep.php?s=5") == 502
    killer.join()
    settle()
    _, doc = case.run()
    found = one(doc, "kill-script", "SIGKILL")
    assert found["severity"] == "error"
    evidence_with(found, f"child {worker} exited on signal 9 (SIGKILL)")
    evidence_with(found, "recv() failed (104: Connection reset by peer)")
    assert not findings(doc, "fpm-timeout")


def test_a_cpu_limit_on_the_worker(case):
    site = case.site
    site.configure()
    for worker in site.workers():   # as `ulimit -S -t 1` in php-fpm's start script would leave them
        subprocess.run(["setpriv", f"--reuid={case.host.user}", f"--regid={case.host.user}", "--clear-groups", "--",
                        "prlimit", f"--pid={worker}", "--cpu=1:unlimited"], check=True)
    assert site.get("edge", "/busy.php?s=4") == 502
    settle()
    _, doc = case.run()
    found = one(doc, "kill-script", "SIGXCPU")
    assert found["severity"] == "error"
    evidence_with(found, "exited on signal 24 (SIGXCPU)")
    limits = evidence_with(found, "Max cpu time")
    assert re.search(r"^/proc/\d+/limits: Max cpu time +1 +unlimited +seconds$", limits), limits


def test_fastcgi_read_timeout_shorter_gives_a_504(case):
    site = case.site
    site.configure(fastcgi_read_timeout="2s")
    assert site.get("origin", "/sleep.php?s=4") == 504
    time.sleep(2.5)   # the abandoned worker sleeps on
    _, doc = case.run()
    found = one(doc, "gateway-timeout", "fastcgi_read_timeout")
    evidence_with(found, "upstream timed out (110: Connection timed out) while reading response header")
    line = line_of(site.site_conf, "fastcgi_read_timeout")
    evidence_with(found, f"{site.site_conf}:{line}: fastcgi_read_timeout 2s (in http > server[{SITE}] > location ~ \\.php$)")
    assert "at the origin" in found["summary"] and "504" in found["summary"]


def test_edge_proxy_read_timeout_shorter_gives_a_504_at_the_edge(case):
    site = case.site
    site.configure(proxy_read_timeout="2s")
    assert site.get("edge", "/sleep.php?s=4") == 504
    time.sleep(2.5)
    _, doc = case.run()
    found = one(doc, "gateway-timeout", "edge proxy")
    log = evidence_with(found, "upstream timed out (110: Connection timed out)")
    assert log.startswith(str(site.log("edge-error.log"))) and f'upstream: "http://{site.address}:{site.origin_port}' in log
    line = line_of(site.edge_conf, "proxy_read_timeout")
    evidence_with(found, f"{site.edge_conf}:{line}: proxy_read_timeout 2s (in http > server[{SITE}] > location /)")
    assert not [f for f in findings(doc, "gateway-timeout") if "at the origin" in f["summary"]]


def test_max_children_exhausted(case):
    site = case.site
    codes = site.exhaust_workers()
    assert 502 in codes, codes
    settle()
    _, doc = case.run()
    found = one(doc, "overload", "ran out of PHP workers")
    assert found["severity"] == "error"
    evidence_with(found, "server reached max_children setting (1)")
    evidence_with(found, "(11: Resource temporarily unavailable) while connecting to upstream")
    line = line_of(site.pool_conf, "pm.max_children")
    evidence_with(found, f"{site.pool_conf}:{line}: pm.max_children = 1")


def test_a_misordered_chain_with_no_incident_read_through_sudo(case):
    """request_terminate_timeout 300 behind nginx's default 60s; the edge waits as long as the CDN.
    With become: sudo the probes use nginx -T and php-fpm -tt (root's view)."""
    site = case.site
    site.configure(pool={"request_terminate_timeout": "300"}, proxy_read_timeout="100s")
    inventory = case.inventory_with("sudo", become="sudo")
    with sudo_for(case.host.user):
        _, doc = case.run(inventory=inventory)
    found = one(doc, "timeout-chain")
    assert found["severity"] == "error"
    assert "nginx fastcgi_read_timeout fires first, after 60s" in found["summary"]
    evidence_with(found, "fastcgi_read_timeout: not set, nginx's default 60s")
    line = line_of(site.pool_conf, "request_terminate_timeout")
    evidence_with(found, f"{site.pool_conf}:{line}: request_terminate_timeout = 300 (in [{site.pool_name}])")
    chain = step_value(doc, "chain")
    assert (chain["fires_first"], chain["visitor_sees"]) == ("fastcgi_read_timeout", "504")
    assert chain["proposal"]["request_terminate_timeout"] < chain["proposal"]["fastcgi_read_timeout"]
    web, fpm = step_value(doc, "web"), step_value(doc, "fpm")
    assert {i["source"] for i in web["nginx_timeouts"]["instances"] if i["conf"].startswith(str(site.base))} \
        == {"sudo nginx -T"}
    assert fpm["phpfpm_timeouts"]["source"] == "files+php-fpm -tt"
    for cause in ("fpm-timeout", "gateway-timeout", "kill-script"):
        assert not findings(doc, cause), cause


def test_a_cron_line_that_kills_php(case):
    # no cron daemon runs the lab's users' crontabs: the line is only read
    line = "*/5 * * * * pkill -9 --older 300 -f php-fpm"
    subprocess.run(["crontab", "-u", case.host.user, "-"], input=f"MAILTO=\"\"\n{line}\n", text=True, check=True)
    _, doc = case.run()
    found = one(doc, "kill-script", "cron job")
    assert found["severity"] == "warning"
    assert found["evidence"] == ["crontab -l:2: pkill -9 --older 300 -f php-fpm"]
    assert "older than 300s" in found["summary"] and "your own crontab" in found["advice"]
    crontab = subprocess.run(["crontab", "-l", "-u", case.host.user], capture_output=True, text=True).stdout
    assert crontab == f"MAILTO=\"\"\n{line}\n"   # the guard's own line came and went


def test_an_unreadable_log(case):
    site = case.site
    site.configure(pool={"request_terminate_timeout": "2s"})
    os.chmod(site.log("php-fpm.log"), 0o600)   # php-fpm's own mode for its log (root's only)
    try:
        assert site.get("edge", "/sleep.php?s=4") == 502
        settle()
        _, doc = case.run()
    finally:
        os.chmod(site.log("php-fpm.log"), 0o644)
    unreadable = one(doc, "log-unreadable", "php-fpm's log")
    assert unreadable["evidence"] == [f"{site.log('php-fpm.log')}: Permission denied"]
    reset = one(doc, "kill-script", "reset the connection")
    evidence_with(reset, "recv() failed (104: Connection reset by peer)")
    assert not findings(doc, "fpm-timeout")
    assert doc["status"] == "ok"


def test_measure_finds_the_configured_kill_time_and_leaves_nothing(case):
    site = case.site
    site.configure(pool={"request_terminate_timeout": "3s"})
    code, doc = case.run("--measure", "--measure-max", "8s")
    assert code == 0 and doc["status"] == "rolled_back" and doc["rollback"]["reason"] == "hold_ended", doc["rollback"]
    measured = step_value(doc, "measure")["observed"]
    for mode in ("wall", "cpu"):
        result = measured["modes"][mode]
        assert result["status"] == 502 and result["layer"] == "request_terminate_timeout", result
        assert 3.0 <= result["seconds"] <= 4.0, result
        assert any("execution timed out" in line["text"] for line in result["lines"]), result["lines"]
    found = one(doc, "measured-kill-time")
    assert "as the configuration predicts" in found["summary"]
    assert [c["state"] for c in doc["changes"]] == ["undone"]
    assert not any(p.name.startswith("opskit-measure-") or ".opskit-" in p.name for p in site.docroot.iterdir())
    assert not (case.host.home / ".opskit" / "lock").exists()


def test_measure_interrupted_mid_measure_leaves_no_file(case):
    site = case.site
    site.configure()
    command = cli_command("-i", str(case.inventory), "run", "check-timeouts", "--host", "h1", "--json",
                          "--measure", "--measure-max", "6s")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        probe = wait_until(lambda: next((p for p in site.docroot.iterdir() if p.name.startswith("opskit-measure-")
                                         and p.name.endswith(".php")), None), 60, what="the probe uploaded")
        time.sleep(1.5)   # the requests are running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert not probe.exists()
    assert not any(".opskit-" in p.name or p.name.startswith("opskit-measure-") for p in site.docroot.iterdir())
    assert not (case.host.home / ".opskit" / "lock").exists()
    import json
    doc = json.loads(out)["hosts"]["h1"]
    assert doc["status"] == "rolled_back" and doc["rollback"]["reason"] == "interrupted"
    assert [c["state"] for c in doc["changes"]] == ["undone"]


# -- Apache (mod_proxy_fcgi) in front of php-fpm, as many VPS and cPanel hosts run PHP -----------

@pytest.fixture
def front(case):
    """The site served by Apache 2.4 alone (nginx stopped), its PHP passed to php-fpm's socket;
    afterwards Apache is stopped and the site's nginx started again."""
    if not apache.available():
        pytest.fail(f"Apache is not installed ({apache.APACHE}, mod_proxy_fcgi in {apache.APACHE_MODULES})")
    the = apache.ApacheFront(case.site)
    try:
        yield the
    finally:
        the.stop()


def apache_inventory(case, front) -> Path:
    return case.inventory_with("apache", origin=front.url)


def test_apache_proxy_timeout_shorter_gives_a_504(case, front):
    site = case.site
    site.configure(pool=apache.CAN_CONNECT)
    front.start(proxy_timeout="2")
    assert front.get("/sleep.php?s=5") == 504
    time.sleep(3.5)   # the abandoned worker sleeps on
    _, doc = case.run(inventory=apache_inventory(case, front))
    found = one(doc, "gateway-timeout", "Apache")
    shown = printed(found)
    assert found["severity"] == "error", shown
    log = found["evidence"][0]
    stamp = re.fullmatch(re.escape(f"{site.log('apache-error.log')}:") + r"\d+: \[\w{3} \w{3} \d\d "
                         r"(\d\d:\d\d:\d\d\.\d{6}) (\d{4})\] \[proxy_fcgi:error\] \[pid \d+:tid \d+\] "
                         r"\(70007\)The timeout specified has expired: " + re.escape(f"[client {site.address}:")
                         + r"\d+\] AH01075: Error dispatching request to : \(polling\)", log)
    assert stamp, shown
    assert re.fullmatch(r"Apache \(mod_proxy_fcgi\) gave up waiting for php-fpm after its ProxyTimeout \(2s\) once "
                        rf"\({stamp[2]}-\d\d-\d\dT{re.escape(stamp[1])}\): the visitor got a 504 while the PHP "
                        r"worker kept running", found["summary"]), shown
    line = front.line_of("ProxyTimeout")
    assert found["evidence"][1:] == [f"{front.conf}:{line}: ProxyTimeout 2 (inherited from server config)"], shown
    assert not [f for f in findings(doc, "gateway-timeout") if "nginx" in f["summary"]], shown
    assert step_value(doc, "web")["apache_timeouts"]["served_by"] == "apache-proxy-fcgi"


def test_apache_chain_says_proxy_timeout_fires_first(case, front):
    """No incident: ProxyTimeout 20 in front of a pool that waits 300s (max_execution_time 30, Timeout 60)."""
    site = case.site
    site.configure(pool={"request_terminate_timeout": "300", **apache.CAN_CONNECT})
    front.start(proxy_timeout="20")
    _, doc = case.run(inventory=apache_inventory(case, front))
    found = one(doc, "timeout-chain")
    shown = printed(found)
    assert found["summary"].startswith(
        "for a slow request, Apache ProxyTimeout fires first, after 20s: Apache (mod_proxy_fcgi) gives up on php-fpm "
        "and answers 504 while the worker keeps running; Apache ProxyTimeout (20s) fires at or before PHP "
        "max_execution_time (30s) and php-fpm request_terminate_timeout (300s), which should end the request first: "
        "the visitor gets 504 instead of 500;"), shown
    line = front.line_of("ProxyTimeout")
    evidence_with(found, f"{front.conf}:{line}: ProxyTimeout 20 (inherited from server config)")
    line = line_of(site.pool_conf, "request_terminate_timeout")
    evidence_with(found, f"{site.pool_conf}:{line}: request_terminate_timeout = 300 (in [{site.pool_name}])")
    chain = step_value(doc, "chain")
    assert (chain["served_by"], chain["fires_first"], chain["visitor_sees"]) == \
        ("apache-proxy-fcgi", "apache_proxy_timeout", "504"), chain
    for cause in ("fpm-timeout", "gateway-timeout", "kill-script"):
        assert not findings(doc, cause), cause
