"""Human output (progress on stderr, summary table) and the --json document (stdout).

rich is used for terminals; a plain observer writes one line per event when
stderr is not a terminal; --json and tests use the silent one.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO

from opskit.duration import format_duration
from opskit.runner import HostOutcome
from opskit.transaction.outcome import SCHEMA_VERSION

STATUS_STYLE = {"ok": "green", "changed": "green", "kept": "green", "held": "yellow", "rolled_back": "cyan",
                "failed": "red", "unreachable": "red", "conflict": "bold red"}


def json_document(run_id: str, playbook: str, outcomes: dict[str, HostOutcome], check_mode: bool) -> dict:
    hosts = {}
    for name, outcome in outcomes.items():
        hosts[name] = outcome.to_json()
        timeouts = timeouts_summary(outcome.steps)
        if timeouts is not None:   # check-timeouts: the chain and the measurement, as the table shows them
            hosts[name]["timeouts"] = timeouts
    return {
        "schema_version": SCHEMA_VERSION,   # the shape: opskit/schema/run-document.schema.json
        "run_id": run_id,
        "playbook": playbook,
        "check": check_mode,
        "hosts": hosts,
    }


def chain_step(steps: list[dict]) -> dict | None:
    """The timeout_chain rule's value among a host's steps (its `layers`), if it ran."""
    return next((s["value"] for s in steps if s.get("kind") == "rule" and isinstance(s.get("value"), dict)
                 and "layers" in s["value"] and "fires_first" in s["value"]), None)


def measure_step(steps: list[dict]) -> dict | None:
    return next((s["value"]["observed"] for s in steps if s.get("kind") == "check" and isinstance(s.get("value"), dict)
                 and isinstance(s["value"].get("observed"), dict) and "modes" in s["value"]["observed"]), None)


def timeouts_summary(steps: list[dict]) -> dict | None:
    """{"chain": {layers, fires_first, ...}, "measure": {...} | None} for --json; None when no chain ran."""
    chain = chain_step(steps)
    if chain is None:
        return None
    keys = ("served_by", "layers", "fires_first", "fires_first_seconds", "visitor_sees", "certain", "cpu_bound",
            "unknown", "off", "misordered", "consistent", "proposal", "changes")
    return {"chain": {k: chain.get(k) for k in keys}, "measure": measure_step(steps)}


def _where(layer: dict, short) -> str:
    source = layer.get("source")
    if source in ("set", "inherited") and layer.get("file"):
        at = short(layer["file"]) + (f":{layer['line']}" if layer.get("line") else "")
        return at + (" (inherited)" if source == "inherited" else "")
    return {"default": "default", "inventory": "inventory", "unknown": "unknown"}.get(source, source or "-")


def chain_table(chain: dict, short=lambda text: text):
    """The timeout chain of one host: layer, value, where set, what the visitor sees, what fires first."""
    from rich.table import Table

    table = Table(box=None, padding=(0, 2, 0, 2), show_edge=False)
    for column in ("layer", "value", "where set", "visitor sees", "fires first"):
        table.add_column(column)
    busy = (chain.get("cpu_bound") or {}).get("fires_first")
    for layer in chain.get("layers", []):
        if layer["state"] == "unknown":
            value = "unknown"
        else:
            value = layer.get("raw") or f"{layer.get('seconds')}s"
            value += " (off)" if layer["state"] == "off" else ""
        first = []
        if layer["layer"] == chain.get("fires_first"):
            first.append("first" + ("" if chain.get("certain") else " (of the known)"))
        if busy == layer["layer"] and busy != chain.get("fires_first"):
            first.append("first when busy on the CPU")
        table.add_row(layer["label"], value, _plain(_where(layer, short)), layer.get("visitor_sees") or "",
                      ", ".join(first))
    return table


def print_json(document: dict, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
    stream.flush()


VERDICTS = ("passed", "failed", "error")


def hold_hint(run_id: str) -> str:
    return (f"`opskit confirm {run_id}` keeps the changes, `opskit rollback {run_id}` undoes them now "
            "(from any terminal); Ctrl-C here rolls back now")


class PlainObserver:
    """One line per event on a stream (stderr when it is not a terminal)."""

    def __init__(self, stream: IO[str], run_id: str = "RUN"):
        self.stream = stream
        self.run_id = run_id
        self.lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def host_started(self, host):
        self._line(f"{host}: started")

    def host_step(self, host, label, status, detail=""):
        self._line(f"{host}: {label}: {status}" + (f" — {detail}" if detail else ""))

    def host_holding(self, host, deadline):
        self._line(f"{host}: holding until {time.strftime('%H:%M:%S', time.localtime(deadline))} "
                   f"({format_duration(max(0, deadline - time.time()))}): {hold_hint(self.run_id)}")

    def host_done(self, host, outcome):
        verdict = _verdict(outcome)
        self._line(f"{host}: {outcome.status}" + (f" — {outcome.error}" if outcome.error else "")
                   + (f" — diagnosis: {verdict}" if verdict else ""))


class RichObserver:
    """A live per-host progress display (rich), safe to update from worker threads: each
    host's current step, a countdown while it holds, and check verdicts printed as they land."""

    def __init__(self, console, total: int, run_id: str = "RUN"):
        from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class Countdown(ProgressColumn):
            """The time left in a host's hold window (re-rendered every refresh)."""

            def render(self, task):
                deadline = task.fields.get("deadline")
                if deadline is None or task.finished:
                    return Text("")
                return Text(f"undone in {format_duration(max(0, deadline - time.time()))}", style="yellow")

        self.console = console
        self.run_id = run_id
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[host]:<16}"), TextColumn("{task.description}"),
                                 Countdown(), TimeElapsedColumn(), console=console, transient=False)
        self.overall = self.progress.add_task("hosts", total=total, host="all hosts")
        self.total, self.done = total, 0
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()
        self.hinted = False

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def _task(self, host: str) -> int:
        with self.lock:
            if host not in self.tasks:
                self.tasks[host] = self.progress.add_task("", total=None, host=host)
            return self.tasks[host]

    def host_started(self, host):
        self.progress.update(self._task(host), description="started")

    def host_step(self, host, label, status, detail=""):
        from rich.markup import escape

        line = f"{label}: {status}" + (f" — {detail}" if detail else "")
        self.progress.update(self._task(host), description=escape(line))
        if status in VERDICTS:   # a verification's result stays on screen when it happens, not after the hold
            style = "green" if status == "passed" else "red"
            self.progress.console.print(f"[bold]{escape(host)}[/] check {escape(label)}: [{style}]{status}[/]"
                                        + (f" — {escape(detail)}" if detail else ""))

    def host_holding(self, host, deadline):
        with self.lock:
            first, self.hinted = not self.hinted, True
        if first:
            self.progress.console.print(f"[yellow]holding[/]: {hold_hint(self.run_id)}")
        self.progress.update(self._task(host), deadline=deadline,
                             description=f"holding until {time.strftime('%H:%M:%S', time.localtime(deadline))}")

    def host_done(self, host, outcome):
        from rich.markup import escape

        style = STATUS_STYLE.get(outcome.status, "white")
        text = f"[{style}]{outcome.status}[/]" + (f" — {escape(outcome.error)}" if outcome.error else "")
        verdict = _verdict(outcome)   # diagnose: the host's verdict as it lands
        if verdict:
            text += f" — [{'green' if verdict == 'healthy' else 'bold red'}]{escape(verdict)}[/]"
        self.progress.update(self._task(host), description=text, total=1, completed=1, deadline=None)
        self.progress.advance(self.overall)
        with self.lock:
            self.done += 1
            self.progress.update(self.overall, description=f"{self.done}/{self.total} hosts done")


