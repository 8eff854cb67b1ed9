"""The host-side guard (opskit/guard.py), run for real with this machine's dash and bash (POSIX mode).

HOME is a temp dir; `crontab` is a shim keeping its table in $HOME (see conftest.Box).
"""

from __future__ import annotations

import os
import stat
import subprocess
import shutil
import time
from pathlib import Path

import pytest

from opskit.guard import (UndoReport, arm_script, guard_script, hello_script, parse_hello, parse_output, release_script,
                          run_guard, write_ahead_script)
from opskit.shell import quote

RUN = "20260101-000000-abcd"
OTHER = "20260101-000001-beef"


def counting(box, step: int, outcome: str, message: str) -> str:
    """An undo body that leaves a trace of each call, then reports `outcome`."""
    trace = f'echo x >> "$HOME/ran.{step}"'
    return f"{trace}\n{outcome} {quote(message)}" if outcome else trace


def ran(box, step: int) -> int:
    file = box.home / f"ran.{step}"
    return len(file.read_text().splitlines()) if file.exists() else 0


def undo_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("OPSKIT-UNDO", "OPSKIT-STATE"))]


# -- undo, in reverse order, with a final state -----------------------------------------
def test_now_undoes_every_step_in_reverse_order(box):
    script = guard_script(RUN, [counting(box, 0, "undone", "step zero back"), counting(box, 1, "not_applied", "one was never done")])
    tx = box.install(RUN, script)
    proc = box.guard(RUN, "now")
    assert proc.returncode == 0, proc.stderr
    assert undo_lines(proc.stdout) == [
        "OPSKIT-UNDO 1 not_applied one was never done",
        "OPSKIT-UNDO 0 undone step zero back",
        "OPSKIT-STATE rolled_back",
    ]
    assert box.state(RUN) == "rolled_back"
    assert (tx / "undone.0").exists() and (tx / "undone.1").exists()
    assert not (tx / "undo.lock").exists()
    report = parse_output(proc.stdout)
    assert report.state == "rolled_back"
    assert report.steps == {1: ("not_applied", "one was never done"), 0: ("undone", "step zero back")}
    assert report.conflicts == [] and report.failures == []


def test_default_mode_is_now(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "ok")]))
    proc = box.guard(RUN, None)
    assert parse_output(proc.stdout).state == "rolled_back"
    assert ran(box, 0) == 1


def test_second_run_after_rollback_repeats_the_result_without_undoing_again(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero"), counting(box, 1, "undone", "one")]))
    first = box.guard(RUN, "now")
    second = box.guard(RUN, "now")
    assert undo_lines(second.stdout) == undo_lines(first.stdout)
    assert (ran(box, 0), ran(box, 1)) == (1, 1)
    assert parse_output(second.stdout).state == "rolled_back"


def test_steps_undone_before_an_interruption_print_done_before(box):
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero"), counting(box, 1, "undone", "one")]))
    (tx / "undone.1").touch()          # the guard was killed after undoing step 1
    proc = box.guard(RUN, "now")
    report = parse_output(proc.stdout)
    assert report.steps == {1: ("done_before", "already undone"), 0: ("undone", "zero")}
    assert report.state == "rolled_back"
    assert (ran(box, 0), ran(box, 1)) == (1, 0)


def test_failed_step_leaves_state_failed_and_is_retried(box):
    bodies = [counting(box, 0, "undone", "zero"), counting(box, 1, "failed", "cannot rename")]
    tx = box.install(RUN, guard_script(RUN, bodies))
    box.crontab.write_text(f"* * * * * sh guard.sh cron # opskit-guard {RUN}\n")
    first = parse_output(box.guard(RUN, "now").stdout)
    assert first.state == "failed" and first.failures == ["cannot rename"]
    assert box.state(RUN) == "failed"
    assert not (tx / "undone.1").exists()
    # a failed undo stays scheduled: the crontab line is kept for the retry
    assert f"opskit-guard {RUN}" in box.crontab.read_text()
    second = parse_output(box.guard(RUN, "now").stdout)
    assert second.steps[0] == ("done_before", "already undone")
    assert second.steps[1] == ("failed", "cannot rename")
    assert (ran(box, 0), ran(box, 1)) == (1, 2)


def test_body_without_outcome_counts_as_failed(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "", "")]))
    report = parse_output(box.guard(RUN, "now").stdout)
    assert report.steps == {0: ("failed", "undo printed no outcome")}
    assert report.state == "failed"


