"""opskit/stack/crontab.py on tests/captures/cron-debian12: Debian 12's own crontabs (copied from
the packages: they must give no kill evidence, though /etc/cron.d/php names php) and kill scripts
of ours in the formats cron reads. Line numbers were read off the files by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.stack import crontab

CRON = Path(__file__).parent.parent.parent / "captures" / "cron-debian12"


def text(name: str) -> str:
    return (CRON / name).read_text()


def test_debian_system_crontab_entries():
    entries = crontab.entries(text("etc/crontab"), "/etc/crontab", "system")
    assert [(e.line, e.schedule, e.user) for e in entries] == [
        (18, "17 * * * *", "root"), (19, "25 6 * * *", "root"), (20, "47 6 * * 7", "root"), (21, "52 6 1 * *", "root")]
    assert entries[0].command == "cd / && run-parts --report /etc/cron.hourly"   # tab-separated fields


@pytest.mark.parametrize("name, kind", [
    ("etc/crontab", "system"), ("etc/cron.d/php", "system"), ("etc/cron.d/e2scrub_all", "system"),
    ("etc/cron.daily/apache2", "script"), ("etc/cron.daily/dpkg", "script"),
])
def test_debian_files_kill_nothing(name, kind):
    assert crontab.kill_lines(text(name), "/" + name, kind) == ()


def test_cron_d_kill_script():
    found = crontab.kill_lines(text("ours/etc/cron.d/php-reaper"), "/etc/cron.d/php-reaper", "system")
    assert [(k.line, k.schedule, k.user, k.tool, k.targets, k.signal, k.age_seconds) for k in found] == [
        (3, "*/5 * * * *", "root", "killall", ("php-fpm8.2",), "KILL", 300),
        (4, "*/10 * * * *", "root", "pkill", ("php", "user:bob", "user:carol"), "KILL", 600),
        (6, "* * * * *", "root", "kill", ("php",), "KILL", 120),
        (7, "@hourly", "root", "killall", ("lsphp",), "TERM", None),
    ]   # line 9 runs wp-cron.php: it kills nothing
    assert found[0].command == "/usr/bin/killall -9 -o 5m php-fpm8.2 >/dev/null 2>&1"
    assert found[0].to_json()["age_seconds"] == 300


def test_cron_hourly_script():
    found = crontab.kill_lines(text("ours/etc/cron.hourly/kill-long-php"), "/etc/cron.hourly/kill-long-php", "script")
    assert [(k.line, k.schedule, k.tool, k.targets, k.signal, k.age_seconds) for k in found] == [
        (4, "@hourly", "kill", ("php-cgi",), "TERM", None),          # the loop's pgrep names the target
        (6, "@hourly", "pkill", ("php-fpm",), "KILL", 3600)]


def test_user_crontab():
    entries = crontab.entries(text("ours/crontab-l/bob.txt"), "crontab -l")
    assert [(e.line, e.schedule, e.user) for e in entries] == [(4, "0 3 * * *", None), (5, "*/2 * * * *", None),
                                                              (6, "@reboot", None)]
    found = crontab.kill_lines(text("ours/crontab-l/bob.txt"), "crontab -l")
    assert [(k.line, k.tool, k.targets, k.signal) for k in found] == [
        (5, "pkill", ("php", "user:bob"), "TERM"), (6, "killall", ("php-cgi", "user:bob"), "TERM")]


@pytest.mark.parametrize("command, expected", [
    ("pkill php-fpm", ("pkill", ("php-fpm",), "TERM", None)),
    ("pkill -9 -f 'php-fpm: pool www'", ("pkill", ("php-fpm",), "KILL", None)),
    ("killall -s SIGKILL --older-than 2h php8.2", ("killall", ("php8.2",), "KILL", 7200)),
    ("killall --older-than=90 php-cgi", ("killall", ("php-cgi",), "TERM", 90)),
    ("kill -9 $(pgrep -u alice lsphp)", ("kill", ("lsphp", "user:alice"), "KILL", None)),
    ("/usr/bin/pkill -U www-data -O 300", ("pkill", ("user:www-data",), "TERM", 300)),
    ("ps -u bob -o pid=,etimes= | awk '$2 >= 600 {print $1}' | xargs kill", ("kill", ("user:bob",), "TERM", 600)),
    ("killall -I -e PHP", None),                                    # -I is no signal; "PHP" is no PHP name here
    ("php /var/www/wp-cron.php", None),
    ("killall nginx", None),
    ("pkill -f cron.php", None),                                    # a .php file is not a process name
    ("timeout 60 php job.php", None),
])
def test_kill_evidence(command, expected):
    assert crontab.kill_evidence(command) == expected


def test_helpers():
    assert crontab.duration_seconds("5m") == 300 and crontab.duration_seconds("1.5h") == 5400
    assert crontab.duration_seconds("soon") is None
    assert crontab.script_schedule("/etc/cron.daily/x") == "@daily" and crontab.script_schedule("/root/x.sh") is None
    with pytest.raises(ValueError):
        crontab.entries("", "/etc/cron.hourly/x", "script")
    assert crontab.entries("@every 5m x\n* * * * *\nMAILTO=a@b\n", "t") == ()   # no job on any of these