def summary_table(run_id: str, playbook: str, outcomes: dict[str, HostOutcome]):
    from rich.table import Table

    counts_by_status: dict[str, int] = {}
    for o in outcomes.values():
        counts_by_status[o.status.value] = counts_by_status.get(o.status.value, 0) + 1
    caption = f"{len(outcomes)} host(s): " + ", ".join(f"{n} {status}" for status, n in counts_by_status.items())
    table = Table(title=f"run {run_id} — {playbook}", title_justify="left", caption=caption, caption_justify="left")
    for column in ("host", "status", "findings", "changes", "rollback", "time"):
        table.add_column(column)
    for name, o in outcomes.items():
        style = STATUS_STYLE.get(o.status, "white")
        findings = f"{len(o.findings)}" + (f" ({sum(1 for f in o.findings if f.severity.value in ('error', 'critical'))} errors)" if o.findings else "")
        counts: dict[str, int] = {}
        for change in o.changes:
            counts[change.state] = counts.get(change.state, 0) + 1
        changes = ", ".join(f"{n} {state}" for state, n in counts.items()) or "-"
        if o.rollback:
            rollback = f"{o.rollback.get('state')} ({o.rollback.get('reason')})"
        elif o.status == "held":
            rollback = f"guard armed, undoes at {time.strftime('%H:%M:%S', time.localtime(o.deadline or 0))}"
        else:
            rollback = "-"
        table.add_row(name, f"[{style}]{o.status}[/]", findings, _plain(changes), _plain(rollback), format_duration(o.seconds))
    return table


