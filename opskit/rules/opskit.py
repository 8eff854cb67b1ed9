"""Rules about opskit's own state on a host, as the hello reported it: rollbacks this
connection finished for other runs, rollbacks past their deadline, the host lock.

The transaction evaluates `opskit_state` after every hello; a playbook has no need to.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from opskit.findings import Family, Finding, Severity
from opskit.steps import Rule, register


class Recovered(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    run_id: str
    state: str | None            # how the rollback ended (rolled_back, conflict, failed)
    lines: tuple[str, ...]       # the guard's last lines about it


class HelloFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    check_mode: bool
    recovered: tuple[Recovered, ...] = ()
    overdue: tuple[str, ...] = ()        # runs past their deadline, left alone (--check)
    holder: str | None = None            # the run that holds the host lock


@register
class OpskitState(Rule):
    """What the hello says about opskit's own state on the host."""

    name = "opskit_state"
    Params = HelloFacts

    def evaluate(self, facts: HelloFacts) -> list[Finding]:
        return hello_findings(facts)


def hello_findings(facts: HelloFacts) -> list[Finding]:
    out = []
    for run in facts.recovered:
        out.append(Finding(
            "overdue-rollback-finished", Severity.WARNING,
            f"finished the rollback of run {run.run_id}, whose guard did not run by its deadline (state: {run.state})",
            run.lines[-5:], "the host may kill background processes; check its process killer", family=Family.OPSKIT))
    if facts.check_mode and facts.holder:
        out.append(Finding(
            "host-locked", Severity.WARNING,
            f"a real run would be refused now: the host is locked by run {facts.holder}",
            (), f"`opskit confirm {facts.holder}` or `opskit rollback {facts.holder}` ends it", family=Family.OPSKIT))
    for run_id in facts.overdue:
        out.append(Finding(
            "overdue-rollback-pending", Severity.WARNING,
            f"run {run_id} is past its deadline and not rolled back (--check leaves it; any real run finishes it)",
            family=Family.OPSKIT))
    return out


def records_lost(run_id: str, state: str | None) -> Finding:
    """The host lost the transaction's folder and opskit rebuilt it from the local journal."""
    return Finding(
        "host-records-lost", Severity.ERROR,
        f"~/.opskit/tx/{run_id} disappeared from the host during the transaction; opskit re-created "
        f"its undo records from the local journal and rolled back (state: {state})",
        (), "find what removes files under ~/.opskit on this host (cleanup cron job, backup restore, quota purge) "
            "and exclude that folder", family=Family.OPSKIT)


def rollback_conflict(message: str) -> Finding:
    return Finding("rollback-conflict", Severity.ERROR, message, (),
                   "someone changed this since opskit did; nothing was overwritten — decide by hand",
                   family=Family.OPSKIT)


def after_rollback_failed(message: str) -> Finding:
    return Finding("after-rollback-check-failed", Severity.ERROR, message, family=Family.OPSKIT)


def apply_conflict(message: str) -> Finding:
    return Finding("apply-conflict", Severity.ERROR, message, (),
                   "someone changed this file while opskit was about to; nothing of theirs was touched — "
                   "run again once they are done", family=Family.OPSKIT)
