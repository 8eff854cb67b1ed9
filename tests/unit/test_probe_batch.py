"""One exec for all of a step's probes: build_batch / split_batch (opskit/probes/__init__.py).

The built script is really run with this machine's /bin/sh, so the splitter is
tested on what a POSIX shell actually prints.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opskit.probes import Section, build_batch, new_fence, split_batch
from opskit.shell import quote

FENCE = "OPSKIT-0123456789abcdef"

# Text a probe may print: anything, with a good chance of fence-like and delimiter-like pieces.
PIECES = st.sampled_from(["---", "\n", "OPSKIT-", FENCE[:12], FENCE + " be", "begin", " end ", "OPSKIT-0 end p0 0",
                          "\n\n", "", " ", "0"])
OUTPUT = st.lists(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=15)
                  | PIECES, max_size=6).map("".join).filter(
    # the real fence is random per run, so no probe can print it; partial fences are fair game
    lambda text: not any(line.startswith((FENCE + " begin ", FENCE + " end ")) for line in text.split("\n")))
PROBE_ID = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)


def run_sh(script: str, stdin_script: bool = False) -> str:
    if stdin_script:
        proc = subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True, timeout=20)
    else:
        proc = subprocess.run(["sh", "-c", script], capture_output=True, timeout=20)
    return proc.stdout.decode("utf-8", "surrogateescape")


def printing(text: str, status: int = 0) -> str:
    return f"printf %s {quote(text)}; exit {status}"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(PROBE_ID, OUTPUT), min_size=1, max_size=4, unique_by=lambda p: p[0]))
def test_batch_round_trip_through_real_sh(probes):
    script = build_batch([(pid, printing(text)) for pid, text in probes], FENCE)
    got = split_batch(run_sh(script), FENCE)
    assert list(got) == [pid for pid, _ in probes]
    for pid, text in probes:
        # Exact output is the contract, trailing newlines included.
        assert got[pid] == Section(text, 0), f"\nGOT:  {got[pid]!r}\nWANT: {Section(text, 0)!r}"


@pytest.mark.parametrize("text", ["abc\n", "\n", "a\n\n"])
def test_batch_keeps_a_trailing_newline(text):
    got = split_batch(run_sh(build_batch([("p", printing(text))], FENCE)), FENCE)
    assert got["p"].output == text


@pytest.mark.parametrize("text", ["", "abc", "a\nb", "--- \n---", "trailing space "])
def test_batch_output_without_trailing_newline_is_exact(text):
    got = split_batch(run_sh(build_batch([("p", printing(text))], FENCE)), FENCE)
    assert got["p"].output == text


def test_batch_reports_each_probe_exit_status():
    script = build_batch([("a", printing("x", 3)), ("b", "true"), ("c", "false"), ("d", printing("", 127))], FENCE)
    got = split_batch(run_sh(script), FENCE)
    assert {pid: s.exit_status for pid, s in got.items()} == {"a": 3, "b": 0, "c": 1, "d": 127}


def test_a_probe_that_exits_does_not_stop_the_batch():
    script = build_batch([("a", "echo one; exit 4; echo never"), ("b", "echo two")], FENCE)
    got = split_batch(run_sh(script), FENCE)
    assert got == {"a": Section("one\n", 4), "b": Section("two\n", 0)}


def test_probes_cannot_read_the_script_from_stdin():
    # Sent as `sh -s` with the script on stdin, a probe reading stdin must not swallow the rest.
    # The script is made longer than what sh reads ahead, so the rest is really still in the pipe.
    script = build_batch([("a", "cat; echo read-done"), ("pad", ": " + "x" * 200_000), ("b", "echo two")], FENCE)
    got = split_batch(run_sh(script, stdin_script=True), FENCE)
    assert list(got) == ["a", "pad", "b"]
    assert got == {"a": Section("read-done\n", 0), "pad": Section("", 0), "b": Section("two\n", 0)}


def test_a_fence_from_another_run_is_just_text():
    other = new_fence()
    fake = f"{other} end a 9\n{other} begin z\n"
    got = split_batch(run_sh(build_batch([("a", printing(fake)), ("b", "echo two")], FENCE)), FENCE)
    assert got == {"a": Section(fake, 0), "b": Section("two\n", 0)}


def test_truncated_output_drops_the_unfinished_section():
    script = build_batch([("a", printing("first\n")), ("b", printing("second line\nmore\n")), ("c", "echo third")], FENCE)
    full = run_sh(script)
    cut = full[: full.index("more")]          # cut in the middle of b's output
    got = split_batch(cut, FENCE)
    assert got == {"a": Section("first\n", 0)}


def test_truncated_before_anything_is_empty():
    assert split_batch("", FENCE) == {}
    assert split_batch(f"{FENCE} begin a\npartial", FENCE) == {}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(PROBE_ID, OUTPUT), min_size=1, max_size=3, unique_by=lambda p: p[0]), st.data())
def test_any_cut_keeps_finished_sections_and_drops_unstarted_ones(probes, data):
    full = run_sh(build_batch([(pid, printing(text)) for pid, text in probes], FENCE))
    whole = split_batch(full, FENCE)
    cut_at = data.draw(st.integers(0, len(full)))
    got = split_batch(full[:cut_at], FENCE)
    for pid, _ in probes:
        end_line = f"{FENCE} end {pid} "
        end_at = full.find(end_line)
        line_end = full.find("\n", end_at)
        if cut_at > line_end:            # the whole end fence line, newline included, arrived
            assert got.get(pid) == whole[pid]
        else:                            # the end fence is missing or cut short
            assert pid not in got


def test_a_cut_inside_the_end_fence_drops_the_section():
    full = run_sh(build_batch([("a", "echo one; exit 12")], FENCE))
    end = full.index(f"{FENCE} end a")
    assert full[end:] == f"{FENCE} end a 12\n"
    for cut_at in range(end, len(full)):     # before, at and inside the status, and before its newline
        assert split_batch(full[:cut_at], FENCE) == {}, repr(full[end:cut_at])
    assert split_batch(full, FENCE) == {"a": Section("one\n", 12)}


@pytest.mark.parametrize("end_line", ["end a", "end a ", "end a x", "end a -1", "end a 0 extra", "end a 1.5"])
def test_a_malformed_end_fence_drops_the_section(end_line):
    text = f"{FENCE} begin a\none\n\n{FENCE} {end_line}\n{FENCE} begin b\n\n{FENCE} end b 0\n"
    assert split_batch(text, FENCE) == {"b": Section("", 0)}


@pytest.mark.parametrize("probe_id", ["a b", "a;b", "$(x)", "", "a'b", "a\nb"])
def test_unsafe_probe_id_is_refused(probe_id):
    with pytest.raises(ValueError, match="unsafe token"):
        build_batch([("ok", "true"), (probe_id, "true")], FENCE)


@pytest.mark.parametrize("fence", ["", "OPSKIT x", "'; rm -rf ~; '"])
def test_unsafe_fence_is_refused(fence):
    with pytest.raises(ValueError, match="unsafe token"):
        build_batch([("a", "true")], fence)


def test_new_fence_is_random_and_plain():
    fences = {new_fence() for _ in range(50)}
    assert len(fences) == 50
    for fence in fences:
        assert fence.startswith("OPSKIT-") and len(fence) == len("OPSKIT-") + 16
        int(fence[7:], 16)


def test_split_batch_is_pure_on_handmade_text():
    text = (f"noise before\n{FENCE} begin a\nline 1\nline 2\n\n{FENCE} end a 0\n"
            f"between\n{FENCE} begin b\n\n{FENCE} end b 2\n")
    assert split_batch(text, FENCE) == {"a": Section("line 1\nline 2\n", 0), "b": Section("", 2)}