def _compact(value, prefix: str = "") -> str:
    """Nested probe values as 'a.b=v' pairs on one line (None and empty lists left out)."""
    if isinstance(value, dict):
        parts = [_compact(v, f"{prefix}{k}.") for k, v in value.items()]
        return " ".join(p for p in parts if p)
    if value is None or value == []:
        return ""
    return f"{prefix.rstrip('.')}={value}"


def _plain(text: str):
    from rich.text import Text

    return Text(text)


def print_details(console, outcomes: dict[str, HostOutcome], check_mode: bool, show_facts: bool,
                  show_diff: bool = False, verbose: int = 0) -> None:
    """Findings, errors and (with --check or --diff) diffs, per host, below the table."""
    from rich.syntax import Syntax
    from rich.text import Text

    for name, o in outcomes.items():
        lines = []
        def short(text: str) -> str:
            return text.replace(o.home + "/", "~/") if o.home and o.home != "/" else text

        if o.error and not any(o.error.endswith(f.summary) for f in o.findings):
            lines.append(Text(f"  error: {o.error}", style="red"))
        chain = chain_step(o.steps)
        if chain is not None:   # check-timeouts: the chain first, then the findings
            lines.append(Text("  timeout chain, inner to outer:"))
            lines.append(chain_table(chain, short))
        for finding in o.findings:
            lines.append(finding)

        for change in o.changes:
            # an undo's own message says what happened; otherwise say what the change was
            said = change.detail if change.state in ("undone", "not_applied", "conflict", "failed") and change.detail \
                else change.summary + (f" ({change.detail})" if change.detail else "")
            lines.append(Text(f"  {change.state}: {short(said)}"))
            if (check_mode or show_diff) and change.diff:
                lines.append(Syntax(change.diff, "diff", theme="ansi_dark", background_color="default"))
        for step in o.steps:
            if step.get("kind") == "check" and step["status"] == "passed":
                lines.append(Text(f"  check {step['step']}: passed — {short(step['detail'])}"))
            elif show_facts and step.get("kind") == "probe" and isinstance(step.get("value"), dict) \
                    and not _verdict(o):   # diagnose: the findings carry the facts that matter
                value = step["value"]
                if all(isinstance(v, dict) for v in value.values()):   # several probes in one step
                    lines += [Text(f"  {name}: " + short(_compact(v))) for name, v in value.items()]
                else:
                    lines.append(Text(f"  {step['step']}: " + short(_compact(value))))
        if verbose:   # -v: every step, with its status and how long it took
            for step in o.steps:
                seconds = f" ({step['seconds']:.2f}s)" if isinstance(step.get("seconds"), (int, float)) else ""
                lines.append(Text(f"  step {step['step']}: {step['status']}{seconds}"
                                  + (f" — {short(str(step['detail']))}" if step.get("detail") else ""), style="dim"))
        if check_mode and o.not_predicted:
            lines.append(Text("  --check could not predict: " + "; ".join(o.not_predicted), style="dim"))
        if lines:
            console.print(Text(name, style="bold"))
            for line in lines:
                console.print(line)
    if any(_verdict(o) for o in outcomes.values()):   # diagnose: the fleet's hosts × causes
        from opskit import fleet_report

        console.print(fleet_report.causes_table({"hosts": {n: o.to_json() for n, o in outcomes.items()}}))


def _verdict(outcome: HostOutcome) -> str | None:
    from opskit.fleet_report import verdict_of

    return verdict_of(outcome.steps)
