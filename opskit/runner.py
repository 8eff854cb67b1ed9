"""Run a playbook across hosts: one transaction per host, hosts in parallel.

A transaction: connect → hello (finish overdue rollbacks, take the host
lock) → steps → either finish (no change), keep (permanent and verified),
hold (temporary: wait for confirm/rollback/the deadline), or roll back (a step
failed, a check failed, interrupted). Every change is journalled locally and
on the host, with the guard armed, before it is applied.

Workers never print: they tell an Observer, and the report decides how to show it.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

import os

from opskit import faults, guard, probes, template
from opskit.errors import LockedError, OpskitError, RemoteCommandError, TransportError
from opskit.findings import Finding, Severity
from opskit.inventory import Host
from opskit.journal import Journal
from opskit.playbook import Playbook, Step, params_for
from opskit.redact import mask_secrets
from opskit.steps import CHANGES, CHECKS, PROBES, Context
from opskit.transport import Session

# Seconds the guard allows for the steps, before the hold starts. If they take longer the
# guard undoes mid-run; every apply checks on the host that the transaction is still armed
# and the run fails cleanly, so this only has to cover normal verification. The fault tests
# shorten it (OPSKIT_STEPS_MARGIN) so a killed controller's guard fires within seconds.
def steps_margin() -> int:
    value = os.environ.get("OPSKIT_STEPS_MARGIN", "")
    return int(value) if value.isdigit() and 0 < int(value) <= 3600 else 120

STATUSES = ("ok", "changed", "held", "kept", "rolled_back", "failed", "unreachable", "conflict")


class Observer(Protocol):
    def host_started(self, host: str) -> None: ...
    def host_step(self, host: str, label: str, status: str, detail: str = "") -> None: ...
    def host_holding(self, host: str, deadline: float) -> None: ...
    def host_done(self, host: str, outcome: "HostOutcome") -> None: ...


class NullObserver:
    def host_started(self, host): pass
    def host_step(self, host, label, status, detail=""): pass
    def host_holding(self, host, deadline): pass
    def host_done(self, host, outcome): pass


@dataclass
class ChangeRecord:
    index: int | None
    kind: str
    summary: str
    diff: str = ""
    state: str = "planned"      # planned | noop | applied | undone | not_applied | conflict | failed | kept
    detail: str = ""

    def to_json(self) -> dict:
        return {"index": self.index, "kind": self.kind, "summary": self.summary, "diff": self.diff,
                "state": self.state, "detail": self.detail}


@dataclass
class HostOutcome:
    host: str
    status: str = "ok"
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    changes: list[ChangeRecord] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    rollback: dict | None = None     # {"reason", "state", "by", "steps": {...}}
    deadline: float | None = None    # controller epoch when the guard undoes
    guard: str | None = None         # how the guard is scheduled: detached, detached+crontab
    seconds: float = 0.0
    home: str | None = None          # the login user's home on the host (reports shorten it to ~)

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "error": self.error,
            "findings": [f.to_json() for f in self.findings],
            "changes": [c.to_json() for c in self.changes],
            "steps": self.steps,
            "rollback": self.rollback,
            "deadline": self.deadline,
            "guard": self.guard,
            "seconds": round(self.seconds, 3),
            "home": self.home,
        }


@dataclass
class RunOptions:
    check_mode: bool = False
    hold: int | None = None          # seconds; None → the playbook's
    forks: int = 20
    detach: bool = False             # leave temporary changes to the guard instead of waiting
    accept_new_host_keys: bool = False


class StepFailed(Exception):
    pass


class Interrupted(Exception):
    pass


@dataclass
class Run:
    run_id: str
    playbook: Playbook
    hosts: list[Host]
    options: RunOptions
    journal: Journal
    observer: Observer = field(default_factory=NullObserver)
    interrupt: threading.Event = field(default_factory=threading.Event)
    inventory_file: str | None = None

    @property
    def hold(self) -> int:
        return self.options.hold if self.options.hold is not None else self.playbook.hold

    def start_journal(self) -> None:
        self.journal.create(self.run_id, {
            "run_id": self.run_id,
            "playbook": self.playbook.name,
            "playbook_file": str(self.playbook.file),
            "inventory": self.inventory_file,
            "check_mode": self.options.check_mode,
            "hold": self.hold,
            "created": time.time(),
            "hosts": {h.name: h.model_dump() for h in self.hosts},
        })

    def execute(self) -> dict[str, HostOutcome]:
        """Every host's outcome; one host's failure never stops the others."""
        if not self.options.check_mode:
            self.start_journal()
        outcomes: dict[str, HostOutcome] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.options.forks), thread_name_prefix="opskit-host") as pool:
            futures = {h.name: pool.submit(self._one, h) for h in self.hosts}
            for name, future in futures.items():
                while True:
                    try:
                        outcomes[name] = future.result(timeout=0.2)
                        break
                    except TimeoutError:
                        continue  # keep the main thread responsive to signals
        return outcomes

    def _one(self, host: Host) -> HostOutcome:
        started = time.monotonic()
        if self.interrupt.is_set():
            outcome = HostOutcome(host.name, "failed", "not started: the run was interrupted")
        else:
            self.observer.host_started(host.name)
            try:
                outcome = Transaction(self, host).execute()
            except Exception as exc:  # a bug must cost one host, not the fleet; the report shows it
                outcome = HostOutcome(host.name, "failed", f"internal error: {type(exc).__name__}: {exc}")
        outcome.seconds = time.monotonic() - started
        if not self.options.check_mode:
            self.journal.append(self.run_id, host.name, {"event": "end", "status": outcome.status, "error": outcome.error})
        self.observer.host_done(host.name, outcome)
        return outcome


class Transaction:
    """One host's part of a run."""

    def __init__(self, run: Run, host: Host, session: Session | None = None):
        self.run = run
        self.host = host
        self.outcome = HostOutcome(host.name)
        self.session = session or Session(host, run.options.accept_new_host_keys)
        self.ctx = Context(host, self.session, run.run_id, run.options.check_mode)
        self.undo_bodies: list[str] = []
        self.records: list[dict] = []
        self.armed_at: float | None = None
        self.locked = False
        self.needs_lock = run.playbook.changes_things and not run.options.check_mode

    @property
    def tx_dir(self) -> str:
        return posixpath.join(self.session.home, ".opskit", "tx", self.run.run_id)

    def log(self, event: dict) -> None:
        if not self.run.options.check_mode:
            self.run.journal.append(self.run.run_id, self.host.name, event)

    def add_finding(self, finding: Finding) -> None:
        """Findings are facts about the host: the same one twice (a probe run again after a
        rollback) is one finding."""
        if all((f.cause, f.summary) != (finding.cause, finding.summary) for f in self.outcome.findings):
            self.outcome.findings.append(finding)

    def step(self, label: str, status: str, detail: str = "") -> None:
        self.run.observer.host_step(self.host.name, label, status, detail)

    # -- the transaction ---------------------------------------------------
    def execute(self) -> HostOutcome:
        try:
            try:
                self.connect()
            except TransportError as exc:
                self.outcome.status, self.outcome.error = "unreachable", str(exc)
                return self.outcome
            except OpskitError as exc:
                self.outcome.status, self.outcome.error = "failed", str(exc)
                return self.outcome
            try:
                self.run_steps(self.run.playbook.steps)
                self.finish()
            except StepFailed as exc:
                self.outcome.error = str(exc)
                self.roll_back("step_failed", status="failed")
            except Interrupted:
                self.outcome.error = "interrupted"
                self.roll_back("interrupted", status="rolled_back")
            except TransportError as exc:
                self.outcome.error = str(exc)
                self.roll_back("connection_lost", status="failed")
            except BaseException as exc:
                self.outcome.error = f"internal error: {type(exc).__name__}: {exc}"
                self.roll_back("internal_error", status="failed")
                if not isinstance(exc, Exception):
                    raise
            return self.outcome
        finally:
            self.session.close()

    def shown(self, diff: str) -> str:
        """A diff as output and journals show it: secret values (DB_PASSWORD, keys, salts,
        the inventory's secret_names) masked."""
        return mask_secrets(diff, self.host.secret_names)

    def boundary(self, name: str) -> None:
        """A point between two interactions with the host (see opskit.faults)."""
        faults.boundary(self.host.name, name, self.session)

    def connect(self) -> None:
        self.session.open()
        lock_seconds = self.run.hold + 3600
        result = self.session.exec(guard.hello_script(self.run.run_id if self.needs_lock else None, lock_seconds,
                                                      read_only=self.run.options.check_mode,
                                                      keep=self.host.keep_transactions))
        hello = guard.parse_hello(result.stdout)
        if hello.home is None or hello.now is None:
            # rbash, a .bashrc that exits, a forced command: our commands never ran
            raise RemoteCommandError(f"{self.host.name}: the host's login shell did not run opskit's commands "
                                     f"(a restricted shell, a .bashrc that exits, a forced command?): "
                                     f"{result.tail() or 'no output'}", result)
        if hello.home:
            self.session.home = hello.home   # saves the SFTP round trip that would ask for it
            self.outcome.home = hello.home
        if hello.errors and self.needs_lock:
            raise RemoteCommandError(f"{self.host.name}: {'; '.join(hello.errors)}", result)
        for run_id, lines in hello.recovered.items():
            report = guard.parse_output("\n".join(lines))
            self.add_finding(Finding(
                "overdue-rollback-finished", Severity.WARNING,
                f"finished the rollback of run {run_id}, whose guard did not run by its deadline (state: {report.state})",
                tuple(lines[-5:]), "the host may kill background processes; check its process killer"))
            self.step("recover", "done", f"run {run_id}: {report.state}")
            self.journal_recovery(run_id, report)
        if self.run.options.check_mode and hello.holder:
            self.add_finding(Finding(
                "host-locked", Severity.WARNING,
                f"a real run would be refused now: the host is locked by run {hello.holder}",
                (), f"`opskit confirm {hello.holder}` or `opskit rollback {hello.holder}` ends it"))
        for run_id in hello.overdue:
            self.add_finding(Finding(
                "overdue-rollback-pending", Severity.WARNING,
                f"run {run_id} is past its deadline and not rolled back (--check leaves it; any real run finishes it)"))
        if self.needs_lock:
            if hello.lock != "acquired":
                holder = hello.holder or "unknown"
                until = ""
                if hello.holder_deadline and hello.now:
                    until = f", its guard undoes it in {max(0, hello.holder_deadline - hello.now)}s"
                raise LockedError(f"host is locked by run {holder} (state {hello.holder_state}{until}); "
                                  f"`opskit confirm {holder}` or `opskit rollback {holder}` ends it")
            self.locked = True
            self.log({"event": "begin", "home": self.session.home})
            try:
                # armed from the start: a controller that dies before its first change
                # leaves a guard that gives the lock back at the deadline
                self.write_guard(arm_seconds=self.run.hold + steps_margin(), lease=True)
            except (OpskitError, StepFailed):
                # e.g. the disk is full: nothing changed yet, so give the lock back at once
                self.session.exec(guard.release_script(self.run.run_id))
                self.locked = False
                raise
        self.step("connect", "ok", f"{self.session.connect_seconds or 0:.2f}s")
        self.boundary("connected")

    def journal_recovery(self, run_id: str, report: guard.UndoReport) -> None:
        """Another run's rollback finished by this connection: if this machine journalled
        that run, record how it ended so `opskit runs` stops listing it as held."""
        journal = self.run.journal
        try:
            if report.state in ("rolled_back", "conflict", "failed") and self.host.name in journal.meta(run_id)["hosts"]:
                journal.append(run_id, self.host.name, {
                    "event": "end", "status": report.state, "by": "recovery",
                    "rollback": {"reason": "overdue", "state": report.state, "by": f"run {self.run.run_id}"}})
        except (OpskitError, OSError, ValueError, KeyError, TypeError):
            pass   # not ours, or its journal is unreadable: the host's record is what counts

    def check_interrupt(self) -> None:
        if self.run.interrupt.is_set():
            raise Interrupted()

    def context_values(self) -> dict[str, Any]:
        return {"host": self.host.model_dump(), "steps": self.ctx.results, "run": {"id": self.run.run_id}}

    def run_steps(self, steps: tuple[Step, ...], after_rollback: bool = False) -> None:
        for position, step in enumerate(steps):
            if not after_rollback:
                self.check_interrupt()
            values = self.context_values()
            try:
                if step.when is not None and not template.render(step.when, values):
                    self.record_step(step, "skipped", "condition is false")
                    continue
                params = template.render(step.params, values)
            except template.TemplateError as exc:
                raise StepFailed(f"{step.label}: {exc}") from None
            started = time.monotonic()
            index = None if after_rollback else position
            if index is not None:
                self.boundary(f"step:{index}:{step.kind}:start")
            try:
                if step.kind == "probe":
                    self.do_probes(step, params)
                elif step.kind == "change":
                    self.do_change(step, params)
                else:
                    self.do_check(step, params)
            except RemoteCommandError as exc:
                raise StepFailed(f"{step.label}: {exc}") from None
            finally:
                if self.outcome.steps and self.outcome.steps[-1]["step"] == step.label:
                    self.outcome.steps[-1]["seconds"] = round(time.monotonic() - started, 3)
            if index is not None:
                self.boundary(f"step:{index}:{step.kind}:done")

    def remember(self, step: Step, value: Any) -> None:
        """A step's value, for later steps' {{ steps.ID }} and — journalled — for the
        checks `opskit rollback` runs after an undo from another process."""
        if step.id:
            self.ctx.results[step.id] = value
            self.log({"event": "result", "id": step.id, "value": value})

    def record_step(self, step: Step, status: str, detail: str = "", value: Any = None) -> None:
        entry = {"step": step.label, "id": step.id, "kind": step.kind, "status": status, "detail": detail, "at": round(time.time(), 3)}
        if value is not None:
            entry["value"] = value
        self.outcome.steps.append(entry)
        self.step(step.label, status, detail)

    def params_for(self, step: Step, model, params: dict):
        try:
            return model.model_validate(params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise StepFailed(f"{step.label}: parameter {where}: {first['msg']}") from None

    def do_probes(self, step: Step, params: dict) -> None:
        items = []
        for name in step.names:
            probe = PROBES[name]()
            items.append((name, probe, self.params_for(step, probe.Params, params_for(probe.Params, params))))
        fence = probes.new_fence()
        script = probes.build_batch([(name, p.script(prm, self.ctx)) for name, p, prm in items], fence)
        result = self.session.exec(script)
        sections = probes.split_batch(result.stdout, fence)
        values = {}
        for name, probe, prm in items:
            section = sections.get(name)
            if section is None:
                raise StepFailed(f"{step.label}: probe {name} produced no answer ({result.tail() or 'exit ' + str(result.exit_status)})")
            values[name] = probe.parse(section.output, section.exit_status, prm)
            for finding in probe.findings(values[name], prm):
                self.add_finding(finding)
        value = values[step.names[0]] if len(step.names) == 1 else values
        self.remember(step, value)
        self.record_step(step, "ok", "", value)

    def do_change(self, step: Step, params: dict) -> None:
        change = CHANGES[step.names[0]]()
        plan = change.plan(self.params_for(step, change.Params, params), self.ctx)
        self.remember(step, {"changed": plan.noop is None and plan.blocked is None, "noop": plan.noop,
                             **{k: v for k, v in plan.record.items() if k != "content"}})
        if plan.blocked:
            self.outcome.changes.append(ChangeRecord(None, change.name, plan.summary, state="blocked", detail=plan.blocked))
            raise StepFailed(f"{step.label}: {plan.blocked}")
        if plan.noop:
            self.outcome.changes.append(ChangeRecord(None, change.name, plan.summary, state="noop", detail=plan.noop))
            self.record_step(step, "noop", plan.noop)
            return
        if self.run.options.check_mode:
            self.outcome.changes.append(ChangeRecord(None, change.name, plan.summary, self.shown(plan.diff), "planned"))
            self.record_step(step, "would change", plan.summary)
            return
        self.apply(change, plan, step)

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
        # The deadline leaves room for the steps from the first change on; the hold proper
        # starts when they are done (see finish()).
        first = not any(c.state == "applied" for c in self.outcome.changes)
        self.write_guard(arm_seconds=self.run.hold + steps_margin() if first else None, require_armed=True)
        self.boundary(f"write-ahead:{index}")
        result = self.session.exec("sh -s", stdin=guard.apply_script(self.run.run_id, index, change.apply_script(record)).encode())
        verdict, message = guard.parse_apply(result.stdout)
        if verdict == "ok":
            entry.state = "applied"
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
        if verdict == "failed":
            raise StepFailed(f"{step.label}: {message}")
        raise RemoteCommandError(f"{self.host.name}: {step.label}: the apply gave no answer "
                                 f"(exit {result.exit_status}): {result.tail()}", result)

    def write_guard(self, arm_seconds: int | None = None, require_armed: bool = False, lease: bool = False) -> None:
        """Write-ahead on the host in one exec: undo records and guard (and arm the guard;
        check the transaction is still armed for changes)."""
        script = guard.write_ahead_script(self.run.run_id, json.dumps(self.records, indent=1),
                                          guard.guard_script(self.run.run_id, self.undo_bodies),
                                          require_armed=require_armed, arm_seconds=arm_seconds)
        result = self.session.exec("sh -s", stdin=script.encode())
        written = "OPSKIT-WRITTEN" in result.stdout.split("\n")
        refused = next((line for line in result.stdout.split("\n") if line.startswith("OPSKIT-WRITE ")), "")
        if refused.startswith("OPSKIT-WRITE refused"):
            raise StepFailed(f"the transaction ended on the host (state {refused.split()[-1]}) before this change; "
                             "not applying it")
        if not written:
            raise RemoteCommandError(f"{self.host.name}: could not write the undo records on the host: "
                                     f"{(refused[len('OPSKIT-WRITE '):] or result.tail())}", result)
        if arm_seconds is not None:
            self.armed(result, arm_seconds, lease=lease)

    def arm(self, seconds: int) -> None:
        self.armed(self.session.exec(guard.arm_script(self.run.run_id, seconds)), seconds)

    def armed(self, result, seconds: int, lease: bool = False) -> None:
        """Read arm_script's answer; the hold's deadline and the guard's mechanism. The lease
        (armed at connection, before any change) is journalled as such, not as a hold."""
        words = next((l.split() for l in result.stdout.splitlines() if l.startswith("OPSKIT-ARMED ")), None)
        if not words or words[1] == "refused" or len(words) < 3:
            raise StepFailed(f"could not arm the guard: {' '.join(words or []) or result.tail()}")
        deadline = time.time() + seconds
        if lease:
            self.log({"event": "lease", "deadline": deadline, "host_deadline": int(words[2]), "mechanism": words[1]})
            return
        self.armed_at = time.monotonic()
        self.outcome.guard = words[1]
        self.outcome.deadline = deadline
        self.log({"event": "armed", "deadline": self.outcome.deadline, "host_deadline": int(words[2]), "mechanism": words[1]})
        self.run.observer.host_step(self.host.name, "guard", "armed", f"{words[1]}, undoes in {seconds}s")

    def do_check(self, step: Step, params: dict) -> None:
        check = CHECKS[step.names[0]]()
        if self.run.options.check_mode and any(c.state == "planned" for c in self.outcome.changes):
            self.record_step(step, "skipped", "--check: it would verify a change that was not made")
            return
        try:
            result = check.run(self.params_for(step, check.Params, params), self.ctx)
        except TransportError:
            raise
        except OpskitError as exc:
            raise StepFailed(f"{step.label}: {exc}") from None
        value = {"verdict": result.verdict.value, "summary": result.summary, "observed": result.observed}
        self.remember(step, value)
        self.record_step(step, result.verdict.value, result.summary, value)
        if result.ok:
            return
        severity = Severity(step.finding.get("severity", "error" if step.on_fail == "stop" else "warning"))
        self.add_finding(Finding(
            step.finding.get("cause", f"check-{check.name}-{result.verdict.value}"), severity,
            f"{step.label}: {result.summary}", result.evidence, step.finding.get("advice", "")))
        if step.on_fail == "stop":
            raise StepFailed(f"{step.label}: {result.summary}")

    # -- endings -----------------------------------------------------------
    def finish(self) -> None:
        applied = [c for c in self.outcome.changes if c.state == "applied"]
        if not applied:
            if self.locked:
                self.guard_call("finish")
            self.outcome.status = "ok"
            return
        if self.run.playbook.changes == "permanent":
            report = self.guard_call("keep")
            self.mark_changes("kept")
            if report.state == "kept":
                drop_copies(self.run.journal, self.run.run_id, self.host.name)
            self.outcome.status = "changed" if report.state == "kept" else "failed"
            return
        self.arm(self.run.hold)   # the hold window starts now that the changes are verified
        self.boundary("hold")
        if self.run.options.detach:
            self.outcome.status = "held"
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
        self.roll_back("hold_ended", status="rolled_back")

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
            self.outcome.status = status if reason != "hold_ended" else "ok"
            return
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
                    self.outcome.status = "failed"
                    self.outcome.rollback = {"reason": reason, "state": "pending", "by": "guard",
                                             "detail": f"could not reach the host to roll back ({exc}); "
                                                       "the guard undoes it by the deadline"}
                    return
        self.boundary("rollback:done")
        self.apply_undo_report(report, reason)
        if report.state in ("rolled_back", "kept", "conflict"):
            drop_copies(self.run.journal, self.run.run_id, self.host.name)
        if report.state == "conflict":
            self.outcome.status = "conflict"
        elif report.state in ("rolled_back", "done"):
            self.outcome.status = status
        elif report.state == "kept":
            self.outcome.status = "kept"
        else:
            self.outcome.status = "failed"
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
        self.add_finding(Finding(
            "host-records-lost", Severity.ERROR,
            f"~/.opskit/tx/{self.run.run_id} disappeared from the host during the transaction; opskit re-created "
            f"its undo records from the local journal and rolled back (state: {report.state})",
            (), "find what removes files under ~/.opskit on this host (cleanup cron job, backup restore, quota purge) "
                "and exclude that folder"))
        return report

    def verify_after_rollback(self, results: dict[str, Any]) -> None:
        """Run the playbook's after_rollback steps on an open session (for `opskit rollback`)."""
        hello = guard.parse_hello(self.session.exec(guard.hello_script(None, None, read_only=True)).stdout)
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
            self.add_finding(Finding("after-rollback-check-failed", Severity.ERROR, str(exc)))
            if self.outcome.status != "conflict":
                self.outcome.status = "failed"

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
                self.add_finding(Finding("rollback-conflict", Severity.ERROR, message, (),
                                                     "someone changed this since opskit did; nothing was overwritten — decide by hand"))


def exit_code(outcomes: dict[str, HostOutcome], interrupted: bool) -> int:
    from opskit.errors import ExitCode

    if interrupted:
        return ExitCode.INTERRUPTED
    for outcome in outcomes.values():
        if outcome.status in ("failed", "unreachable", "conflict"):
            return ExitCode.HOST_FAILED
        # rolled back at the end of its hold, or on an admin's request from another
        # terminal (`opskit rollback RUN`): both as intended
        if outcome.status == "rolled_back" and (outcome.rollback or {}).get("reason") not in ("hold_ended", "rollback"):
            return ExitCode.HOST_FAILED
    return ExitCode.OK


def rebuild_on_host(session: Session, journal: Journal, run_id: str, host: str) -> bool:
    """Re-create a transaction lost on the host (records, guard, backups; armed and overdue)
    from this machine's journal: the controller's own rollback and `opskit rollback` both
    come here. False when this machine journalled no change for it, or the write failed."""
    script = rebuild_script(journal, run_id, host)
    if script is None:
        return False
    return "OPSKIT-WRITTEN" in session.exec("sh -s", stdin=script.encode()).stdout.split("\n")


def rebuild_script(journal: Journal, run_id: str, host: str) -> str | None:
    """The write-ahead that re-creates a transaction lost on the host, from this machine's
    journal (its intents and private copies); None when this machine journalled no change."""
    intents = [e for e in journal.events(run_id, host) if e.get("event") == "intent"]
    if not intents:
        return None
    records = [{k: e.get(k) for k in ("index", "kind", "summary", "record")} for e in intents]
    bodies = [CHANGES[e["kind"]]().undo_script(e["record"]) for e in intents]
    return guard.write_ahead_script(run_id, json.dumps(records, indent=1), guard.guard_script(run_id, bodies),
                                    require_armed=False, arm_seconds=None,
                                    restore=load_copies(journal, run_id, host))


# -- private local copies of what edits replace (to rebuild lost host records) --------
def _copies_dir(journal: Journal, run_id: str, host: str):
    return journal.run_dir(run_id) / f"{host}.files"


def save_copy(journal: Journal, run_id: str, host: str, name: str, data: bytes) -> None:
    folder = _copies_dir(journal, run_id, host)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_copies(journal: Journal, run_id: str, host: str) -> dict[str, str]:
    """{backup name: text} for the copies that can travel in a here-document (text without NUL)."""
    folder = _copies_dir(journal, run_id, host)
    out = {}
    for file in sorted(folder.iterdir()) if folder.exists() else ():
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue   # its undo reports the backup missing: a conflict for a human, nothing overwritten
        if "\x00" not in text:
            out[file.name] = text
    return out


def drop_copies(journal: Journal, run_id: str, host: str) -> None:
    folder = _copies_dir(journal, run_id, host)
    for file in folder.iterdir() if folder.exists() else ():
        file.unlink(missing_ok=True)
    if folder.exists():
        folder.rmdir()
