"""The core against real sshd hosts: transport, host keys, transactions, rollback, guard, lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from opskit import inventory
from opskit.errors import HostKeyError, RemoteCommandError
from opskit.transport import Session
from tests.conftest import TEST_PLAYBOOKS, cli_command, hold_started, make_tree, wait_until, write_file

pytestmark = pytest.mark.integration

NASTY = "cdn enabler; $(touch PWNED) `id` 'q\" \n x"


def rename_inventory(lab, tmp_path, expect=None, src="wp/plugins/cdn-enabler", **extra_hosts):
    """An inventory whose hosts rename ~/SRC away and edit ~/conf.txt."""
    host_vars = {}
    for host in lab.hosts:
        make_tree(host, src)
        write_file(host, "conf.txt", "original\n")
        host_vars[host.name] = {"vars": {
            "src": f"~/{src}", "dst": f"~/{os.path.dirname(src)}/.{os.path.basename(src)}.opskit",
            "file": "~/conf.txt", "expect": (expect or {}).get(host.name, "absent")}}
    host_vars.update(extra_hosts)
    return lab.inventory(tmp_path / "inventory.yaml", hosts=host_vars)


def run_args(inv, *more):
    return ("-i", str(inv), "run", "rename-hold", "--playbook-path", str(TEST_PLAYBOOKS), *more)


def guard_story(host) -> str:
    """What the guards on a host said (shown when an assertion about the host fails)."""
    lines = []
    for tx in sorted((host.home / ".opskit" / "tx").glob("*")):
        for name in ("state", "mechanism", "guard.log", "result"):
            if (tx / name).exists():
                lines.append(f"{tx.name}/{name}: {(tx / name).read_text().strip()}")
    return "\n".join(lines)


def assert_original(host, src="wp/plugins/cdn-enabler"):
    assert (host.home / src).is_dir(), f"{src} not restored on {host.name}\n{guard_story(host)}"
    assert not (host.home / os.path.dirname(src) / f".{os.path.basename(src)}.opskit").exists()
    assert (host.home / "conf.txt").read_text() == "original\n", guard_story(host)


def assert_changed(host, src="wp/plugins/cdn-enabler"):
    assert not (host.home / src).exists()
    assert (host.home / os.path.dirname(src) / f".{os.path.basename(src)}.opskit").is_dir()
    assert (host.home / "conf.txt").read_text() == "edited by opskit\n"


# -- transport ----------------------------------------------------------------

def test_connect_exec_and_sftp(hosts, tmp_path):
    inv = inventory.load(hosts.inventory(tmp_path / "inv.yaml"))
    host = hosts.hosts[0]
    with Session(inv.hosts[host.name]) as session:
        result = session.exec("id -un; echo oops >&2; exit 3")
        assert (result.exit_status, result.stdout.strip(), result.stderr.strip()) == (3, host.user, "oops")
        assert session.home == str(host.home)
        session.write_atomic("~/dir/file.txt", b"one") if session.mkdir_p("~/dir") is None else None
        assert (host.home / "dir" / "file.txt").read_bytes() == b"one"
        assert oct((host.home / "dir" / "file.txt").stat().st_mode & 0o777) == oct(0o600)
        os.chmod(host.home / "dir" / "file.txt", 0o640)
        session.write_atomic("~/dir/file.txt", b"two")
        assert (host.home / "dir" / "file.txt").read_bytes() == b"two"
        assert (host.home / "dir" / "file.txt").stat().st_mode & 0o777 == 0o640, "atomic write must keep the mode"
        assert [p.name for p in (host.home / "dir").iterdir()] == ["file.txt"], "no temp file left behind"
        session.write_atomic("~/dir/other.txt", b"x")
        with pytest.raises(RemoteCommandError, match="refusing to rename onto existing"):
            session.rename("~/dir/file.txt", "~/dir/other.txt")
        assert (host.home / "dir" / "other.txt").read_bytes() == b"x"
        session.rename("~/dir/file.txt", "~/dir/moved.txt")
        assert (host.home / "dir" / "moved.txt").read_bytes() == b"two"
        assert session.exists("~/dir/moved.txt") and not session.exists("~/dir/file.txt")
        # the same connection serves every call
        transport = session.transport
        session.exec("true")
        assert session.transport is transport


def test_unknown_host_key_refused_then_accept_new(hosts, tmp_path):
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    inv = inventory.load(hosts.inventory(tmp_path / "inv.yaml", defaults={"known_hosts": str(empty)}))
    host = inv.hosts["h1"]
    with pytest.raises(HostKeyError, match="unknown host key .*--accept-new-host-keys"):
        Session(host).open()
    assert empty.read_text() == ""
    with Session(host, accept_new_host_keys=True) as session:
        assert session.exec("true").ok
    line = empty.read_text()
    assert line.startswith(f"[{hosts.hosts[0].address}]:{hosts.hosts[0].port} ssh-ed25519 ")
    with Session(host) as session:   # now known: plain strict mode works
        assert session.exec("true").ok


def test_changed_host_key_always_refused(hosts, tmp_path):
    other = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    h = hosts.hosts[0]
    kh = tmp_path / "known_hosts_changed"
    kh.write_text(f"[{h.address}]:{h.port} " + " ".join(other.with_suffix(".pub").read_text().split()[:2]) + "\n")
    inv_file = hosts.inventory(tmp_path / "inv.yaml", defaults={"known_hosts": str(kh)})
    host = inventory.load(inv_file).hosts["h1"]
    for accept_new in (False, True):
        with pytest.raises(HostKeyError, match="HOST KEY CHANGED .*ssh-keygen -f .* -R") as caught:
            Session(host, accept_new_host_keys=accept_new).open()
        # a non-22 port: the message names it, and the known_hosts entry ssh-keygen -R removes
        assert f"HOST KEY CHANGED for {h.address}:{h.port}" in str(caught.value)
        assert f"-R '[{h.address}]:{h.port}'" in str(caught.value)
    # and through the CLI: the host fails alone, marked unreachable, with the reason
    result = run_cli_json(inv_file, "facts", "--all", "--accept-new-host-keys")
    assert result["hosts"]["h1"]["status"] == "unreachable"
    assert "HOST KEY CHANGED" in result["hosts"]["h1"]["error"]
    assert all(result["hosts"][h]["status"] == "ok" for h in ("h2", "h3", "h4"))


def run_cli_json(inv, playbook, *args, expect_rc=None):
    from tests.conftest import run_cli

    result = run_cli("-i", str(inv), "run", playbook, "--json", *args)
    if expect_rc is not None:
        assert result.returncode == expect_rc, result.stderr
    return result.json


# -- facts, selection, unreachable ---------------------------------------------

def test_facts_all_hosts_and_unreachable_host_fails_alone(hosts, tmp_path, opskit):
    dead_port = hosts.hosts[0].port  # nothing listens on this port at another address
    inv = hosts.inventory(tmp_path / "inv.yaml")
    data = inventory.located_yaml.load(inv, "inventory").data
    data["hosts"]["ghost"] = {"address": "127.0.11.250", "port": dead_port, "user": "nobody", "connect_timeout": 2}
    import yaml
    inv.write_text(yaml.safe_dump(data))
    result = opskit("-i", str(inv), "run", "facts", "--all", "--json")
    assert result.returncode == 1, result.stderr
    doc = result.json
    assert doc["playbook"] == "facts" and doc["run_id"]
    assert doc["hosts"]["ghost"]["status"] == "unreachable"
    assert "refused" in doc["hosts"]["ghost"]["error"]
    for h in hosts.hosts:
        entry = doc["hosts"][h.name]
        assert entry["status"] == "ok", entry
        facts = entry["steps"][0]["value"]
        assert facts["system"]["user"] == h.user
        assert facts["system"]["home"] == str(h.home)
        assert facts["php"]["present"] is True


def test_selection_errors_exit_2(hosts, tmp_path, opskit):
    inv = hosts.inventory(tmp_path / "inv.yaml")
    nothing = opskit("-i", str(inv), "run", "facts")
    assert nothing.returncode == 2 and "no hosts selected" in nothing.stderr
    typo = opskit("-i", str(inv), "run", "facts", "--host", "h7x")
    assert typo.returncode == 2 and "no host" in typo.stderr
    book = opskit("-i", str(inv), "run", "fatcs", "--all")
    assert book.returncode == 2 and "did you mean facts" in book.stderr
    hold = opskit("-i", str(inv), "run", "rename-hold", "--playbook-path", str(TEST_PLAYBOOKS), "--all", "--hold", "5 parsecs")
    assert hold.returncode == 2 and "--hold" in hold.stderr
    for r in (nothing, typo, book, hold):
        assert "Traceback" not in r.stderr


def test_malformed_inventory_names_file_line_field(tmp_path, opskit):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  site1:\n    address: 10.0.0.1\n    prot: 22\n")
    result = opskit("-i", str(bad), "inventory", "check")
    assert result.returncode == 2
    assert f"{bad}:4: hosts.site1.prot: unknown field" in result.stderr
    assert "Traceback" not in result.stderr


# -- transactions ----------------------------------------------------------------

def test_failing_step_rolls_back_that_host_only(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path, expect={"h2": "present"})
    result = opskit(*run_args(inv, "--all", "--hold", "1s", "--json"))
    doc = result.json
    assert result.returncode == 1
    h2 = doc["hosts"]["h2"]
    assert h2["status"] == "failed"
    assert h2["rollback"]["reason"] == "step_failed" and h2["rollback"]["state"] == "rolled_back"
    assert [c["state"] for c in h2["changes"]] == ["undone", "undone"]
    for h in hosts.hosts:
        assert_original(h)
        if h.name != "h2":
            assert doc["hosts"][h.name]["status"] == "rolled_back"
            assert doc["hosts"][h.name]["rollback"]["reason"] == "hold_ended"


def test_check_mode_changes_nothing(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    before = {h.name: sorted(str(p) for p in h.home.rglob("*")) for h in hosts.hosts}
    result = opskit(*run_args(inv, "--all", "--check", "--json"))
    assert result.returncode == 0, result.stderr
    for h in hosts.hosts:
        entry = result.json["hosts"][h.name]
        assert entry["status"] == "ok"
        assert [c["state"] for c in entry["changes"]] == ["planned", "planned"]
        assert "-original\n+edited by opskit\n" in entry["changes"][1]["diff"]
        assert sorted(str(p) for p in h.home.rglob("*")) == before[h.name], "nothing created (no ~/.opskit either)"
        assert_original(h)
    human = opskit(*run_args(inv, "--host", "h1", "--check"))
    assert "+edited by opskit" in human.stdout + human.stderr


def test_shell_metacharacters_in_paths_are_never_executed(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path, src=f"wp/{NASTY}")
    result = opskit(*run_args(inv, "--host", "h1", "--hold", "1s", "--json"))
    assert result.returncode == 0, result.stderr
    assert result.json["hosts"]["h1"]["status"] == "rolled_back"
    h1 = hosts.host("h1")
    assert (h1.home / "wp" / NASTY).is_dir()
    assert not list(Path(hosts.base_dir).rglob("PWNED")), "a metacharacter was executed"


def test_permanent_change_is_kept_when_verified(hosts, tmp_path, opskit):
    h1 = hosts.host("h1")
    write_file(h1, "conf.txt", "original\n")
    inv = hosts.inventory(tmp_path / "inv.yaml", hosts={"h1": {"vars": {"file": "~/conf.txt"}}})
    result = opskit("-i", str(inv), "run", "edit-permanent", "--playbook-path", str(TEST_PLAYBOOKS), "--host", "h1", "--json")
    assert result.returncode == 0, result.stderr
    assert result.json["hosts"]["h1"]["status"] == "changed"
    assert (h1.home / "conf.txt").read_text() == "permanent\n"
    assert (h1.home / "conf.txt").stat().st_mode & 0o777 == 0o640
    assert not (h1.home / ".opskit" / "lock").exists(), "the lock is released"
    assert_no_guard_process(h1)


def assert_no_guard_process(host):
    out = subprocess.run(["pgrep", "-u", host.user, "-f", "guard.sh"], capture_output=True, text=True).stdout
    assert out.strip() == "", f"a guard is still running on {host.name}: {out}"


def start_run(inv, *args) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*run_args(inv, *args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])


def wait_held(host, hold: int, timeout=20):
    """Wait until the host's changes are made and its hold window has started; returns the run id."""
    run_id = wait_until(lambda: hold_started(host.name, hold), timeout, what=f"{host.name} to hold its changes")
    assert (host.home / "conf.txt").read_text() == "edited by opskit\n"
    return run_id


