"""config_edit on a real sshd host with a real nginx run by the host's user (lab/user_nginx.py):
the edit is validated before it is kept, the server is reloaded after the change and again
after the undo — by the guard alone when the controller is gone — and the file ends byte for
byte as it started. The fault matrix kills the controller and cuts its connection at every
boundary from the first change on."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from lab.sudo import sudo_for
from lab.user_nginx import RootNginx, UserNginx
from lab.wordpress import free_port
from tests.conftest import TEST_PLAYBOOKS, wait_until
from tests.integration.faultmatrix import Matrix, Target

pytestmark = pytest.mark.integration


@pytest.fixture
def nginx(hosts):
    host = hosts.hosts[0]
    server = UserNginx(host, free_port(host.address)).start()
    yield server
    server.stop()


def _inventory(hosts, tmp_path, server: UserNginx, value: str = "200 v2", **fields):
    return hosts.inventory(tmp_path / "inv.yaml", hosts={"h1": {**fields, "vars": {
        "nginx_conf": str(server.conf), "nginx_prefix": str(server.prefix), "nginx_value": value,
        "nginx_url": f"http://{server.host.address}:{server.port}/"}}})


@pytest.fixture
def root_nginx(hosts):
    """Debian's shape: master as root, a root-owned tree the SSH user may only read."""
    host = hosts.hosts[0]
    base = Path(tempfile.mkdtemp(prefix="opskit-rootnginx-"))
    base.chmod(0o755)
    server = RootNginx(host, free_port(host.address), prefix=base / "nginx").start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _run(opskit, inv, *more):
    return opskit("-i", str(inv), "run", "nginx-edit", "--playbook-path", str(TEST_PLAYBOOKS), "--host", "h1",
                  "--json", "--yes", *more)


def _state(host, run_id: str) -> str:
    file = host.home / ".opskit" / "tx" / run_id / "state"
    return file.read_text().strip() if file.exists() else "missing"


def test_a_guard_alone_restores_the_file_and_reloads_the_server(hosts, nginx, tmp_path, opskit):
    original = nginx.conf.read_bytes()
    stat_before = nginx.conf.stat()
    inv = _inventory(hosts, tmp_path, nginx)
    held = _run(opskit, inv, "--hold", "3s", "--detach")
    doc = held.json["hosts"]["h1"]
    assert held.returncode == 0 and doc["status"] == "held", (doc, held.stderr)
    assert nginx.fetch() == "v2" and nginx.reloads() == 1
    assert doc["changes"][0]["diff"].count("+            return 200 v2;") == 1
    run_id = held.json["run_id"]
    # the controller is gone: the guard undoes at the deadline, then reloads
    wait_until(lambda: _state(hosts.hosts[0], run_id) == "rolled_back", 15, what="the guard's rollback")
    assert nginx.conf.read_bytes() == original
    after = nginx.conf.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (stat_before.st_uid, stat_before.st_gid, stat_before.st_mode)
    wait_until(lambda: nginx.fetch() == "v1", 5, what="nginx serving the restored file")
    assert nginx.reloads() == 2
    assert nginx.process.poll() is None   # reloaded, never restarted
    assert not list(nginx.prefix.glob(".nginx.conf.opskit-*")), "a temp file was left"


def test_a_refused_edit_leaves_every_byte_and_reloads_nothing(hosts, nginx, tmp_path, opskit):
    original = nginx.conf.read_bytes()
    inv = _inventory(hosts, tmp_path, nginx, value="abc")   # nginx: invalid return code "abc"
    result = _run(opskit, inv, "--hold", "1m")
    doc = result.json["hosts"]["h1"]
    assert result.returncode == 1 and doc["status"] == "failed", doc
    assert "validator refused the edit" in doc["error"] and "invalid return code" in doc["error"], doc["error"]
    assert nginx.conf.read_bytes() == original
    assert nginx.reloads() == 0 and nginx.fetch() == "v1"
    assert not (hosts.hosts[0].home / ".opskit" / "lock").exists()


def test_confirm_keeps_the_edit_and_check_shows_the_diff_touching_nothing(hosts, nginx, tmp_path, opskit):
    original = nginx.conf.read_bytes()
    inv = _inventory(hosts, tmp_path, nginx)
    checked = _run(opskit, inv, "--check")
    change = checked.json["hosts"]["h1"]["changes"][0]
    assert change["state"] == "planned" and "+            return 200 v2;" in change["diff"], change
    assert nginx.conf.read_bytes() == original and nginx.reloads() == 0
    assert not (hosts.hosts[0].home / ".opskit").exists()
    held = _run(opskit, inv, "--hold", "5m", "--detach")
    run_id = held.json["run_id"]
    confirmed = opskit("confirm", run_id)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert nginx.fetch() == "v2" and b"return 200 v2;" in nginx.conf.read_bytes()
    assert nginx.reloads() == 1


