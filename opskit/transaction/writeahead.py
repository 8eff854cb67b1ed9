"""Write-ahead and arming: before a change touches the host, its undo record is journalled
locally (with a private copy of what an edit replaces) and on the host with the guard, armed;
then the change is applied by one exec under the undo lock, only while the transaction is
open on the host."""

from __future__ import annotations

import json
import os
import time

from opskit import guard
from opskit.errors import ConflictError, RemoteCommandError
from opskit.journal import Journal
from opskit.playbook import Step
from opskit.steps import CHANGES
from opskit.transaction.copies import load_copies, save_copy
from opskit.transaction.outcome import ChangeRecord, StepFailed
from opskit.transport import Session


def steps_margin() -> int:
    """Seconds the guard allows for the steps, before the hold starts. If they take longer the
    guard undoes mid-run; every apply checks on the host that the transaction is still armed
    and the run fails cleanly, so this only has to cover normal verification. The fault tests
    shorten it (OPSKIT_STEPS_MARGIN) so a killed controller's guard fires within seconds."""
    value = os.environ.get("OPSKIT_STEPS_MARGIN", "")
    return int(value) if value.isdigit() and 0 < int(value) <= 3600 else 120


class WriteAhead:
    """Mixin of Transaction: journal, write ahead, arm, apply, and the handlers after applies."""

    handlers_pending = False

    def flush_handlers(self) -> None:
        """Run the handlers (reloads) once after a run of changes applied, before anything
        verifies them; a failed one fails the step, so the transaction rolls back (and the
        guard reloads again after the undos)."""
        if not self.handlers_pending:
            return
        self.handlers_pending = False
        result = self.session.exec("sh -s", stdin=guard.handlers_script(self.run.run_id, self.handlers).encode())
        answers = guard.parse_handlers(result.stdout)
        failed = [message for _, ok, message in answers if not ok]
        if failed or len(answers) < len(self.handlers):
            raise StepFailed(f"after the changes: {'; '.join(failed) or 'a handler gave no answer: ' + result.tail()}")
        for _, _, message in answers:
            self.step("handler", "ok", message)

    def apply(self, change, plan, step: Step) -> None:
        """Write-ahead (local journal and a private copy of what an edit replaces; host
        records + guard, armed), then apply on the host under the undo lock."""
        index = len(self.records)
        record = change.prepare(plan.record, self.tx_dir, index, self.ctx)
        entry = ChangeRecord(index, change.name, plan.summary, self.shown(plan.diff), "planned")
        self.outcome.changes.append(entry)
        journal_record = {k: v for k, v in record.items() if k != "content"}
        if plan.original is not None and record.get("backup_name"):
            save_copy(self.run.journal, self.run.run_id, self.host.name, record["backup_name"], plan.original)
        self.log({"event": "intent", "index": index, "kind": change.name, "summary": plan.summary, "record": journal_record})
        self.records.append({"index": index, "kind": change.name, "summary": plan.summary, "record": journal_record})
        self.undo_bodies.append(change.undo_script(record))
        self.handlers += [body for body in change.handlers(record) if body not in self.handlers]
        # The deadline leaves room for the steps from the first change on; the hold proper
        # starts when they are done (see finish()).
        first = not any(c.state == "applied" for c in self.outcome.changes)
        self.write_guard(arm_seconds=self.run.hold + steps_margin() if first else None, require_armed=True)
        self.boundary(f"write-ahead:{index}")
        result = self.session.exec("sh -s", stdin=guard.apply_script(self.run.run_id, index, change.apply_script(record)).encode())
        verdict, message = guard.parse_apply(result.stdout)
        if verdict == "ok":
            entry.state = "applied"
            self.handlers_pending = self.handlers_pending or bool(change.handlers(record))
            self.log({"event": "applied", "index": index})
            self.boundary(f"applied:{index}")
            self.record_step(step, "changed", plan.summary)
            return
        entry.state = "not_applied"
        if verdict == "refused":
            raise StepFailed(f"{step.label}: the transaction ended on the host ({message}) before this change; "
                             "not applying it")
        if verdict == "busy":
            raise StepFailed(f"{step.label}: an undo of this run is under way on the host; not applying")
        if verdict == "conflict":
            raise ConflictError(f"{step.label}: {message}")
        if verdict == "failed":
            raise StepFailed(f"{step.label}: {message}")
        raise RemoteCommandError(f"{self.host.name}: {step.label}: the apply gave no answer "
                                 f"(exit {result.exit_status}): {result.tail()}", result)

    def write_guard(self, arm_seconds: int | None = None, require_armed: bool = False, lease: bool = False) -> None:
        """Write-ahead on the host in one exec: undo records and guard (and arm the guard;
        check the transaction is still armed for changes)."""
        script = guard.write_ahead_script(self.run.run_id, json.dumps(self.records, indent=1),
                                          guard.guard_script(self.run.run_id, self.undo_bodies, self.handlers),
                                          require_armed=require_armed, arm_seconds=arm_seconds)
        result = self.session.exec("sh -s", stdin=script.encode())
        answer = guard.parse_write_ahead(result.stdout)
        if answer.refused_state:
            raise StepFailed(f"the transaction ended on the host (state {answer.refused_state}) before this change; "
                             "not applying it")
        if not answer.written:
            raise RemoteCommandError(f"{self.host.name}: could not write the undo records on the host: "
                                     f"{answer.failure or result.tail()}", result)
        if arm_seconds is not None:
            self.armed(result, arm_seconds, lease=lease)

    def arm(self, seconds: int) -> None:
        self.armed(self.session.exec(guard.arm_script(self.run.run_id, seconds)), seconds)

    def armed(self, result, seconds: int, lease: bool = False) -> None:
        """Read arm_script's answer; the hold's deadline and the guard's mechanism. The lease
        (armed at connection, before any change) is journalled as such, not as a hold."""
        answer = guard.parse_armed(result.stdout)
        if answer.mechanism is None:
            raise StepFailed(f"could not arm the guard: {answer.text or result.tail()}")
        deadline = time.time() + seconds
        event = {"deadline": deadline, "host_deadline": answer.host_deadline, "mechanism": answer.mechanism}
        if lease:
            self.log({"event": "lease", **event})
            return
        self.armed_at = time.monotonic()
        self.outcome.guard = answer.mechanism
        self.outcome.deadline = deadline
        self.log({"event": "armed", **event})
        self.run.observer.host_step(self.host.name, "guard", "armed", f"{answer.mechanism}, undoes in {seconds}s")


