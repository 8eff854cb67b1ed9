"""opskit/stack/ini.py: the ini line grammar shared by php.ini and php-fpm, checked
against PHP's own parser (the php CLI's parse_ini_file) on Debian's real files, and
its byte-keeping edits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from opskit.stack import ini

CAPTURES = Path(__file__).parent.parent.parent / "captures"
REAL_FILES = [CAPTURES / "php-8.2-debian12" / "php.ini", CAPTURES / "php-fpm-8.2-debian12" / "php-fpm.conf",
              CAPTURES / "php-fpm-8.2-debian12" / "pool.d" / "www.conf"]

# Quoting, inline comments, empty values and array keys, without the booleans and
# constants that PHP's normal mode would turn into numbers.
TRICKY = """; a comment
[www]
a = "x;y" ; the ';' inside quotes is text
c=
d = 'q;r'
e =  spaced value   ;x
  f = 1
php_admin_value[max_execution_time] = 60
php_admin_value [ memory_limit] = 256M
slowlog = /var/log/$pool.log.slow
g = "/a b"
h = "say \\"hi\\""
[PATH=/var/www/x]
max_execution_time = 90
"""


def php_parse(path: Path, mode: str) -> dict:
    php = shutil.which("php")
    assert php, "the php CLI is not installed: apt-get install php8.2-cli (see .ci/run)"
    code = f'echo json_encode(parse_ini_file($argv[1], true, INI_SCANNER_{mode}), JSON_FORCE_OBJECT);'
    proc = subprocess.run([php, "-n", "-r", code, str(path)], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(proc.stdout)


def as_php_array(text: str) -> dict:
    """Our lines as parse_ini_file($file, true) shows them: {section: {key: value}}, key[x] nested."""
    out: dict = {}
    section: dict = out
    for line in ini.parse_lines(text):
        if line.kind == "section":
            section = out.setdefault(line.name, {})
        elif line.kind == "key":
            base, bracket, offset = line.name.partition("[")
            if bracket:
                section.setdefault(base, {})[offset[:-1]] = line.value
            else:
                section[line.name] = line.value
    return out


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_agrees_with_php_on_debian_files(path):
    # raw mode: values as written (Debian's files hold no single-quoted value, where raw mode differs)
    assert as_php_array(path.read_text()) == php_parse(path, "RAW")


def test_agrees_with_php_on_quotes_and_array_keys(tmp_path):
    path = tmp_path / "tricky.ini"
    path.write_text(TRICKY)
    # normal mode, as php.ini and php-fpm are read: 'single quotes' are literal, \" is a quote
    assert as_php_array(TRICKY) == php_parse(path, "NORMAL")


@pytest.mark.parametrize("text, kind, name, value, span", [
    ("", "blank", None, None, ""),
    ("   \r\n", "blank", None, None, ""),
    ("; max_execution_time = 30", "comment", None, None, ""),
    ("# old style", "comment", None, None, ""),
    ("[PHP]", "section", "PHP", None, ""),
    ("[ PATH=/var/www ] ; per folder", "section", "PATH=/var/www", None, ""),
    ("[broken", "other", None, None, ""),
    ("no equals here", "other", None, None, ""),
    ("= 1", "other", None, None, ""),
    ("max_execution_time = 30 ; seconds", "key", "max_execution_time", "30", "30"),
    ("max_execution_time=30\r\n", "key", "max_execution_time", "30", "30"),
    ('error_log = "/var/log/a;b.log" ; x', "key", "error_log", "/var/log/a;b.log", '"/var/log/a;b.log"'),
    ("k = 'a;b'", "key", "k", "a;b", "'a;b'"),
    ("empty =", "key", "empty", "", ""),
    ("php_admin_value[max_execution_time] = 60", "key", "php_admin_value[max_execution_time]", "60", "60"),
])
def test_parse_line(text, kind, name, value, span):
    line = ini.parse_line(text, 7)
    assert (line.number, line.kind, line.name, line.value) == (7, kind, name, value)
    assert line.text[line.value_start:line.value_end] == span


def test_set_value_keeps_every_other_byte():
    text = "[www]\r\npm = dynamic\r\npm.max_children = 5 ; was 3\r\nlisten = /run/php/a.sock\r\n"
    assert ini.set_value(text, 3, "pm.max_children", "20") == text.replace("= 5 ;", "= 20 ;")
    quoted = 'error_log = "/var/log/a.log"\n'
    assert ini.set_value(quoted, 1, "error_log", "/var/log/b.log") == 'error_log = "/var/log/b.log"\n'
    assert ini.set_value("k=\n", 1, "k", "a;b") == 'k="a;b"\n'
    assert ini.set_value("k = 1", 1, "k", "2") == "k = 2"


def test_set_value_refuses_another_line():
    with pytest.raises(ValueError, match="line 1 does not set pm"):
        ini.set_value("pm.max_children = 5\n", 1, "pm", "static")
    with pytest.raises(ValueError, match="past the end"):
        ini.set_value("a = 1\n", 3, "a", "2")
    with pytest.raises(ValueError, match="double quote"):
        ini.set_value("a = 1\n", 1, "a", 'say "x"')


def test_add_key_in_the_style_of_a_line():
    text = "[www]\nuser=www-data\n  pm = dynamic\n\n; end\n"
    assert ini.add_key(text, 2, "request_terminate_timeout", "60s", like=2) == (
        "[www]\nuser=www-data\nrequest_terminate_timeout=60s\n  pm = dynamic\n\n; end\n")
    assert ini.add_key(text, 3, "request_terminate_timeout", "60s", like=3) == (
        "[www]\nuser=www-data\n  pm = dynamic\n  request_terminate_timeout = 60s\n\n; end\n")
    assert ini.add_key(text, 1, "a", "1") == "[www]\na = 1\nuser=www-data\n  pm = dynamic\n\n; end\n"
    assert ini.add_key("a = 1", 1, "b", "2") == "a = 1\nb = 2\n"        # a last line without its newline
    assert ini.add_key("a = 1\r\n", 1, "b", "2") == "a = 1\r\nb = 2\r\n"  # CRLF stays CRLF


@pytest.mark.parametrize("value, written", [
    ("30", "30"), ("/var/log/php.log", "/var/log/php.log"), ("E_ALL & ~E_NOTICE", "E_ALL & ~E_NOTICE"),
    ("a;b", '"a;b"'), ("a=b", '"a=b"'), (" x", '" x"'), ("", ""),
])
def test_quote_value(value, written):
    assert ini.quote_value(value) == written
