"""ssh config as OpenSSH reads it, and inventories admins already have, against real sshd.

One lab of two real OpenSSH sshd hosts (lab/sshd.py, prefix opskit-sc on 127.0.100.x) for the
whole module. The ssh config cases run twice: resolved by the real OpenSSH client (`ssh -G`)
and by the fallback parser (OPSKIT_SSH= : as on a machine without the ssh binary).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from lab.sshd import SSHD, Lab, end_process, free_port
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

METHODS = {"ssh -G": {}, "parser": {"OPSKIT_SSH": ""}}


@pytest.fixture(scope="module")
def sc_lab():
    base = Path(tempfile.mkdtemp(prefix="opskit-sc-"))
    lab = Lab(base, count=2, prefix="opskit-sc", subnet="127.0.100.").start()
    yield lab
    lab.stop()
    lab.remove_users()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def setup(sc_lab):
    """An ssh config with an Include and a Match block, and an inventory whose defaults are wrong
    for every host (user, known_hosts): only the ssh config's values can make them connect."""
    h1, h2 = sc_lab.host("h1"), sc_lab.host("h2")
    work = sc_lab.base_dir / "client" / "sc"
    work.mkdir(exist_ok=True)
    (work / "empty_known_hosts").write_text("")
    (work / "included.conf").write_text(
        "# an included file, as admins split their ~/.ssh/config\n"
        f"Host wp-included\n  HostName {h1.address}\n  Port {h1.port}\n  User {h1.user}\n"
        f"  IdentityFile {sc_lab.client_key}\n  UserKnownHostsFile {sc_lab.known_hosts}\n  IdentitiesOnly yes\n")
    config = work / "ssh_config"
    config.write_text(
        f"Include {work}/included.conf\n"
        "Match host matched-site\n"
        f"  HostName {h2.address}\n  Port {h2.port}\n  User {h2.user}\n"
        f"  IdentityFile {sc_lab.client_key}\n  UserKnownHostsFile {sc_lab.known_hosts}\n"
        "Host jump-to-h2\n"
        f"  HostName {h2.address}\n  Port {h2.port}\n  User {h2.user}\n  ProxyJump wp-included\n"
        f"  IdentityFile {sc_lab.client_key}\n  UserKnownHostsFile {sc_lab.known_hosts}\n"
        "Host via-proxycommand\n"
        f"  HostName {h2.address}\n  Port {h2.port}\n  User {h2.user}\n"
        f"  IdentityFile {sc_lab.client_key}\n  UserKnownHostsFile {sc_lab.known_hosts}\n"
        f"  ProxyCommand ssh -F {work}/ssh_config -o BatchMode=yes -W %h:%p wp-included\n"
        "Host *\n  ConnectTimeout 5\n  ServerAliveInterval 15\n")
    inv = work / "inventory.yaml"
    inv.write_text(yaml.safe_dump({
        "defaults": {"ssh_config": str(config), "use_agent": False, "user": "nobody-from-defaults",
                     "known_hosts": str(work / "empty_known_hosts")},
        "hosts": {
            "included": {"ssh_alias": "wp-included"},
            "matched": {"ssh_alias": "matched-site"},
            "behind": {"ssh_alias": "jump-to-h2"},
            "proxied": {"ssh_alias": "via-proxycommand"},
            "own-user": {"ssh_alias": "wp-included", "user": "opskit-sc-nope"},
        }}, sort_keys=False))
    typo = work / "typo.yaml"
    typo.write_text(inv.read_text() + "  typo:\n    ssh_alias: wp-inclded\n")
    return {"config": config, "inventory": inv, "typo": typo, "h1": h1, "h2": h2, "work": work}


@pytest.mark.parametrize("method", METHODS)
def test_include_match_known_hosts_identity_and_user_from_the_ssh_config(setup, method):
    result = run_cli("-i", str(setup["inventory"]), "inventory", "check", "--connect",
                     "--host", "included", "--host", "matched", "--host", "behind", "--host", "proxied",
                     env=METHODS[method])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines()[1:])
    # User, HostName, Port, IdentityFile from an Included file; UserKnownHostsFile beats defaults.known_hosts
    assert lines["included"].startswith(f"ok as {setup['h1'].user} ")
    # a Match host block, which paramiko's own reading and a Host-only parser would miss
    assert lines["matched"].startswith(f"ok as {setup['h2'].user} ")
    # ProxyJump through the included alias: the hop is read from the same config
    assert lines["behind"].startswith(f"ok as {setup['h2'].user} ")
    # ProxyCommand with %h:%p, here the real OpenSSH client as the proxy
    assert lines["proxied"].startswith(f"ok as {setup['h2'].user} ")