def test_sigint_rolls_back_at_once(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h1", "--host", "h2", "--hold", "10m", "--json")
    h1, h2 = hosts.host("h1"), hosts.host("h2")
    wait_held(h1, 600)
    wait_held(h2, 600)
    assert_changed(h1)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)   # a second Ctrl-C must not abandon the rollback
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, err
    doc = json.loads(out)
    for h in (h1, h2):
        assert doc["hosts"][h.name]["status"] == "rolled_back"
        assert doc["hosts"][h.name]["rollback"]["reason"] == "interrupted"
        assert_original(h)
        assert_no_guard_process(h)
        assert not (h.home / ".opskit" / "lock").exists()


def test_sigterm_rolls_back(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h3", "--hold", "10m", "--json")
    h3 = hosts.host("h3")
    wait_held(h3, 600)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert json.loads(out)["hosts"]["h3"]["status"] == "rolled_back"
    assert_original(h3)


def test_controller_sigkill_guard_undoes_by_deadline(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h1", "--hold", "3s")
    h1 = hosts.host("h1")
    run_id = wait_held(h1, 3)
    proc.kill()
    proc.wait()
    assert_changed(h1)
    tx = h1.home / ".opskit" / "tx" / run_id
    deadline = int((tx / "deadline").read_text())
    wait_until(lambda: (tx / "state").read_text().strip() == "rolled_back", 15, what="the guard to roll back")
    restored_at = time.time()
    assert restored_at - deadline < 3, f"guard was {restored_at - deadline:.1f}s late"
    assert_original(h1)
    assert "detached" in (tx / "mechanism").read_text()
    assert not (h1.home / ".opskit" / "lock").exists()
    assert (tx / "guard.sh").stat().st_mode & 0o777 == 0o700
    assert (h1.home / ".opskit").stat().st_mode & 0o777 == 0o700


def test_guard_killed_next_connection_finishes_rollback(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h2", "--hold", "2s")
    h2 = hosts.host("h2")
    run_id = wait_held(h2, 2)
    proc.kill()
    proc.wait()
    h2.kill_user_processes()   # the host's process killer takes the guard too
    time.sleep(3)
    tx = h2.home / ".opskit" / "tx" / run_id
    assert (tx / "state").read_text().strip() == "armed"
    assert_changed(h2)
    result = opskit("-i", str(inv), "run", "facts", "--host", "h2", "--json")
    assert result.returncode == 0, result.stderr
    findings = result.json["hosts"]["h2"]["findings"]
    assert any(f["cause"] == "overdue-rollback-finished" and run_id in f["summary"] for f in findings), findings
    assert (tx / "state").read_text().strip() == "rolled_back"
    assert_original(h2)


def test_conflict_is_reported_and_nothing_clobbered(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h1", "--hold", "4s", "--json")
    h1 = hosts.host("h1")
    wait_held(h1, 4)
    # someone recreates the folder and edits the file during the hold
    make_tree(h1, "wp/plugins/cdn-enabler")
    (h1.home / "wp/plugins/cdn-enabler/theirs.txt").write_text("theirs")
    (h1.home / "conf.txt").write_text("edited by a human\n")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    entry = json.loads(out)["hosts"]["h1"]
    assert entry["status"] == "conflict"
    assert sorted(c["state"] for c in entry["changes"]) == ["conflict", "conflict"]
    assert any(f["cause"] == "rollback-conflict" for f in entry["findings"])
    assert (h1.home / "wp/plugins/cdn-enabler/theirs.txt").read_text() == "theirs"
    assert (h1.home / "wp/plugins/.cdn-enabler.opskit").is_dir(), "our renamed copy is kept, not deleted"
    assert (h1.home / "conf.txt").read_text() == "edited by a human\n"
    assert not (h1.home / ".opskit" / "lock").exists()


def test_second_run_refused_by_lock_then_confirm_and_rollback(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    first = opskit(*run_args(inv, "--host", "h1", "--host", "h2", "--hold", "5m", "--detach", "--json"))
    assert first.returncode == 0, first.stderr
    run_id = first.json["run_id"]
    assert {h: first.json["hosts"][h]["status"] for h in ("h1", "h2")} == {"h1": "held", "h2": "held"}
    checked = opskit(*run_args(inv, "--host", "h1", "--check", "--json"))
    assert any(f["cause"] == "host-locked" and run_id in f["summary"] for f in checked.json["hosts"]["h1"]["findings"])
    second = opskit(*run_args(inv, "--host", "h1", "--json"))
    assert second.returncode == 1
    assert second.json["hosts"]["h1"]["status"] == "failed"
    assert f"locked by run {run_id}" in second.json["hosts"]["h1"]["error"]
    listed = opskit("runs", "--json")
    assert {(r["run_id"], r["host"], r["state"]) for r in json.loads(listed.stdout)} == {(run_id, "h1", "held"), (run_id, "h2", "held")}
    human = opskit("runs")
    assert run_id in human.stdout and "held" in human.stdout and "(in 4m" in human.stdout, human.stdout
    confirm = opskit("confirm", run_id, "--host", "h1")
    assert confirm.returncode == 0 and "h1: kept" in confirm.stdout
    rollback = opskit("rollback", run_id, "--host", "h2")
    assert rollback.returncode == 0 and "h2: rolled_back" in rollback.stdout
    assert_changed(hosts.host("h1"))
    assert_original(hosts.host("h2"))
    for name in ("h1", "h2"):
        assert not (hosts.host(name).home / ".opskit" / "lock").exists()
        assert_no_guard_process(hosts.host(name))
    again = opskit("rollback", run_id, "--host", "h2")
    assert again.returncode == 0 and "rolled_back" in again.stdout, "rollback is idempotent"
    assert opskit("runs", "--json").stdout.strip() == "[]"


def test_confirm_from_another_terminal_ends_a_waiting_run(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h3", "--hold", "10m", "--json")
    h3 = hosts.host("h3")
    run_id = wait_held(h3, 600)
    assert opskit("confirm", run_id).returncode == 0
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert json.loads(out)["hosts"]["h3"]["status"] == "kept"
    assert_changed(h3)


def test_lost_connection_during_hold_still_rolls_back(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    proc = start_run(inv, "--host", "h4", "--hold", "3s", "--json")
    h4 = hosts.host("h4")
    wait_held(h4, 3)
    # cut the SSH connection: kill the per-connection sshd processes (the listener stays)
    subprocess.run(["pkill", "-KILL", "-f", f"sshd: {h4.user}"], check=False)
    out, err = proc.communicate(timeout=30)
    entry = json.loads(out)["hosts"]["h4"]
    assert entry["status"] == "rolled_back", (entry, err)
    assert_original(h4)


def test_disk_full_on_host_fails_before_any_change(hosts, tmp_path, opskit):
    """A full disk (or quota) where opskit writes its journal: the write-ahead fails first,
    so the host fails with a clear message and nothing is changed or left locked."""
    inv = rename_inventory(hosts, tmp_path)
    h1 = hosts.host("h1")
    opskit_dir = h1.home / ".opskit"
    opskit_dir.mkdir()
    uid, gid = opskit_dir.parent.stat().st_uid, opskit_dir.parent.stat().st_gid
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=4k,uid={uid},gid={gid},mode=700", "tmpfs", str(opskit_dir)],
                           capture_output=True, text=True)
    assert mount.returncode == 0, f"cannot mount a tiny tmpfs to fill the disk: {mount.stderr}"
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={opskit_dir}/filler", "bs=1k", "count=8"], capture_output=True)
        result = opskit(*run_args(inv, "--host", "h1", "--json"))
        assert result.returncode == 1
        entry = result.json["hosts"]["h1"]
        assert entry["status"] == "failed"
        assert "disk may be full" in entry["error"] or "No space" in entry["error"], entry["error"]
        assert_original(h1)
        assert not (opskit_dir / "lock").exists()
    finally:
        subprocess.run(["umount", str(opskit_dir)], check=True)


def _ssh_config(lab, path: Path, proxy_jump: bool) -> Path:
    h1, h2 = lab.host("h1"), lab.host("h2")
    text = (f"Host site-behind\n  HostName {h2.address}\n  Port {h2.port}\n  User {h2.user}\n  IdentityFile {lab.client_key}\n")
    if proxy_jump:
        text += "  ProxyJump jumpbox\n"
        text += f"Host jumpbox\n  HostName {h1.address}\n  Port {h1.port}\n  User {h1.user}\n  IdentityFile {lab.client_key}\n"
    path.write_text(text)
    return path


@pytest.mark.parametrize("proxy_jump", [False, True], ids=["alias", "alias+ProxyJump"])
def test_ssh_alias_from_ssh_config(hosts, tmp_path, opskit, proxy_jump):
    config = _ssh_config(hosts, tmp_path / "ssh_config", proxy_jump)
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults:\n"
        f"  known_hosts: {hosts.known_hosts}\n  ssh_config: {config}\n  use_agent: false\n"
        "hosts:\n  behind:\n    ssh_alias: site-behind\n"
    )
    result = opskit("-i", str(inv), "run", "facts", "--host", "behind", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    facts = result.json["hosts"]["behind"]["steps"][0]["value"]
    assert facts["system"]["user"] == hosts.host("h2").user
    if proxy_jump:
        # the jump host's key is checked too: without it the connection is refused
        h1 = hosts.host("h1")
        partial = tmp_path / "known_hosts_no_jump"
        partial.write_text("".join(line + "\n" for line in hosts.known_hosts.read_text().splitlines()
                                   if not line.startswith(f"[{h1.address}]:{h1.port} ")))
        inv.write_text(inv.read_text().replace(str(hosts.known_hosts), str(partial)))
        refused = opskit("-i", str(inv), "run", "facts", "--host", "behind", "--json")
        entry = refused.json["hosts"]["behind"]
        assert entry["status"] == "unreachable"
        assert f"unknown host key for {h1.address}:{h1.port}" in entry["error"]


def test_key_passphrase_from_env_never_leaks(hosts, tmp_path, opskit):
    secret = "s3cret-Passphrase-$(touch PWNED)"
    key = tmp_path / "id_protected"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", str(key)], check=True)
    h1 = hosts.host("h1")
    authorized = h1.base_dir / "authorized_keys" / h1.user
    original = authorized.read_text()
    authorized.write_text(original + key.with_suffix(".pub").read_text())
    try:
        inv = rename_inventory(hosts, tmp_path)
        text = inv.read_text().replace(str(hosts.client_key), str(key))
        inv.write_text(text + "\n")
        import yaml
        data = yaml.safe_load(text)
        data["defaults"]["passphrase_env"] = "OPSKIT_TEST_PASSPHRASE"
        inv.write_text(yaml.safe_dump(data))
        missing = opskit(*run_args(inv, "--host", "h1", "--json"), env={"OPSKIT_TEST_PASSPHRASE": ""})
        result = opskit(*run_args(inv, "--host", "h1", "--hold", "1s", "--json"), env={"OPSKIT_TEST_PASSPHRASE": secret})
        assert result.returncode == 0, result.stderr
        assert result.json["hosts"]["h1"]["status"] == "rolled_back"
        everything = result.stdout + result.stderr + missing.stdout + missing.stderr
        for file in (tmp_path / "state").rglob("*"):
            if file.is_file():
                everything += file.read_text(errors="replace")
        for file in (h1.home / ".opskit").rglob("*"):
            if file.is_file():
                everything += file.read_text(errors="replace")
        assert secret not in everything
        assert "s3cret" not in everything
        assert not list(tmp_path.rglob("PWNED"))
    finally:
        authorized.write_text(original)


def test_files_left_on_host_are_private(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    result = opskit(*run_args(inv, "--host", "h2", "--hold", "1m", "--detach", "--json"))
    assert result.returncode == 0, result.stderr
    h2 = hosts.host("h2")
    paths = [h2.home / ".opskit", *(h2.home / ".opskit").rglob("*")]
    assert len(paths) > 8
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        assert path.stat().st_uid == h2.home.stat().st_uid
    assert opskit("rollback", result.json["run_id"]).returncode == 0
    assert_original(h2)


def test_exec_timeout_kex_and_nodelay(hosts, tmp_path, caplog):
    import logging
    import socket as socket_module

    from opskit.errors import UnreachableError

    caplog.set_level(logging.DEBUG, logger="paramiko.transport")

    inv = inventory.load(hosts.inventory(tmp_path / "inv.yaml"))
    with Session(inv.hosts["h1"]) as session:
        started = time.monotonic()
        with pytest.raises(UnreachableError, match="timed out after 1s"):
            session.exec("sleep 5", timeout=1)
        assert time.monotonic() - started < 3
        # curve25519 is negotiated (several times cheaper than paramiko's post-quantum default)
        agreed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Kex: ")]
        assert agreed and agreed[0].startswith("Kex: curve25519-sha256"), agreed
        assert session.transport.sock.getsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY) != 0
        session.write_atomic("~/gone.txt", b"x")
        session.remove("~/gone.txt")
        session.remove("~/gone.txt")   # removing what is not there is fine
        assert not (hosts.host("h1").home / "gone.txt").exists()


def test_inventory_check_connect_and_where_the_inventory_comes_from(hosts, tmp_path, opskit):
    inv = hosts.inventory(tmp_path / "inv.yaml")
    ok = opskit("inventory", "check", "--connect", "-i", str(inv))   # -i after the subcommand
    assert ok.returncode == 0, ok.stderr
    for h in hosts.hosts:
        assert f"{h.name}: ok as {h.user}" in ok.stdout
    via_env = opskit("inventory", "check", env={"OPSKIT_INVENTORY": str(inv)})
    assert via_env.returncode == 0 and "4 host(s)" in via_env.stdout
    data = inventory.located_yaml.load(inv, "inventory").data
    data["hosts"]["ghost"] = {"address": "127.0.11.251", "port": hosts.hosts[0].port, "connect_timeout": 2}
    import yaml
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(data))
    bad = subprocess.run(cli_command("inventory", "check", "--connect", "--host", "ghost", "--host", "h1"),
                         capture_output=True, text=True, cwd=tmp_path)   # ./inventory.yaml by default
    assert bad.returncode == 1, bad.stderr
    assert "ghost: connection refused" in bad.stdout and "h1: ok as" in bad.stdout


def test_two_runs_started_together_one_gets_the_lock(hosts, tmp_path):
    inv = rename_inventory(hosts, tmp_path)
    procs = [start_run(inv, "--host", "h3", "--hold", "1m", "--detach", "--json") for _ in range(2)]
    docs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    statuses = sorted(d["hosts"]["h3"]["status"] for d in docs)
    assert statuses == ["failed", "held"], statuses
    held = next(d for d in docs if d["hosts"]["h3"]["status"] == "held")
    refused = next(d for d in docs if d["hosts"]["h3"]["status"] == "failed")
    assert f"locked by run {held['run_id']}" in refused["hosts"]["h3"]["error"]
    assert_changed(hosts.host("h3"))
    from tests.conftest import run_cli
    assert run_cli("rollback", held["run_id"]).returncode == 0
    assert_original(hosts.host("h3"))


def test_rollback_of_a_run_started_on_another_machine(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    first = opskit(*run_args(inv, "--host", "h2", "--hold", "5m", "--detach", "--json"))
    run_id = first.json["run_id"]
    elsewhere = {"OPSKIT_STATE_DIR": str(tmp_path / "colleague-laptop")}
    unnamed = opskit("rollback", run_id, env=elsewhere)
    assert unnamed.returncode == 2 and "--host NAME" in unnamed.stderr
    result = opskit("rollback", run_id, "-i", str(inv), "--host", "h2", env=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "h2: rolled_back" in result.stdout
    assert_original(hosts.host("h2"))
    assert not (hosts.host("h2").home / ".opskit" / "lock").exists()


# -- the CLI habits on a real host: -v, -q, --diff, the live hold display --------------------------

def test_verbose_quiet_and_diff_on_a_real_run(hosts, tmp_path, opskit):
    inv = rename_inventory(hosts, tmp_path)
    loud = opskit(*run_args(inv, "--host", "h1", "--hold", "1s", "-v", "--diff"))
    assert loud.returncode == 0, loud.stderr
    said = loud.stdout + loud.stderr
    run_id = next(w for w in said.split() if w.count("-") == 2 and w[:8].isdigit())
    assert "h1: exec " in said and "→ exit 0 in " in said, said           # each command, its status and time
    assert "step Rename the folder: changed (" in said                   # each step with its timing
    assert "-original\n" in said and "+edited by opskit" in said         # --diff on a real run
    assert f"`opskit confirm {run_id}` keeps the changes, `opskit rollback {run_id}` undoes them now" in said
    assert "1 host(s): 1 rolled_back" in said                            # the summary says how many hosts
    assert_original(hosts.host("h1"))
    quiet = opskit(*run_args(inv, "--host", "h1", "--hold", "1s", "-q"))
    assert quiet.returncode == 0, quiet.stderr
    assert "h1: rolled_back" in quiet.stderr
    assert "exec " not in quiet.stderr and "step Rename" not in quiet.stderr and "holding" not in quiet.stderr
    both = opskit(*run_args(inv, "--host", "h1", "-v", "-q"))
    assert both.returncode == 2 and "-v and -q contradict each other" in both.stderr


def test_the_live_hold_display_counts_down_and_names_the_commands(hosts, tmp_path):
    """On a terminal (a real pty) the progress display shows the time left of each host's hold,
    the exact confirm/rollback commands, and each verification when it lands."""
    import pty
    import select

    inv = rename_inventory(hosts, tmp_path)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(cli_command(*run_args(inv, "--host", "h1", "--hold", "3s", "--yes")), stdin=terminal, stdout=terminal,
                            stderr=terminal, env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:   # the other end closed: the run is over
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(controller)
    text = seen.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "undone in 2s" in text or "undone in 3s" in text, text        # the countdown
    assert "undone in 1s" in text, text
    assert "opskit confirm " in text and "opskit rollback " in text
    assert "check The folder is away: passed" in text                    # shown when it happened
    assert_original(hosts.host("h1"))