def rebuild_on_host(session: Session, journal: Journal, run_id: str, host: str) -> bool:
    """Re-create a transaction lost on the host (records, guard, backups; armed and overdue)
    from this machine's journal: the controller's own rollback and `opskit rollback` both
    come here. False when this machine journalled no change for it, or the write failed."""
    script = rebuild_script(journal, run_id, host)
    if script is None:
        return False
    return guard.parse_write_ahead(session.exec("sh -s", stdin=script.encode()).stdout).written


def rebuild_script(journal: Journal, run_id: str, host: str) -> str | None:
    """The write-ahead that re-creates a transaction lost on the host, from this machine's
    journal (its intents and private copies); None when this machine journalled no change."""
    intents = [e for e in journal.events(run_id, host) if e.get("event") == "intent"]
    if not intents:
        return None
    records = [{k: e.get(k) for k in ("index", "kind", "summary", "record")} for e in intents]
    bodies = [CHANGES[e["kind"]]().undo_script(e["record"]) for e in intents]
    handlers: list[str] = []
    for e in intents:
        handlers += [body for body in CHANGES[e["kind"]]().handlers(e["record"]) if body not in handlers]
    return guard.write_ahead_script(run_id, json.dumps(records, indent=1), guard.guard_script(run_id, bodies, handlers),
                                    require_armed=False, arm_seconds=None,
                                    restore=load_copies(journal, run_id, host))
