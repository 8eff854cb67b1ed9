"""The local write-ahead journal (opskit/journal.py)."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from opskit.errors import InputError
from opskit.journal import Journal, host_state, new_run_id, state_dir

RUN = "20260101-000000-abcd"


@pytest.mark.parametrize("events, want", [
    ([], {"state": "running", "deadline": None, "changes": 0}),
    ([{"event": "start"}, {"event": "applied"}, {"event": "applied"}],
     {"state": "running", "deadline": None, "changes": 2}),
    ([{"event": "applied"}, {"event": "armed", "deadline": 1767225600}],
     {"state": "held", "deadline": 1767225600, "changes": 1}),
    ([{"event": "applied"}, {"event": "armed", "deadline": 100}, {"event": "armed", "deadline": 200},
      {"event": "end", "status": "kept"}],
     {"state": "kept", "deadline": 200, "changes": 1}),
    ([{"event": "applied"}, {"event": "armed", "deadline": 100}, {"event": "end", "status": "rolled_back"}],
     {"state": "rolled_back", "deadline": 100, "changes": 1}),
    ([{"event": "end"}], {"state": "running", "deadline": None, "changes": 0}),
    ([{"event": "end", "status": "unreachable"}], {"state": "unreachable", "deadline": None, "changes": 0}),
    ([{"no": "event"}, {"event": "mystery"}, {"event": "applied"}], {"state": "running", "deadline": None, "changes": 1}),
    # an end followed by a re-arm (opskit confirm refused, new hold) shows the latest fact
    ([{"event": "end", "status": "failed"}, {"event": "armed", "deadline": 5}],
     {"state": "held", "deadline": 5, "changes": 0}),
])
def test_host_state(events, want):
    assert host_state(events) == want


def test_host_state_does_not_change_the_events():
    events = [{"event": "armed", "deadline": 1}]
    host_state(events)
    assert events == [{"event": "armed", "deadline": 1}]


# run.json's shape: hosts maps each host's name to its connection settings (runner.start_journal)
META = {"playbook": "disable-cdn", "hosts": {"site1": {"name": "site1", "address": "192.0.2.1"}}}


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "runs")
    j.create(RUN, META)
    return j


def test_create_and_meta(journal):
    assert journal.meta(RUN) == META
    folder = journal.run_dir(RUN)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "run.json").stat().st_mode) == 0o600
    assert not (folder / "run.tmp").exists()


def test_create_twice_refuses(journal):
    with pytest.raises(FileExistsError):
        journal.create(RUN, {})


def test_append_then_events_in_order(journal):
    journal.append(RUN, "site1", {"event": "applied", "step": 0})
    journal.append(RUN, "site1", {"event": "armed", "deadline": 42})
    journal.append(RUN, "site2", {"event": "end", "status": "ok"})
    events = journal.events(RUN, "site1")
    assert [e["event"] for e in events] == ["applied", "armed"]
    assert events[0]["step"] == 0 and events[0]["pid"] == os.getpid() and isinstance(events[0]["t"], float)
    assert host_state(events) == {"state": "held", "deadline": 42, "changes": 1}
    assert [e["event"] for e in journal.events(RUN, "site2")] == ["end"]
    assert stat.S_IMODE((journal.run_dir(RUN) / "site1.jsonl").stat().st_mode) == 0o600


def test_events_of_an_unknown_host_are_empty(journal):
    assert journal.events(RUN, "nobody") == []


TORN = ['{"event": "end", "sta', '{', '\x00\x00', '{"event": "applied"']


def tear(journal, torn: str) -> None:
    journal.append(RUN, "site1", {"event": "applied"})
    journal.append(RUN, "site1", {"event": "armed", "deadline": 7})
    with open(journal.run_dir(RUN) / "site1.jsonl", "a") as fh:
        fh.write(torn)                     # crash mid-write: no newline, half a JSON object


@pytest.mark.parametrize("torn", TORN)
def test_events_tolerate_a_torn_last_line(journal, torn):
    tear(journal, torn)
    events = journal.events(RUN, "site1")
    assert [e["event"] for e in events] == ["applied", "armed"]
    assert host_state(events) == {"state": "held", "deadline": 7, "changes": 1}


@pytest.mark.parametrize("torn", TORN)
def test_an_event_appended_after_a_torn_line_is_kept(journal, torn):
    # append() ends a torn last line first, so the next event is not glued to the fragment
    tear(journal, torn)
    journal.append(RUN, "site1", {"event": "end", "status": "rolled_back"})
    journal.append(RUN, "site1", {"event": "note"})
    lines = (journal.run_dir(RUN) / "site1.jsonl").read_text().split("\n")
    assert lines[2] == torn and lines[-1] == "" and len(lines) == 6
    events = journal.events(RUN, "site1")
    assert [e["event"] for e in events] == ["applied", "armed", "end", "note"]
    assert host_state(events) == {"state": "rolled_back", "deadline": 7, "changes": 1}


def test_append_adds_no_blank_line_to_a_whole_file(journal):
    journal.append(RUN, "site1", {"event": "applied"})
    journal.append(RUN, "site1", {"event": "applied"})
    raw = (journal.run_dir(RUN) / "site1.jsonl").read_text()
    assert raw.count("\n") == 2 and "\n\n" not in raw and not raw.startswith("\n")


def test_append_is_one_line_per_event_even_with_newlines_in_values(journal):
    journal.append(RUN, "site1", {"event": "note", "text": "line one\nline two"})
    raw = (journal.run_dir(RUN) / "site1.jsonl").read_text()
    assert raw.count("\n") == 1
    assert journal.events(RUN, "site1")[0]["text"] == "line one\nline two"


def test_meta_of_an_unknown_run_lists_recent_ones(journal, tmp_path):
    for i in range(7):
        journal.create(f"20260102-00000{i}-0000", {})
    (journal.root / "not-a-run").mkdir()
    with pytest.raises(InputError) as caught:
        journal.meta("nope")
    message = str(caught.value)
    assert "no run 'nope'" in message
    assert "20260102-000006-0000" in message and "20260102-000002-0000" in message
    assert "20260102-000001-0000" not in message and "not-a-run" not in message


def test_run_ids_sorted_and_only_real_runs(tmp_path):
    j = Journal(tmp_path / "runs")
    assert j.run_ids() == []
    for run in ("20260102-000000-bbbb", "20260101-000000-aaaa"):
        j.create(run, {})
    (j.root / "stray").mkdir()
    assert j.run_ids() == ["20260101-000000-aaaa", "20260102-000000-bbbb"]


def test_new_run_id_shape():
    ids = {new_run_id() for _ in range(20)}
    for run in ids:
        assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run)
    assert len(ids) > 1


def test_state_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSKIT_STATE_DIR", str(tmp_path / "st"))
    assert state_dir() == tmp_path / "st" and (tmp_path / "st").is_dir()
    assert Journal.default().root == tmp_path / "st" / "runs"


def test_meta_is_plain_json(journal):
    assert json.loads((journal.run_dir(RUN) / "run.json").read_text())["playbook"] == "disable-cdn"


# -- run ids and host names become paths: only the shapes opskit makes ----------------------
NOT_RUN_IDS = ["../../x", "../x", "..", ".", "", "/etc", "x/../../y", "20260101-000000-abcd/../../x",
               "20260101-000000-abcd/x", "20260101-000000-ABCD", "20260101-000000-abcd\n", "nope", "-rf"]


@pytest.mark.parametrize("run_id", NOT_RUN_IDS)
@pytest.mark.parametrize("call", [
    lambda j, r: j.run_dir(r), lambda j, r: j.meta(r), lambda j, r: j.create(r, META),
    lambda j, r: j.append(r, "site1", {"event": "note"}), lambda j, r: j.events(r, "site1"),
], ids=["run_dir", "meta", "create", "append", "events"])
def test_every_method_refuses_what_is_not_a_run_id(journal, run_id, call):
    with pytest.raises(InputError, match="not a run id") as caught:
        call(journal, run_id)
    assert "20260101-093000-1a2b" in str(caught.value)   # what a run id looks like


def test_a_run_id_cannot_reach_a_run_json_outside_the_journal(journal, tmp_path):
    # `opskit rollback ../x` once loaded this file and connected with its settings
    crafted = tmp_path / "x"
    crafted.mkdir()
    (crafted / "run.json").write_text(json.dumps({"hosts": {"h": {"name": "h", "ssh_alias": "evil"}}}))
    with pytest.raises(InputError, match="not a run id"):
        journal.meta("../x")
    with pytest.raises(InputError, match="not a run id"):
        journal.append("../x", "h", {"event": "end"})
    assert not (crafted / "h.jsonl").exists()


def test_a_run_folder_that_is_a_symlink_out_of_the_journal_is_refused(journal, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_text(json.dumps(META))
    (journal.root / "20260101-000000-eeee").symlink_to(elsewhere)
    with pytest.raises(InputError, match="leads outside"):
        journal.meta("20260101-000000-eeee")


@pytest.mark.parametrize("host", ["../x", "../../etc/cron.d/x", "", ".hidden", "a/b", "a\n"])
def test_host_names_are_plain_names(journal, host):
    with pytest.raises(InputError, match="not a host name"):
        journal.append(RUN, host, {"event": "note"})
    with pytest.raises(InputError, match="not a host name"):
        journal.events(RUN, host)


def test_run_ids_skips_folders_that_are_not_named_like_runs(journal):
    (journal.root / "not-a-run").mkdir()
    (journal.root / "not-a-run" / "run.json").write_text(json.dumps(META))
    assert journal.run_ids() == [RUN]


# -- a corrupt run.json is named, never a traceback ----------------------------------------
CORRUPT = {
    "syntax": (b'{"playbook": "disable-cdn", "hosts": {', "not JSON"),
    "nul-bytes": (b"\x00" * 64, "not JSON"),
    "not-utf8": (b'{"playbook": "\xff\xfe"}', "not UTF-8"),
    "empty": (b"", "not JSON"),
    "no-hosts": (b'{"playbook": "disable-cdn"}', 'no "hosts" object'),
    "hosts-a-list": (b'{"playbook": "disable-cdn", "hosts": ["site1"]}', '"hosts" is not an object'),
    "host-not-an-object": (b'{"hosts": {"site1": 5}}', "bad entry 'site1'"),
    "host-name-a-path": (b'{"hosts": {"../x": {}}}', "bad entry '../x'"),
    "an-array": (b"[]", "an array, not a JSON object"),
    "deep": (b"[" * 100_000, "not JSON"),
}


def corrupt(journal: Journal, run_id: str, content: bytes) -> None:
    journal.create(run_id, META)
    (journal.run_dir(run_id) / "run.json").write_bytes(content)


@pytest.mark.parametrize("content, reason", CORRUPT.values(), ids=CORRUPT.keys())
def test_meta_of_a_corrupt_run_names_the_file_and_why(journal, content, reason):
    bad = "20260101-000000-0bad"
    corrupt(journal, bad, content)
    with pytest.raises(InputError) as caught:   # exit 2, one line
        journal.meta(bad)
    from opskit.journal import CorruptRunError
    assert isinstance(caught.value, CorruptRunError)
    message = str(caught.value)
    assert str(journal.run_dir(bad) / "run.json") in message and reason in message and bad in message
    assert caught.value.reason.startswith(reason.split(":")[0])
    assert "\n" not in message
    # the other runs are untouched, and still listed
    assert journal.meta(RUN) == META
    assert set(journal.run_ids()) == {RUN, bad}


def test_events_skip_lines_that_are_garbage(journal):
    with open(journal.run_dir(RUN) / "site1.jsonl", "wb") as fh:
        fh.write(b'{"event": "applied"}\n\xff\xfe\x00garbage\n[1, 2]\n"text"\n7\n{"event": "armed", "deadline": 9}\n')
    assert [e["event"] for e in journal.events(RUN, "site1")] == ["applied", "armed"]


@pytest.mark.parametrize("deadline", ["soon", None, True, float("inf"), float("nan"), -1, 10**20, [1]])
def test_host_state_ignores_a_damaged_deadline(deadline):
    assert host_state([{"event": "applied"}, {"event": "armed", "deadline": deadline}]) == \
        {"state": "held", "deadline": None, "changes": 1}


# -- local state is private whatever the umask ---------------------------------------------
@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_runs_folder_and_run_folders_are_0700_under_a_loose_umask(tmp_path, loose_umask):
    j = Journal(tmp_path / "state" / "runs")
    j.create(RUN, META)
    assert stat.S_IMODE(j.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(j.run_dir(RUN).stat().st_mode) == 0o700


def test_a_runs_folder_left_0755_is_tightened(tmp_path, loose_umask):
    root = tmp_path / "runs"
    root.mkdir(mode=0o755)
    Journal(root).create(RUN, META)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_state_dir_is_created_0700_under_a_loose_umask(tmp_path, monkeypatch, loose_umask):
    monkeypatch.setenv("OPSKIT_STATE_DIR", str(tmp_path / "new-state"))
    assert stat.S_IMODE(state_dir().stat().st_mode) == 0o700