def test_conflict_wins_over_failure_and_keeps_other_steps_undone(box):
    bodies = [counting(box, 0, "undone", "zero"), counting(box, 1, "conflict", "someone edited it"),
              counting(box, 2, "failed", "disk full")]
    tx = box.install(RUN, guard_script(RUN, bodies))
    box.take_lock(RUN, expires=int(time.time()) + 600)
    proc = box.guard(RUN, "now")
    report = parse_output(proc.stdout)
    assert report.state == "conflict" and box.state(RUN) == "conflict"
    assert report.conflicts == ["someone edited it"] and report.failures == ["disk full"]
    assert (tx / "undone.0").exists() and not (tx / "undone.1").exists()
    # a conflict needs a human, not a retry: the guard disarms and frees the host lock
    assert not box.lock.exists()
    # asking again repeats the conflict without running the undo again
    again = parse_output(box.guard(RUN, "now").stdout)
    assert again.state == "conflict" and again.conflicts == ["someone edited it"]
    assert ran(box, 1) == 1


def test_messages_with_shell_text_are_printed_not_run(box):
    message = "it's $(touch PWNED) `touch PWNED`; \"quoted\" & more"
    box.install(RUN, guard_script(RUN, [f"undone {quote(message)}"]))
    report = parse_output(box.guard(RUN, "now").stdout)
    assert report.steps[0] == ("undone", message)
    assert not any(p.name == "PWNED" for p in box.root.rglob("*"))


