"""`opskit run PLAYBOOK --watch [INTERVAL]`: run a read-only playbook again every INTERVAL, with a
live per-resolver table, until every dns check in it says the move has propagated (every
resolver asked serves the new answer, no authoritative server serves another) or the limit
passes. Exit 0 when propagated, 1 when the limit passed first, 130 on Ctrl-C.

The first poll is an ordinary run (journalled under its run id); later polls run the same
playbook without journalling (RunOptions.check_mode: a read-only playbook does exactly the
same then), and the report at the end is the last poll's.
"""

from __future__ import annotations

import dataclasses
import time

from opskit.duration import format_duration, parse_duration
from opskit.errors import ExitCode, InputError

DEFAULT_INTERVAL = "10s"
DEFAULT_LIMIT = "1h"
MAX_LIMIT = 7 * 86400


def dns_values(outcome) -> list[dict]:
    """The dns check values (`observed`) among a host's steps."""
    out = []
    for step in outcome.steps:
        value = step.get("value") or {}
        observed = value.get("observed") if isinstance(value, dict) else None
        if step.get("kind") == "check" and isinstance(observed, dict) and "propagated" in observed:
            out.append(observed)
    return out


def propagated(outcomes: dict) -> bool:
    return bool(outcomes) and all(dns_values(o) and all(v["propagated"] for v in dns_values(o)) for o in outcomes.values())


def rows(outcomes: dict, elapsed: float = 0.0) -> list[tuple[str, str, str, str, str, str]]:
    """(host, resolver, name, verdict, answer, TTL left now) for every resolver answer; the TTL
    left counts down from the poll by `elapsed` seconds."""
    from opskit.stack.dns import NameAnswer, describe

    out = []
    for host, outcome in outcomes.items():
        values = dns_values(outcome)
        if not values:
            out.append((host, "-", "-", str(outcome.status), outcome.error or "no dns check", ""))
        for value in values:
            for resolver in value["resolvers"]:
                shown = resolver["server"] + (f" ({resolver['label']})" if resolver.get("label") else "")
                if resolver["status"] != "ok":
                    out.append((host, shown, "-", resolver["status"], resolver.get("detail", ""), ""))
                    continue
                for name, raw in resolver["answers"].items():
                    answer = NameAnswer.model_validate(raw)
                    left = answer.expires_in if answer.expires_in is not None else answer.ttl
                    ttl = f"{max(0, int(left - elapsed))}s" if left is not None else ""
                    out.append((host, shown, name, answer.verdict or answer.status, describe(answer), ttl))
    return out


def eta_line(outcomes: dict) -> str:
    from opskit.stack.dns import Eta, eta_text

    parts = []
    for host, outcome in outcomes.items():
        for value in dns_values(outcome):
            eta = Eta.model_validate(value["eta"])
            parts.append(f"{host}: {'propagated' if value['propagated'] else 'ETA ' + eta_text(eta)}")
    return "; ".join(parts) or "no dns answers"


def render(outcomes: dict, poll: int, elapsed: float, next_in: float | None, left: float):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = {"new": "green", "cdn": "green", "old": "red", "mixed": "yellow", "other": "red", "nxdomain": "magenta",
             "nodata": "magenta"}
    table = Table(title=f"dns propagation — poll {poll}", title_justify="left")
    for column in ("host", "resolver", "name", "verdict", "answer", "TTL left"):
        table.add_column(column)
    for host, resolver, name, verdict, answer, ttl in rows(outcomes, elapsed):
        table.add_row(host, resolver, name, Text(verdict, style=style.get(verdict, "yellow")), Text(answer), ttl)
    footer = eta_line(outcomes)
    if next_in is not None:
        footer += f" · next poll in {int(next_in)}s · gives up in {format_duration(max(0, int(left)))}"
    return Group(table, Text(footer))


