"""tune-timeouts on real servers: php-fpm 8.2 + nginx 1.22 (origin) + nginx (the edge, standing in
for the CDN's proxy) on loopback (lab/timeouts.py), owned as a VPS owns them (masters and config
files root's; the pool runs as the SSH user), behind a real sshd host of a private lab (users
opskit-tu*, addresses 127.0.90.x: nobody else's). opskit edits root's files through `become:
sudo` (lab/sudo.py), except in the shared-hosting case, which has no sudo.

Asserted by reading the files and by real slow requests: the chain applied; a request that was
a 502 now succeeds, and a longer one ends at the innermost layer; every byte outside the edited
lines kept; an edit nginx -t refuses leaves every file as it was; a config already invalid is
refused before anything changes; the confirm window expiring with the controller SIGKILLed
restores the files and reloads the servers; confirm keeps them; --check changes nothing; a
file someone else edits during the window is not clobbered; without root only the docroot's
.user.ini is written and the rest is reported as lines to ask the host for.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import apache
from lab.sshd import Lab
from lab.sudo import sudo_for
from lab.timeouts import TimeoutSite, site_behind_sshd
from tests.conftest import ROOT, TEST_PLAYBOOKS, cli_command, hold_started, run_cli, wait_until

pytestmark = pytest.mark.integration

SITE = "site1.example.test"
BEFORE_POOL = {"request_terminate_timeout": "2s"}   # php-fpm kills a 5 s request: a 502


class Env:
    def __init__(self, lab: Lab, site: TimeoutSite, base: Path):
        self.lab, self.site, self.base = lab, site, base
        self.host = lab.hosts[0]
        self.inventory = self.inventory_with("sudo", become="sudo")
        self.shared = self.inventory_with("shared")
        self.notes = os.environ.get("OPSKIT_TUNE_NOTES")   # a file: what the closing note quotes

    def inventory_with(self, name: str, **fields) -> Path:
        site = self.site
        return self.lab.inventory(self.base / f"{name}.yaml", hosts={"h1": {
            "wordpress": {"root": "~/public_html", "url": f"http://{SITE}/"}, "origin": site.origin_url,
            "cdn": {"provider": "cloudflare", "timeout": 100},
            "vars": {"fpm_conf": str(site.fpm_conf), "pool": site.pool_name, "edge_conf": str(site.edge_conf),
                     "edge_prefix": f"{site.edge_conf.parent}/", "edge_log": str(site.log("edge-error.log")),
                     "server_name": SITE},
            **fields}})

    def files(self) -> dict[Path, bytes]:
        s = self.site
        return {p: p.read_bytes() for p in (s.ini, s.fpm_conf, s.pool_conf, s.origin_conf, s.site_conf, s.edge_conf)}

    def run(self, *more: str, inventory: Path | None = None, playbook: str = "tune-timeouts",
            timeout: float = 120) -> tuple[int, dict, str]:
        extra = ("--playbook-path", str(TEST_PLAYBOOKS)) if playbook != "tune-timeouts" else ()
        result = run_cli("-i", str(inventory or self.inventory), "run", playbook, *extra, "--host", "h1", "--json",
                         "--yes", *more, timeout=timeout)
        data = result.json
        return result.returncode, data["hosts"]["h1"], data["run_id"]

    def note(self, text: str) -> None:
        if self.notes:
            with open(self.notes, "a") as out:
                out.write(text.rstrip("\n") + "\n")


@pytest.fixture(scope="module")
def env():
    if os.geteuid() != 0:
        pytest.fail("the real-server tests need root (sshd, users, php-fpm's master); run them as root or in CI")
    with site_behind_sshd("tune", "opskit-tu", "127.0.90.", pool=dict(BEFORE_POOL)) as (lab, site, base):
        host = lab.hosts[0]
        index = site.docroot / "index.php"
        index.write_text("<?php echo \"home\\n\";\n")
        shutil.chown(index, host.user, host.user)
        lab.write_known_hosts()
        with sudo_for(host.user):
            yield Env(lab, site, base)


@pytest.fixture
def case(env):
    """Each case starts from the same site: request_terminate_timeout 2s, the rest as lab/timeouts.py
    writes it, the servers restarted if a case left them otherwise; no .user.ini."""
    (env.site.docroot / ".user.ini").unlink(missing_ok=True)
    env.site.configure(pool=dict(BEFORE_POOL))
    yield env


def finding(doc: dict, cause: str) -> dict:
    found = [f for f in doc["findings"] if f["cause"] == cause]
    assert found, f"no {cause} finding: " + "\n".join(f"{f['cause']}: {f['summary']}" for f in doc["findings"])
    return found[0]


def step_value(doc: dict, step_id: str):
    return next(s for s in doc["steps"] if s["id"] == step_id).get("value")


def changed_lines(old: bytes, new: bytes) -> list[tuple[int, str, str]]:
    """(line, old, new) of a same-length edit; asserts nothing was added or removed elsewhere."""
    a, b = old.decode().split("\n"), new.decode().split("\n")
    assert len(a) == len(b), (a, b)
    return [(n, x, y) for n, (x, y) in enumerate(zip(a, b), 1) if x != y]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().split("\n"), 1) if text in line)


def timed(site: TimeoutSite, path: str) -> tuple[int | str, float]:
    started = time.monotonic()
    code = site.get("edge", path)
    return code, round(time.monotonic() - started, 1)


def children(pid: int | None) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except (OSError, TypeError):
        return set()


def nginx_workers(site: TimeoutSite, which: str = "edge") -> set[int]:
    return children(site.procs[which].pid)


def state(env: Env, run_id: str) -> str:
    file = env.host.home / ".opskit" / "tx" / run_id / "state"
    return file.read_text().strip() if file.exists() else "missing"


# -- the cases -------------------------------------------------------------------------------

def test_check_prints_the_diffs_and_the_chain_and_changes_nothing(case):
    before = case.files()
    code, doc, _ = case.run("--check", "--script-time", "3s")
    assert code == 0, doc
    plan = finding(doc, "timeout-plan")
    case.note("== --check\n" + plan["summary"] + "\n" + "\n".join("    " + e for e in plan["evidence"]))
    assert plan["evidence"][:2] == [
        "before: PHP max_execution_time 30s → php-fpm request_terminate_timeout 2s → nginx fastcgi_read_timeout 60s "
        "→ edge proxy_read_timeout 100s → cloudflare timeout 100s",
        "after:  PHP max_execution_time 3s → php-fpm request_terminate_timeout 8s → nginx fastcgi_read_timeout 60s "
        "→ edge proxy_read_timeout 95s → cloudflare timeout 100s"], plan
    planned = [c for c in doc["changes"] if c["state"] == "planned"]
    assert [c["diff"].splitlines()[0] for c in planned] == [
        f"--- {case.site.ini}", f"--- {case.site.pool_conf}", f"--- {case.site.edge_conf}"], planned
    assert "+max_execution_time = 3" in planned[0]["diff"]
    assert "+request_terminate_timeout = 8s" in planned[1]["diff"]
    assert "+            proxy_read_timeout 95s;" in planned[2]["diff"]
    for change in planned:
        case.note(change["diff"])
    assert step_value(doc, "origin_after") is None   # not verified: nothing was changed
    # the human report: the diff per file and the chain before → after
    human = run_cli("-i", str(case.inventory), "run", "tune-timeouts", "--host", "h1", "--check", "--script-time", "3s")
    assert human.returncode == 0, human.stderr[-2000:]
    shown = human.stdout + human.stderr
    for text in (f"--- {case.site.pool_conf}", "-request_terminate_timeout = 2s", "+request_terminate_timeout = 8s",
                 "before: PHP max_execution_time 30s", "after:  PHP max_execution_time 3s"):
        assert text in shown, (text, shown[-4000:])
    assert case.files() == before
    assert not (case.host.home / ".opskit" / "tx").exists() or not list((case.host.home / ".opskit" / "tx").iterdir())


def test_the_chain_is_applied_a_502_now_succeeds_and_confirm_keeps_it(case):
    site = case.site
    before = case.files()
    code_5s, took = timed(site, "/sleep.php?s=5")
    assert code_5s == 502 and took < 4, (code_5s, took)           # php-fpm's 2 s terminate
    case.note(f"== before: GET /sleep.php?s=5 through the edge → {code_5s} after {took}s "
              "(php-fpm request_terminate_timeout 2s kills the worker)")
    fpm_workers, edge_workers, origin_workers = set(site.workers()), nginx_workers(site), nginx_workers(site, "origin")
    code, doc, run_id = case.run("--script-time", "3s", "--confirm-within", "5m", "--detach")
    assert code == 0 and doc["status"] == "held", (doc["status"], doc["error"])
    assert [c["state"] for c in doc["changes"]] == ["applied"] * 3, doc["changes"]
    assert finding(doc, "origin-as-before")["severity"] == "info"
    # every byte outside the edited lines is kept
    after = case.files()
    assert changed_lines(before[site.ini], after[site.ini]) == [
        (line_of(site.ini, "max_execution_time"), "max_execution_time = 30", "max_execution_time = 3")]
    n = line_of(site.pool_conf, "request_terminate_timeout")
    assert changed_lines(before[site.pool_conf], after[site.pool_conf]) == [
        (n, "request_terminate_timeout = 2s", "request_terminate_timeout = 8s")]
    n = line_of(site.edge_conf, "proxy_read_timeout")
    assert changed_lines(before[site.edge_conf], after[site.edge_conf]) == [
        (n, "            proxy_read_timeout 100s;", "            proxy_read_timeout 95s;")]
    for path in (site.fpm_conf, site.origin_conf, site.site_conf):
        assert after[path] == before[path], path
    for path in (site.ini, site.pool_conf, site.edge_conf):
        st = path.stat()
        assert (st.st_uid, st.st_gid, oct(st.st_mode)) == (0, 0, "0o100644"), path
    # reloaded, not restarted: the masters are the same processes, their workers new; the
    # origin's nginx, whose files did not change, is left alone
    assert site.procs["php-fpm"].poll() is None and site.procs["edge"].poll() is None
    assert not set(site.workers()) & fpm_workers and not nginx_workers(site) & edge_workers
    assert nginx_workers(site, "origin") == origin_workers
    # the chain as the servers now read it, and real requests
    chain = step_value(doc, "chain")
    assert chain["consistent"] is True and chain["fires_first"] == "request_terminate_timeout", chain
    assert step_value(doc, "origin_after")["verdict"] == "passed"
    code_5s, took_5s = timed(site, "/sleep.php?s=5")
    assert code_5s == 200 and 5 <= took_5s < 8, (code_5s, took_5s)
    plan = finding(doc, "timeout-plan")
    case.note(f"== after (held): GET /sleep.php?s=5 → {code_5s} after {took_5s}s\n"
              + "\n".join("    " + e for e in plan["evidence"]))
    confirmed = run_cli("confirm", run_id)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert state(case, run_id) == "kept"
    assert case.files() == after
    # check-timeouts --measure: the measured kill times moved where intended — a waiting request
    # ends at php-fpm's new 8 s, one busy on the CPU at PHP's 3 s (it was php-fpm's 2 s for both)
    measured_run = run_cli("-i", str(case.inventory), "run", "check-timeouts", "--host", "h1", "--json", "--yes",
                           "--measure", "--measure-max", "12s", "--hold", "1s", timeout=120)
    measured_doc = measured_run.json["hosts"]["h1"]
    assert measured_doc["error"] is None, measured_doc["error"]
    measured = step_value(measured_doc, "measure")["observed"]["modes"]
    assert (measured["wall"]["layer"], measured["wall"]["status"]) == ("request_terminate_timeout", 502), measured
    assert 8 <= measured["wall"]["seconds"] < 10, measured["wall"]
    assert (measured["cpu"]["layer"], measured["cpu"]["status"]) == ("max_execution_time", 500), measured
    assert 3 <= measured["cpu"]["seconds"] < 8, measured["cpu"]     # CPU seconds: longer on a busy machine
    assert "Maximum execution time of 3 seconds exceeded" in site.log("php-error.log").read_text()
    case.note(f"== check-timeouts --measure after confirming: wall {measured['wall']['status']} by "
              f"{measured['wall']['layer']} after {measured['wall']['seconds']}s; cpu {measured['cpu']['status']} by "
              f"{measured['cpu']['layer']} after {measured['cpu']['seconds']}s")


def test_an_edit_the_validator_refuses_leaves_every_file_and_the_servers_serving(case):
    """Two edits in one config_edits step (as tune-timeouts plans them): the pool's lands, then
    nginx -t refuses the edge's (an invalid value): the edge file is put back at once, the pool's
    undone, and the site serves as before."""
    site = case.site
    before = case.files()
    code, doc, _ = case.run(playbook="timeouts-invalid-edit")
    assert code == 1 and doc["status"] == "failed", doc
    assert "the validator refused the edit (original restored)" in doc["error"], doc["error"]
    assert '"proxy_read_timeout" directive invalid value' in doc["error"], doc["error"]
    assert [c["state"] for c in doc["changes"]] == ["undone", "not_applied"], doc["changes"]
    assert case.files() == before
    assert site.get("origin", "/") == 200
    code_5s, took = timed(site, "/sleep.php?s=5")
    assert code_5s == 502 and took < 4, (code_5s, took)   # the old 2 s terminate, reloaded back


def test_a_config_already_invalid_is_refused_before_anything_changes(case):
    site = case.site
    text = site.edge_conf.read_text().replace("keepalive_timeout 15s;", "keepalive_timeout 15s;\n    proxy_buffers x;")
    site.edge_conf.write_text(text)   # on disk only: the running edge keeps its good config
    before = case.files()
    code, doc, _ = case.run("--script-time", "3s")
    assert code == 1 and doc["status"] == "failed", doc
    assert f"the nginx config {site.edge_conf} is already invalid before opskit touches it" in doc["error"], doc["error"]
    assert [c["state"] for c in doc["changes"] if c["state"] != "blocked"] == [], doc["changes"]
    assert case.files() == before
    assert site.get("origin", "/") == 200


def test_the_window_expiring_with_the_controller_killed_restores_and_reloads(case):
    site = case.site
    before = case.files()
    proc = subprocess.Popen(cli_command("-i", str(case.inventory), "run", "tune-timeouts", "--host", "h1", "--json",
                                        "--yes", "--script-time", "3s", "--confirm-within", "4s"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        run_id = wait_until(lambda: hold_started("h1", 4), 60, what="the hold armed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert case.files() != before   # the new chain is in place, the controller gone
    held_fpm, held_edge = set(site.workers()), nginx_workers(site)
    events = [json.loads(line) for line in
              (Path(os.environ["OPSKIT_STATE_DIR"]) / "runs" / run_id / "h1.jsonl").read_text().splitlines()]
    deadline = [e for e in events if e.get("event") == "armed"][-1]["host_deadline"]

    def restored_and_reloaded():
        return (case.files() == before and not set(site.workers()) & held_fpm and len(site.workers()) == 2
                and not nginx_workers(site) & held_edge and nginx_workers(site))

    wait_until(restored_and_reloaded, 30, interval=0.05, what="the guard's rollback and reloads")
    took = time.time() - deadline
    assert state(case, run_id) == "rolled_back"
    case.note(f"== controller SIGKILLed during the window: deadline → files restored and php-fpm + edge nginx "
              f"reloaded in {took:.2f}s")
    assert took < 10, took
    code_5s, took_5s = timed(site, "/sleep.php?s=5")
    assert code_5s == 502 and took_5s < 4, (code_5s, took_5s)   # the old chain is what runs again


def test_a_file_edited_by_someone_else_during_the_window_is_not_clobbered(case):
    site = case.site
    before = case.files()
    code, doc, run_id = case.run("--script-time", "3s", "--confirm-within", "4s", "--detach")
    assert code == 0 and doc["status"] == "held", doc
    theirs = site.pool_conf.read_bytes() + b"; a colleague's line\n"
    site.pool_conf.write_bytes(theirs)
    wait_until(lambda: state(case, run_id) not in ("armed", "held", "undoing", "missing"), 30, what="the guard's undo")
    assert state(case, run_id) == "conflict", state(case, run_id)
    assert site.pool_conf.read_bytes() == theirs                       # not clobbered
    for path in (site.ini, site.edge_conf):                            # the others restored
        assert path.read_bytes() == before[path], path
    asked = run_cli("-i", str(case.inventory), "rollback", run_id, "--json")   # what the admin sees afterwards
    assert "conflict" in asked.stdout and "changed since opskit wrote it" in asked.stdout, asked.stdout[-3000:]


def test_without_root_only_the_user_ini_is_written_and_the_rest_is_asked_for(case):
    site = case.site
    before = case.files()
    code, doc, run_id = case.run("--script-time", "3s", "--confirm-within", "5m", "--detach", inventory=case.shared)
    assert code == 0 and doc["status"] == "held", (doc["status"], doc["error"])
    user_ini = site.docroot / ".user.ini"
    assert user_ini.read_text() == "max_execution_time = 3\n"
    assert user_ini.stat().st_uid == pwd.getpwnam(case.host.user).pw_uid   # the user's own file
    assert case.files() == before
    states = [(c["state"], c["summary"].split(":")[0]) for c in doc["changes"]]
    assert states.count(("applied", "php-ini")) == 1 and len([s for s in states if s[0] == "noop"]) == 2, states
    support = finding(doc, "timeout-needs-host")
    assert support["severity"] == "warning"
    n = line_of(site.pool_conf, "request_terminate_timeout")
    assert f"{site.pool_conf}:{n}: set `request_terminate_timeout = 8s` " in "\n".join(support["evidence"]), support
    n = line_of(site.edge_conf, "proxy_read_timeout")
    assert f"{site.edge_conf}:{n}: set `proxy_read_timeout 95s;` " in "\n".join(support["evidence"]), support
    case.note("== shared hosting (no sudo)\n" + support["summary"] + "\n" + "\n".join("    " + e for e in support["evidence"]))
    rolled = run_cli("rollback", run_id)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert not user_ini.exists()


# -- Apache (mod_proxy_fcgi) in front of php-fpm ------------------------------------------------

def test_apache_proxy_timeout_is_set_in_the_sites_virtual_host_and_undone(case):
    """Apache alone serves the site (lab/apache.py), ProxyTimeout 2 in its server config in front
    of a pool that waits 300 s: a 3 s request is Apache's 504. tune-timeouts adds ProxyTimeout 13
    in the site's <VirtualHost> (apache2 -t, a graceful USR1), the request succeeds; the rollback
    restores the file and reloads Apache again: a 504 again."""
    if not apache.available():
        pytest.fail(f"Apache is not installed ({apache.APACHE}, mod_proxy_fcgi in {apache.APACHE_MODULES})")
    site = case.site
    site.configure(pool={"request_terminate_timeout": "300", **apache.CAN_CONNECT})
    front = apache.ApacheFront(site)
    try:
        front.start(proxy_timeout="2")
        original = front.conf.read_bytes()
        assert front.get("/sleep.php?s=3") == 504
        inventory = case.inventory_with("apache", become="sudo", origin=front.url, cdn={"provider": "cloudflare",
                                                                                        "timeout": 100})
        code, doc, run_id = case.run("--script-time", "3s", "--confirm-within", "5m", "--detach", inventory=inventory)
        assert code == 0 and doc["status"] == "held", (doc["status"], doc["error"])
        plan = finding(doc, "timeout-plan")
        assert plan["evidence"][:2] == [
            "before: PHP max_execution_time 30s → php-fpm request_terminate_timeout 300s → Apache ProxyTimeout 2s "
            "→ cloudflare timeout 100s",
            "after:  PHP max_execution_time 3s → php-fpm request_terminate_timeout 8s → Apache ProxyTimeout 13s "
            "→ cloudflare timeout 100s"], plan
        case.note("== Apache\n" + "\n".join("    " + e for e in plan["evidence"]))
        new = front.conf.read_text().split("\n")
        vhost = front.line_of("<VirtualHost")
        assert new[vhost] == "    ProxyTimeout 13", new[vhost - 1:vhost + 2]
        assert "\n".join(new[:vhost] + new[vhost + 1:]).encode() == original   # one line added, nothing else
        assert step_value(doc, "chain")["consistent"] is True
        code_3s = front.get("/sleep.php?s=3")
        assert code_3s == 200, code_3s
        rolled = run_cli("-i", str(inventory), "rollback", run_id)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert front.conf.read_bytes() == original
        assert wait_until(lambda: front.get("/sleep.php?s=3") == 504, 15, interval=0.5, what="Apache's 2 s again")
        case.note(f"== Apache: GET /sleep.php?s=3 → 504 (ProxyTimeout 2s) before, {code_3s} held, 504 after the rollback")
    finally:
        front.stop()
