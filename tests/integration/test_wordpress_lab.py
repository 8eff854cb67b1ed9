"""Smoke tests of lab/wordpress.py against real MariaDB, php-fpm and nginx.

They also pin down the WordPress behaviour opskit's CDN-Enabler playbook relies
on: renaming a plugin folder unloads the plugin at once but leaves it in
``active_plugins`` until someone opens wp-admin/plugins.php, which drops it for
good; renaming the folder back does not re-activate it.

Needs root (creates the unix user ``opskit-wplab``) and the Debian packages
nginx-light, php-fpm, php-cli, php-mysql, mariadb-server and wordpress.  A
missing package makes these tests fail, never skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time

import pytest

from lab.wordpress import CDN_HOSTNAME, PLUGIN_FILE, LabError, WordPressSite, make_lab_dir

pytestmark = pytest.mark.integration

USER = "opskit-wplab"
RENAMED = ".cdn-enabler.opskit-test"
SINGLE_ADDRESS = "127.0.20.1"
MULTI_ADDRESS = "127.0.20.2"
BROKEN_ADDRESS = "127.0.20.3"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive either (it is only waiting to be reaped).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _lab_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (a temp path)."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True,
                         text=True, check=True).stdout
    return [ln for ln in out.splitlines() if marker in ln and " Z" not in ln]


@pytest.fixture(scope="module")
def lab_root():
    if os.geteuid() != 0:
        pytest.fail("the WordPress lab needs root (it creates a user and starts servers)")
    root = make_lab_dir("opskit-wplab-")  # 0755: php-fpm workers (running as USER) traverse it
    home = root / "home"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/sh", USER], check=True)
    else:
        subprocess.run(["usermod", "-d", str(home), USER], check=True)
    pw = pwd.getpwnam(USER)
    for d in (home, root / "home-multisite"):
        d.mkdir(exist_ok=True)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    yield root
    subprocess.run(["userdel", USER], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _start(site: WordPressSite) -> WordPressSite:
    try:
        return site.start()
    except LabError as exc:  # fail, with the server's log in the message
        pytest.fail(f"could not start the WordPress lab: {exc}")


@pytest.fixture(scope="module")
def site(lab_root):
    s = WordPressSite(base_dir=lab_root / "single", address=SINGLE_ADDRESS, owner=USER,
                      home=lab_root / "home", gateway=True, gateway_read_timeout=1.0)
    _start(s)
    print(f"\nsingle site start timings: {s.timings}")
    pids = list(s.running().values())
    yield s
    s.stop()
    print(f"\nsingle site stop: {s.timings['stop_total']:.3f}s")
    assert s.running() == {}
    assert not [p for p in pids if _alive(p)]
    assert _lab_processes(str(lab_root / "single")) == []


@pytest.fixture(scope="module")
def ms_site(lab_root):
    s = WordPressSite(base_dir=lab_root / "multisite", address=MULTI_ADDRESS, owner=USER,
                      home=lab_root / "home-multisite", multisite=True)
    _start(s)
    print(f"\nmultisite start timings: {s.timings}")
    yield s
    s.stop()
    assert _lab_processes(str(lab_root / "multisite")) == []


def _cdn_urls(site: WordPressSite) -> int:
    r = site.fetch_home()
    assert r.status_code == 200, r.text[:500]
    assert "wp-includes" in r.text  # the page does reference assets
    return r.text.count(CDN_HOSTNAME)


# ----------------------------------------------------------------- single site


def test_servers_run_as_expected(site):
    running = site.running()
    assert set(running) == {"mariadb", "php-fpm", "nginx", "gateway"}
    # php-fpm workers run as the site owner, the master as root.
    out = subprocess.run(["ps", "-o", "uid=,args=", "--ppid", str(running["php-fpm"])],
                         capture_output=True, text=True, check=True).stdout
    workers = [int(ln.split()[0]) for ln in out.splitlines() if "php-fpm: pool" in ln]
    assert workers and set(workers) == {pwd.getpwnam(USER).pw_uid}, out
    assert os.stat(f"/proc/{running['php-fpm']}").st_uid == 0
    # The docroot belongs to the owner (the SSH user of the simulated host).
    assert site.plugin_dir.stat().st_uid == pwd.getpwnam(USER).pw_uid
    # Nothing listens outside the given loopback address.
    for port in (site.http_port, site.db_port, site.gateway_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # wp-config is ours, not Debian's loader.
    assert "/etc/wordpress" not in site.wp_config_path.read_text()


def test_plugin_active_rewrites_asset_urls(site):
    assert PLUGIN_FILE in site.active_plugins()
    assert site.network_active_plugins() == []
    assert _cdn_urls(site) > 0
    r = site.fetch_home()
    assert f"https://{CDN_HOSTNAME}/wp-includes/" in r.text
    assert f"http://{site.server_name}/wp-includes/" not in r.text


def test_rename_unloads_plugin_but_keeps_it_active(site):
    renamed = site.plugins_dir / RENAMED
    os.rename(site.plugin_dir, renamed)
    try:
        assert _cdn_urls(site) == 0
        assert f"http://{site.server_name}/wp-includes/" in site.fetch_home().text
        # Front-end requests never touch active_plugins.
        assert PLUGIN_FILE in site.active_plugins()
    finally:
        os.rename(renamed, site.plugin_dir)
    # No opcache/realpath-cache lag: the plugin is back on the very next request.
    assert _cdn_urls(site) > 0
    assert PLUGIN_FILE in site.active_plugins()


def test_admin_page_drops_missing_plugin_for_good(site):
    renamed = site.plugins_dir / RENAMED
    os.rename(site.plugin_dir, renamed)
    try:
        assert site.open_plugins_admin_page() == 200
        assert PLUGIN_FILE not in site.active_plugins()
    finally:
        os.rename(renamed, site.plugin_dir)
    # Folder back, plugin still inactive: restoring the folder is not a rollback.
    assert PLUGIN_FILE not in site.active_plugins()
    assert _cdn_urls(site) == 0
    # Opening the admin page again does not bring it back either.
    assert site.open_plugins_admin_page() == 200
    assert PLUGIN_FILE not in site.active_plugins()
    # Clean state for the next tests.
    site.activate_plugin()
    assert PLUGIN_FILE in site.active_plugins()
    assert _cdn_urls(site) > 0


def test_gateway_gives_real_502_when_php_fpm_is_down(site):
    r = site.fetch_home(via_gateway=True)
    assert r.status_code == 200
    assert CDN_HOSTNAME in r.text
    assert r.headers.get("X-Lab-Gateway")
    site.stop_php_fpm()
    try:
        r = site.fetch_home(via_gateway=True)
        assert r.status_code == 502
        assert "502 Bad Gateway" in r.text
        assert site.fetch_home().status_code == 502  # the origin itself answers 502
        err = (site.logs_dir / "nginx-error.log").read_text()
        assert "connect() to unix:" in err and "php-fpm.sock failed" in err
    finally:
        site.start_php_fpm()
    assert site.fetch_home(via_gateway=True).status_code == 200


def test_gateway_gives_real_504_when_origin_is_slow(site):
    slow = site.docroot / "opskit-lab-slow.php"
    slow.write_text("<?php sleep(3); echo 'late';\n")
    try:
        t0 = time.monotonic()
        r = site.fetch_home(via_gateway=True, path=slow.name)
        assert r.status_code == 504
        assert "504 Gateway Time-out" in r.text
        assert time.monotonic() - t0 < 2.5  # the gateway's 1 s proxy_read_timeout
        err = (site.logs_dir / "gateway-error.log").read_text()
        assert "upstream timed out" in err
    finally:
        slow.unlink()


def test_php_helper_runs_as_owner_with_wordpress_loaded(site):
    out = site.php("echo posix_getpwuid(posix_geteuid())['name'], '|', get_option('home'),"
                   " '|', get_bloginfo('version');")
    user, home, version = out.split("|")
    assert user == USER
    assert home == f"http://{site.server_name}"
    assert version.startswith("6.1")


# ------------------------------------------------------------------- multisite


def test_multisite_network_activation(ms_site):
    s = ms_site
    assert s.php("echo is_multisite() ? 'yes' : 'no';") == "yes"
    assert s.network_active_plugins() == [PLUGIN_FILE]
    assert PLUGIN_FILE not in s.active_plugins()
    assert _cdn_urls(s) > 0

    renamed = s.plugins_dir / RENAMED
    os.rename(s.plugin_dir, renamed)
    try:
        assert _cdn_urls(s) == 0
        assert s.network_active_plugins() == [PLUGIN_FILE]
        assert s.open_plugins_admin_page() == 200
        assert s.network_active_plugins() == []
    finally:
        os.rename(renamed, s.plugin_dir)
    assert s.network_active_plugins() == []
    assert _cdn_urls(s) == 0
    s.activate_plugin()  # network-wide
    assert s.network_active_plugins() == [PLUGIN_FILE]
    assert _cdn_urls(s) > 0


# ---------------------------------------------------------- failure half-way


def test_failed_start_leaves_nothing_running(lab_root):
    home = lab_root / "home-broken"
    home.mkdir()
    pw = pwd.getpwnam(USER)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    blocker.bind((BROKEN_ADDRESS, 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    s = WordPressSite(base_dir=lab_root / "broken", address=BROKEN_ADDRESS, owner=USER,
                      home=home, http_port=port, timeout=10)
    t0 = time.monotonic()
    try:
        with pytest.raises(LabError) as info:
            s.start()
    finally:
        blocker.close()
    # nginx could not bind: the error carries the tail of nginx's error log, and
    # MariaDB and php-fpm (started before nginx) were stopped again.
    assert "Address already in use" in str(info.value)
    assert time.monotonic() - t0 < 10
    assert s.running() == {}
    assert _lab_processes(str(lab_root / "broken")) == []
