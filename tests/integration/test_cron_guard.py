"""The crontab line alone rolls a transaction back, run by a real cron daemon.

The guard is scheduled twice (DESIGN.md, rollback contract 3 and 8): a detached
`guard.sh wait` process and a `* * * * *` line in the user's crontab. Hosts kill
background processes; this test does that to the detached guard and then opens no
opskit connection at all, so only Debian's cron (lab/cron.py, started by the
`cron_daemon` fixture) running the crontab line can finish the rollback.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from lab.cron import CRON_SPOOL, CronDaemon, CronError, crontab_of, running_cron_daemons
from tests.conftest import wait_until
from tests.integration.test_core import assert_changed, assert_original, guard_story, rename_inventory, start_run

pytestmark = pytest.mark.integration

HOLD = 8   # seconds: time enough to kill the detached guard before it wakes


def guard_waits(user: str) -> str:
    return subprocess.run(["pgrep", "-a", "-u", user, "-f", "guard.sh wait"], capture_output=True, text=True).stdout.strip()


def connections(host) -> int:
    """SSH logins the host's sshd has accepted so far."""
    return host.log.read_text(errors="replace").count("Accepted publickey") if host.log.exists() else 0


def test_crontab_line_alone_finishes_the_rollback(hosts, cron_daemon, tmp_path):
    h1 = hosts.host("h1")
    inv = rename_inventory(hosts, tmp_path)
    # Vixie cron notices a changed crontab by the spool directory's mtime in whole seconds
    # and loads at second 0 of each minute: a crontab written in that same second can go
    # unseen. Arm well inside a minute, so the guard's line lands clear of a load and the
    # deadline (HOLD later) comes before the next one.
    wait_until(lambda: 3 <= time.time() % 60 <= 42, 25, interval=0.05, what="a second of the minute clear of cron's load")
    proc = start_run(inv, "--host", "h1", "--hold", f"{HOLD}s", "--detach", "--json")
    # --detach returns right after arming the hold window: from then on nothing re-arms
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    run_id = doc["run_id"]
    assert doc["hosts"]["h1"]["status"] == "held", doc["hosts"]["h1"]
    assert doc["hosts"]["h1"]["guard"] == "detached+crontab", "arm saw the cron daemon"
    # the host's process killer takes the detached guard (and nothing else)
    assert guard_waits(h1.user), f"no detached guard runs on h1\n{guard_story(h1)}"
    subprocess.run(["pkill", "-KILL", "-u", h1.user, "-f", "guard.sh wait"], check=True)
    wait_until(lambda: not guard_waits(h1.user), 5, what="the detached guard to die")

    tx = h1.home / ".opskit" / "tx" / run_id
    assert (tx / "mechanism").read_text().strip() == "detached+crontab"
    assert (tx / "state").read_text().strip() == "armed"
    line = f"opskit-guard {run_id}"
    assert line in crontab_of(h1.user)
    spool = (CRON_SPOOL / h1.user).stat()
    assert 2 < spool.st_mtime % 60 < 58, (
        f"the guard's crontab line was written at second {spool.st_mtime % 60:.1f} of the minute, "
        "where cron may load the spool in the same second and miss it: the arm took too long")
    assert time.time() < int((tx / "deadline").read_text()), "the guard was killed before its deadline"
    assert_changed(h1)
    seen = connections(h1)
    assert seen > 0, "sshd logs the logins it accepts"

    # One wait for cron's next minute: the first tick at or after the deadline runs the line.
    deadline = int((tx / "deadline").read_text())
    tick = -(-deadline // 60) * 60
    try:
        wait_until(lambda: (tx / "state").read_text().strip() not in ("armed", "open"), tick - time.time() + 15,
                   interval=0.2, what=f"cron to run the guard's line at {time.strftime('%H:%M:%S', time.localtime(tick))}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cron_daemon.describe()}\n{guard_story(h1)}") from None
    rolled_back_at = (tx / "state").stat().st_mtime

    assert (tx / "state").read_text().strip() == "rolled_back", guard_story(h1)
    assert_original(h1)
    assert line not in crontab_of(h1.user), "the guard removed its crontab line"
    assert not (h1.home / ".opskit" / "lock").exists(), "the lock is released"
    # it was cron, at its minute, running that line: not the detached guard, nor a connection
    assert tick <= rolled_back_at < tick + 10, (
        f"rolled back at {rolled_back_at}, cron's tick was {tick}\n{guard_story(h1)}\n{cron_daemon.describe()}")
    ran = [command for user, command in cron_daemon.jobs() if line in command]
    assert len(ran) == 1 and f'/{run_id}/guard.sh" cron ' in ran[0], cron_daemon.describe()
    assert (h1.user, ran[0]) in cron_daemon.jobs()
    # and only the lab's users' crontabs: other suites' guard lines share the spool
    assert {user for user, _ in cron_daemon.jobs()} <= {h.user for h in hosts.hosts}, cron_daemon.describe()
    log = (tx / "guard.log").read_text()
    assert "OPSKIT-STATE rolled_back" in log and "guard woke" not in log, log
    assert connections(h1) == seen, "no opskit connection was opened while cron did the rollback"
    assert not guard_waits(h1.user)


# -- the lab's cron daemon itself (lab/cron.py): seconds, no minute to wait -------------------

def test_cron_runs_only_the_lab_users_crontabs(hosts, cron_daemon):
    users = {h.user for h in hosts.hosts}
    view = Path(f"/proc/{cron_daemon.pid}/root/etc")
    assert {line.split(":")[0] for line in (view / "passwd").read_text().splitlines()} == users
    # useradd renames a new /etc/passwd over the old one (the lab of another suite does it any
    # time): the daemon's view must not fall back to the machine's, where root's crontab lives
    extra = f"{hosts.hosts[0].user}x"
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", extra], check=True, capture_output=True)
    try:
        assert extra in Path("/etc/passwd").read_text()
        assert {line.split(":")[0] for line in (view / "passwd").read_text().splitlines()} == users
    finally:
        subprocess.run(["userdel", extra], capture_output=True)
    assert (view / "crontab").read_text().count("@reboot") == 1, "the machine's system jobs do not run"
    assert list((view / "cron.d").iterdir()) == []


def test_a_second_cron_daemon_is_refused_not_killed(hosts, cron_daemon):
    with pytest.raises(CronError, match=rf"another cron daemon is already running \(pid {cron_daemon.pid}: "):
        CronDaemon([h.user for h in hosts.hosts]).start()
    assert cron_daemon.running()
    assert [pid for pid, _ in running_cron_daemons()] == [cron_daemon.pid]


def test_a_pam_refusal_is_reported_at_once_with_the_log(hosts):
    started = time.monotonic()
    with pytest.raises(CronError, match="Authentication failure") as caught:
        CronDaemon([h.user for h in hosts.hosts], pam_cron="account required pam_deny.so\n").start()
    assert time.monotonic() - started < 10, "not after a minute's wait"
    assert "--- cron log ---" in str(caught.value) and "(CRON) INFO (Running @reboot jobs)" in str(caught.value)
    assert running_cron_daemons() == [], "the refused daemon is stopped"
