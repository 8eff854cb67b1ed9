"""How a transaction ends: finish (nothing changed), keep (permanent and verified), hold
(temporary: wait for confirm, rollback or the deadline), roll back (now, by the guard on the
host), and the playbook's after-rollback checks."""

from __future__ import annotations

import time
from typing import Any

from opskit import guard
from opskit.errors import RemoteCommandError, TransportError
from opskit.rules.opskit import after_rollback_failed, records_lost, rollback_conflict
from opskit.transaction.copies import drop_copies
from opskit.transaction.outcome import Interrupted, Status, StepFailed
from opskit.transaction.writeahead import rebuild_on_host


class Endings:
    """Mixin of Transaction: the ways it ends."""

    def finish(self) -> None:
        self.flush_handlers()
        applied = [c for c in self.outcome.changes if c.state == "applied"]
        if not applied:
            if self.locked:
                self.guard_call("finish")
            self.outcome.status = Status.OK
            return
        if self.run.playbook.changes == "permanent":
            report = self.guard_call("keep")
            self.mark_changes("kept")
            if report.state == "kept":
                drop_copies(self.run.journal, self.run.run_id, self.host.name)
            self.outcome.status = Status.CHANGED if report.state == "kept" else Status.FAILED
            return
        self.arm(self.run.hold)   # the hold window starts now that the changes are verified
        self.boundary("hold")
        if self.run.options.detach:
            self.outcome.status = Status.HELD
            return
        self.hold()

    def hold(self) -> None:
        """Wait for the deadline, an interrupt, or a confirm/rollback from another process."""
        assert self.armed_at is not None
        end = self.armed_at + self.run.hold
        self.run.observer.host_holding(self.host.name, self.outcome.deadline or time.time())
        while time.monotonic() < end:
            if self.run.interrupt.wait(min(0.5, max(0.0, end - time.monotonic()))):
                raise Interrupted()
            ended = self.ended_elsewhere()
            if ended:
                self.outcome.status = ended["status"]
                self.outcome.rollback = ended.get("rollback")
                self.mark_changes("kept" if ended["status"] == "kept" else "undone")
                if ended["status"] in ("kept", "rolled_back"):
                    drop_copies(self.run.journal, self.run.run_id, self.host.name)
                return
        self.roll_back("hold_ended", status=Status.ROLLED_BACK)

    def ended_elsewhere(self) -> dict | None:
        for event in self.run.journal.events(self.run.run_id, self.host.name):
            if event.get("event") == "end" and event.get("by") in ("confirm", "rollback"):
                return event
        return None

    def guard_call(self, mode: str) -> guard.UndoReport:
        result = self.session.exec(guard.run_guard(self.run.run_id, mode))
        return guard.parse_output(result.stdout)

    def mark_changes(self, state: str) -> None:
        for change in self.outcome.changes:
            if change.state == "applied":
                change.state = state

    def roll_back(self, reason: str, status: str) -> None:
        """Undo every change of this transaction now (idempotent; the guard does the work)."""
        if not self.records and not self.locked:
            self.outcome.status = status if reason != "hold_ended" else Status.OK
            return
        self.handlers_pending = False   # the guard reloads after the undos
        self.step("rollback", "running", reason)
        self.boundary("rollback:start")
        report = None
        for attempt in (1, 2):
            try:
                # A connection can look alive until paramiko notices it was cut: on a
                # transport error, reconnect once and ask again.
                if attempt == 2 or not self.session_alive():
                    self.session.close()
                    self.session.open()
                report = self.guard_call("now")
                if report.state == "missing" and self.records:
                    report = self.rebuild_and_undo()
                break
            except TransportError as exc:
                if attempt == 2:
                    # The guard on the host still undoes everything at the deadline.
                    self.outcome.status = Status.FAILED
                    self.outcome.rollback = {"reason": reason, "state": "pending", "by": "guard",
                                             "detail": f"could not reach the host to roll back ({exc}); "
                                                       "the guard undoes it by the deadline"}
                    return
        self.boundary("rollback:done")
        self.apply_undo_report(report, reason)
        if report.state in ("rolled_back", "kept", "conflict"):
            drop_copies(self.run.journal, self.run.run_id, self.host.name)
        if report.state == "conflict":
            self.outcome.status = Status.CONFLICT
        elif report.state in ("rolled_back", "done"):
            self.outcome.status = status
        elif report.state == "kept":
            self.outcome.status = Status.KEPT
        else:
            self.outcome.status = Status.FAILED
        self.step("rollback", report.state or "unknown", "")
        if report.state in ("rolled_back", "conflict") and self.records:
            self.run_after_rollback()

    def rebuild_and_undo(self) -> guard.UndoReport:
        """The host lost this transaction's folder (a cleanup script, a restore from backup,
        a quota purge of dot-dirs): re-create its undo records, guard and backups from the
        local journal, then undo. Says so loudly."""
        if not rebuild_on_host(self.session, self.run.journal, self.run.run_id, self.host.name):
            raise RemoteCommandError(f"{self.host.name}: ~/.opskit/tx/{self.run.run_id} disappeared from the host "
                                     "and could not be re-created there; the local journal keeps the undo records")
        report = self.guard_call("now")
        self.add_finding(records_lost(self.run.run_id, report.state))
        return report

    def verify_after_rollback(self, results: dict[str, Any]) -> None:
        """Run the playbook's after_rollback steps on an open session (for `opskit rollback`)."""
        self.needs_lock = False   # the run's lock is not ours to take: only its checks run here
        hello = guard.parse_hello(self.session.exec(guard.hello_script(None, None, read_only=True)).stdout)
        self.hello_done = True
        if hello.home:
            self.session.home = hello.home
        self.ctx.results.update(results)
        self.run_after_rollback()

    def run_after_rollback(self) -> None:
        """The playbook's after_rollback steps; a failing one is a finding and fails the host
        (a conflict stays the status: it says more)."""
        try:
            self.run_steps(self.run.playbook.after_rollback, after_rollback=True)
        except (StepFailed, TransportError) as exc:
            self.add_finding(after_rollback_failed(str(exc)))
            if self.outcome.status != "conflict":
                self.outcome.status = Status.FAILED

    def session_alive(self) -> bool:
        try:
            self.session.transport
            return True
        except TransportError:
            return False

    def apply_undo_report(self, report: guard.UndoReport, reason: str) -> None:
        self.outcome.rollback = {"reason": reason, "state": report.state, "by": "controller",
                                 "steps": {str(k): {"outcome": o, "message": m} for k, (o, m) in sorted(report.steps.items())}}
        for change in self.outcome.changes:
            if change.index is not None and change.index in report.steps:
                outcome, message = report.steps[change.index]
                change.state = "undone" if outcome in ("undone", "done_before") else outcome
                change.detail = message
        self.log({"event": "rollback", "reason": reason, "state": report.state})
        for outcome, message in report.steps.values():
            if outcome == "conflict":
                self.add_finding(rollback_conflict(message))