@pytest.mark.parametrize("method", METHODS)
def test_value_on_the_host_beats_ssh_config_which_beats_defaults(setup, method):
    shown = run_cli("-i", str(setup["inventory"]), "inventory", "show", "--host", "included", "--host", "own-user",
                    "--host", "matched", "--format", "json", env=METHODS[method])
    assert shown.returncode == 0, shown.stderr
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    config = str(setup["config"])
    assert rows["included"]["user"] == setup["h1"].user
    assert rows["included"]["from"]["user"] == f"ssh config {config}"
    assert rows["included"]["known_hosts"] == str(setup["work"].parent / "known_hosts")
    assert rows["included"]["from"]["known_hosts"] == f"ssh config {config}"
    assert (rows["matched"]["address"], rows["matched"]["port"]) == (setup["h2"].address, setup["h2"].port)
    assert rows["own-user"]["user"] == "opskit-sc-nope" and rows["own-user"]["from"]["user"] == "host"
    assert rows["own-user"]["address"] == setup["h1"].address
    refused = run_cli("-i", str(setup["inventory"]), "inventory", "check", "--connect", "--host", "own-user",
                      env=METHODS[method])
    assert refused.returncode == 1
    assert f"authentication failed for opskit-sc-nope@{setup['h1'].address}:{setup['h1'].port}" in refused.stdout


@pytest.mark.parametrize("method", METHODS)
def test_unknown_alias_is_an_input_error_with_did_you_mean(setup, method):
    expected = f"opskit: no Host entry for 'wp-inclded' in {setup['config']}; did you mean wp-included?"
    result = run_cli("-i", str(setup["typo"]), "run", "facts", "--host", "typo", env=METHODS[method])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == expected
    # `inventory check` (without --connect) finds it too, before anyone runs anything
    checked = run_cli("-i", str(setup["typo"]), "inventory", "check", env=METHODS[method])
    assert (checked.returncode, checked.stderr.strip()) == (2, expected)


@pytest.fixture
def max_startups_1(sc_lab):
    """A second real sshd for h2 with MaxStartups 1, and one unauthenticated connection held open
    to it: sshd drops every further connection before its banner, as a busy host does."""
    h2 = sc_lab.host("h2")
    address = "127.0.100.9"
    port = free_port(address)
    config = h2.base_dir / "sshd_config_maxstartups"
    config.write_text(h2.write_config().read_text()
                      .replace(f"ListenAddress {h2.address}:{h2.port}", f"ListenAddress {address}:{port}")
                      .replace("MaxStartups 200:30:400", "MaxStartups 1")
                      .replace(f"PidFile {h2.base_dir / 'sshd.pid'}", f"PidFile {h2.base_dir / 'sshd-ms.pid'}"))
    process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(h2.base_dir / "sshd-ms.log")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    held = None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:   # wait_for_port's own probe would take the one startup slot
            try:
                held = socket.create_connection((address, port), timeout=2)
                break
            except OSError:
                time.sleep(0.05)
        assert held is not None, "the MaxStartups sshd did not start"
        assert held.recv(64).startswith(b"SSH-2.0-"), "the held connection is a real SSH startup"
        yield address, port
    finally:
        if held is not None:
            held.close()
        end_process(process)


def test_a_connection_dropped_before_the_banner_is_one_line(sc_lab, tmp_path, max_startups_1):
    address, port = max_startups_1
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"hosts": {"busy": {
        "address": address, "port": port, "user": sc_lab.host("h2").user, "identity_file": str(sc_lab.client_key),
        "known_hosts": str(sc_lab.known_hosts), "use_agent": False, "connect_timeout": 5}}}))
    expected = f"{address}:{port} closed the connection before the SSH banner (sshd MaxStartups?)"
    checked = run_cli("-i", str(inv), "inventory", "check", "--connect", "--all")
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[-1] == f"busy: {expected}"
    assert "Traceback" not in checked.stderr and "paramiko" not in checked.stderr.lower(), checked.stderr
    ran = run_cli("-i", str(inv), "run", "facts", "--host", "busy", "--json")
    assert ran.json["hosts"]["busy"]["status"] == "unreachable"
    assert ran.json["hosts"]["busy"]["error"] == expected
    assert ran.stderr == "", ran.stderr


