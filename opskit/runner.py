"""Run a playbook across hosts: one transaction per host (opskit/transaction/), hosts in
parallel through one fan-out, `for_each_host`, which `opskit run`, `confirm`/`rollback` and
`inventory check` share.

Workers never print: they tell an Observer, and the report decides how to show it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

from opskit.inventory import Host
from opskit.journal import Journal
from opskit.playbook import Playbook
from opskit.transaction.lifecycle import NullObserver, RunScope, Transaction
from opskit.transaction.outcome import (STATUSES, ChangeRecord, HostOutcome, Interrupted, RunOptions,  # noqa: F401
                                        Status, StepFailed, exit_code)
from opskit.transaction.writeahead import steps_margin  # noqa: F401

T = TypeVar("T")


class Observer(Protocol):
    def host_started(self, host: str) -> None: ...
    def host_step(self, host: str, label: str, status: str, detail: str = "") -> None: ...
    def host_holding(self, host: str, deadline: float) -> None: ...
    def host_done(self, host: str, outcome: "HostOutcome") -> None: ...


def for_each_host(hosts: list[Host], fn: Callable[[Host], T], forks: int = 20) -> dict[str, T | BaseException]:
    """fn(host) for every host, `forks` at a time: {host name: its result, or the exception
    that stopped it}. One host's error never hides the others' results; the calling thread
    stays responsive to signals while it waits."""
    results: dict[str, T | BaseException] = {}
    if not hosts:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))), thread_name_prefix="opskit-host") as pool:
        futures = {host.name: pool.submit(fn, host) for host in hosts}
        for name, future in futures.items():
            # wait in short slices (signals are handled between them); only what the worker
            # raised is the host's: an exception raised here, in the waiting thread, is not
            while not wait([future], timeout=0.2).done:
                pass
            error = future.exception()
            results[name] = error if error is not None else future.result()
    return results


@dataclass
class Run(RunScope):
    """One invocation over hosts (a RunScope for each host's transaction)."""

    hosts: list[Host] = field(default_factory=list)
    inventory_file: str | None = None

    def __init__(self, run_id: str, playbook: Playbook, hosts: list[Host], options: RunOptions, journal: Journal,
                 observer: Observer | None = None, interrupt: threading.Event | None = None,
                 inventory_file: str | None = None):
        super().__init__(run_id, playbook, journal, options, observer or NullObserver(), interrupt or threading.Event())
        self.hosts = hosts
        self.inventory_file = inventory_file

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
        results = for_each_host(self.hosts, self._one, self.options.forks)
        return {name: result if isinstance(result, HostOutcome) else
                HostOutcome(name, Status.FAILED, f"internal error: {type(result).__name__}: {result}")
                for name, result in results.items()}

    def _one(self, host: Host) -> HostOutcome:
        started = time.monotonic()
        if self.interrupt.is_set():
            outcome = HostOutcome(host.name, Status.FAILED, "not started: the run was interrupted")
        else:
            self.observer.host_started(host.name)
            try:
                outcome = Transaction(self, host).execute()
            except Exception as exc:  # a bug must cost one host, not the fleet; the report shows it
                outcome = HostOutcome(host.name, Status.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        outcome.seconds = time.monotonic() - started
        if not self.options.check_mode:
            self.journal.append(self.run_id, host.name, {"event": "end", "status": outcome.status, "error": outcome.error})
        self.observer.host_done(host.name, outcome)
        return outcome