# -- keep / finish ---------------------------------------------------------------------
def identity(pid: int) -> str:
    """What the guard records of a process: its pid and start time (/proc/PID/stat field 22)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return f"{pid} {fields[19]}\n"


def test_keep_disarms_without_undoing(box):
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), deadline=int(time.time()) + 600)
    box.take_lock(RUN, expires=int(time.time()) + 600)
    box.crontab.write_text(f"0 5 * * * backup.sh\n* * * * * sh g cron # opskit-guard {RUN}\n")
    waiting = box.sleeper()
    (tx / "guard.pid").write_text(identity(waiting.pid))
    proc = box.guard(RUN, "keep")
    assert undo_lines(proc.stdout) == ["OPSKIT-STATE kept"]
    assert box.state(RUN) == "kept"
    assert ran(box, 0) == 0
    assert not box.lock.exists()
    assert box.crontab.read_text() == "0 5 * * * backup.sh\n"
    assert waiting.wait(timeout=5) is not None        # the waiting guard was killed
    assert not (tx / "guard.pid").exists()
    # keep again: still kept, nothing undone
    assert parse_output(box.guard(RUN, "keep").stdout).state == "kept"
    assert parse_output(box.guard(RUN, "now").stdout).state == "kept"
    assert ran(box, 0) == 0


def test_keep_leaves_another_runs_lock_alone(box):
    box.install(RUN, guard_script(RUN, []))
    box.take_lock(OTHER, expires=int(time.time()) + 600)
    assert parse_output(box.guard(RUN, "keep").stdout).state == "kept"
    assert (box.lock / "run").read_text().strip() == OTHER


def test_revert_undoes_a_kept_transaction_under_the_lock(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), state="kept")
    box.take_lock(OTHER, expires=int(time.time()) + 600)
    refused = box.guard(RUN, "revert")
    assert undo_lines(refused.stdout) == [f"OPSKIT-STATE locked {OTHER}"]
    assert box.state(RUN) == "kept" and ran(box, 0) == 0
    shutil.rmtree(box.lock)   # that other run ended
    proc = box.guard(RUN, "revert")
    assert parse_output(proc.stdout).state == "rolled_back"
    assert box.state(RUN) == "rolled_back" and ran(box, 0) == 1
    assert not box.lock.exists(), "the lock revert took is given back"
    # "now" (a hold ending, Ctrl-C) never undoes what was confirmed
    box.install(OTHER, guard_script(OTHER, [counting(box, 1, "undone", "one")]), state="kept")
    assert parse_output(box.guard(OTHER, "now").stdout).state == "kept" and ran(box, 1) == 0


def test_keep_after_a_failed_undo_reports_failed(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), state="failed")
    proc = box.guard(RUN, "keep")
    assert undo_lines(proc.stdout) == ["OPSKIT-STATE failed"]
    assert box.state(RUN) == "failed" and ran(box, 0) == 0


def test_finish_closes_an_open_transaction(box):
    box.install(RUN, guard_script(RUN, []), state="open")
    box.take_lock(RUN, expires=int(time.time()) + 600)
    proc = box.guard(RUN, "finish")
    assert undo_lines(proc.stdout) == ["OPSKIT-STATE done"]
    assert box.state(RUN) == "done" and not box.lock.exists()
    assert parse_output(box.guard(RUN, "finish").stdout).state == "done"


def test_finish_on_an_armed_transaction_undoes_it(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]))
    report = parse_output(box.guard(RUN, "finish").stdout)
    assert report.state == "rolled_back" and ran(box, 0) == 1


def test_missing_transaction(box):
    script = box.root / "guard.sh"
    script.write_text(guard_script(RUN, []))
    proc = box.run_file(script, "now")
    assert proc.returncode == 0 and proc.stdout == "OPSKIT-STATE missing\n"


def test_unknown_mode_is_a_usage_error(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]))
    proc = box.guard(RUN, "sometime")
    assert proc.returncode == 64 and "usage" in proc.stderr
    assert box.state(RUN) == "armed" and ran(box, 0) == 0


# -- the undo lock ----------------------------------------------------------------------
def test_busy_while_another_undo_of_the_run_is_alive(box):
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]))
    holder = box.sleeper()
    (tx / "undo.lock").mkdir()
    (tx / "undo.lock" / "pid").write_text(identity(holder.pid))
    proc = box.guard(RUN, "now")
    assert proc.returncode == 75 and proc.stdout == "OPSKIT-STATE busy\n"
    assert ran(box, 0) == 0 and box.state(RUN) == "armed"
    assert (tx / "undo.lock").exists()      # not ours to remove


def test_dead_undo_holder_is_taken_over(box):
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]))
    (tx / "undo.lock").mkdir()
    (tx / "undo.lock" / "pid").write_text(f"{box.dead_pid()}\n")
    proc = box.guard(RUN, "now")
    assert parse_output(proc.stdout).state == "rolled_back"
    assert not (tx / "undo.lock").exists()


def test_run_guard_waits_for_a_busy_undo_then_reports(box):
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]))
    holder = box.sleeper()
    (tx / "undo.lock").mkdir()
    (tx / "undo.lock" / "pid").write_text(identity(holder.pid))
    proc = box.run(run_guard(RUN, "now", wait=0.6))
    assert proc.returncode == 75 and "OPSKIT-STATE busy" in proc.stdout
    holder.kill()
    holder.wait()
    proc = box.run(run_guard(RUN, "now", wait=5))
    assert proc.returncode == 0 and parse_output(proc.stdout).state == "rolled_back"


# -- scheduled modes ---------------------------------------------------------------------
def test_cron_before_the_deadline_does_nothing(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), deadline=int(time.time()) + 600)
    proc = box.guard(RUN, "cron")
    assert proc.returncode == 0 and proc.stdout == ""
    assert box.state(RUN) == "armed" and ran(box, 0) == 0


def test_cron_after_the_deadline_undoes(box):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), deadline=int(time.time()) - 5)
    box.crontab.write_text(f"* * * * * sh g cron # opskit-guard {RUN}\n")
    assert parse_output(box.guard(RUN, "cron").stdout).state == "rolled_back"
    assert box.crontab.read_text() == ""


@pytest.mark.parametrize("state", ["open", "kept", "rolled_back"])
def test_cron_and_wait_ignore_a_transaction_that_is_not_armed(box, state):
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), state=state, deadline=0)
    for mode in ("cron", "wait"):
        proc = box.guard(RUN, mode)
        assert proc.returncode == 0 and proc.stdout == ""
    assert box.state(RUN) == state and ran(box, 0) == 0


def test_wait_sleeps_until_the_deadline_then_undoes(box):
    deadline = int(time.time()) + 1          # always in the future, by up to a second
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), deadline=deadline)
    proc = box.guard(RUN, "wait", timeout=10)
    assert time.time() >= deadline
    woke = [line.split() for line in proc.stdout.splitlines() if line.startswith("guard woke at")]
    assert len(woke) == 1 and int(woke[0][3]) >= deadline and int(woke[0][6]) == deadline, proc.stdout
    assert parse_output(proc.stdout).state == "rolled_back"
    assert ran(box, 0) == 1


def test_arm_schedules_a_detached_guard_and_a_crontab_line(box, wait_for):
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), state="open")
    box.crontab.write_text("0 5 * * * backup.sh\n")
    before = int(time.time())
    proc = box.run(arm_script(RUN, 1))
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    # no cron daemon runs beside the box: the crontab line alone would never fire
    assert words[0] == "OPSKIT-ARMED" and words[1] == "detached+crontab-no-daemon"
    assert before + 1 <= int(words[2]) <= int(time.time()) + 1
    assert (tx / "mechanism").read_text().strip() == "detached+crontab-no-daemon"
    table = box.crontab.read_text()
    assert table.startswith("0 5 * * * backup.sh\n") and table.count(f"# opskit-guard {RUN}") == 1
    # the detached guard undoes at the deadline with nobody watching
    wait_for(lambda: box.state(RUN) == "rolled_back" and box.crontab.read_text() == "0 5 * * * backup.sh\n",
             timeout=8, what="the detached guard to roll back and remove its crontab line")
    assert ran(box, 0) == 1
    assert stat.S_IMODE(os.stat(tx / "deadline").st_mode) == 0o600


def test_arm_says_crontab_only_when_a_cron_daemon_is_seen(box):
    box.install(RUN, guard_script(RUN, []), state="open")
    box.crontab.write_text("")
    fake_ps = box.bin / "ps"
    fake_ps.write_text("#!/bin/sh\nprintf 'systemd\\ncron\\nsshd\\n'\n")
    fake_ps.chmod(0o755)
    proc = box.run(arm_script(RUN, 600))
    assert proc.stdout.split()[:2] == ["OPSKIT-ARMED", "detached+crontab"], proc.stdout + proc.stderr


def test_a_guard_that_fires_during_arming_leaves_no_crontab_line(box, wait_for):
    # arm_script installs the crontab line before it starts the detached guard, so a guard
    # that fires at once (hold 0) finds the line and removes it
    tx = box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), state="open")
    box.crontab.write_text("0 5 * * * backup.sh\n")
    box.extra_env["FAKE_CRONTAB_DELAY"] = "0.5"   # a slow crontab(1) widens the window
    proc = box.run(arm_script(RUN, 0))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["OPSKIT-ARMED", "detached+crontab-no-daemon"]
    # the guard prints its final state after disarm() has rewritten the crontab
    log = tx / "guard.log"
    wait_for(lambda: log.exists() and "OPSKIT-STATE rolled_back" in log.read_text(), timeout=8,
             what="the detached guard to roll back and disarm")
    assert box.state(RUN) == "rolled_back" and ran(box, 0) == 1
    assert box.crontab.read_text() == "0 5 * * * backup.sh\n"


@pytest.mark.parametrize("mode, state, final", [("now", "armed", "rolled_back"), ("keep", "armed", "kept"),
                                               ("finish", "open", "done")])
def test_the_final_state_is_written_after_disarm(box, wait_for, mode, state, final):
    # whoever sees the final state may rely on the crontab line and the host lock being gone
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero")]), state=state)
    box.take_lock(RUN, expires=int(time.time()) + 600)
    box.crontab.write_text(f"0 5 * * * backup.sh\n* * * * * sh g cron # opskit-guard {RUN}\n")
    box.extra_env["FAKE_CRONTAB_DELAY"] = "0.3"   # a slow crontab(1) widens the window
    proc = subprocess.Popen([*box.argv0, str(box.tx(RUN) / "guard.sh"), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=box.env, cwd=box.root)
    box.started.append(proc)
    wait_for(lambda: box.state(RUN) == final, timeout=8, what=f"the guard to reach {final}")
    seen = (box.crontab.read_text(), box.lock.exists())
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert seen == ("0 5 * * * backup.sh\n", False)
    assert parse_output(out).state == final


def test_arm_refuses_a_finished_transaction(box):
    box.install(RUN, guard_script(RUN, []), state="rolled_back")
    proc = box.run(arm_script(RUN, 60))
    assert proc.returncode == 3 and proc.stdout == "\nOPSKIT-ARMED refused rolled_back\n"
    assert box.state(RUN) == "rolled_back"


# -- release: a run that never changed anything gives the host back ----------------------------
def test_release_drops_an_open_transaction_and_our_lock(box):
    box.run(hello_script(RUN, 300))
    assert box.state(RUN) == "open" and box.lock.exists()
    proc = box.run(release_script(RUN))
    assert proc.returncode == 0
    assert not box.tx(RUN).exists() and not box.lock.exists()


def test_release_after_a_full_disk_left_empty_files(box):
    box.install(RUN, "", state=None)
    (box.tx(RUN) / "state").write_text("")
    box.take_lock(None)
    (box.lock / "run").write_text("")
    assert box.run(release_script(RUN)).returncode == 0
    assert not box.tx(RUN).exists() and not box.lock.exists()


def test_release_keeps_an_armed_transaction_and_another_runs_lock(box):
    box.install(RUN, guard_script(RUN, []), state="armed")
    box.take_lock(OTHER, expires=int(time.time()) + 600)
    assert box.run(release_script(RUN)).returncode == 0
    assert box.state(RUN) == "armed"
    assert (box.lock / "run").read_text().strip() == OTHER


# -- parse_output on text ----------------------------------------------------------------
def test_parse_output_ignores_noise_and_keeps_the_last_state():
    text = ("guard woke at 1 for deadline 1\n"
            "OPSKIT-UNDO 2 undone renamed /a b/c back to /x\n"
            "OPSKIT-UNDO x undone not a step\n"
            "OPSKIT-UNDO 1 conflict\n"
            "OPSKIT-UNDO 0 failed  two  spaces \n"
            "OPSKIT-STATE busy\n"
            "random\n"
            "OPSKIT-STATE conflict  \n")
    report = parse_output(text)
    assert report.steps == {2: ("undone", "renamed /a b/c back to /x"), 1: ("conflict", ""), 0: ("failed", " two  spaces ")}
    assert report.state == "conflict"
    assert report.conflicts == [""] and report.failures == [" two  spaces "]


def test_parse_output_of_nothing():
    assert parse_output("") == UndoReport()


# -- hello: home, clock, recovery, host lock -----------------------------------------------
def test_hello_without_a_run(box):
    proc = box.run(hello_script(None, None))
    hello = parse_hello(proc.stdout)
    assert hello.home == str(box.home)
    assert abs(hello.now - time.time()) < 5
    assert hello.lock is None
    opskit = box.home / ".opskit"
    assert stat.S_IMODE(opskit.stat().st_mode) == 0o700
    assert stat.S_IMODE((opskit / "tx").stat().st_mode) == 0o700


def test_hello_takes_the_lock(box):
    before = int(time.time())
    proc = box.run(hello_script(RUN, 300))
    hello = parse_hello(proc.stdout)
    assert hello.lock == "acquired" and hello.holder is None
    assert (box.lock / "run").read_text().strip() == RUN
    assert before + 300 <= int((box.lock / "expires").read_text()) <= int(time.time()) + 300
    assert box.state(RUN) == "open"


def test_hello_reports_a_lock_held_by_an_armed_run(box):
    deadline = int(time.time()) + 900
    box.install(OTHER, guard_script(OTHER, []), deadline=deadline)
    box.take_lock(OTHER, expires=int(time.time()) - 10)   # the lease ran out, but the run is armed
    hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
    assert (hello.lock, hello.holder, hello.holder_state, hello.holder_deadline) == ("held", OTHER, "armed", deadline)
    assert (box.lock / "run").read_text().strip() == OTHER
    assert not box.tx(RUN).exists()


def test_hello_respects_an_open_run_within_its_lease(box):
    box.install(OTHER, guard_script(OTHER, []), state="open")
    box.take_lock(OTHER, expires=int(time.time()) + 600)
    hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
    assert (hello.lock, hello.holder, hello.holder_state, hello.holder_deadline) == ("held", OTHER, "open", 0)


@pytest.mark.parametrize("holder_state", ["kept", "rolled_back", "conflict", "done", None])
def test_hello_takes_over_a_lock_whose_run_ended(box, holder_state):
    if holder_state:
        box.install(OTHER, guard_script(OTHER, []), state=holder_state)
    box.take_lock(OTHER, expires=int(time.time()) + 600)
    hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
    assert hello.lock == "acquired"
    assert (box.lock / "run").read_text().strip() == RUN


def test_hello_takes_over_an_open_run_whose_lease_ran_out(box):
    box.install(OTHER, guard_script(OTHER, []), state="open")
    box.take_lock(OTHER, expires=int(time.time()) - 1)
    assert parse_hello(box.run(hello_script(RUN, 300)).stdout).lock == "acquired"


def age(path, seconds: int) -> None:
    """Make a lock dir look `seconds` old (find -mmin looks at its mtime)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("expires", [None, "past", "future"])
