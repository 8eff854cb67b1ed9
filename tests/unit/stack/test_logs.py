"""opskit/stack/logs.py on real logs: tests/captures/php-fpm-8.2-debian12/logs/<case>/, made by
tests/captures/capture_timeouts.py with php-fpm 8.2, nginx 1.22 and Apache 2.4 on loopback (its
README says how). Each case's expected counts, times and lines were read off the files by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opskit.stack import logs

LOGS = Path(__file__).parent.parent.parent / "captures" / "php-fpm-8.2-debian12" / "logs"
CASES = sorted(p.name for p in LOGS.iterdir() if p.is_dir())
SOCKET = "/tmp/opskit-capture/timeouts/{case}/run/php-fpm.sock"


def read(case: str, log: str) -> str:
    return (LOGS / case / log).read_text()


def scanned(case: str) -> dict[str, dict[str, logs.SignatureCount]]:
    """{log file: its counts} for every log of the case."""
    return {log.name: logs.scan(log.read_text(), log.name) for log in sorted((LOGS / case).glob("*.log"))}


# {case: {log: {signature: count}}}: every signature every log of the case holds, nothing else
EXPECTED = {
    "terminate-timeout": {"php-fpm.log": {"fpm-terminate": 1, "fpm-exit-sigterm": 1},
                          "nginx-origin-error.log": {"nginx-upstream-reset": 1}},
    "external-sigkill": {"php-fpm.log": {"fpm-exit-sigkill": 1}, "nginx-origin-error.log": {"nginx-upstream-reset": 1}},
    "cpu-limit": {"php-fpm.log": {"fpm-exit-sigxcpu": 1}, "nginx-origin-error.log": {"nginx-upstream-reset": 1}},
    "cpu-limit-hard": {"php-fpm.log": {"fpm-exit-sigkill": 1}, "nginx-origin-error.log": {"nginx-upstream-reset": 1}},
    "fastcgi-read-timeout": {"php-fpm.log": {"fpm-slow": 1}, "nginx-origin-error.log": {"nginx-upstream-timeout": 1}},
    "gateway-read-timeout": {"nginx-gateway-error.log": {"nginx-upstream-timeout": 1}},
    "max-children": {"php-fpm.log": {"fpm-max-children": 1}},
    "backlog-full": {"php-fpm.log": {"fpm-max-children": 1}, "nginx-origin-error.log": {"nginx-backlog-full": 2}},
    "fpm-down": {"nginx-origin-error.log": {"nginx-upstream-refused": 1, "nginx-upstream-missing": 1,
                                            "nginx-no-live-upstreams": 1}},
    "max-execution-time": {"php-error.log": {"php-max-execution-time": 1, "php-fatal": 1}},
    "fatal-to-nginx": {"nginx-origin-error.log": {"php-max-execution-time": 1, "php-fatal": 1}},
    "apache-proxy-timeout": {"apache-error.log": {"apache-fcgi-timeout": 1}},
    "apache-terminate-timeout": {"php-fpm.log": {"fpm-terminate": 1, "fpm-exit-sigterm": 1},
                                 "apache-error.log": {"apache-fcgi-reset": 1}},
    "apache-socket-denied": {"apache-error.log": {"apache-fcgi-connect-failed": 1}},
}
# the HTTP status of each request, from status.json
STATUSES = {
    "terminate-timeout": [502], "external-sigkill": [502], "cpu-limit": [502], "cpu-limit-hard": [502],
    "fastcgi-read-timeout": [504], "gateway-read-timeout": [504], "max-children": [200, 200],
    "backlog-full": [200, 200, 502, 502], "fpm-down": [502, 502], "max-execution-time": [500, 500],
    "fatal-to-nginx": [500, 500], "apache-proxy-timeout": [504], "apache-terminate-timeout": [503],
    "apache-socket-denied": [503],
}


def test_every_case_is_expected():
    assert CASES == sorted(EXPECTED) == sorted(STATUSES)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_signature_counts_of_each_capture(case):
    found = {log: {name: c.count for name, c in counts.items()} for log, counts in scanned(case).items() if counts}
    assert found == EXPECTED[case]


@pytest.mark.parametrize("case", sorted(STATUSES))
def test_http_status_of_each_capture(case):
    status = json.loads((LOGS / case / "status.json").read_text())
    assert [r["status"] for r in status["requests"]] == STATUSES[case]


def test_terminate_timeout_counts_times_samples():
    fpm = logs.scan(read("terminate-timeout", "php-fpm.log"), "/var/log/php8.2-fpm.log")
    terminate = fpm["fpm-terminate"]
    assert (terminate.family, terminate.source, terminate.first, terminate.last) == (
        "kill", "/var/log/php8.2-fpm.log", "2026-12-01T11:34:55", "2026-12-01T11:34:55")
    assert terminate.sample == (
        "[01-Dec-2026 11:34:55] WARNING: [pool site1] child 29743, script "
        "'/tmp/opskit-capture/timeouts/terminate-timeout/docroot/sleep.php' (request: \"GET /sleep.php?s=5\") "
        "execution timed out (2.509401 sec), terminating")
    assert terminate.sample_line == 6
    assert (terminate.where, terminate.seconds) == (("site1",), (2.509401, 2.509401))
    sigterm = fpm["fpm-exit-sigterm"]
    assert sigterm.seconds == (2.670317, 2.670317) and sigterm.where == ("site1",)
    reset = logs.scan(read("terminate-timeout", "nginx-origin-error.log"), "nginx")["nginx-upstream-reset"]
    assert reset.first == "2026-12-01T11:34:55" and reset.family == "upstream"
    assert reset.where == ("fastcgi://unix:" + SOCKET.format(case="terminate-timeout") + ":",)
    assert reset.sample.startswith("2026/12/01 11:34:55 [error] 29765#29765: *2 recv() failed (104: Connection reset "
                                   "by peer) while reading response header from upstream, client: 127.0.50.8")


def test_kill_and_cpu_limit_lines():
    sigkill = logs.scan(read("external-sigkill", "php-fpm.log"), "fpm")["fpm-exit-sigkill"]
    assert sigkill.sample == ("[01-Dec-2026 11:34:58] WARNING: [pool site1] child 30580 exited on signal 9 (SIGKILL) "
                              "after 1.708512 seconds from start")
    assert sigkill.seconds == (1.708512, 1.708512)
    xcpu = logs.scan(read("cpu-limit", "php-fpm.log"), "fpm")["fpm-exit-sigxcpu"]
    assert xcpu.sample == ("[01-Dec-2026 11:35:06] WARNING: [pool site1] child 31795 exited on signal 24 (SIGXCPU) "
                           "after 5.379469 seconds from start")
    assert xcpu.first == "2026-12-01T11:35:06"


def test_read_timeouts_at_the_origin_and_the_gateway():
    origin = logs.scan(read("fastcgi-read-timeout", "nginx-origin-error.log"), "origin")["nginx-upstream-timeout"]
    assert origin.family == "gateway-timeout" and origin.first == "2026-12-01T11:35:15"
    assert origin.where == ("fastcgi://unix:" + SOCKET.format(case="fastcgi-read-timeout"),)   # no ':' after a timeout
    gateway = logs.scan(read("gateway-read-timeout", "nginx-gateway-error.log"), "gateway")["nginx-upstream-timeout"]
    assert gateway.where == ("http://127.0.50.8:28080/sleep.php?s=5",)
    # the worker went on: php-fpm logged nothing but the slow log, the origin's access log a 499
    slow = logs.scan(read("fastcgi-read-timeout", "php-fpm.log"), "fpm")["fpm-slow"]
    assert (slow.family, slow.seconds, slow.first) == ("overload", (1.093943, 1.093943), "2026-12-01T11:35:14")
    assert " 499 " in read("gateway-read-timeout", "nginx-origin-access.log")
    assert logs.scan(read("gateway-read-timeout", "php-fpm.log"), "fpm") == {}


def test_workers_exhausted():
    dynamic = logs.scan(read("max-children", "php-fpm.log"), "fpm")["fpm-max-children"]
    assert dynamic.sample == ("[01-Dec-2026 11:35:29] WARNING: [pool site1] server reached pm.max_children setting (1), "
                              "consider raising it")
    assert (dynamic.family, dynamic.limit, dynamic.where) == ("overload", 1, ("site1",))
    ondemand = logs.scan(read("backlog-full", "php-fpm.log"), "fpm")["fpm-max-children"]
    assert "server reached max_children setting (1)" in ondemand.sample and ondemand.limit == 1
    backlog = logs.scan(read("backlog-full", "nginx-origin-error.log"), "nginx")["nginx-backlog-full"]
    assert (backlog.count, backlog.first, backlog.last) == (2, "2026-12-01T11:35:36", "2026-12-01T11:35:37")
    assert backlog.where == ("unix:" + SOCKET.format(case="backlog-full"),)


def test_php_fpm_down():
    counts = logs.scan(read("fpm-down", "nginx-origin-error.log"), "nginx")
    assert counts["nginx-upstream-refused"].where == ("unix:" + SOCKET.format(case="fpm-down"),)
    assert counts["nginx-upstream-missing"].where == ("unix:/tmp/opskit-capture/timeouts/fpm-down/run/missing.sock",)
    assert "[crit]" in counts["nginx-upstream-missing"].sample   # nginx logs ENOENT at crit, the others at error
    assert counts["nginx-no-live-upstreams"].where == ("fastcgi://php",)
    assert counts["nginx-no-live-upstreams"].first == "2026-12-01T11:35:44"


def test_php_fatal_errors_in_php_error_log_and_in_nginx():
    php = logs.scan(read("max-execution-time", "php-error.log"), "php")
    timeout = php["php-max-execution-time"]
    assert (timeout.family, timeout.seconds, timeout.first) == ("kill", (1.0, 1.0), "2026-12-01T11:35:47")
    assert php["php-fatal"].sample.startswith("[01-Dec-2026 11:35:49 UTC] PHP Fatal error:  Uncaught RuntimeException")
    nginx = logs.scan(read("fatal-to-nginx", "nginx-origin-error.log"), "nginx")
    assert "FastCGI sent in stderr" in nginx["php-max-execution-time"].sample
    assert nginx["php-fatal"].first == "2026-12-01T11:35:54" and nginx["php-fatal"].family == "php-error"


def test_apache_signatures():
    timeout = logs.scan(read("apache-proxy-timeout", "apache-error.log"), "apache")["apache-fcgi-timeout"]
    assert (timeout.family, timeout.first) == ("gateway-timeout", "2026-12-01T11:35:58.132095")
    reset = logs.scan(read("apache-terminate-timeout", "apache-error.log"), "apache")["apache-fcgi-reset"]
    assert reset.sample.endswith("(104)Connection reset by peer: [client 127.0.50.8:59659] AH01075: "
                                 "Error dispatching request to : ")
    denied = logs.scan(read("apache-socket-denied", "apache-error.log"), "apache")["apache-fcgi-connect-failed"]
    assert denied.where == (SOCKET.format(case="apache-socket-denied"),)


@pytest.mark.parametrize("case, expected", [
    ("terminate-timeout", [(29743, 15, "fpm-terminate", 2.509401)]),
    ("apache-terminate-timeout", [(11949, 15, "fpm-terminate", 2.557988)]),
    ("external-sigkill", [(30580, 9, "external-kill", None)]),
    ("cpu-limit", [(31795, 24, "cpu-limit", None)]),
    ("cpu-limit-hard", [(3245, 9, "external-kill", None)]),   # soft = hard: the kernel sends SIGKILL
    ("max-children", []),
    ("fastcgi-read-timeout", []),
])
def test_child_exits_tell_who_killed_the_worker(case, expected):
    exits = logs.child_exits(read(case, "php-fpm.log"))
    assert [(e.pid, e.signal, e.cause, e.terminated_after) for e in exits] == expected
    status = json.loads((LOGS / case / "status.json").read_text())
    assert all(e.pid == status.get("killed_pid", status.get("limited_pid", e.pid)) for e in exits)


def test_child_exit_details():
    (terminated,) = logs.child_exits(read("terminate-timeout", "php-fpm.log"))
    assert terminated.script == "/tmp/opskit-capture/timeouts/terminate-timeout/docroot/sleep.php"
    assert (terminated.pool, terminated.signal_name, terminated.seconds_from_start, terminated.at,
            terminated.line_number) == ("site1", "SIGTERM", 2.670317, "2026-12-01T11:34:55", 7)
    assert logs.exit_causes(logs.child_exits(read("cpu-limit", "php-fpm.log"))) == {"cpu-limit": 1}


def test_exits_correlate_by_pool_and_pid_and_forget_after_the_exit():
    text = "\n".join([
        "[01-Dec-2026 10:00:00] WARNING: [pool a] child 7, script '/x.php' (request: \"GET /x.php\") "
        "execution timed out (30.001 sec), terminating",
        "[01-Dec-2026 10:00:00] WARNING: [pool b] child 7 exited on signal 15 (SIGTERM) after 31.2 seconds from start",
        "[01-Dec-2026 10:00:00] WARNING: [pool a] child 7 exited on signal 15 (SIGTERM) after 30.2 seconds from start",
        "[01-Dec-2026 10:05:00] WARNING: [pool a] child 7 exited on signal 15 (SIGTERM) after 3.0 seconds from start",
        "[01-Dec-2026 10:06:00] NOTICE: [pool a] child 8 exited on signal 3 (SIGQUIT) after 10.0 seconds from start",
        "[01-Dec-2026 10:06:00] NOTICE: [pool a] child 9 exited with code 0 after 10.0 seconds from start",
        "[01-Dec-2026 10:07:00] WARNING: [pool a] child 10 exited on signal 11 (SIGSEGV - core dumped) after 2.5 "
        "seconds from start",
        "[01-Dec-2026 10:08:00] WARNING: [pool a] child 11 exited with code 255 after 1.5 seconds from start",
    ])
    exits = logs.child_exits(text)
    assert [(e.pool, e.pid, e.cause) for e in exits] == [
        ("b", 7, "external-term"), ("a", 7, "fpm-terminate"), ("a", 7, "external-term"), ("a", 10, "crash"),
        ("a", 11, "exit-code")]
    assert exits[3].core_dumped and exits[3].signal_name == "SIGSEGV" and exits[4].exit_code == 255
    # the same lines as signatures: SIGSEGV is "fpm-exit-signal"; SIGQUIT and code 0 are no signature
    assert {name: c.count for name, c in logs.scan(text, "t").items()} == {
        "fpm-terminate": 1, "fpm-exit-sigterm": 3, "fpm-exit-signal": 1}


def test_signatures_without_a_capture():
    """Lines our lab did not produce, written in the templates of the captured ones: nginx
    formats every connect() errno as "(N: strerror)"; php-fpm adds " - core dumped"."""
    lines = {
        "nginx-upstream-denied": '2026/12/01 11:35:43 [crit] 1#1: *2 connect() to unix:/run/php/php8.2-fpm.sock '
                                 'failed (13: Permission denied) while connecting to upstream, client: 127.0.0.1',
        "nginx-upstream-refused": '2026/12/01 11:35:43 [error] 1#1: *2 connect() failed (111: Connection refused) '
                                  'while connecting to upstream, client: 127.0.0.1, upstream: "fastcgi://127.0.0.1:9000"',
        "nginx-upstream-closed": '2026/12/01 11:35:43 [error] 1#1: *2 upstream prematurely closed connection while '
                                 'reading response header from upstream, client: 127.0.0.1',
        "fpm-exit-sigkill": "[01-Dec-2026 11:34:58] WARNING: [pool www] child 3 exited on signal 9 (SIGKILL - core "
                            "dumped) after 1.5 seconds from start",
    }
    for name, line in lines.items():
        signature, _ = logs.match_line(line)
        assert signature.name == name
    refused = logs.scan(lines["nginx-upstream-refused"], "n")["nginx-upstream-refused"]
    assert refused.where == ("fastcgi://127.0.0.1:9000",)   # a TCP connect() names no target: the upstream field


@pytest.mark.parametrize("line, expected", [
    ("[01-Dec-2026 10:15:00] WARNING: [pool www] ...", "2026-12-01T10:15:00"),
    ("[01-Dec-2026 10:15:00.123456] DEBUG: pid 1", "2026-12-01T10:15:00.123456"),      # php-fpm at log_level debug
    ("[01-Dec-2026 10:15:00 UTC] PHP Fatal error:  x", "2026-12-01T10:15:00"),
    ("[01-Dec-2026 10:15:00 Europe/Berlin] PHP Warning:  x", "2026-12-01T10:15:00"),
    ("2026/12/01 10:15:00 [error] 1#1: *2 x", "2026-12-01T10:15:00"),
    ("[Tue Dec 01 10:15:00.123456 2026] [proxy_fcgi:error] x", "2026-12-01T10:15:00.123456"),
    ("[Tue Dec 01 10:15:00 2026] [error] x", "2026-12-01T10:15:00"),                  # Apache 2.2 style
    ("Stack trace:", None), ("", None), ("[01-Foo-2026 10:15:00] x", None),
    ("x 2026/12/01 10:15:00 [error]", None),                                          # only at the start
])
def test_parse_timestamp(line, expected):
    assert logs.parse_timestamp(line) == expected


def test_timestamps_of_every_capture_line_that_has_one():
    for case in CASES:
        for log in (LOGS / case).glob("*error.log"):
            for line in log.read_text().splitlines():
                if line[:1] in "[0123456789" and not line.startswith("[0x"):
                    assert logs.parse_timestamp(line), (log, line)


def test_partial_first_line_and_crlf():
    text = read("external-sigkill", "php-fpm.log")
    cut = text[text.index("Dec-2026 11:34:58] WARNING: [pool site1] child 30580"):]   # a tail read cut in the line
    assert logs.scan(cut, "fpm") != {} and logs.scan(cut, "fpm", partial_first_line=True) == {}
    crlf = logs.scan(text.replace("\n", "\r\n"), "fpm")["fpm-exit-sigkill"]
    assert not crlf.sample.endswith("\r") and crlf.count == 1


def test_merge_and_families():
    a = logs.scan(read("terminate-timeout", "php-fpm.log"), "a.log")
    b = logs.scan(read("apache-terminate-timeout", "php-fpm.log"), "b.log")
    merged = logs.merge(a, b)["fpm-terminate"]
    assert (merged.count, merged.first, merged.last, merged.source) == (
        2, "2026-12-01T11:34:55", "2026-12-01T11:36:06", "a.log, b.log")
    assert merged.seconds == (2.509401, 2.557988) and "child 11949" in merged.sample
    assert logs.by_family(logs.merge(a, logs.scan(read("backlog-full", "php-fpm.log"), "c"))) == {
        "kill": 2, "overload": 1}


KERNEL = Path(__file__).resolve().parents[2] / "captures" / "kernel-debian12"


def test_oom_kills_in_real_dmesg_output():
    """`dmesg -T` after two global OOM kills and one memory cgroup's (php over a 64 MiB limit):
    one count per "Killed process" line, named by the process; the surrounding lines of the
    same kills ("invoked oom-killer", "oom-kill:constraint=…", the memory dump) do not count."""
    excerpt = (KERNEL / "dmesg-T-php-memcg-oom-excerpt.txt").read_text()
    [(name, count)] = logs.scan(excerpt, "dmesg -T").items()
    assert (name, count.count, count.where, count.last) == ("oom-kill", 1, ("php",), "2026-12-01T17:42:08")
    assert "invoked oom-killer" in excerpt and "oom-kill:constraint=CONSTRAINT_MEMCG" in excerpt
    killed = logs.scan((KERNEL / "dmesg-T-killed.txt").read_text(), "dmesg -T")["oom-kill"]
    assert (killed.count, killed.where, killed.first, killed.last) == (
        3, ("python", "php"), "2026-12-01T08:16:57", "2026-12-01T17:42:08")
    assert logs.parse_timestamp("[Tue Dec  1 08:16:57 2026] Out of memory: x") == "2026-12-01T08:16:57"
    assert logs.parse_timestamp("[Sun Nov 22 23:59:01 2026] x") == "2026-11-22T23:59:01"


def test_every_signature_is_in_a_capture_or_in_test_signatures_without_a_capture():
    seen = {name for case in CASES for counts in scanned(case).values() for name in counts}
    seen |= {name for file in KERNEL.glob("*.txt") for name in logs.scan(file.read_text(), file.name)}
    assert set(logs.BY_NAME) - seen == {"nginx-upstream-denied", "nginx-upstream-closed", "fpm-exit-signal"}
    assert all(s.family in logs.FAMILIES for s in logs.SIGNATURES)
    assert logs.BY_NAME["fpm-terminate"].to_json()["http"] == "502"
    assert logs.scan(read("cpu-limit", "php-fpm.log"), "x")["fpm-exit-sigxcpu"].to_json()["seconds"] == (
        5.379469, 5.379469)
