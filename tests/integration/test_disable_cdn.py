"""disable-cdn against a real WordPress (MariaDB, php-fpm, nginx from Debian) on a real sshd host.

Each scenario asserts the page content and active_plugins at the end.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.demo import wordpress_host
from lab.wordpress import CDN_HOSTNAME, PLUGIN_FILE
from tests.conftest import ROOT, cli_command, hold_started, run_cli, wait_until

pytestmark = pytest.mark.integration


class Site:
    """The WordPress host of these tests plus helpers to look at it."""

    def __init__(self, lab, site, inventory: Path):
        self.lab, self.site, self.inventory = lab, site, inventory
        self.host = lab.hosts[0]

    @property
    def plugins(self) -> Path:
        return self.site.plugins_dir

    def cdn_urls(self) -> int:
        response = self.site.fetch_home()
        assert response.status_code == 200, response.status_code
        return response.text.count(CDN_HOSTNAME)

    def active(self) -> bool:
        if self.site.multisite:
            return PLUGIN_FILE in self.site.network_active_plugins()
        return PLUGIN_FILE in self.site.active_plugins()

    def hidden(self) -> list[Path]:
        return sorted(p for p in self.plugins.iterdir() if p.name.startswith(".cdn-enabler.opskit-"))

    def assert_restored(self) -> None:
        assert (self.plugins / "cdn-enabler" / "cdn-enabler.php").is_file()
        assert self.hidden() == []
        assert self.active(), "CDN Enabler must be active again"
        assert self.cdn_urls() == 5, "the page must have its CDN URLs back"

    def assert_disabled(self) -> None:
        assert not (self.plugins / "cdn-enabler").exists()
        assert len(self.hidden()) == 1
        assert self.cdn_urls() == 0

    def reset(self) -> None:
        subprocess.run(["pkill", "-u", self.host.user, "-f", "guard.sh"], capture_output=True)
        if shutil.which("crontab"):
            subprocess.run(["crontab", "-r", "-u", self.host.user], capture_output=True)
        shutil.rmtree(self.host.home / ".opskit", ignore_errors=True)
        for hidden in self.hidden():
            if (self.plugins / "cdn-enabler").exists():
                shutil.rmtree(hidden)
            else:
                hidden.rename(self.plugins / "cdn-enabler")
        subprocess.run(["chown", f"{self.host.user}:", str(self.plugins)], check=True)
        self.plugins.chmod(0o755)
        if not self.active():
            self.site.activate_plugin()
        if self.host.process is None or self.host.process.poll() is not None:
            self.host.start()
            self.lab.write_known_hosts()

    def run(self, *args: str, timeout: float = 120):
        return run_cli("-i", str(self.inventory), "run", "disable-cdn", "--host", "site1", *args, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(cli_command("-i", str(self.inventory), "run", "disable-cdn", "--host", "site1", *args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def wait_held(self, hold: int, timeout: float = 30) -> str:
        """Until the folder is renamed and the hold window started; returns the run id."""
        run_id = wait_until(lambda: hold_started("site1", hold), timeout, what="disable-cdn to hold")
        assert self.hidden()
        return run_id

    def deadline(self, run_id: str) -> int:
        return int((self.host.home / ".opskit" / "tx" / run_id / "deadline").read_text())


@pytest.fixture(scope="module")
def wp_single():
    with wordpress_host(prefix="opskit-w", subnet="127.0.12.") as (lab, site, inventory):
        yield Site(lab, site, inventory)


@pytest.fixture
def wp(wp_single):
    wp_single.reset()
    wp_single.assert_restored()
    yield wp_single
    wp_single.reset()


def host_doc(result) -> dict:
    return result.json["hosts"]["site1"]


def step(doc: dict, step_id: str) -> dict:
    return next(s for s in doc["steps"] if s.get("id") == step_id)


def test_plain_cycle_disable_verify_restore(wp):
    started = time.time()
    proc = wp.start("--hold", "4s", "--json")
    run_id = wp.wait_held(4)
    wp.assert_disabled()
    assert wp.active(), "a rename alone leaves the plugin in active_plugins"
    deadline = wp.deadline(run_id)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)["hosts"]["site1"]
    assert doc["status"] == "rolled_back" and doc["rollback"]["reason"] == "hold_ended"
    assert step(doc, "origin_before")["value"]["observed"]["cdn_urls"] == 5
    assert step(doc, "origin_after")["value"]["observed"]["cdn_urls"] == 0
    assert step(doc, "origin_restored")["value"]["observed"]["cdn_urls"] == 5
    assert step(doc, "cdn_restored")["value"]["active"] is True
    wp.assert_restored()
    disabled_in = step(doc, "origin_after")["at"] - started
    restored_after = step(doc, "origin_restored")["at"] - deadline
    print(f"\nTIMING run → verified disabled: {disabled_in:.2f}s; deadline → verified restored: {restored_after:.2f}s")
    assert disabled_in < 15
    assert restored_after < 5


def test_admin_page_during_hold_plugin_reactivated(wp):
    proc = wp.start("--hold", "4s", "--json")
    wp.wait_held(4)
    assert wp.site.open_plugins_admin_page() == 200
    assert not wp.active(), "WordPress dropped the missing plugin (the situation under test)"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)["hosts"]["site1"]
    activation = next(c for c in doc["changes"] if c["kind"] == "wp_plugin_activation")
    assert activation["state"] == "undone" and "re-activated" in activation["detail"]
    wp.assert_restored()


def test_controller_killed_guard_restores_by_deadline(wp):
    proc = wp.start("--hold", "3s")
    run_id = wp.wait_held(3)
    proc.kill()
    proc.wait()
    wp.site.open_plugins_admin_page()   # and WordPress drops it meanwhile
    deadline = wp.deadline(run_id)
    state = wp.host.home / ".opskit" / "tx" / run_id / "state"
    wait_until(lambda: state.read_text().strip() == "rolled_back", 20, what="the guard")
    assert time.time() - deadline < 5
    wp.assert_restored()


def test_ssh_connection_cut_during_run_restored(wp):
    proc = wp.start("--hold", "3s", "--json")
    wp.wait_held(3)
    subprocess.run(["pkill", "-KILL", "-f", f"sshd: {wp.host.user}"], check=False)
    out, err = proc.communicate(timeout=60)
    doc = json.loads(out)["hosts"]["site1"]
    assert doc["status"] == "rolled_back", (doc["error"], err)
    wp.assert_restored()


def test_ctrl_c_restores_at_once(wp):
    proc = wp.start("--hold", "10m", "--json")
    wp.wait_held(600)
    wp.site.open_plugins_admin_page()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 130, err
    assert json.loads(out)["hosts"]["site1"]["status"] == "rolled_back"
    wp.assert_restored()


def test_confirm_keeps_it_off_rollback_restores_and_lock_refuses(wp):
    first = wp.run("--hold", "10m", "--detach", "--json")
    assert first.returncode == 0, first.stderr
    run_id = first.json["run_id"]
    assert host_doc(first)["status"] == "held"
    wp.assert_disabled()
    second = wp.run("--json")
    assert host_doc(second)["status"] == "failed"
    assert f"locked by run {run_id}" in host_doc(second)["error"]
    wp.assert_disabled()
    # rollback restores early (after WordPress dropped the plugin)
    wp.site.open_plugins_admin_page()
    rollback = run_cli("rollback", run_id, "--json")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    entry = rollback.json["hosts"]["site1"]
    assert "re-activated" in entry["detail"]
    # the playbook's after-rollback checks ran from this new process too
    checks = {s["id"]: s for s in entry["verified"]["steps"]}
    assert checks["origin_restored"]["status"] == "passed"
    assert checks["origin_restored"]["value"]["observed"]["cdn_urls"] == 5
    wp.assert_restored()
    # confirm keeps it off: folder stays renamed, guard disarmed, lock released
    third = wp.run("--hold", "10m", "--detach", "--json")
    run3 = third.json["run_id"]
    confirm = run_cli("confirm", run3)
    assert confirm.returncode == 0 and "site1: kept" in confirm.stdout
    wp.assert_disabled()
    assert subprocess.run(["pgrep", "-u", wp.host.user, "-f", "guard.sh"], capture_output=True).stdout == b""
    assert not (wp.host.home / ".opskit" / "lock").exists()
    # a later run names the run that disabled it, and changes nothing
    fourth = wp.run("--json")
    assert fourth.returncode == 0, fourth.stderr
    doc = host_doc(fourth)
    assert doc["status"] == "ok" and all(c["state"] == "noop" or c["kind"] != "rename" for c in doc["changes"])
    assert any(f["cause"] == "cdn-enabler-already-disabled" and run3 in f["summary"] for f in doc["findings"])
    wp.assert_disabled()
    # ...and, as that finding advises, `opskit rollback` brings a confirmed run back too
    wp.site.open_plugins_admin_page()
    back = run_cli("rollback", run3)
    assert back.returncode == 0, back.stdout + back.stderr
    wp.assert_restored()
    assert not (wp.host.home / ".opskit" / "lock").exists()


def test_check_mode_changes_nothing(wp):
    before = sorted(p.name for p in wp.plugins.iterdir())
    result = wp.run("--check", "--json")
    assert result.returncode == 0, result.stderr
    doc = host_doc(result)
    assert doc["status"] == "ok"
    assert [c["state"] for c in doc["changes"]] == ["planned", "planned"]
    assert ".cdn-enabler.opskit-" in doc["changes"][1]["summary"]
    assert [s["status"] for s in doc["steps"] if s["kind"] == "change"] == ["would_change", "would_change"]
    assert any("it verifies a change --check did not make" in n for n in doc["not_predicted"]), doc["not_predicted"]
    assert sorted(p.name for p in wp.plugins.iterdir()) == before
    assert not (wp.host.home / ".opskit").exists()
    wp.assert_restored()


def test_no_origin_fails_in_check_and_real_run_before_any_change(wp, tmp_path):
    """The verification after the rename needs the origin: without one in the inventory the run
    is bound to fail, so --check says so and a real run does not touch the host."""
    text = wp.inventory.read_text()
    without = "\n".join(line for line in text.splitlines() if not line.strip().startswith("origin:")) + "\n"
    assert without != text
    inventory = tmp_path / "no-origin.yaml"
    inventory.write_text(without)
    before = sorted(p.name for p in wp.plugins.iterdir())
    for mode in (("--check",), ()):
        result = run_cli("-i", str(inventory), "run", "disable-cdn", "--host", "site1", "--json", *mode)
        assert result.returncode == 1, (mode, result.stdout, result.stderr)
        doc = host_doc(result)
        assert doc["status"] == "failed", mode
        assert "no 'origin' in the inventory" in doc["error"], doc["error"]
        causes = [f["cause"] for f in doc["findings"]]
        assert "precondition-failed" in causes and "origin-unhealthy" not in causes, causes
        blocked = next(f for f in doc["findings"] if f["cause"] == "precondition-failed")
        assert "Origin after" in blocked["summary"] and "no 'origin' in the inventory" in blocked["advice"]
        assert [s["status"] for s in doc["steps"] if s["kind"] == "change"] == [], doc["steps"]
        assert doc["changes"] == [] and not (doc["rollback"] or {}).get("steps")
        assert sorted(p.name for p in wp.plugins.iterdir()) == before
    wp.assert_restored()


def test_plugin_inactive_or_missing_changes_nothing(wp):
    wp.site.deactivate_plugin()
    inactive = wp.run("--json")
    assert inactive.returncode == 0, inactive.stderr
    doc = host_doc(inactive)
    assert doc["status"] == "ok" and doc["changes"] == []
    assert any(f["cause"] == "cdn-enabler-inactive" for f in doc["findings"])
    assert (wp.plugins / "cdn-enabler").is_dir() and not wp.active()
    wp.site.activate_plugin()
    moved = wp.plugins.parent / "cdn-enabler-elsewhere"
    (wp.plugins / "cdn-enabler").rename(moved)
    try:
        missing = wp.run("--json")
        doc = host_doc(missing)
        assert doc["status"] == "ok" and doc["changes"] == []
        assert any(f["cause"] == "cdn-enabler-not-installed" for f in doc["findings"])
    finally:
        moved.rename(wp.plugins / "cdn-enabler")


def test_wordpress_not_found_fails_cleanly(wp, tmp_path):
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(wp.inventory.read_text().replace("root: ~/public_html", "root: ~/no-such-site"))
    result = run_cli("-i", str(inventory), "run", "disable-cdn", "--host", "site1", "--json")
    assert result.returncode == 1
    doc = host_doc(result)
    assert doc["status"] == "failed" and "WordPress not found" in doc["error"]
    assert doc["changes"] == []
    wp.assert_restored()


def test_permission_denied_fails_and_changes_nothing(wp):
    subprocess.run(["chown", "root:", str(wp.plugins)], check=True)
    wp.plugins.chmod(0o755)
    result = wp.run("--json")
    assert result.returncode == 1
    doc = host_doc(result)
    assert doc["status"] == "failed"
    assert "Permission denied" in doc["error"] or "permission denied" in doc["error"]
    assert any(f["cause"] == "plugins-dir-not-writable" for f in doc["findings"])
    subprocess.run(["chown", f"{wp.host.user}:", str(wp.plugins)], check=True)
    wp.assert_restored()


def test_folder_reappearing_during_hold_is_a_conflict(wp):
    proc = wp.start("--hold", "4s", "--json")
    wp.wait_held(4)
    reappeared = wp.plugins / "cdn-enabler"
    reappeared.mkdir()
    (reappeared / "cdn-enabler.php").write_text("<?php /* Plugin Name: someone else's */\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    doc = json.loads(out)["hosts"]["site1"]
    assert doc["status"] == "conflict"
    assert "someone else's" in (reappeared / "cdn-enabler.php").read_text(), "the new folder is untouched"
    assert len(wp.hidden()) == 1, "our renamed copy is kept"
    assert any(f["cause"] == "rollback-conflict" for f in doc["findings"])


@pytest.fixture(scope="module")
def wp_multi():
    with wordpress_host(prefix="opskit-m", subnet="127.0.13.", multisite=True) as (lab, site, inventory):
        yield Site(lab, site, inventory)


def test_multisite_network_active_plugin_restored(wp_multi):
    wp = wp_multi
    wp.reset()
    assert PLUGIN_FILE in wp.site.network_active_plugins()
    proc = wp.start("--hold", "4s", "--json")
    wp.wait_held(4)
    assert wp.cdn_urls() == 0
    wp.site.open_plugins_admin_page()
    assert PLUGIN_FILE not in wp.site.network_active_plugins()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)["hosts"]["site1"]
    activation = next(c for c in doc["changes"] if c["kind"] == "wp_plugin_activation")
    assert "network-wide" in activation["detail"]
    assert PLUGIN_FILE in wp.site.network_active_plugins()
    assert wp.site.active_plugins() == [], "restored network-wide, not per site"
    assert wp.cdn_urls() == 5
