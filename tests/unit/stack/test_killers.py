"""opskit/stack/killers.py: /proc/<pid>/limits of real php-fpm workers (captured by
tests/captures/capture_timeouts.py: unchanged, soft 1 s / hard unlimited, soft = hard = 1 s), CSF's
csf.conf settings written in CSF's syntax (tests/captures/csf: CSF is not installable here),
LiteSpeed's LSAPI environment lines, and CloudLinux evidence.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.stack import killers

CAPTURES = Path(__file__).parent.parent.parent / "captures"
LOGS = CAPTURES / "php-fpm-8.2-debian12" / "logs"


def limits(case: str) -> dict[str, killers.ProcLimit]:
    return killers.parse_proc_limits((LOGS / case / "worker-limits.txt").read_text())


def test_proc_limits_of_an_unlimited_worker():
    found = limits("terminate-timeout")
    assert len(found) == 16
    assert found["Max cpu time"] == killers.ProcLimit("Max cpu time", None, None, "seconds")
    assert found["Max core file size"] == killers.ProcLimit("Max core file size", 0, None, "bytes")   # rlimit_core = 0
    assert found["Max open files"].soft == 20000 and found["Max nice priority"].units == ""
    assert killers.cpu_limit_signal(found["Max cpu time"]) is None


@pytest.mark.parametrize("case, soft, hard, signal", [
    ("cpu-limit", 1, None, "SIGXCPU"),
    ("cpu-limit-hard", 1, 1, "SIGKILL"),
])
def test_cpu_limit_and_the_signal_it_sends(case, soft, hard, signal):
    cpu = limits(case)["Max cpu time"]
    assert (cpu.soft, cpu.hard, killers.cpu_limit_signal(cpu)) == (soft, hard, signal)
    # what the worker died of in that capture: the signal cpu_limit_signal predicts
    assert f"({signal})" in (LOGS / case / "php-fpm.log").read_text()


def test_not_proc_limits():
    with pytest.raises(ValueError):
        killers.parse_proc_limits("Max cpu time 1 1 seconds\n")


def test_csf_process_tracking():
    csf = killers.parse_csf((CAPTURES / "csf" / "csf.conf").read_text())
    assert (csf.userkill, csf.kills_after, csf.skips_web_server) == (True, 1800, False)
    usertime = csf.settings["PT_USERTIME"]
    assert (usertime.value, usertime.file, usertime.line) == ("1800", "/etc/csf/csf.conf", 20)   # not the comment
    assert csf.number("PT_INTERVAL") == 60 and csf.number("PT_USER_ACTION") is None
    assert csf.to_json()["kills_after"] == 1800


def test_csf_that_kills_nothing():
    assert killers.parse_csf('PT_USERKILL = "0"\nPT_USERTIME = "1800"\n').kills_after is None
    assert killers.parse_csf('PT_USERKILL = "1"\nPT_USERTIME = "0"\n').kills_after is None
    assert killers.parse_csf("").kills_after is None


def test_lsapi_settings_in_each_form():
    text = "\n".join([
        "extprocessor lsphp {",
        "  env                     PHP_LSAPI_CHILDREN=10",
        "  env                     LSAPI_MAX_PROCESS_TIME=300",
        "}",
        "<env>LSAPI_MAX_PROCESS_TIME=120</env>",
        "# env LSAPI_MAX_PROCESS_TIME=5",
        "SetEnv LSAPI_MAX_PROCESS_TIME 90",
    ])
    found = killers.parse_lsapi(text, "/usr/local/lsws/conf/httpd_config.conf")
    assert [(s.name, s.value, s.line) for s in found] == [
        ("PHP_LSAPI_CHILDREN", 10, 2), ("LSAPI_MAX_PROCESS_TIME", 300, 3), ("LSAPI_MAX_PROCESS_TIME", 120, 5),
        ("LSAPI_MAX_PROCESS_TIME", 90, 7)]
    seconds, setting = killers.lsapi_max_process_time(found)
    assert (seconds, setting.line) == (90, 7)
    assert killers.lsapi_max_process_time(()) == (killers.LSAPI_DEFAULT_MAX_PROCESS_TIME, None)


@pytest.mark.parametrize("release, proc_lve, lve_kernel, present", [
    ("4.18.0-553.44.1.lve.el8.x86_64", False, True, True),
    ("3.10.0-962.3.2.lve1.5.24.el7.x86_64", True, True, True),
    ("6.1.0-28-amd64", False, False, False),
    ("6.1.0-28-amd64", True, False, True),
    ("5.14.0-427.el9.x86_64\n", False, False, False),
])
def test_cloudlinux(release, proc_lve, lve_kernel, present):
    found = killers.cloudlinux(release, proc_lve)
    assert (found.lve_kernel, found.present, found.to_json()["present"]) == (lve_kernel, present, present)