def test_hello_lock_without_a_run_file(box, expires):
    # no run file: another hello may be between its mkdir and writing it; only a lock left
    # like that for over a minute is stale, whatever its expires file says
    stamp = {None: None, "past": int(time.time()) - 600, "future": int(time.time()) + 600}[expires]
    box.take_lock(None, expires=stamp)
    age(box.lock, 30)
    hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
    assert (hello.lock, hello.holder, hello.holder_state, hello.holder_deadline) == ("held", "unknown", "missing", 0)
    assert not (box.lock / "run").exists() and not box.tx(RUN).exists()
    age(box.lock, 125)
    hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
    assert (hello.lock, hello.holder) == ("acquired", None)
    assert (box.lock / "run").read_text() == RUN + "\n"


def test_hello_does_not_steal_a_lock_being_taken(box):
    box.take_lock(None)           # another run's mkdir just succeeded
    hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
    assert (hello.lock, hello.holder, hello.holder_state, hello.holder_deadline) == ("held", "unknown", "missing", 0)
    assert box.lock.is_dir() and list(box.lock.iterdir()) == []


def test_hello_does_not_take_the_lock_of_a_failed_rollback(box):
    # a failed undo keeps its guard scheduled for a retry: the host is not free while the
    # retry (every connection makes one) still fails
    deadline = int(time.time()) - 60
    box.install(OTHER, guard_script(OTHER, ["failed 'still cannot rename it back'"]), state="failed", deadline=deadline)
    for expires in (int(time.time()) + 600, int(time.time()) - 600):
        box.lock.exists() or box.take_lock(OTHER)
        (box.lock / "expires").write_text(f"{expires}\n")
        hello = parse_hello(box.run(hello_script(RUN, 300)).stdout)
        assert (hello.lock, hello.holder, hello.holder_state, hello.holder_deadline) == ("held", OTHER, "failed", deadline)
        assert (box.lock / "run").read_text().strip() == OTHER and not box.tx(RUN).exists()
        assert box.state(OTHER) == "failed"


