"""One host's transaction, from the connection to its ending.

    connect → hello (finish overdue rollbacks, take the host lock) → steps → finish | keep |
    hold | roll back

The work is in the mixins beside this module: connect.py (session, hello, lock),
execute.py (the steps), writeahead.py (journal, guard, apply), endings.py (how it ends).
"""

from __future__ import annotations

import posixpath
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opskit import faults
from opskit.errors import ConflictError, OpskitError, TransportError
from opskit.inventory import Host
from opskit.journal import Journal
from opskit.playbook import Playbook
from opskit.redact import mask_secrets
from opskit.rules.opskit import apply_conflict
from opskit.steps import Context
from opskit.transaction.connect import Connecting
from opskit.transaction.endings import Endings
from opskit.transaction.execute import StepExecution
from opskit.transaction.outcome import HostOutcome, Interrupted, NotConnected, RunOptions, Status, StepFailed
from opskit.transaction.writeahead import WriteAhead
from opskit.transport import Session

if TYPE_CHECKING:
    from opskit.runner import Observer


class NullObserver:
    """Tells no one (a transaction run by `opskit rollback` for its checks, the tests)."""

    def host_started(self, host): pass
    def host_step(self, host, label, status, detail=""): pass
    def host_holding(self, host, deadline): pass
    def host_done(self, host, outcome): pass


@dataclass
class RunScope:
    """What one host's transaction needs from its run. `runner.Run` is one; `opskit rollback`
    builds one to run a playbook's after-rollback checks."""

    run_id: str
    playbook: Playbook
    journal: Journal
    options: RunOptions = field(default_factory=RunOptions)
    observer: "Observer" = field(default_factory=NullObserver)
    interrupt: threading.Event = field(default_factory=threading.Event)

    @property
    def hold(self) -> int:
        return self.options.hold if self.options.hold is not None else self.playbook.hold


class Transaction(Connecting, StepExecution, WriteAhead, Endings):
    """One host's part of a run."""

    def __init__(self, run: "RunScope", host: Host, session: Session | None = None):
        self.run = run
        self.host = host
        self.outcome = HostOutcome(host.name)
        self.session = session or Session(host, run.options.accept_new_host_keys)
        self.connected = session is not None
        self.ctx = Context(host, self.session, run.run_id, run.options.check_mode, interrupt=run.interrupt)
        self.undo_bodies: list[str] = []
        self.handlers: list[str] = []      # reloads to run after the changes and after the undos
        self.records: list[dict] = []
        self.armed_at: float | None = None
        self.locked = False
        self.may_change = run.playbook.may_change(run.options.values)
        self.needs_lock = self.may_change and not run.options.check_mode

    @property
    def tx_dir(self) -> str:
        return posixpath.join(self.session.home, ".opskit", "tx", self.run.run_id)

    def log(self, event: dict) -> None:
        if not self.run.options.check_mode:
            self.run.journal.append(self.run.run_id, self.host.name, event)

    def execute(self) -> HostOutcome:
        try:
            try:
                if self.may_change:
                    self.connect()   # at the start: the lock comes before any step
            except TransportError as exc:
                raise NotConnected(Status.UNREACHABLE, str(exc)) from None
            except OpskitError as exc:
                raise NotConnected(Status.FAILED, str(exc)) from None
            try:
                self.run_steps(self.run.playbook.steps)
                self.finish()
            except NotConnected:
                raise
            except StepFailed as exc:
                self.outcome.error = str(exc)
                self.roll_back("step_failed", status=Status.FAILED)
            except ConflictError as exc:
                # someone changed the target since opskit read it: nothing of theirs was touched
                self.outcome.error = str(exc)
                self.add_finding(apply_conflict(str(exc)))
                self.roll_back("conflict", status=Status.CONFLICT)
            except Interrupted:
                self.outcome.error = "interrupted"
                self.roll_back("interrupted", status=Status.ROLLED_BACK)
            except TransportError as exc:
                self.outcome.error = str(exc)
                self.roll_back("connection_lost", status=Status.FAILED)
            except BaseException as exc:
                self.outcome.error = f"internal error: {type(exc).__name__}: {exc}"
                self.roll_back("internal_error", status=Status.FAILED)
                if not isinstance(exc, Exception):
                    raise
            return self.outcome
        except NotConnected as exc:
            self.outcome.status, self.outcome.error = exc.status, str(exc)
            return self.outcome
        finally:
            if self.connected:
                self.session.close()

    def shown(self, diff: str) -> str:
        """A diff as output and journals show it: secret values (DB_PASSWORD, keys, salts,
        the inventory's secret_names) masked."""
        return mask_secrets(diff, self.host.secret_names)

    def boundary(self, name: str) -> None:
        """A point between two interactions with the host (see opskit.faults)."""
        faults.boundary(self.host.name, name, self.session)
