"""The command line without any host: listing, showing, help, and bad input (exit 2, no traceback)."""

from __future__ import annotations

from tests.conftest import run_cli


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