def test_hello_recovers_an_overdue_armed_transaction_then_locks(box):
    box.install(OTHER, guard_script(OTHER, [counting(box, 0, "undone", "put back"), counting(box, 1, "undone", "restored")]),
                deadline=int(time.time()) - 30)
    box.take_lock(OTHER, expires=int(time.time()) - 30)
    box.crontab.write_text(f"* * * * * sh g cron # opskit-guard {OTHER}\n")
    proc = box.run(hello_script(RUN, 300))
    hello = parse_hello(proc.stdout)
    assert hello.recovered[OTHER] == ["OPSKIT-UNDO 1 undone restored", "OPSKIT-UNDO 0 undone put back",
                                      "OPSKIT-STATE rolled_back"]
    assert parse_output("\n".join(hello.recovered[OTHER])).state == "rolled_back"
    assert box.state(OTHER) == "rolled_back"
    assert box.crontab.read_text() == ""
    assert hello.lock == "acquired" and (box.lock / "run").read_text().strip() == RUN


def test_hello_leaves_a_transaction_before_its_deadline(box):
    box.install(OTHER, guard_script(OTHER, [counting(box, 0, "undone", "zero")]), deadline=int(time.time()) + 600)
    hello = parse_hello(box.run(hello_script(None, None)).stdout)
    assert hello.recovered == {} and box.state(OTHER) == "armed" and ran(box, 0) == 0


