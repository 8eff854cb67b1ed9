"""Defects of the rollback-at-every-instant issue that need a real sshd host (the guard-side
ones are in tests/unit/test_rollback_instant.py, the boundaries in test_fault_matrix.py)."""

from __future__ import annotations

import grp
import json
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import run_cli, wait_until, write_file
from tests.integration.test_core import (assert_original, rename_inventory, run_args, start_run,
                                         wait_held)

pytestmark = pytest.mark.integration


def test_opskit_folder_removed_during_the_hold_is_rebuilt_and_rolled_back(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    h1 = hosts.host("h1")
    proc = start_run(inv, "--host", "h1", "--hold", "3s", "--json")
    wait_held(h1, 3)
    h1.kill_user_processes()                       # the guard goes with it, as a cleanup would take it
    shutil.rmtree(h1.home / ".opskit")             # a cleanup script purges dot-dirs
    out, err = proc.communicate(timeout=60)
    entry = json.loads(out)["hosts"]["h1"]
    assert entry["status"] == "rolled_back", (entry, err)
    assert any(f["cause"] == "host-records-lost" and f["severity"] == "error" for f in entry["findings"]), entry["findings"]
    assert_original(h1)
    assert not (h1.home / ".opskit" / "lock").exists()


def test_opskit_rollback_rebuilds_records_the_host_lost(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    h2 = hosts.host("h2")
    held = opskit(*run_args(inv, "--host", "h2", "--hold", "5m", "--detach", "--json"))
    run_id = held.json["run_id"]
    copies = tmp_path / "state" / "runs" / run_id / "h2.files"
    assert [p.name for p in copies.iterdir()] == ["1.orig"] and (copies / "1.orig").read_text() == "original\n"
    assert copies.stat().st_mode & 0o077 == 0 and (copies / "1.orig").stat().st_mode & 0o077 == 0
    h2.kill_user_processes()
    shutil.rmtree(h2.home / ".opskit")
    result = opskit("rollback", run_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "h2: rolled_back" in result.stdout and "re-created them from the local journal" in result.stdout
    assert "cannot open" not in result.stdout + result.stderr
    assert_original(h2)
    assert not copies.exists(), "the private copy of the edited file outlived the transaction"


def test_an_edit_that_cannot_keep_the_files_group_is_refused(hosts, tmp_path, opskit):
    """The user is not in www-data: writing the file anew would drop the group the web server
    reads it through, so the change is refused and nothing is changed."""
    inv = rename_inventory(hosts, tmp_path)
    h3 = hosts.host("h3")
    conf = h3.home / "conf.txt"
    subprocess.run(["chown", f"{h3.user}:www-data", str(conf)], check=True)
    conf.chmod(0o640)
    result = opskit(*run_args(inv, "--host", "h3", "--hold", "1s", "--json"))
    entry = result.json["hosts"]["h3"]
    assert result.returncode == 1 and entry["status"] == "failed"
    assert "owner:group" in entry["error"] and "not writing" in entry["error"], entry["error"]
    assert_original(h3)
    assert conf.stat().st_gid == grp.getgrnam("www-data").gr_gid
    assert conf.stat().st_mode & 0o777 == 0o640


def test_a_login_banner_without_a_newline_does_not_break_runs(hosts, tmp_path, opskit):
    h4 = hosts.host("h4")
    subprocess.run(["usermod", "-s", "/bin/bash", h4.user], check=True)
    try:
        write_file(h4, ".bashrc", 'printf "Last login: never"\n')
        inv = rename_inventory(hosts, tmp_path)
        facts = opskit("-i", str(inv), "run", "facts", "--host", "h4", "--json")
        assert facts.returncode == 0, facts.stdout + facts.stderr
        assert facts.json["hosts"]["h4"]["steps"][0]["value"]["system"]["user"] == h4.user
        # SFTP itself breaks on such a host (as OpenSSH's sftp does): said plainly, nothing changed
        result = opskit(*run_args(inv, "--host", "h4", "--hold", "1s", "--json"))
        entry = result.json["hosts"]["h4"]
        assert entry["status"] == "failed" and ".bashrc" in entry["error"], entry["error"]
        assert "could not write the undo records" not in entry["error"]
        assert_original(h4)
        assert not (h4.home / ".opskit" / "lock").exists()
    finally:
        subprocess.run(["usermod", "-s", "/bin/sh", h4.user], check=True)


def test_a_bashrc_that_exits_is_named_not_called_a_lock(hosts, tmp_path, opskit):
    h4 = hosts.host("h4")
    subprocess.run(["usermod", "-s", "/bin/bash", h4.user], check=True)
    try:
        write_file(h4, ".bashrc", "exit 0\n")
        inv = rename_inventory(hosts, tmp_path)
        result = opskit(*run_args(inv, "--host", "h4", "--json"))
        error = result.json["hosts"]["h4"]["error"]
        assert "did not run opskit's commands" in error and "locked" not in error, error
    finally:
        subprocess.run(["usermod", "-s", "/bin/sh", h4.user], check=True)


def test_an_unwritable_opskit_folder_is_named_not_called_a_lock(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    h1 = hosts.host("h1")
    (h1.home / ".opskit").mkdir()
    subprocess.run(["chown", "root:", str(h1.home / ".opskit")], check=True)
    try:
        result = opskit(*run_args(inv, "--host", "h1", "--json"))
        error = result.json["hosts"]["h1"]["error"]
        assert "cannot create or write" in error and "locked by run" not in error, error
        assert_original(h1)
    finally:
        shutil.rmtree(h1.home / ".opskit")


def test_sighup_rolls_back_like_sigterm(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    h2 = hosts.host("h2")
    proc = start_run(inv, "--host", "h2", "--hold", "10m", "--json")
    wait_held(h2, 600)
    proc.send_signal(signal.SIGHUP)   # the admin's terminal window closed
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert json.loads(out)["hosts"]["h2"]["status"] == "rolled_back"
    assert_original(h2)


def test_a_rollback_asked_from_another_terminal_exits_0(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    h3 = hosts.host("h3")
    proc = start_run(inv, "--host", "h3", "--hold", "10m", "--json")
    run_id = wait_held(h3, 600)
    assert opskit("rollback", run_id).returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["hosts"]["h3"]["status"] == "rolled_back"
    assert_original(h3)


def test_confirm_of_an_unknown_run_says_so_and_adopts_nothing(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    result = opskit("confirm", "20200101-000000-dead", "-i", str(inv), "--host", "h1")
    assert "cannot open" not in result.stdout + result.stderr
    assert "no record of this run" in result.stdout + result.stderr
    assert opskit("runs", "--all", "--json").stdout.strip() == "[]", "the unknown run was kept in the journal"


def test_runs_stops_listing_a_run_another_connection_finished(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    h1 = hosts.host("h1")
    proc = start_run(inv, "--host", "h1", "--hold", "2s")
    run_id = wait_held(h1, 2)
    proc.kill()
    proc.wait()
    h1.kill_user_processes()   # the host's process killer takes the guard too
    time.sleep(2.5)
    assert [r["state"] for r in json.loads(opskit("runs", "--json").stdout) if r["run_id"] == run_id] == ["expired"]
    assert opskit("-i", str(inv), "run", "facts", "--host", "h1", "--json").returncode == 0   # recovers it
    assert_original(h1)
    assert not [r for r in json.loads(opskit("runs", "--json").stdout) if r["run_id"] == run_id]


def test_a_controller_killed_before_its_first_change_does_not_hide_its_lock(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    h2 = hosts.host("h2")
    result = run_cli(*run_args(inv, "--host", "h2", "--hold", "2s", "--json"),
                     env={"OPSKIT_FAULT": "kill@connected", "OPSKIT_STEPS_MARGIN": "3"})
    assert result.returncode == -9
    rows = json.loads(opskit("runs", "--json").stdout)
    assert [r["state"] for r in rows] == ["stale"], rows
    assert (h2.home / ".opskit" / "lock").exists()
    # its guard gives the lock back at the deadline
    wait_until(lambda: not (h2.home / ".opskit" / "lock").exists(), 15, what="the lock to be released")
    assert_original(h2)


def test_check_and_json_mask_secrets_in_diffs(hosts, tmp_path, opskit):
    h3 = hosts.host("h3")
    write_file(h3, "conf.txt", "define( 'DB_PASSWORD', 'hunter2-old' );\n")
    playbook = tmp_path / "books" / "secret-edit.yaml"
    playbook.parent.mkdir()
    playbook.write_text("name: secret-edit\ndescription: edit a file with a password\nchanges: temporary\nhold: 1s\n"
                        "steps:\n  - change: write_file\n"
                        "    with: {path: '~/conf.txt', content: \"define( 'DB_PASSWORD', 'hunter2-new' );\\n\"}\n")
    inv = hosts.inventory(tmp_path / "inv.yaml")
    for args in (("--check",), ()):
        result = opskit("-i", str(inv), "run", "secret-edit", "--playbook-path", str(playbook.parent),
                        "--host", "h3", "--json", *args)
        assert result.returncode == 0, result.stderr
        diff = result.json["hosts"]["h3"]["changes"][0]["diff"]
        assert "DB_PASSWORD', '***'" in diff and "hunter2" not in result.stdout + result.stderr
    for file in (tmp_path / "state").rglob("*.jsonl"):
        assert "hunter2" not in file.read_text()
