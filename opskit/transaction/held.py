"""Held runs seen from any process: `opskit runs` lists them; `opskit confirm RUN` and `opskit rollback RUN` end them.

Both read the run's hosts from the local journal, connect, and let the guard
on the host do the work (it knows the undo records), so they work from a new
terminal while the original `opskit run` is still waiting, or after it died.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass

from opskit import guard
from opskit.errors import InputError, OpskitError, TransportError
from opskit.shell import token
from opskit.inventory import Host
from opskit.journal import CorruptRunError, Journal, host_state
from opskit.playbook import Playbook
from opskit.playbook import load as load_playbook
from opskit.transaction.copies import drop_copies
from opskit.transaction.lifecycle import RunScope, Transaction
from opskit.transaction.outcome import HostOutcome
from opskit.transaction.writeahead import rebuild_on_host
from opskit.transport import Session


@dataclass
class SettleResult:
    host: str
    state: str          # kept | rolled_back | conflict | failed | unreachable | missing | done
    detail: str = ""
    steps: dict | None = None
    verified: HostOutcome | None = None   # the playbook's after_rollback checks, when it has them


def select_hosts(meta: dict, patterns: tuple[str, ...]) -> list[Host]:
    names = list(meta["hosts"])
    if patterns:
        chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
        if not chosen:
            raise InputError(f"run {meta['run_id']} has no host matching {', '.join(patterns)} (it has {', '.join(names)})")
        names = chosen
    return [Host(**meta["hosts"][n]) for n in names]


def adopt(journal: Journal, run_id: str, hosts: list[Host]) -> None:
    """A run started on another machine: the hosts hold its undo records, so record it here
    (hosts from this machine's inventory) and act on it like any other."""
    token(run_id)
    journal.create(run_id, {"run_id": run_id, "playbook": "(started elsewhere)", "adopted": True,
                            "created": time.time(), "hosts": {h.name: h.model_dump() for h in hosts}})


def settle(journal: Journal, run_id: str, patterns: tuple[str, ...], mode: str, accept_new: bool = False) -> list[SettleResult]:
    """mode: 'keep' (confirm) or 'revert' (rollback; undoes confirmed changes too)."""
    meta = journal.meta(run_id)
    hosts = select_hosts(meta, patterns)
    by = "confirm" if mode == "keep" else "rollback"

    playbook = _playbook(meta) if mode == "revert" else None

    def one(host: Host) -> SettleResult:
        verified = None
        try:
            with Session(host, accept_new) as session:
                result = session.exec(guard.run_guard(run_id, mode))
                report = guard.parse_output(result.stdout)
                rebuilt = False
                if report.state == "missing" and mode == "revert" and not _ended(journal, run_id, host.name):
                    # the host lost the transaction's folder: this machine's journal still has
                    # every undo record (and copies of what edits replaced)
                    if rebuild_on_host(session, journal, run_id, host.name):
                        result = session.exec(guard.run_guard(run_id, mode))
                        report = guard.parse_output(result.stdout)
                        rebuilt = True
                if playbook and playbook.after_rollback and report.state in ("rolled_back", "conflict"):
                    verified = verify(journal, run_id, playbook, host, session)
        except TransportError as exc:
            return SettleResult(host.name, "unreachable", str(exc))
        state = report.state or "failed"
        if state == "missing":
            detail = "the host has no record of this run (nothing was changed there, or it was cleaned up)"
        elif state == "busy":
            detail = "the guard is undoing this run right now; run the command again in a few seconds"
        elif state.startswith("locked"):
            holder = state.split()[1] if len(state.split()) > 1 else "unknown"
            state, detail = "locked", f"the host is locked by run {holder}; end that run first"
        else:
            detail = "; ".join(f"{o}: {m}" for o, m in report.steps.values()) or result.tail()
            if rebuilt:
                detail = ("the host had lost this run's records (~/.opskit removed?); re-created them from the "
                          "local journal — " + detail)
        steps = {str(k): {"outcome": o, "message": m} for k, (o, m) in sorted(report.steps.items())}
        if state in ("kept", "rolled_back", "done"):
            drop_copies(journal, run_id, host.name)   # the private copies of edited files are not needed any more
        if state in ("kept", "rolled_back", "conflict", "failed", "done"):
            status = {"done": "ok"}.get(state, state)
            journal.append(run_id, host.name, {"event": "end", "status": status, "by": by,
                                               "rollback": {"reason": by, "state": state, "by": by, "steps": steps}})
        return SettleResult(host.name, state, detail, steps, verified)

    from opskit.runner import for_each_host

    answers = for_each_host(hosts, one)
    results = [answer if isinstance(answer, SettleResult) else
               SettleResult(name, "failed", f"internal error: {type(answer).__name__}: {answer}")
               for name, answer in answers.items()]
    if meta.get("adopted") and all(r.state == "missing" for r in results):
        # a run id no host knows (a typo?): do not keep it as if it were a run
        journal.forget(run_id)
    return results


def _ended(journal: Journal, run_id: str, host: str) -> bool:
    """This machine knows the host's part of the run ended for good (nothing to rebuild)."""
    return any(e.get("event") == "end" and e.get("status") in ("rolled_back", "kept", "ok")
               for e in journal.events(run_id, host))


def _playbook(meta: dict) -> Playbook | None:
    """The run's playbook, if its file still loads (it is only needed for after_rollback checks)."""
    try:
        return load_playbook(meta["playbook_file"])
    except (OpskitError, KeyError):
        return None


def verify(journal: Journal, run_id: str, playbook: Playbook, host: Host, session: Session) -> HostOutcome:
    """Run the playbook's after_rollback steps with the step values the run journalled."""
    results = {e["id"]: e["value"] for e in journal.events(run_id, host.name) if e.get("event") == "result"}
    transaction = Transaction(RunScope(run_id, playbook, journal), host, session)
    transaction.verify_after_rollback(results)
    return transaction.outcome


def list_runs(journal: Journal, show_all: bool = False, skipped: list[str] | None = None) -> list[dict]:
    """Runs with their per-host state; by default only runs with something still held or running.

    A run whose run.json is corrupt is left out, so it cannot hide the others; `skipped`
    (when given) gets one line per such run, naming it and why.
    """
    rows = []
    now = time.time()
    for run_id in journal.run_ids():
        try:
            meta = journal.meta(run_id)
        except CorruptRunError as exc:
            if skipped is not None:
                skipped.append(f"skipped run {run_id}: run.json is corrupt ({exc.reason}): {exc.file}")
            continue
        for host in meta["hosts"]:
            events = journal.events(run_id, host)
            state = host_state(events)
            if state["state"] == "held" and state["deadline"] and state["deadline"] < now:
                state["state"] = "expired"   # the guard should have undone it; `opskit rollback` verifies
            elif state["state"] == "running" and not _controller_alive(events):
                # its controller died: the guard undoes at the deadline and gives the lock back
                state["state"] = "expired" if state["deadline"] and state["deadline"] < now else "stale"
            # a live run that changed nothing yet has nothing to hold
            idle = state["state"] == "running" and not state["changes"]
            if not show_all and (idle or state["state"] not in ("held", "running", "expired", "stale")):
                continue
            rows.append({"run_id": run_id, "playbook": str(meta.get("playbook", "?")), "host": host, **state})
    return rows


def _controller_alive(events: list[dict]) -> bool:
    """Is the process that journalled these events (on this machine) still running?"""
    pids = [e.get("pid") for e in events if isinstance(e.get("pid"), int)]
    if not pids:
        return True   # nothing says who wrote them: do not call it dead
    try:
        os.kill(pids[-1], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