def test_a_root_owned_config_needs_become_and_says_so(hosts, root_nginx, tmp_path, opskit):
    original = root_nginx.conf.read_bytes()
    result = _run(opskit, _inventory(hosts, tmp_path, root_nginx), "--hold", "1m")
    doc = result.json["hosts"]["h1"]
    assert result.returncode == 1 and doc["status"] == "failed", doc
    assert "needs root" in doc["error"] and "become: sudo" in doc["error"], doc["error"]
    # asked for sudo without being allowed it: refused by sudo -n, no password prompt, nothing changed
    refused = _run(opskit, _inventory(hosts, tmp_path, root_nginx, become="sudo"), "--hold", "1m")
    assert refused.json["hosts"]["h1"]["status"] == "failed"
    assert "sudo -n` refused" in refused.json["hosts"]["h1"]["error"], refused.json["hosts"]["h1"]["error"]
    assert root_nginx.conf.read_bytes() == original and root_nginx.reloads() == 0


def test_become_sudo_edits_reloads_and_the_guard_alone_undoes_as_root(hosts, root_nginx, tmp_path, opskit):
    original = root_nginx.conf.read_bytes()
    before = root_nginx.conf.stat()
    inv = _inventory(hosts, tmp_path, root_nginx, become="sudo")
    with sudo_for(hosts.hosts[0].user):
        held = _run(opskit, inv, "--hold", "3s", "--detach")
        doc = held.json["hosts"]["h1"]
        assert held.returncode == 0 and doc["status"] == "held", (doc, held.stderr)
        assert root_nginx.fetch() == "v2" and root_nginx.reloads() == 1
        changed = root_nginx.conf.stat()
        assert (changed.st_uid, changed.st_gid, changed.st_mode) == (0, 0, before.st_mode)
        wait_until(lambda: _state(hosts.hosts[0], held.json["run_id"]) == "rolled_back", 15, what="the guard's rollback")
        assert root_nginx.conf.read_bytes() == original
        after = root_nginx.conf.stat()
        assert (after.st_uid, after.st_gid, after.st_mode) == (0, 0, before.st_mode)
        wait_until(lambda: root_nginx.fetch() == "v1", 5, what="nginx serving the restored file")
        assert root_nginx.reloads() == 2 and root_nginx.process.poll() is None
        assert not list(root_nginx.prefix.glob(".nginx.conf.opskit-*")), "a temp file was left"


def _fault_target(host, server: UserNginx, inventory) -> Target:
    original = server.conf.read_bytes()

    def prepare():
        if server.fetch() != "v1" or server.conf.read_bytes() != original:
            server.conf.write_bytes(original)
            os.kill(server.process.pid, 1)   # the test's own reload, to start from v1
            wait_until(lambda: server.fetch() == "v1", 5, what="v1")

    def extra_check() -> str:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if server.fetch() == "v1":
                return ""
            time.sleep(0.1)
        return f"nginx still answers {server.fetch()!r} after the rollback"

    return Target(host.name, host.user, host.home, inventory, lambda: [server.conf], prepare, extra_check)


@pytest.mark.parametrize("playbook", ["nginx-edit", "nginx-edits"])
def test_fault_matrix_config_edit(hosts, tmp_path, playbook):
    """Kill the controller, or partition it, at every boundary from the first change on: the
    guard restores nginx.conf byte for byte and reloads nginx, which serves v1 again. Once
    with config_edit, once with config_edits (two edits of one file from a list, as
    tune-timeouts applies its plan: two write-aheads, two applies, one reload)."""
    servers = [UserNginx(host, free_port(host.address)).start() for host in hosts.hosts]
    try:
        inventory = hosts.inventory(tmp_path / "inv.yaml", hosts={server.host.name: {"vars": {
            "nginx_conf": str(server.conf), "nginx_prefix": str(server.prefix), "nginx_value": "200 v2",
            "nginx_url": f"http://{server.host.address}:{server.port}/"}} for server in servers})
        targets = [_fault_target(server.host, server, inventory) for server in servers]
        matrix = Matrix(playbook, TEST_PLAYBOOKS, tmp_path)
        # reconnecting after a cut is covered by the file matrices; the read-only steps before
        # the first change too
        cases = matrix.run_all(targets, from_boundary="write-ahead:", faults=("kill", "partition"))
        assert len(cases) >= 8 and "hold" in matrix.boundaries, matrix.boundaries
        if playbook == "nginx-edits":
            assert {"applied:0", "applied:1"} <= set(matrix.boundaries), matrix.boundaries
        assert all(c.ok for c in cases), matrix.failures()
    finally:
        for server in servers:
            server.stop()
