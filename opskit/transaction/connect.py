"""Opening a host's transaction: the session, and the hello — one exec that finishes other
runs' overdue rollbacks, reports opskit's state on the host and takes the host lock.

A playbook that changes things connects at the start, for the lock. A read-only one connects
when its first step needs the host (never, for controller-only playbooks like dns-check) and
folds the hello into that step's probe batch, so it costs one exec per host.
"""

from __future__ import annotations

from opskit import guard
from opskit.errors import LockedError, OpskitError, RemoteCommandError, TransportError
from opskit.rules.opskit import HelloFacts, Recovered, hello_findings
from opskit.transaction.outcome import NotConnected, Status, StepFailed
from opskit.transaction.writeahead import steps_margin

HELLO_SECTION = "opskit-hello"


class Connecting:
    """Mixin of Transaction: the session, the hello and the lock."""

    connected = False
    hello_done = False

    def connect(self) -> None:
        """Open the session and say hello in its own exec (and take the lock when needed)."""
        self.open_session()
        result = self.session.exec(self.hello_command())
        self.take_hello(guard.parse_hello(result.stdout), result)

    def ensure_connected(self) -> None:
        """Before a step that needs the host: open the session if it is not open. The hello is
        then left for the step's probe batch (see execute.do_probes), or run now by
        `ensure_hello` when the step is not a probe."""
        if not self.host.ssh:
            raise NotConnected(Status.FAILED, f"{self.host.name} has `ssh: false` in the inventory (a site known by its "
                                              "URL only), and this playbook needs SSH to the host; `opskit run diagnose` "
                                              "gives such a site the public half of a diagnosis")
        if not self.connected:
            try:
                self.open_session()
            except TransportError as exc:
                raise NotConnected(Status.UNREACHABLE, str(exc)) from None

    def ensure_hello(self) -> None:
        if not self.hello_done:
            try:
                result = self.session.exec(self.hello_command())
                self.take_hello(guard.parse_hello(result.stdout), result)
            except TransportError as exc:
                raise NotConnected(Status.UNREACHABLE, str(exc)) from None
            except OpskitError as exc:
                raise NotConnected(Status.FAILED, str(exc)) from None

    def open_session(self) -> None:
        self.session.open()
        self.connected = True

    def hello_command(self) -> str:
        return guard.hello_script(self.run.run_id if self.needs_lock else None, self.run.hold + 3600,
                                  read_only=self.run.options.check_mode, keep=self.host.keep_transactions)

    def take_hello(self, hello: guard.Hello, result) -> None:
        """Act on the hello's answer: learn the home, report opskit's state, take the lock."""
        self.hello_done = True
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
        recovered = []
        for run_id, lines in hello.recovered.items():
            report = guard.parse_output("\n".join(lines))
            recovered.append(Recovered(run_id=run_id, state=report.state, lines=tuple(lines)))
            self.step("recover", "done", f"run {run_id}: {report.state}")
            self.journal_recovery(run_id, report)
        facts = HelloFacts(check_mode=self.run.options.check_mode, recovered=tuple(recovered),
                           overdue=tuple(hello.overdue), holder=hello.holder)
        for finding in hello_findings(facts):
            self.add_finding(finding)
        if self.needs_lock:
            self.take_lock(hello)
        self.step("connect", "ok", f"{self.session.connect_seconds or 0:.2f}s")
        self.boundary("connected")

    def take_lock(self, hello: guard.Hello) -> None:
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
