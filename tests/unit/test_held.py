"""`opskit runs`: list_runs (opskit/transaction/held.py) over a real Journal in a temp dir, with host_state
(opskit/journal.py) read back from the events the journal wrote."""

from __future__ import annotations

import time

import pytest

from opskit.journal import Journal, host_state
from opskit.transaction.held import list_runs

NOW = int(time.time())
HELD, EXPIRED, IDLE, BUSY, KEPT, ROLLED = ("20260101-000000-0001", "20260101-000000-0002", "20260101-000000-0003",
                                           "20260101-000000-0004", "20260101-000000-0005", "20260101-000000-0006")


def make_run(journal: Journal, run_id: str, hosts: dict[str, list[dict]], playbook: str = "disable-cdn") -> None:
    journal.create(run_id, {"run_id": run_id, "playbook": playbook,
                            "hosts": {name: {"name": name, "address": "192.0.2.1"} for name in hosts}})
    for host, events in hosts.items():
        for event in events:
            journal.append(run_id, host, event)


@pytest.fixture
def journal(tmp_path):
    # "now" when the test runs, not when the module was collected (the integration tests
    # before these take longer than the deadlines below)
    global NOW
    NOW = int(time.time())
    j = Journal(tmp_path / "runs")
    make_run(j, HELD, {"site1": [{"event": "start"}, {"event": "applied"}, {"event": "applied"},
                                 {"event": "armed", "deadline": NOW + 600}]})
    make_run(j, EXPIRED, {"site1": [{"event": "applied"}, {"event": "armed", "deadline": NOW - 5}],
                          # re-armed later: the latest deadline counts
                          "site2": [{"event": "applied"}, {"event": "armed", "deadline": NOW - 900},
                                    {"event": "armed", "deadline": NOW + 900}]})
    # died before changing anything: nothing to hold
    make_run(j, IDLE, {"site1": [{"event": "start"}], "site2": []}, playbook="facts")
    # changing things right now (or died mid-way): still running
    make_run(j, BUSY, {"site1": [{"event": "start"}, {"event": "applied"}]})
    make_run(j, KEPT, {"site1": [{"event": "applied"}, {"event": "armed", "deadline": NOW - 60},
                                 {"event": "end", "status": "kept", "by": "confirm"}]})
    make_run(j, ROLLED, {"site1": [{"event": "applied"}, {"event": "armed", "deadline": NOW - 60},
                                   {"event": "end", "status": "rolled_back"}],
                         "site2": [{"event": "end", "status": "unreachable"}]})
    return j


def row(run_id, host, state, deadline, changes, playbook="disable-cdn") -> dict:
    return {"run_id": run_id, "playbook": playbook, "host": host, "state": state, "deadline": deadline,
            "changes": changes}


def test_host_state_from_a_journal(journal):
    assert host_state(journal.events(HELD, "site1")) == {"state": "held", "deadline": NOW + 600, "changes": 2}
    assert host_state(journal.events(EXPIRED, "site1")) == {"state": "held", "deadline": NOW - 5, "changes": 1}
    assert host_state(journal.events(EXPIRED, "site2")) == {"state": "held", "deadline": NOW + 900, "changes": 1}
    assert host_state(journal.events(IDLE, "site1")) == {"state": "running", "deadline": None, "changes": 0}
    assert host_state(journal.events(IDLE, "site2")) == {"state": "running", "deadline": None, "changes": 0}
    assert host_state(journal.events(BUSY, "site1")) == {"state": "running", "deadline": None, "changes": 1}
    assert host_state(journal.events(KEPT, "site1")) == {"state": "kept", "deadline": NOW - 60, "changes": 1}
    assert host_state(journal.events(ROLLED, "site2")) == {"state": "unreachable", "deadline": None, "changes": 0}


def test_list_runs_shows_what_is_still_held_or_running(journal):
    assert list_runs(journal) == [
        row(HELD, "site1", "held", NOW + 600, 2),
        # the deadline passed but no end was journalled: the guard should have undone it
        row(EXPIRED, "site1", "expired", NOW - 5, 1),
        row(EXPIRED, "site2", "held", NOW + 900, 1),
        row(BUSY, "site1", "running", None, 1),
    ]


def test_list_runs_all_shows_every_host_of_every_run(journal):
    assert list_runs(journal, show_all=True) == [
        row(HELD, "site1", "held", NOW + 600, 2),
        row(EXPIRED, "site1", "expired", NOW - 5, 1),
        row(EXPIRED, "site2", "held", NOW + 900, 1),
        row(IDLE, "site1", "running", None, 0, playbook="facts"),
        row(IDLE, "site2", "running", None, 0, playbook="facts"),
        row(BUSY, "site1", "running", None, 1),
        row(KEPT, "site1", "kept", NOW - 60, 1),
        row(ROLLED, "site1", "rolled_back", NOW - 60, 1),
        row(ROLLED, "site2", "unreachable", None, 0),
    ]


def test_list_runs_after_a_settle_hides_the_run(journal):
    journal.append(HELD, "site1", {"event": "end", "status": "kept", "by": "confirm"})
    journal.append(EXPIRED, "site1", {"event": "end", "status": "rolled_back", "by": "rollback"})
    assert [(r["run_id"], r["host"]) for r in list_runs(journal)] == [(EXPIRED, "site2"), (BUSY, "site1")]


def test_list_runs_re_armed_after_an_end_is_held_again(journal):
    journal.append(KEPT, "site1", {"event": "armed", "deadline": NOW + 300})
    assert row(KEPT, "site1", "held", NOW + 300, 1) in list_runs(journal)


def test_list_runs_of_an_empty_journal(tmp_path):
    assert list_runs(Journal(tmp_path / "none")) == []
    assert list_runs(Journal(tmp_path / "none"), show_all=True) == []


def test_list_runs_skips_folders_that_are_not_runs(journal):
    (journal.root / "stray").mkdir()
    (journal.root / "half-created").mkdir()
    (journal.root / "half-created" / "site1.jsonl").write_text('{"event": "applied"}\n')
    assert {r["run_id"] for r in list_runs(journal, show_all=True)} == {HELD, EXPIRED, IDLE, BUSY, KEPT, ROLLED}


@pytest.mark.parametrize("content", [b'{"run_id": "x", "hosts": {', b"\x00" * 40, b'{"playbook": "facts"}', b"\xff"],
                         ids=["syntax", "nul-bytes", "no-hosts", "not-utf8"])
def test_list_runs_skips_a_corrupt_run_and_names_it(journal, content):
    bad = "20260101-000000-0bad"
    make_run(journal, bad, {"site1": [{"event": "applied"}]})
    (journal.run_dir(bad) / "run.json").write_bytes(content)
    skipped: list[str] = []
    assert list_runs(journal, skipped=skipped) == list_runs(journal)   # the others, as before
    assert {r["run_id"] for r in list_runs(journal, show_all=True)} == {HELD, EXPIRED, IDLE, BUSY, KEPT, ROLLED}
    assert len(skipped) == 1
    assert skipped[0].startswith(f"skipped run {bad}: run.json is corrupt (")
    assert str(journal.run_dir(bad) / "run.json") in skipped[0]


def test_list_runs_survives_damaged_event_lines(journal):
    with open(journal.run_dir(HELD) / "site1.jsonl", "ab") as fh:
        fh.write(b'\xff\x00\n[]\n{"event": "armed", "deadline": "tomorrow"}\n')
    assert row(HELD, "site1", "held", None, 2) in list_runs(journal)