# -- inventories admins already have, on real hosts ------------------------------------------------
def test_ansible_ini_inventory_runs_facts_on_a_real_host(sc_lab, tmp_path):
    """An INI inventory as Ansible's docs write one: group vars, children, a range, host vars;
    opskit_FIELD variables give the opskit fields Ansible has no name for."""
    h1, h2 = sc_lab.host("h1"), sc_lab.host("h2")
    ini = tmp_path / "hosts.ini"
    ini.write_text(
        "[webservers]\n"
        f"web1 ansible_host={h1.address} ansible_port={h1.port} ansible_user={h1.user}\n"
        f"web2 ansible_host={h2.address} ansible_port={h2.port} ansible_user={h2.user}\n\n"
        "[spare]\nspare[01:03].example.com\n\n"
        "[prod:children]\nwebservers\n\n"
        "[prod:vars]\n"
        f"ansible_ssh_private_key_file={sc_lab.client_key}\n"
        f"opskit_known_hosts={sc_lab.known_hosts}\nopskit_use_agent=False\n"
        "ntp_server=ntp.example.com\n")
    shown = run_cli("-i", str(ini), "inventory", "show", "--group", "prod", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [(r["name"], r["address"], r["port"], r["user"], r["groups"]) for r in rows] == [
        ("web1", h1.address, h1.port, h1.user, ["webservers", "prod"]),
        ("web2", h2.address, h2.port, h2.user, ["webservers", "prod"])]
    ran = run_cli("-i", str(ini), "run", "facts", "--group", "prod", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    users = {name: host["steps"][0]["value"]["system"]["user"] for name, host in ran.json["hosts"].items()}
    assert users == {"web1": h1.user, "web2": h2.user}


def test_converted_wpcli_aliases_run_facts_on_a_real_host(sc_lab, tmp_path):
    h1 = sc_lab.host("h1")
    config = tmp_path / "config.yml"
    config.write_text(
        "# ~/.wp-cli/config.yml, written the way WP-CLI's handbook shows it\n"
        "path: wp-core\n"
        "@lab:\n"
        f"  ssh: {h1.user}@{h1.address}:{h1.port}/home/site/public_html\n"
        "  user: admin\n"
        "@other:\n"
        "  ssh: deploy@192.0.2.77\n"
        "  path: /srv/www/other\n"
        "@both:\n"
        "  - @lab\n"
        "  - @other\n")
    out = tmp_path / "inventory.yaml"
    converted = run_cli("-i", str(config), "inventory", "convert", "-o", str(out))
    assert converted.returncode == 0, converted.stderr
    data = yaml.safe_load(out.read_text())
    assert data["hosts"]["lab"] == {"address": h1.address, "user": h1.user, "port": h1.port,
                                    "wordpress": {"root": "/home/site/public_html"}}
    assert data["groups"] == {"both": {"hosts": ["lab", "other"]}}
    again = run_cli("-i", str(config), "inventory", "convert", "-o", str(out))
    assert again.returncode == 2 and "exists; give --force" in again.stderr
    # what the admin adds by hand: the key and known_hosts (WP-CLI leaves them to ssh)
    data["defaults"] = {"identity_file": str(sc_lab.client_key), "known_hosts": str(sc_lab.known_hosts),
                        "use_agent": False, "connect_timeout": 5}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    ran = run_cli("-i", str(out), "run", "facts", "--host", "lab", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.json["hosts"]["lab"]["steps"][0]["value"]["system"]["user"] == h1.user
    # --host @alias on the WP-CLI file itself
    shown = run_cli("-i", str(config), "inventory", "show", "--host", "@both", "--format", "csv")
    assert shown.returncode == 0, shown.stderr
    assert [line.split(",")[0] for line in shown.stdout.splitlines()] == ["name", "lab", "other"]


def test_convert_from_ssh_config_then_run_facts(setup):
    out = setup["work"] / "from-ssh-config.yaml"
    out.unlink(missing_ok=True)
    converted = run_cli("inventory", "convert", "--from-ssh-config", str(setup["config"]), "-o", str(out))
    assert converted.returncode == 0, converted.stderr
    data = yaml.safe_load(out.read_text())
    # concrete Host entries only (the Included one too); `Host *` and the Match block are not hosts
    assert data["hosts"] == {"wp-included": {"ssh_alias": "wp-included"}, "jump-to-h2": {"ssh_alias": "jump-to-h2"},
                             "via-proxycommand": {"ssh_alias": "via-proxycommand"}}
    assert data["defaults"] == {"ssh_config": str(setup["config"])}
    data["defaults"]["use_agent"] = False
    out.write_text(yaml.safe_dump(data))
    ran = run_cli("-i", str(out), "run", "facts", "--host", "wp-included", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.json["hosts"]["wp-included"]["steps"][0]["value"]["system"]["user"] == setup["h1"].user
