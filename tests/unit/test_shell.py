"""Quoting for the remote shell (opskit/shell.py), checked against this machine's real /bin/sh."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opskit.shell import quote, render, token

# Any unicode text without NUL (and without lone surrogates, which cannot be encoded for argv).
SHELL_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
NASTY = ["", " ", "'", '"', "\\", "$(touch PWNED)", "`touch PWNED`", "a;touch PWNED", "a\nb", "a'b\"c",
         "$HOME", "${HOME}", "*", "~", "-n", "-e", "%s %d", "\t\r\n", "'\\''", "é ü 漢字 🙂", "|| touch PWNED &"]


def sh_printf(script_arg: str, cwd) -> str:
    proc = subprocess.run(["sh", "-c", "printf %s " + script_arg], capture_output=True, cwd=cwd,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("value", NASTY)
def test_quote_nasty_values_reach_sh_unchanged(value, tmp_path):
    assert sh_printf(quote(value), tmp_path) == value
    assert list(tmp_path.iterdir()) == []   # nothing ran: no PWNED file


@settings(max_examples=60, deadline=None)
@given(value=SHELL_TEXT | st.sampled_from(NASTY).flatmap(lambda n: SHELL_TEXT.map(lambda t: t + n + t)))
def test_quote_any_text_reaches_sh_unchanged(value, tmp_path_factory):
    where = tmp_path_factory.mktemp("q")
    assert sh_printf(quote(value), where) == value
    assert list(where.iterdir()) == []


def test_quote_stringifies_non_strings(tmp_path):
    assert sh_printf(quote(42), tmp_path) == "42"
    assert sh_printf(quote(None), tmp_path) == "None"


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "a\x00"])
def test_quote_refuses_nul(value):
    with pytest.raises(ValueError, match="NUL"):
        quote(value)


def test_render_quotes_every_field(tmp_path):
    evil = "x'; touch PWNED; echo '"
    script = render("printf '%s|%s|%s' {a} {b} {c}", a=evil, b="$(touch PWNED)", c="two words")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout == f"{evil}|$(touch PWNED)|two words"
    assert list(tmp_path.iterdir()) == []


def test_render_quotes_even_with_other_format_specs():
    assert render("echo {a:>20}", a="a b") == "echo 'a b'"
    assert render("echo {a!r}", a="x") == "echo " + quote("'x'")


def test_render_raw_inserts_our_own_text_unquoted():
    inner = render("printf %s {v}", v="a b")
    assert render("( {inner:raw} ) || {x}", inner=inner, x="y z") == "( printf %s 'a b' ) || 'y z'"


def test_render_refuses_nul_in_a_field():
    with pytest.raises(ValueError, match="NUL"):
        render("echo {a}", a="x\x00y")


@pytest.mark.parametrize("value", ["20260101-000000-abcd", "step.3", "a:b", "A_b-0", "now", "OPSKIT-0123abcd"])
def test_token_accepts_plain_values(value):
    assert token(value) == value


@pytest.mark.parametrize("value", ["", "a b", "a;b", "$(x)", "`x`", "a'b", "a/b", "a\nb", "\nab", "é", "a\tb", "a\x00"])
def test_token_refuses_unsafe(value):
    with pytest.raises(ValueError, match="unsafe token"):
        token(value)


@pytest.mark.parametrize("value", ["abc\n", "run-1\n", "a\n\n"])
def test_token_refuses_trailing_newline(value):
    # SAFE_TOKEN ends with '$', which also matches before a final newline: token() must fullmatch
    with pytest.raises(ValueError, match="unsafe token"):
        token(value)
