"""What a transaction produces: its status, its changes' records, the host's outcome, and the
run's exit code. Plain data; the report renders it, the journal stores it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from opskit.errors import ExitCode
from opskit.findings import Finding

# The `--json` document's shape version (opskit/document.py holds the models; kept here so that
# writing a document does not build them).
SCHEMA_VERSION = 1


class Status(enum.StrEnum):
    """How one host's transaction ended (the `status` of the --json document)."""

    OK = "ok"                    # nothing changed (read-only, or nothing needed)
    CHANGED = "changed"          # permanent changes applied and verified
    HELD = "held"                # temporary changes left to the guard (--detach)
    KEPT = "kept"                # temporary changes confirmed
    ROLLED_BACK = "rolled_back"  # undone (end of hold, rollback, interrupt)
    FAILED = "failed"            # a step failed (rolled back), or the rollback could not finish
    UNREACHABLE = "unreachable"  # no connection
    CONFLICT = "conflict"        # an undo found the world changed since; nothing overwritten


STATUSES = tuple(s.value for s in Status)


class StepStatus(enum.StrEnum):
    """How one step went (a step's `status` in the --json document): fixed identifiers."""

    OK = "ok"                       # a probe or rule ran
    SKIPPED = "skipped"             # its `when:` was false, or --check could not run it (see not_predicted)
    NOOP = "noop"                   # a change with nothing to do
    WOULD_CHANGE = "would_change"   # --check: the change that a real run would make
    CHANGED = "changed"             # a change applied
    PASSED = "passed"               # a check's verdicts
    FAILED = "failed"
    ERROR = "error"
FAILING = (Status.FAILED, Status.UNREACHABLE, Status.CONFLICT)


class StepFailed(Exception):
    """A step failed: the transaction rolls back."""


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: the transaction rolls back."""


class NotConnected(Exception):
    """The host could not be reached, or its shell did not run our commands: nothing ran."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class RunOptions:
    check_mode: bool = False
    hold: int | None = None          # seconds; None → the playbook's
    forks: int = 20
    detach: bool = False             # leave temporary changes to the guard instead of waiting
    accept_new_host_keys: bool = False
    values: dict = field(default_factory=dict)   # run options playbooks read as {{ run.NAME }} (--measure, --script-time)


@dataclass
class ChangeRecord:
    index: int | None
    kind: str
    summary: str
    diff: str = ""
    state: str = "planned"      # planned | noop | blocked | applied | undone | not_applied | conflict | failed | kept
    detail: str = ""

    def to_json(self) -> dict:
        return {"index": self.index, "kind": self.kind, "summary": self.summary, "diff": self.diff,
                "state": self.state, "detail": self.detail}


@dataclass
class HostOutcome:
    host: str
    status: Status = Status.OK
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    changes: list[ChangeRecord] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    rollback: dict | None = None     # {"reason", "state", "by", "steps": {...}}
    deadline: float | None = None    # controller epoch when the guard undoes
    guard: str | None = None         # how the guard is scheduled: detached, detached+crontab
    seconds: float = 0.0
    home: str | None = None          # the login user's home on the host (reports shorten it to ~)
    not_predicted: list[str] = field(default_factory=list)   # --check: what it could not tell beforehand

    def __setattr__(self, name, value):
        # a status is always a Status, whoever sets it (a journal's text, a guard's state)
        super().__setattr__(name, Status(value) if name == "status" else value)

    def to_json(self) -> dict:
        return {
            "status": self.status.value,
            "error": self.error,
            "findings": [f.to_json() for f in self.findings],
            "changes": [c.to_json() for c in self.changes],
            "steps": self.steps,
            "rollback": self.rollback,
            "deadline": self.deadline,
            "guard": self.guard,
            "seconds": round(self.seconds, 3),
            "home": self.home,
            "not_predicted": self.not_predicted,
        }


def exit_code(outcomes: dict[str, HostOutcome], interrupted: bool) -> int:
    if interrupted:
        return ExitCode.INTERRUPTED
    for outcome in outcomes.values():
        if outcome.status in FAILING:
            return ExitCode.HOST_FAILED
        # rolled back at the end of its hold, or on an admin's request from another
        # terminal (`opskit rollback RUN`): both as intended
        if outcome.status == Status.ROLLED_BACK and (outcome.rollback or {}).get("reason") not in ("hold_ended", "rollback"):
            return ExitCode.HOST_FAILED
    return ExitCode.OK