def test_read_only_hello_reports_overdue_runs_and_touches_nothing(box):
    proc = box.run(hello_script(None, None, read_only=True))
    assert parse_hello(proc.stdout).home == str(box.home)
    assert not (box.home / ".opskit").exists()
    box.install(OTHER, guard_script(OTHER, [counting(box, 0, "undone", "zero")]), deadline=int(time.time()) - 30)
    hello = parse_hello(box.run(hello_script(None, None, read_only=True)).stdout)
    assert hello.overdue == [OTHER] and hello.recovered == {}
    assert box.state(OTHER) == "armed" and ran(box, 0) == 0


def test_parse_hello_on_text():
    text = ("motd noise\nOPSKIT-HOME /home/site one\nOPSKIT-NOW 1767225600\n"
            "OPSKIT-RECOVER r1 OPSKIT-UNDO 0 undone back\nOPSKIT-RECOVER r1 OPSKIT-STATE rolled_back\n"
            "OPSKIT-OVERDUE r2\nOPSKIT-LOCK held r3 armed 1767226500\n")
    hello = parse_hello(text)
    assert hello.home == "/home/site one" and hello.now == 1767225600
    assert hello.recovered == {"r1": ["OPSKIT-UNDO 0 undone back", "OPSKIT-STATE rolled_back"]}
    assert hello.overdue == ["r2"]
    assert (hello.lock, hello.holder, hello.holder_state, hello.holder_deadline) == ("held", "r3", "armed", 1767226500)
    odd = parse_hello("OPSKIT-NOW soon\nOPSKIT-LOCK held r3 armed\n")
    assert odd.now is None and odd.lock == "held" and odd.holder is None


