"""The measurement's pure parts on real logs (tests/captures/php-fpm-8.2-debian12/logs: each way a
slow request dies on php-fpm 8.2 + nginx 1.22), its probe run by PHP itself, and --measure's input checks."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from opskit.changes.measure import probe_php
from opskit.checks.measure import ModeResult, attribute, conclude, host_epoch, judge

LOGS = Path(__file__).resolve().parents[2] / "captures" / "php-fpm-8.2-debian12" / "logs"


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def windows(case: str, *names: str) -> dict[str, str]:
    return {f"/logs/{name}": (LOGS / case / name).read_text() for name in names if (LOGS / case / name).exists()}


def measured(case: str, status: int, ended: str, seconds: float, body: str = "",
             logs=("php-fpm.log", "nginx-origin-error.log", "php-error.log")) -> ModeResult:
    result = ModeResult("wall", status=status, body=body, seconds=seconds, started=at(ended) - seconds,
                        ended=at(ended))
    attribute(windows(case, *logs), [result], None, "+0000", 0.0)
    judge(result)
    return result


@pytest.mark.parametrize("case, status, ended, seconds, layer, signature", [
    ("terminate-timeout", 502, "2026-12-01T11:34:55", 2.5, "request_terminate_timeout", "fpm-terminate"),
    ("external-sigkill", 502, "2026-12-01T11:34:58", 1.5, "kill-script", "fpm-exit-sigkill"),
    ("cpu-limit", 502, "2026-12-01T11:35:06", 5.2, "cpu-limit", "fpm-exit-sigxcpu"),
    ("fastcgi-read-timeout", 504, "2026-12-01T11:35:15", 2.0, "fastcgi_read_timeout", "nginx-upstream-timeout"),
])
def test_which_layer_ended_the_request(case, status, ended, seconds, layer, signature):
    result = measured(case, status, ended, seconds)
    assert result.layer == layer, (result.layer, result.signatures, result.lines)
    assert signature in result.signatures


def test_the_terminate_line_gives_php_fpms_own_figure():
    result = measured("terminate-timeout", 502, "2026-12-01T11:34:55", 2.5)
    assert result.log_seconds == pytest.approx(2.509401)


def test_lines_outside_the_window_are_not_the_requests():
    result = measured("terminate-timeout", 502, "2026-12-01T11:30:00", 2.0)
    assert result.lines == [] and result.layer == "worker-died"


def test_a_line_naming_the_probe_and_its_mode_goes_to_that_mode():
    wall, cpu = ModeResult("wall", started=0, ended=1), ModeResult("cpu", started=0, ended=1)
    line = ("[01-Dec-2026 11:34:55] WARNING: [pool www] child 7, script '/srv/opskit-measure-ab.php' (request: "
            "\"GET /opskit-measure-ab.php?mode=cpu&max=5\") execution timed out (3.01 sec), terminating")
    attribute({"/log": line + "\n"}, [wall, cpu], "opskit-measure-ab.php", "+0000", 0.0)
    assert cpu.lines == [{"file": "/log", "text": line}] and wall.lines == []


def test_a_survivor_and_the_conclusion():
    survivor = ModeResult("wall", status=200, body="OPSKIT-MEASURE survived mode=wall seconds=8.0\n", seconds=8.0)
    judge(survivor)
    assert survivor.survived and survivor.layer == "none"
    killed = measured("terminate-timeout", 502, "2026-12-01T11:34:55", 2.5)
    killed.mode = "cpu"
    expected = {"fires_first": "fastcgi_read_timeout", "fires_first_seconds": 60,
                "cpu_bound": {"fires_first": "request_terminate_timeout", "seconds": 2}}
    finding = conclude([survivor, killed], 8.0, None, expected, "/opskit-measure-ab.php")
    assert finding.cause == "measured-kill-time" and finding.severity.value == "info"
    assert "as the configuration predicts (php-fpm request_terminate_timeout, 2s)" in finding.summary
    assert "past the measurement" in finding.summary
    assert "GET /opskit-measure-ab.php?mode=cpu (origin) → HTTP 502 after 2.5s" in finding.evidence
    surprise = conclude([killed], 8.0, 120.0, {"cpu_bound": {"fires_first": "max_execution_time", "seconds": 30}},
                        "/p.php")
    assert surprise.severity.value == "warning" and "limited to 8s (not 120s)" in surprise.summary


def test_host_epoch_reads_the_hosts_zone():
    assert host_epoch("[01-Dec-2026 10:00:00] WARNING: x", "+0100") == at("2026-12-01T09:00:00")
    assert host_epoch("2026/12/01 10:00:00 [error] 1#1: x", "-0230") == at("2026-12-01T12:30:00")
    assert host_epoch("no time here", "+0000") is None


@pytest.fixture
def php():
    binary = shutil.which("php")
    if binary is None:
        pytest.fail("php-cli is not installed (Debian package php-cli; scripts/setup.sh installs it)")
    return binary


def run_probe(php: str, probe: Path, query: str) -> str:
    code = f"parse_str({query!r}, $_GET); include {str(probe)!r};"
    return subprocess.run([php, "-n", "-r", code], capture_output=True, text=True, timeout=30).stdout


@pytest.mark.parametrize("mode", ["wall", "cpu"])
def test_the_probe_stops_by_itself_after_max(php, tmp_path, mode):
    probe = tmp_path / "opskit-measure-x.php"
    probe.write_text(probe_php("20261201-000000-beef", 5))
    started = time.monotonic()
    out = run_probe(php, probe, f"mode={mode}&max=0.3")
    assert out.startswith(f"OPSKIT-MEASURE survived mode={mode} seconds=0.3")
    assert time.monotonic() - started < 3
    # max is capped by the one written in the file
    assert "min((float) $_GET['max'], 5)" in probe.read_text()


def test_an_old_probe_answers_nothing(php, tmp_path):
    probe = tmp_path / "opskit-measure-x.php"
    probe.write_text(probe_php("20261201-000000-beef", 5))
    old = time.time() - (2 * 5 + 900 + 60)
    os.utime(probe, (old, old))
    assert run_probe(php, probe, "mode=cpu&max=0.3") == ""


def test_measure_options_are_checked(tmp_path):
    from tests.conftest import run_cli

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts: {h1: {address: 127.0.70.250}}\n")
    wrong = run_cli("-i", str(inventory), "run", "facts", "--host", "h1", "--measure")
    assert wrong.returncode == 2 and "--measure: playbook facts measures nothing" in wrong.stderr
    bad = run_cli("-i", str(inventory), "run", "check-timeouts", "--host", "h1", "--measure", "--measure-max", "2h")
    assert bad.returncode == 2 and "--measure-max: too long" in bad.stderr
