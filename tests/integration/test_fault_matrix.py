"""Kill the controller and cut its connection at every boundary of every changing playbook
(tests/integration/faultmatrix.py): the host must end exactly as it started."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab.demo import wordpress_host
from tests.conftest import TEST_PLAYBOOKS
from tests.integration.faultmatrix import Matrix, Target
from tests.integration.test_disable_cdn import Site

pytestmark = pytest.mark.integration

GROUP = "opskit-tg"   # a supplementary group of the host users: edits must keep it


@pytest.fixture(scope="module")
def slow_url():
    """A check that takes a while (the window between two changes), on loopback."""
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(0.8)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow"
    server.shutdown()


def file_targets(lab, tmp_path, slow_url: str) -> list[Target]:
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    targets = []
    for host in lab.hosts:
        subprocess.run(["usermod", "-aG", GROUP, host.user], check=True)

        def prepare(host=host):
            if (host.home / ".opskit" / "lock").exists():   # a failed case before: start clean
                host.kill_user_processes()
                subprocess.run(["crontab", "-r", "-u", host.user], capture_output=True)
                shutil.rmtree(host.home / ".opskit")
            for name in ("wp", "conf.txt", "new.txt"):
                path = host.home / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            for leftover in host.home.glob(".*opskit-*"):
                leftover.unlink()
            plugin = host.home / "wp" / "plugins" / "cdn-enabler"
            plugin.mkdir(parents=True)
            (plugin / "cdn-enabler.php").write_text("<?php // plugin\n")
            conf = host.home / "conf.txt"
            conf.write_text("original\n")
            subprocess.run(["chown", "-R", f"{host.user}:", str(host.home / "wp")], check=True)
            subprocess.run(["chown", f"{host.user}:{GROUP}", str(conf)], check=True)
            conf.chmod(0o640)

        targets.append(Target(host.name, host.user, host.home, Path(), lambda host=host: [host.home], prepare))
    inventory = lab.inventory(tmp_path / "inventory.yaml", hosts={t.name: {"vars": {
        "src": "~/wp/plugins/cdn-enabler", "dst": "~/wp/plugins/.cdn-enabler.opskit", "file": "~/conf.txt",
        "new_file": "~/new.txt", "expect": "absent", "slow_url": slow_url}} for t in targets})
    for target in targets:
        target.inventory = inventory
    return targets


@pytest.mark.parametrize("playbook", ["rename-hold", "three-changes"])
def test_fault_matrix_file_changes(hosts, tmp_path, slow_url, playbook):
    matrix = Matrix(playbook, TEST_PLAYBOOKS, tmp_path)
    cases = matrix.run_all(file_targets(hosts, tmp_path, slow_url))
    assert len(matrix.boundaries) >= 10, matrix.boundaries
    assert any(b.startswith("write-ahead:") for b in matrix.boundaries) and "hold" in matrix.boundaries
    assert all(c.ok for c in cases), f"{len([c for c in cases if not c.ok])} of {len(cases)} cases:\n{matrix.failures()}"


@pytest.fixture(scope="module")
def wp_fault_sites():
    """Two WordPress hosts, so the cases (each mostly waits for a guard's deadline) run two at a time."""
    with wordpress_host(prefix="opskit-f", subnet="127.0.15.") as (lab, site, inventory), \
            wordpress_host(prefix="opskit-g", subnet="127.0.17.") as (lab2, site2, inventory2):
        yield [Site(lab, site, inventory), Site(lab2, site2, inventory2)]


def _wp_target(wp: Site) -> Target:
    def during():
        if wp.hidden():
            wp.site.open_plugins_admin_page()

    def extra_check() -> str:
        return "" if wp.active() else "CDN Enabler is not active any more"

    return Target("site1", wp.host.user, wp.host.home, wp.inventory,
                  lambda: [wp.plugins, wp.site.wp_config_path], wp.reset, extra_check, during)


def test_fault_matrix_disable_cdn(wp_fault_sites, tmp_path):
    """disable-cdn on real WordPress, faulted from its first change on (the read-only steps
    before it are covered by the matrices above), with an admin opening wp-admin while the
    controller is gone, so WordPress drops the renamed plugin: the undo must re-activate it.
    Reconnecting after a cut is covered above: kill, partition and kill+0.3 here."""
    matrix = Matrix("disable-cdn", TEST_PLAYBOOKS, tmp_path)
    cases = matrix.run_all([_wp_target(wp) for wp in wp_fault_sites], from_boundary="write-ahead:",
                           faults=("kill", "partition"))
    assert len(cases) >= 20 and not any(c.fault == "cut" for c in cases)
    assert any(c.fault == "kill+0.3" for c in cases)
    assert all(c.ok for c in cases), matrix.failures()