# -- write_ahead_script: records + guard in one exec ---------------------------------------------
NASTY_TEXT = "line $(touch PWNED) `touch PWNED2` 'q' \"d\" \\back\nOPSKIT_EOF_\nEOF\n\ttab"


def test_write_ahead_writes_both_files_verbatim_and_private(box):
    tx = box.install(RUN, "old guard", state="open")
    proc = box.run(write_ahead_script(RUN, NASTY_TEXT, "#!/bin/sh\necho guard\n", require_armed=False, arm_seconds=None))
    assert proc.stdout.split("\n")[:2] == ["", "OPSKIT-WRITTEN"], proc.stdout + proc.stderr
    assert (tx / "records.json").read_text() == NASTY_TEXT + "\n"   # a final newline is added, nothing else
    assert (tx / "guard.sh").read_text() == "#!/bin/sh\necho guard\n"
    assert stat.S_IMODE((tx / "records.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tx / "guard.sh").stat().st_mode) == 0o700
    assert not list(box.root.rglob("PWNED*")), "text inside a here-document ran"
    assert not list(tx.glob("*.opskit-tmp"))


def test_write_ahead_for_a_later_change_refuses_an_ended_transaction(box):
    tx = box.install(RUN, "old guard", state="rolled_back")
    proc = box.run(write_ahead_script(RUN, "[]", "new guard\n", require_armed=True, arm_seconds=None))
    assert "OPSKIT-WRITE refused rolled_back" in proc.stdout
    assert "OPSKIT-WRITTEN" not in proc.stdout
    assert (tx / "guard.sh").read_text() == "old guard", "nothing written once the guard has ended the run"


def test_write_ahead_for_the_first_change_arms(box):
    tx = box.install(RUN, guard_script(RUN, []), state="open")
    proc = box.run(write_ahead_script(RUN, "[]", guard_script(RUN, []), require_armed=False, arm_seconds=600))
    lines = proc.stdout.split("\n")
    assert lines[:2] == ["", "OPSKIT-WRITTEN"]
    assert any(line.startswith("OPSKIT-ARMED detached") for line in lines), proc.stdout
    assert box.state(RUN) == "armed"
    assert int((tx / "deadline").read_text()) >= int(time.time()) + 590


def test_revert_retries_a_conflict_once_it_is_sorted_out(box):
    blocker = box.root / "blocker"
    body = f'if [ -e {quote(str(blocker))} ]; then conflict "in the way"; else undone "done"; fi'
    box.install(RUN, guard_script(RUN, [counting(box, 0, "undone", "zero"), body]), state="armed")
    blocker.write_text("someone's")
    first = parse_output(box.guard(RUN, "now").stdout)
    assert first.state == "conflict" and first.steps[1][0] == "conflict" and ran(box, 0) == 1
    assert parse_output(box.guard(RUN, "now").stdout).state == "conflict", "now does not retry"
    blocker.unlink()   # a human sorted it out
    second = parse_output(box.guard(RUN, "revert").stdout)
    assert second.state == "rolled_back"
    assert second.steps[0][0] == "done_before" and ran(box, 0) == 1, "what was undone stays undone"
    assert not box.lock.exists()
