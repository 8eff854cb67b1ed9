"""opskit/stack/phpini.py on Debian 12's php.ini for php-fpm (tests/captures/php-8.2-debian12):
settings with file:line:section, effective values with [PATH=] scopes, and where a
new setting goes. Expected line numbers were read off the file by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.stack import ini, phpini

CAPTURE = Path(__file__).parent.parent.parent / "captures" / "php-8.2-debian12" / "php.ini"
FILE = "/etc/php/8.2/fpm/php.ini"


@pytest.fixture(scope="module")
def text() -> str:
    return CAPTURE.read_text()


@pytest.fixture(scope="module")
def parsed(text) -> phpini.PhpIni:
    return phpini.parse(text, FILE)


def test_settings_with_line_and_section(parsed):
    found = {d.key: d for d in parsed.directives}
    assert (found["max_execution_time"].line, found["max_execution_time"].section, found["max_execution_time"].value) == (
        409, "PHP", "30")
    assert (found["default_socket_timeout"].line, found["default_socket_timeout"].section) == (883, "PHP")
    assert found["variables_order"].value == "GPCS"   # quotes removed
    assert found["session.save_handler"].section == "Session"
    assert parsed.section("PHP") == phpini.IniSection("PHP", 1, 883)
    assert parsed.section("cli server") == phpini.IniSection("CLI Server", 972, 974)   # names are case-insensitive
    assert parsed.sections[0] == phpini.IniSection(None, 0, 0)


def test_effective(parsed):
    got = phpini.effective(parsed, "max_execution_time")
    assert (got.value, got.directive.line, got.source) == ("30", 409, "set")
    # a section like [Session] groups lines only: its settings apply everywhere
    assert phpini.effective(parsed, "session.gc_maxlifetime", "Date").value == "1440"
    assert phpini.effective(parsed, "max_input_vars").source == "default"   # commented out in Debian's file
    assert phpini.effective(parsed, "max_input_vars").value is None
    assert phpini.effective(parsed, "max_input_vars", default="1000").value == "1000"


def test_path_and_host_sections_scope_their_settings():
    text = "max_execution_time = 30\n[PATH=/var/www/slow]\nmax_execution_time = 300\n[HOST=a.test]\nmemory_limit = 1G\n"
    parsed = phpini.parse(text, "/x/php.ini")
    assert phpini.effective(parsed, "max_execution_time").value == "30"        # the scoped line is not global
    slow = phpini.effective(parsed, "max_execution_time", "PATH=/var/www/slow")
    assert (slow.value, slow.source, slow.directive.line) == ("300", "set", 3)
    other = phpini.effective(parsed, "max_execution_time", "HOST=a.test")
    assert (other.value, other.source) == ("30", "inherited")
    assert phpini.effective(parsed, "memory_limit").value == "128M"           # PHP's default
    assert phpini.is_scoped("path=/x") and not phpini.is_scoped("PHP") and not phpini.is_scoped(None)


def test_where_a_new_setting_goes(parsed):
    php = phpini.target_section(parsed, None)    # Debian's file: settings start under [PHP]
    assert (php.name, phpini.insertion_line(parsed, php)) == ("PHP", 883)
    assert phpini.insertion_line(parsed, phpini.target_section(parsed, "Date")) == 976   # a header without keys
    user_ini = phpini.parse("; WordPress\nmemory_limit = 256M\n\n; end\n", "/home/a/.user.ini")
    top = phpini.target_section(user_ini, None)
    assert (top.name, phpini.insertion_line(user_ini, top)) == (None, 2)
    comments_only = phpini.parse("; nothing yet\n", "/home/a/.user.ini")
    assert phpini.insertion_line(comments_only, phpini.target_section(comments_only, None)) == 1
    assert phpini.target_section(user_ini, "PHP") is None


def test_set_keeps_every_other_byte(text):
    edited = ini.set_value(text, 409, "max_execution_time", "120")
    assert edited == text.replace("\nmax_execution_time = 30\n", "\nmax_execution_time = 120\n")
    assert phpini.effective(phpini.parse(edited, FILE), "max_execution_time").value == "120"
