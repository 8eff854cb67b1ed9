"""The command line without any host: listing, showing, help, and bad input (exit 2, no traceback)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from opskit import cli
from tests.conftest import ROOT, run_cli


def test_list_and_show():
    listed = run_cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "facts" in listed.stdout and "disable-cdn" in listed.stdout
    shown = run_cli("show", "disable-cdn")
    assert shown.returncode == 0, shown.stderr
    assert "Changes: temporary; default hold 15m" in shown.stdout
    assert "CHANGE Rename CDN Enabler's folder to a hidden name  [change: rename]" in shown.stdout
    assert "After a rollback:" in shown.stdout


def test_help_lists_exit_codes_and_run_flags():
    result = run_cli("run", "--help")
    assert result.returncode == 0
    for flag in ("--host", "--group", "--all", "--check", "--hold", "--forks", "--json", "--yes", "--accept-new-host-keys"):
        assert flag in result.stdout
    assert "130  interrupted" in result.stdout


def test_bad_playbook_in_user_folder_is_exit_2_with_file_and_line(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "mine.yaml").write_text("name: mine\ndescription: x\nsteps:\n  - probe: sytem\n")
    result = run_cli("show", "mine", "--playbook-path", str(folder))
    assert result.returncode == 2
    assert f"{folder / 'mine.yaml'}:4: steps.0.probe: unknown probe 'sytem' (did you mean system?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_run_and_no_held_runs(tmp_path):
    assert run_cli("runs").stdout.startswith("no held runs")
    result = run_cli("rollback", "20990101-000000-dead")
    assert result.returncode == 2 and "no run '20990101-000000-dead'" in result.stderr


def test_missing_inventory_file(tmp_path):
    result = run_cli("-i", str(tmp_path / "nope.yaml"), "run", "facts", "--all")
    assert result.returncode == 2
    assert f"inventory file not found: {tmp_path / 'nope.yaml'}" in result.stderr


# -- local state that is not what opskit wrote: refused or skipped, by name, exit 2 -----------------
def _state() -> Path:
    return Path(os.environ["OPSKIT_STATE_DIR"])


def test_rollback_refuses_a_run_id_that_is_a_path(tmp_path):
    # `opskit rollback ../../x` once loaded x/run.json and connected with its ssh_config: a ProxyCommand ran
    pwned = tmp_path / "PWNED"
    (tmp_path / "evil_config").write_text(f"Host evil\n  HostName 192.0.2.1\n  ProxyCommand touch {pwned}\n")
    crafted = tmp_path / "x"
    crafted.mkdir()
    (crafted / "run.json").write_text(json.dumps({"run_id": "x", "playbook": "facts", "hosts": {"h": {
        "name": "h", "ssh_alias": "evil", "ssh_config": str(tmp_path / "evil_config"),
        "known_hosts": str(tmp_path / "known_hosts")}}}))
    (_state() / "runs").mkdir(parents=True)
    for command in ("rollback", "confirm"):
        result = run_cli(command, "../../x", timeout=60)
        assert result.returncode == 2, result.stderr
        assert "no run '../../x': not a run id (run ids look like 20260101-093000-1a2b)" in result.stderr
        assert "Traceback" not in result.stderr
    assert not pwned.exists()


def _journal():
    from opskit.journal import Journal

    return Journal(_state() / "runs")


def test_a_corrupt_run_is_named_and_hides_no_other_run():
    good, bad = "20260101-000000-0001", "20260101-000000-0bad"
    journal = _journal()
    for run in (good, bad):
        journal.create(run, {"run_id": run, "playbook": "disable-cdn", "hosts": {"site1": {"name": "site1", "address": "192.0.2.1"}}})
        journal.append(run, "site1", {"event": "applied"})
        journal.append(run, "site1", {"event": "armed", "deadline": time.time() + 600})
    run_json = journal.run_dir(bad) / "run.json"
    run_json.write_bytes(b'{"run_id": "' + bad.encode() + b'", "hosts": {\x00\x00')

    listed = run_cli("runs")
    assert listed.returncode == 0, listed.stderr
    assert good in listed.stdout and bad not in listed.stdout
    assert f"opskit: warning: skipped run {bad}: run.json is corrupt (not JSON: " in listed.stderr
    assert str(run_json) in listed.stderr
    as_json = run_cli("runs", "--json")
    assert as_json.returncode == 0 and [r["run_id"] for r in as_json.json] == [good]

    rollback = run_cli("rollback", bad)
    assert rollback.returncode == 2
    assert f"opskit: run {bad}: {run_json} is corrupt (not JSON: " in rollback.stderr
    assert "Traceback" not in rollback.stderr and "unexpected error" not in rollback.stderr


# -- YAML that would eat the machine ---------------------------------------------------------------
@pytest.mark.parametrize("inner", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000], ids=["list", "map"])
def test_deeply_nested_inventory_is_exit_2(tmp_path, inner):
    path = tmp_path / "inventory.yaml"
    path.write_text(f"hosts:\n  a:\n    address: 192.0.2.1\n    vars: {{x: {inner}}}\n")
    result = run_cli("-i", str(path), "inventory", "check")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"opskit: {path}:4:") and "refused: values nest more than 64 levels deep" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr


def test_billion_laughs_inventory_is_exit_2():
    path = ROOT / "tests" / "unit" / "data" / "bad-inventory" / "alias-bomb.yaml"
    started = time.monotonic()
    result = run_cli("-i", str(path), "inventory", "check", timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    assert f"{path}:11:14: refused: aliases expand to more than 100000 values" in result.stderr


# -- bounds on the command line --------------------------------------------------------------------
@pytest.mark.parametrize("hold", ["99999999999999999999s", "8d", "1" + "0" * 5000])
def test_a_hold_longer_than_a_week_is_exit_2(tmp_path, hold):
    result = run_cli("-i", str(tmp_path / "nope.yaml"), "run", "facts", "--all", "--hold", hold)
    assert result.returncode == 2
    assert "opskit: --hold: too long: " in result.stderr and "is more than 7 days" in result.stderr


# -- in-process: signals and the traceback file ----------------------------------------------------
@pytest.fixture
def saved_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sighup_interrupts_a_run_like_sigterm(saved_signals):
    # a closed terminal or SSH window sends SIGHUP: roll back, do not die with the changes in place
    from rich.console import Console

    event, out = threading.Event(), io.StringIO()
    with cli._interrupts(event, Console(file=out)) as interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            assert signal.getsignal(sig) == interrupts.handler, signal.Signals(sig).name
        os.kill(os.getpid(), signal.SIGHUP)
        assert event.wait(5)
    assert "interrupted: rolling back every host" in out.getvalue()
    # the rollback's report is not cut short by another hang-up
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def test_the_interrupt_handler_survives_a_terminal_that_is_gone():
    class Gone:
        def print(self, *args, **kwargs):
            raise OSError(5, "Input/output error")

    event = threading.Event()
    interrupts = cli._interrupts(event, Gone())
    interrupts.handler(signal.SIGHUP, None)
    interrupts.handler(signal.SIGHUP, None)
    assert event.is_set()


def test_last_error_txt_is_private(monkeypatch, tmp_path):
    from opskit import inventory

    def broken(file):
        raise RuntimeError("a bug")

    monkeypatch.setattr(inventory, "load", broken)
    (tmp_path / "inventory.yaml").write_text("hosts: {}\n")   # there, so the (broken) loader is reached
    saved = _state() / "last-error.txt"
    _state().mkdir(parents=True)
    saved.write_text("an older traceback")
    saved.chmod(0o644)
    old = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as caught:
            cli.main(["-i", str(tmp_path / "inventory.yaml"), "inventory", "check"])
        assert caught.value.code == 1
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and "RuntimeError: a bug" in saved.read_text()
        saved.unlink()
        with pytest.raises(SystemExit):
            cli.main(["-i", str(tmp_path / "inventory.yaml"), "inventory", "check"])
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_host_without_ssh_fails_alone_with_the_reason_in_a_playbook_that_needs_ssh(tmp_path):
    """`ssh: false` (a site known by its URL) in a playbook with host-side steps: that host
    fails and says why; no connection is attempted, and the others would go on."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  urlonly:\n    ssh: false\n    wordpress: {url: 'http://127.0.0.1:9/'}\n")
    result = run_cli("-i", str(inventory), "run", "facts", "--host", "urlonly", "--json",
                     env={"OPSKIT_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 1, result.stderr
    host = result.json["hosts"]["urlonly"]
    assert host["status"] == "failed"
    assert host["error"] == ("urlonly has `ssh: false` in the inventory (a site known by its URL only), and this "
                             "playbook needs SSH to the host; `opskit run diagnose` gives such a site the public "
                             "half of a diagnosis")
    assert host["changes"] == [] and "Traceback" not in result.stderr
