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


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "runs")
    j.create(RUN, {"playbook": "disable-cdn", "hosts": ["site1"]})
    return j


def test_create_and_meta(journal):
    assert journal.meta(RUN) == {"playbook": "disable-cdn", "hosts": ["site1"]}
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
