"""Executing a playbook's steps on one host: probes (one exec per step), changes (plan, then
write-ahead and apply, see writeahead.py), checks and rules. Every step's value is
remembered for later steps' {{ steps.ID }} and journalled for `opskit rollback`."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from opskit import guard, references
from opskit.probes import batch
from opskit.errors import InputError, OpskitError, RemoteCommandError, TransportError
from opskit.findings import Family, Finding, Severity
from opskit.playbook import Step, params_for
from opskit.steps import CHANGES, CHECKS, KINDS, PROBES, RULES
from opskit.shell import HomeUnknown
from opskit.transaction.connect import HELLO_SECTION
from opskit.transaction.outcome import ChangeRecord, Interrupted, NotConnected, Status, StepFailed, StepStatus


def needs_host(step: Step) -> bool:
    """Does this step talk to the host (so the session must be open)? Rules never do; a check
    says so itself (an HTTP check runs from the controller)."""
    if step.kind == "rule":
        return False
    return getattr(KINDS[step.kind][1][step.names[0]], "needs_host", True)


class StepExecution:
    """Mixin of Transaction: the steps themselves."""

    preflighted = False   # the checks ahead were asked whether they can pass (before the first change)

    def preflight(self, ahead: tuple[Step, ...], values: dict) -> None:
        """Before the first change: a check ahead that must pass (on_fail: stop) but cannot on
        this host whatever the change does (no origin in the inventory) means the run would
        change the host only to roll it back. Stop now, in --check too, naming the cause. A
        check whose parameters or `when:` depend on steps not run yet cannot be told: skipped."""
        self.preflighted = True
        for later in ahead:
            if later.kind != "check" or later.on_fail != "stop":
                continue
            check = CHECKS[later.names[0]]()
            try:
                if later.when is not None and not references.render(later.when, values):
                    continue
                params = check.Params.model_validate(references.render(later.params, values))
            except (references.TemplateError, ValidationError):
                continue
            if unmet := check.preflight(params, self.ctx):
                self.add_finding(Finding(
                    "precondition-failed", Severity.ERROR, f"{later.label} cannot pass: {unmet}", (),
                    f"{unmet}: fix the inventory and run again (nothing was changed)", family=Family.OPSKIT))
                raise StepFailed(f"not changing anything: {later.label} cannot pass: {unmet}")

    def add_finding(self, finding: Finding) -> None:
        """Findings are facts about the host: the same one twice (a probe run again after a
        rollback) is one finding."""
        if all((f.cause, f.summary) != (finding.cause, finding.summary) for f in self.outcome.findings):
            self.outcome.findings.append(finding)

    def step(self, label: str, status: str, detail: str = "") -> None:
        self.run.observer.host_step(self.host.name, label, status, detail)

    def check_interrupt(self) -> None:
        if self.run.interrupt.is_set():
            raise Interrupted()

    def context_values(self) -> dict[str, Any]:
        # run.now: the controller's clock, read here so rules never read it themselves
        return {"host": self.host.model_dump(), "steps": self.ctx.results,
                "run": {**{name: spec["default"] for name, spec in self.run.playbook.options.items()},
                        **self.run.options.values, "id": self.run.run_id, "now": time.time()}}

    def run_steps(self, steps: tuple[Step, ...], after_rollback: bool = False) -> None:
        for position, step in enumerate(steps):
            if not after_rollback:
                self.check_interrupt()
            values = self.context_values()
            try:
                if step.when is not None and not references.render(step.when, values):
                    self.record_step(step, StepStatus.SKIPPED, "condition is false")
                    continue
                params = references.render(step.params, values)
            except references.TemplateError as exc:
                raise StepFailed(f"{step.label}: {exc}") from None
            started = time.monotonic()
            index = None if after_rollback else position
            if index is not None:
                self.boundary(f"step:{index}:{step.kind}:start")
            try:
                if step.kind == "change" and not after_rollback and not self.preflighted:
                    self.preflight(steps[position + 1:], values)
                if step.kind != "change":
                    self.flush_handlers()   # a run of changes is reloaded before anything looks at it
                if needs_host(step):
                    self.ensure_connected()
                    if step.kind != "probe":   # a probe batch carries the hello itself
                        self.ensure_hello()
                {"probe": self.do_probes, "change": self.do_change, "check": self.do_check,
                 "rule": self.do_rule}[step.kind](step, params)
            except (RemoteCommandError, InputError) as exc:   # the host said no, or a bad path
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

    def record_step(self, step: Step, status: StepStatus, detail: str = "", value: Any = None) -> None:
        entry = {"step": step.label, "id": step.id, "kind": step.kind, "status": StepStatus(status).value, "detail": detail, "at": round(time.time(), 3)}
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
        """All of the step's probes in one exec; the first batch of a read-only run carries
        the hello too (paths under the home are then expanded by the host's shell)."""
        items = []
        for name in step.names:
            probe = PROBES[name]()
            items.append((name, probe, self.params_for(step, probe.Params, params_for(probe.Params, params))))
        fence = batch.new_fence()
        snippets = self.probe_snippets(items)
        hello = not self.hello_done
        if hello:
            snippets.insert(0, (HELLO_SECTION, self.hello_command()))
        try:
            result = self.session.exec(batch.build_batch(snippets, fence))
        except TransportError as exc:
            if hello:   # nothing ran yet: the host is unreachable, not a step that failed
                raise NotConnected(Status.UNREACHABLE, str(exc)) from None
            raise
        sections = batch.split_batch(result.stdout, fence)
        if hello:
            section = sections.get(HELLO_SECTION)
            try:
                self.take_hello(guard.parse_hello(section.output if section else ""), result)
            except OpskitError as exc:
                raise NotConnected(Status.FAILED, str(exc)) from None
        values = {}
        for name, probe, prm in items:
            section = sections.get(name)
            if section is None:
                raise StepFailed(f"{step.label}: probe {name} produced no answer ({result.tail() or 'exit ' + str(result.exit_status)})")
            values[name] = probe.parse(section.output, section.exit_status, prm)
        value = values[step.names[0]] if len(step.names) == 1 else values
        self.remember(step, value)
        self.record_step(step, StepStatus.OK, "", value)

    def probe_snippets(self, items) -> list[tuple[str, str]]:
        """Each probe's sh snippet. Before the home is known, paths under it go to the host
        as "$HOME"/...; a probe that builds a path by hand from one gets the hello first."""
        if self.hello_done:
            return [(name, p.script(prm, self.ctx)) for name, p, prm in items]
        self.session.home_on_host = True
        try:
            return [(name, p.script(prm, self.ctx)) for name, p, prm in items]
        except HomeUnknown:
            pass
        finally:
            self.session.home_on_host = False
        self.ensure_hello()
        return [(name, p.script(prm, self.ctx)) for name, p, prm in items]

    def do_rule(self, step: Step, params: dict) -> None:
        """A pure rule over earlier steps' values: its findings join the host's."""
        rule = RULES[step.names[0]]()
        facts = self.params_for(step, rule.Params, params)
        findings = rule.evaluate(facts)
        for finding in findings:
            self.add_finding(finding)
        value = {**(rule.value(facts) or {}), "causes": [f.cause for f in findings],
                 "findings": [f.to_json() for f in findings]}
        self.remember(step, value)
        causes = ", ".join(value["causes"]) or "nothing to report"
        self.record_step(step, StepStatus.OK, causes, value)

    def do_change(self, step: Step, params: dict) -> None:
        """Plan, then apply. A change kind with plans() (config_edits) plans several changes
        at once: all are planned before any applies, and one refusal refuses them all."""
        change = CHANGES[step.names[0]]()
        typed = self.params_for(step, change.Params, params)
        several = hasattr(change, "plans")
        plans = change.plans(typed, self.ctx) if several else [change.plan(typed, self.ctx)]
        if several:
            self.remember(step, {"changed": any(p.noop is None and p.blocked is None for p in plans),
                                 "edits": [{"summary": p.summary, "noop": p.noop, "blocked": p.blocked, "diff": p.diff,
                                            **{k: v for k, v in p.record.items() if k != "content"}} for p in plans]})
        else:
            plan = plans[0]
            self.remember(step, {"changed": plan.noop is None and plan.blocked is None, "noop": plan.noop,
                                 **{k: v for k, v in plan.record.items() if k != "content"}})
        blocked = [p for p in plans if p.blocked]
        if blocked:
            for plan in blocked:
                self.outcome.changes.append(ChangeRecord(None, change.name, plan.summary, state="blocked", detail=plan.blocked))
            raise StepFailed(f"{step.label}: {'; '.join(p.blocked for p in blocked)}")
        todo = []
        for plan in plans:
            if plan.noop:
                self.outcome.changes.append(ChangeRecord(None, change.name, plan.summary, self.shown(plan.diff), "noop",
                                                         detail=plan.noop))
            else:
                todo.append(plan)
        if not todo:
            self.record_step(step, StepStatus.NOOP, "; ".join(p.noop for p in plans) or "nothing to change")
            return
        if self.run.options.check_mode:
            for plan in todo:
                self.outcome.changes.append(ChangeRecord(None, change.name, plan.summary, self.shown(plan.diff), "planned"))
            self.record_step(step, StepStatus.WOULD_CHANGE, "; ".join(p.summary for p in todo))
            return
        for plan in todo:
            self.apply(change, plan, step)

    def do_check(self, step: Step, params: dict) -> None:
        check = CHECKS[step.names[0]]()
        if self.run.options.check_mode and any(c.state == "planned" for c in self.outcome.changes):
            self.remember(step, None)   # later steps see it was not run (a rule given None says nothing)
            self.record_step(step, StepStatus.SKIPPED, "--check: it would verify a change that was not made")
            self.outcome.not_predicted.append(f"{step.label}: it verifies a change --check did not make")
            return
        try:
            result = check.run(self.params_for(step, check.Params, params), self.ctx)
        except TransportError:
            raise
        except OpskitError as exc:
            raise StepFailed(f"{step.label}: {exc}") from None
        value = {"verdict": result.verdict.value, "summary": result.summary, "observed": result.observed}
        self.remember(step, value)
        self.record_step(step, StepStatus(result.verdict.value), result.summary, value)
        for finding in result.findings:
            self.add_finding(finding)
        if result.ok:
            return
        severity = Severity(step.finding.get("severity", "error" if step.on_fail == "stop" else "warning"))
        if result.unmet:   # not a guess about the site: the inventory lacks what the check needs
            self.add_finding(Finding("not-configured", severity, f"{step.label}: {result.summary}", result.evidence,
                                     f"{result.unmet}: fix the inventory", family=Family.OPSKIT))
            if step.on_fail == "stop":
                raise StepFailed(f"{step.label}: {result.summary}")
            return
        family = step.finding.get("family")
        self.add_finding(Finding(
            step.finding.get("cause", f"check-{check.name}-{result.verdict.value}"), severity,
            f"{step.label}: {result.summary}", result.evidence, step.finding.get("advice", ""),
            family=Family(family) if family else None))
        if step.on_fail == "stop":
            raise StepFailed(f"{step.label}: {result.summary}")