def watch(book, hosts, options, inventory_file: str, interval_text: str, limit_text: str, as_json: bool,
          make_console, interrupts) -> int:
    """Poll until propagated or the limit; print the last poll's report; return the exit code."""
    from opskit import report
    from opskit.journal import Journal, new_run_id
    from opskit.runner import NullObserver, Run, exit_code

    try:
        interval = parse_duration(interval_text, maximum=86400)
        limit = parse_duration(limit_text, maximum=MAX_LIMIT)
    except ValueError as exc:
        raise InputError(f"--watch: {exc}") from None
    if interval < 1:
        raise InputError("--watch: the interval must be at least 1s")
    if book.changes != "none":
        raise InputError(f"--watch polls read-only playbooks; {book.name} changes hosts")
    if not any(step.kind == "check" and step.names[0] == "dns" for step in book.steps):
        raise InputError(f"--watch follows dns checks; {book.name} has none (try dns-check)")
    journal = Journal.default()
    run = Run(new_run_id(), book, hosts, options, journal, NullObserver(), inventory_file=inventory_file)
    quiet = dataclasses.replace(options, check_mode=True)
    console = None if as_json else make_console()
    if console is not None:
        console.print(f"run [bold]{run.run_id}[/] — {book.name} on {len(hosts)} host(s), polling every "
                      f"{format_duration(interval)} for up to {format_duration(limit)}")
    started = time.monotonic()
    polls, outcomes, done = 0, {}, False
    live = None
    if console is not None and console.is_terminal:
        from rich.live import Live

        live = Live(console=console, refresh_per_second=4, transient=False)
        live.start()
    try:
        with interrupts(run.interrupt, console):
            while True:
                polled = time.monotonic()
                scope = run if polls == 0 else Run(run.run_id, book, hosts, quiet, journal, NullObserver(), run.interrupt)
                outcomes = scope.execute()
                polls += 1
                done = propagated(outcomes)
                left = limit - (time.monotonic() - started)
                last = done or run.interrupt.is_set() or left < interval
                if live is not None:
                    live.update(render(outcomes, polls, time.monotonic() - polled, None if last else interval, left))
                elif console is not None:
                    console.print(f"poll {polls} ({format_duration(int(time.monotonic() - started))}): "
                                  f"{eta_line(outcomes)}" + ("" if last else f"; next in {format_duration(interval)}"),
                                  highlight=False)
                if last:
                    break
                wake = time.monotonic() + interval
                while time.monotonic() < wake and not run.interrupt.is_set():
                    if live is not None:
                        now = time.monotonic()
                        live.update(render(outcomes, polls, now - polled, wake - now, limit - (now - started)))
                    run.interrupt.wait(min(1.0, max(0.0, wake - time.monotonic())))
                if run.interrupt.is_set():
                    break
    finally:
        if live is not None:
            live.stop()
    seconds = time.monotonic() - started
    state = {"polls": polls, "propagated": done, "seconds": round(seconds, 3), "interval": interval, "limit": limit}
    if as_json:
        document = report.json_document(run.run_id, book.name, outcomes, options.check_mode)
        report.print_json({**document, "watch": state})
    else:
        console.print(report.summary_table(run.run_id, book.name, outcomes))
        report.print_details(console, outcomes, options.check_mode, show_facts=True)
        for host, resolver, name, verdict, answer, ttl in ([] if live is not None else rows(outcomes)):
            console.print(f"  {host}  {resolver}  {name}  {verdict}  {answer}  {ttl}", highlight=False)
        if done:
            console.print(f"[green]propagated[/]: every resolver serves the new answer (after {polls} poll(s), "
                          f"{format_duration(int(seconds))})")
        elif not run.interrupt.is_set():
            console.print(f"[yellow]not propagated[/] after {format_duration(int(seconds))} ({polls} poll(s)): "
                          f"{eta_line(outcomes)}")
    if run.interrupt.is_set():
        return ExitCode.INTERRUPTED
    failed = exit_code(outcomes, False)
    if failed:
        return failed
    return ExitCode.OK if done else ExitCode.HOST_FAILED
