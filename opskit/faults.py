"""Fault injection at a transaction's boundaries, for the test suite's fault matrix.

Inert unless one of these is set in the environment:

    OPSKIT_FAULT_TRACE=FILE            append "HOST BOUNDARY" for every boundary passed
    OPSKIT_FAULT=ACTION@BOUNDARY[+S]   at BOUNDARY (on any host), S seconds later (default 0):
        kill       SIGKILL this controller (a dead laptop)
        cut        sever the host's SSH connection; reconnecting works (a network blip)
        partition  sever it and refuse every reconnect (the network stays down)

The runner calls boundary() between any two interactions with a host (see
Transaction), so a new step kind is covered without touching the test harness: the
harness first records the boundaries a clean run passes, then faults each one.
"""

from __future__ import annotations

import os
import signal
import threading

_partitioned: set[str] = set()
_fired = threading.Event()


def boundary(host: str, name: str, session=None) -> None:
    trace = os.environ.get("OPSKIT_FAULT_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(f"{host} {name}\n")
    spec = os.environ.get("OPSKIT_FAULT")
    if not spec or _fired.is_set():
        return
    action, _, where = spec.partition("@")
    where, _, delay = where.partition("+")
    if where != name:
        return
    _fired.set()
    seconds = float(delay or 0)
    if seconds > 0:
        timer = threading.Timer(seconds, _act, (action, host, session))
        timer.daemon = True
        timer.start()
    else:
        _act(action, host, session)


def _act(action: str, host: str, session) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action in ("cut", "partition"):
        if action == "partition":
            _partitioned.add(host)
        if session is not None:
            session.sever()
    else:
        raise ValueError(f"OPSKIT_FAULT: unknown action {action!r}")


def refuses(host: str) -> bool:
    """A partitioned host cannot be reached again in this process."""
    return host in _partitioned
