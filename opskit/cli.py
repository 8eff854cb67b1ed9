"""opskit's command line.

`main()` is the outer entry: it maps opskit's errors to one-line messages and
exit codes (see ExitCode) and honours --traceback. The click commands below it
do the work and have no error handling of their own.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import re
import signal
import sys
import threading
import traceback

import click

from opskit import __version__
from opskit.errors import ExitCode, InputError, OpskitError

EXIT_CODES_HELP = """\b
Exit status:
  0    every host ended fine (ok, changed, kept, held, or rolled back at the end of its hold)
  1    some host failed, was unreachable, hit a conflict, or was rolled back by a failure
  2    bad command line, inventory or playbook: nothing was done
  130  interrupted (Ctrl-C, SIGTERM): changes were rolled back
"""


def _inventory_option(f):
    return click.option("-i", "--inventory", "inventory", metavar="FILE", default=None,
                        help="Inventory file (default: $OPSKIT_INVENTORY, else ./inventory.yaml).")(f)


# -- shell completion (click's: `eval "$(_OPSKIT_COMPLETE=bash_source opskit)"`, see README) ------------
def _completion_inventory(ctx: click.Context):
    """The inventory the command line names so far (-i, $OPSKIT_INVENTORY, ./inventory.yaml), or None."""
    from opskit import inventory

    given, node = None, ctx
    while node is not None and given is None:
        given = node.params.get("inventory")
        node = node.parent
    try:
        return inventory.load(inventory.resolve_path(given))
    except Exception:   # noqa: BLE001 — a broken inventory completes nothing rather than printing a traceback
        return None


def _complete_hosts(ctx, param, incomplete: str):
    from click.shell_completion import CompletionItem

    loaded = _completion_inventory(ctx)
    names = list(loaded.hosts) + ["@failed"] + list(getattr(loaded, "aliases", {}) or {}) if loaded else ["@failed"]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _complete_groups(ctx, param, incomplete: str):
    from click.shell_completion import CompletionItem

    loaded = _completion_inventory(ctx)
    return [CompletionItem(g) for g in (loaded.groups if loaded else ()) if g.startswith(incomplete)]


def _complete_playbooks(ctx, param, incomplete: str):
    from click.shell_completion import CompletionItem

    from opskit import playbook as pb

    extra = tuple(ctx.params.get("playbook_path") or ())
    return [CompletionItem(n) for n in pb.available(extra) if n.startswith(incomplete)]


def _complete_runs(ctx, param, incomplete: str):
    from click.shell_completion import CompletionItem

    from opskit.journal import Journal

    return [CompletionItem(r) for r in reversed(Journal.default().run_ids()) if r.startswith(incomplete)]


def _selection_options(f):
    f = click.option("--all", "select_all", is_flag=True, help="Every host in the inventory.")(f)
    f = click.option("--group", "-g", "groups", multiple=True, metavar="NAME", shell_complete=_complete_groups,
                     help="Hosts of this group (repeatable).")(f)
    f = click.option("--exclude", "-x", "excluded", multiple=True, metavar="PATTERN", shell_complete=_complete_hosts,
                     help="Leave out hosts matching this name or glob (repeatable), e.g. --host 'site*' --exclude site3.")(f)
    f = click.option("--host", "-H", "hosts", multiple=True, metavar="NAME", shell_complete=_complete_hosts,
                     help="Host name or shell-style glob like 'site*' (repeatable); @failed: the hosts that failed "
                          "or were unreachable in the last run; @ALIAS: a WP-CLI alias (or alias group).")(f)
    return f


def _select(loaded, hosts: tuple[str, ...], groups: tuple[str, ...], select_all: bool, excluded: tuple[str, ...]):
    """--host/--group/--all minus --exclude; `@failed` stands for the last run's failed hosts."""
    import fnmatch

    if "@failed" in hosts:
        hosts = tuple(h for h in hosts if h != "@failed") + _last_failed()
    selected = loaded.select(hosts, groups, select_all, ssh_config=False)
    for pattern in excluded:
        if not any(fnmatch.fnmatchcase(h.name, pattern) for h in selected):
            raise InputError(f"--exclude {pattern!r} matches none of the selected hosts "
                             f"({', '.join(h.name for h in selected[:10])}{' …' if len(selected) > 10 else ''})")
    selected = [h for h in selected if not any(fnmatch.fnmatchcase(h.name, p) for p in excluded)]
    if not selected:
        raise InputError("--exclude leaves no host selected")
    return loaded.resolve_ssh(selected)   # after --exclude: a host left out is not resolved (nor refused)


FAILING_STATES = ("failed", "unreachable", "conflict")


def _last_failed() -> tuple[str, ...]:
    """The hosts whose transaction ended failed, unreachable or in conflict in the newest run
    of this machine's journal (Ansible's retry file, without the file)."""
    from opskit.journal import Journal, host_state

    journal = Journal.default()
    runs = journal.run_ids()
    if not runs:
        raise InputError(f"@failed: no runs in {journal.root} yet")
    last = runs[-1]
    meta = journal.meta(last)
    failed = tuple(h for h in meta["hosts"] if host_state(journal.events(last, h))["state"] in FAILING_STATES)
    if not failed:
        raise InputError(f"@failed: no host failed or was unreachable in the last run, {last} "
                         f"({meta.get('playbook', '?')} on {len(meta['hosts'])} host(s))")
    return failed


def _inventory_path(ctx: click.Context, value: str | None):
    from opskit import inventory

    given = value or (ctx.obj or {}).get("inventory")
    path = inventory.resolve_path(given)
    if not path.exists():
        source = "-i" if given else "$OPSKIT_INVENTORY" if os.environ.get("OPSKIT_INVENTORY") else "the default, ./inventory.yaml"
        raise InputError(f"inventory file not found: {path} (from {source}). Name one with -i FILE or "
                         "$OPSKIT_INVENTORY; inventory.example.yaml in opskit's source shows every field, and "
                         "`opskit inventory convert` writes one from an Ansible inventory, a WP-CLI config.yml "
                         "or ~/.ssh/config (--from-ssh-config)")
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXIT_CODES_HELP)
@_inventory_option
@click.option("--traceback", is_flag=True, help="Show a full traceback for unexpected errors.")
@click.version_option(__version__, prog_name="opskit")
@click.pass_context
def cli(ctx: click.Context, inventory: str | None, traceback: bool):
    """Find why WordPress sites answer 502, apply the standard fixes over SSH,
    and roll every change back automatically.

    \b
    Typical use:
      opskit list                               playbooks you can run
      opskit run disable-cdn --host site1       take CDN Enabler out for a hold window
      opskit runs                               what is held right now
      opskit confirm RUN | opskit rollback RUN  end a hold early
    """
    ctx.ensure_object(dict)
    ctx.obj["inventory"] = inventory
    ctx.obj["traceback"] = traceback


def _format_option(f):
    return click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml", "csv"]), default="table",
                        show_default=True, help="Output format (json, yaml and csv for scripts).")(f)


@cli.command("list")
@click.option("--playbook-path", multiple=True, metavar="DIR", help="Also look for playbooks in DIR (repeatable).")
@_format_option
def list_cmd(playbook_path, fmt):
    """List playbooks with their descriptions."""
    from opskit import playbook as pb
    from opskit.duration import format_duration
    from opskit.listing import render

    rows = []
    for name, file in pb.available(tuple(playbook_path)).items():
        book = pb.load(str(file), tuple(playbook_path))
        hold = format_duration(book.hold) if book.changes == "temporary" else None
        description = book.description.split(". ")[0].rstrip(".") + "." if fmt == "table" else book.description
        rows.append({"playbook": name, "changes": book.changes + (f" (hold {hold})" if hold and fmt == "table" else ""),
                     "hold": hold, "description": description, "file": str(file)})
    columns = ["playbook", "changes", "description"] if fmt == "table" else ["playbook", "changes", "hold", "description", "file"]
    click.echo(render(rows, columns, fmt), nl=False)


@cli.command("show")
@click.argument("name", shell_complete=_complete_playbooks)
@click.option("--playbook-path", multiple=True, metavar="DIR", help="Also look for playbooks in DIR (repeatable).")
@_format_option
def show_cmd(name, playbook_path, fmt):
    """Print a playbook's steps and what it may change (csv: one row per step)."""
    from opskit import playbook as pb
    from opskit.duration import format_duration
    from opskit.listing import render

    book = pb.load(name, tuple(playbook_path))
    if fmt != "table":
        def steps(items, phase):
            return [{"phase": phase, "number": n, "label": s.label, "id": s.id, "kind": s.kind, "names": list(s.names),
                     "params": s.params, "when": s.when, "changes": s.kind == "change"} for n, s in enumerate(items, 1)]

        all_steps = steps(book.steps, "run") + steps(book.after_rollback, "after_rollback")
        if fmt == "csv":
            click.echo(render(all_steps, ["phase", "number", "kind", "names", "label", "id", "when"], fmt), nl=False)
            return
        document = {"name": book.name, "file": str(book.file), "description": book.description, "changes": book.changes,
                    "hold": book.hold if book.changes != "none" else None, "options": book.options,
                    "steps": [s for s in all_steps if s["phase"] == "run"],
                    "after_rollback": [s for s in all_steps if s["phase"] == "after_rollback"]}
        if fmt == "json":
            click.echo(json.dumps(document, indent=2, default=str))
        else:
            import yaml

            click.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
        return
    click.echo(f"{book.name} — {book.file}")
    click.echo(book.description)
    click.echo("")
    if book.changes == "none":
        click.echo("Changes: none (read-only)")
    else:
        click.echo(f"Changes: {book.changes}; default hold {format_duration(book.hold)}"
                   + ("; undone at the end of the hold unless `opskit confirm`" if book.changes == "temporary" else "; kept once verified"))
    click.echo("\nSteps:")
    for number, step in enumerate(book.steps, 1):
        marker = "CHANGE " if step.kind == "change" else ""
        click.echo(f"  {number}. {marker}{step.label}  [{step.kind}: {', '.join(step.names)}]")
        for key, value in step.params.items():
            click.echo(f"       {key}: {value}")
        if step.when:
            click.echo(f"       when: {step.when}")
    if book.after_rollback:
        click.echo("\nAfter a rollback:")
        for number, step in enumerate(book.after_rollback, 1):
            click.echo(f"  {number}. {step.label}  [{step.kind}: {', '.join(step.names)}]")


@cli.command("run", epilog=EXIT_CODES_HELP)
@click.argument("playbook", shell_complete=_complete_playbooks)
@_inventory_option
@_selection_options
@click.option("--check", "check_mode", is_flag=True, help="Show what would change (diffs, renames); change nothing, arm nothing.")
@click.option("--hold", metavar="DURATION", help="Hold window for temporary changes, e.g. 90s, 15m, 1h (default: the playbook's).")
@click.option("--forks", type=click.IntRange(1, 500), default=20, show_default=True, help="Hosts worked on at once.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (progress stays off).")
@click.option("--diff", "show_diff", is_flag=True, help="Show each change's diff for real runs too (--check always shows them).")
@click.option("-v", "--verbose", count=True, help="-v: every step with its timing, and each command sent to each host "
                                                  "with its exit status and time; -vv: the commands' text too.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display and no details: one line per host, then the summary.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing hosts (asked only on a terminal).")
@click.option("--detach", is_flag=True, help="Do not wait for the hold: leave the guard on each host to undo at the deadline.")
@click.option("--accept-new-host-keys", is_flag=True, help="Record unknown host keys (like OpenSSH accept-new). Changed keys are always refused.")
@click.option("--playbook-path", multiple=True, metavar="DIR", help="Also look for playbooks in DIR (repeatable).")
@click.option("--watch", "watch", is_flag=False, flag_value="10s", default=None, metavar="[INTERVAL]",
              help="Read-only playbooks with a dns check (dns-check): run again every INTERVAL (default 10s) with a live "
                   "per-resolver table until every resolver serves the new answer; exit 0 when propagated.")
@click.option("--watch-limit", metavar="DURATION", default="1h", show_default=True,
              help="With --watch: give up (exit 1) after this long.")
@click.option("--measure", is_flag=True, help="check-timeouts: upload a temporary PHP probe (removed at the end of the "
                                             "run) and measure the real kill time from the origin.")
@click.option("--measure-max", metavar="DURATION", default=None,
              help="With --measure: the longest a measuring request may last (default 120s).")
@click.option("--script-time", metavar="DURATION", default=None,
              help="tune-timeouts: the longest legitimate script, e.g. 120s (default: the current max_execution_time).")
@click.option("--confirm-within", metavar="DURATION", default=None,
              help="The hold under its commit-confirmed name: `opskit confirm RUN` within it keeps the changes, "
                   "else the guard undoes them (tune-timeouts: default 10m).")
@click.option("--report", "report_file", metavar="FILE", default=None,
              help="Also write the run as FILE.html (a self-contained page to send) or FILE.md (for a ticket), "
                   "rendered from the --json document (diagnose: verdicts, findings, evidence, hosts × causes).")
@click.pass_context
def run_cmd(ctx, playbook, inventory, hosts, excluded, groups, select_all, check_mode, hold, forks, as_json, show_diff,
            verbose, quiet, yes, detach,
            accept_new_host_keys, playbook_path, watch, watch_limit, measure, measure_max, script_time, confirm_within,
            report_file):
    """Run PLAYBOOK on the selected hosts, one transaction per host.

    Changes are journalled before they are made, a guard on each host undoes
    them by itself at the deadline, and everything is rolled back when a step
    fails, a check fails, or you press Ctrl-C.
    """
    startup_done = _pause_gc_for_startup(ctx)
    from opskit import inventory as inv
    from opskit import playbook as pb
    from opskit import report
    from opskit.duration import MAX_HOLD, parse_duration
    from opskit.journal import Journal, new_run_id
    from opskit.runner import Run, RunOptions, exit_code

    book = pb.load(playbook, tuple(playbook_path))
    if report_file is not None:   # a wrong suffix is refused before any host is touched
        from opskit.fleet_report import report_format
        report_format(report_file)
    if confirm_within is not None:   # --confirm-within is --hold by its commit-confirmed name
        if hold is not None:
            raise InputError("--confirm-within and --hold are the same window: give one")
        hold, hold_flag = confirm_within, "--confirm-within"
    else:
        hold_flag = "--hold"
    try:
        hold_seconds = parse_duration(hold, maximum=MAX_HOLD) if hold is not None else None
    except ValueError as exc:
        raise InputError(f"{hold_flag}: {exc}") from None
    if hold_seconds is not None and hold_seconds < 1:
        raise InputError(f"{hold_flag}: must be at least 1s")
    inventory_file = _inventory_path(ctx, inventory)
    loaded = inv.load(inventory_file)
    selected = _select(loaded, hosts, groups, select_all, excluded)
    values = {}
    if measure or measure_max is not None:   # --measure, --measure-max → {{ run.measure }}, {{ run.measure_max }}
        if "measure" not in book.options:
            raise InputError(f"--measure: playbook {book.name} measures nothing (check-timeouts does)")
        try:
            values["measure_max"] = parse_duration(measure_max or "120s", maximum=3600)
        except ValueError as exc:
            raise InputError(f"--measure-max: {exc}") from None
        if values["measure_max"] < 1:
            raise InputError("--measure-max: must be at least 1s")
        values["measure"] = bool(measure)
    if script_time is not None:   # --script-time → {{ run.script_time }} (seconds)
        if "script_time" not in book.options:
            raise InputError(f"--script-time: playbook {book.name} takes no script time (tune-timeouts does)")
        try:
            values["script_time"] = parse_duration(script_time, maximum=86400)
        except ValueError as exc:
            raise InputError(f"--script-time: {exc}") from None
        if values["script_time"] < 1:
            raise InputError("--script-time: must be at least 1s")
    options = RunOptions(check_mode=check_mode, hold=hold_seconds, forks=forks, detach=detach,
                         accept_new_host_keys=accept_new_host_keys, values=values)
    if watch is not None:   # --watch [INTERVAL]: poll until propagated (the loop is opskit/watch.py)
        from opskit import watch as watching
        startup_done()   # polls may run for an hour: the garbage collector back on
        ctx.exit(watching.watch(book, selected, options, str(inventory_file.resolve()), watch, watch_limit, as_json,
                                _stderr_console, _interrupts))
    if book.may_change(options.values) and not check_mode and not yes and sys.stdin.isatty() and not as_json:
        click.confirm(f"{book.name} may change {len(selected)} host(s): {', '.join(h.name for h in selected[:10])}"
                      f"{' …' if len(selected) > 10 else ''}. Go ahead?", abort=True, err=True)
    run = Run(new_run_id(), book, selected, options, Journal.default(), inventory_file=str(inventory_file.resolve()))
    # --json prints nothing on stderr unless interrupted: rich is imported then, not at start-up
    console = None if as_json else _stderr_console()
    if verbose and quiet:
        raise InputError("-v and -q contradict each other: give one")
    if verbose:
        _log_commands(verbose)
    if as_json or quiet:
        from opskit.runner import NullObserver
        observer = NullObserver()
    elif console.is_terminal:
        observer = report.RichObserver(console, len(selected), run.run_id)
    else:
        observer = report.PlainObserver(sys.stderr, run.run_id)
    run.observer = observer
    if not as_json:
        console.print(f"run [bold]{run.run_id}[/] — {book.name} on {len(selected)} host(s)"
                      + (" [yellow](--check: nothing will change)[/]" if check_mode else ""))
    startup_done()
    with _interrupts(run.interrupt, console):
        if isinstance(observer, report.RichObserver):
            with observer:
                outcomes = run.execute()
        else:
            outcomes = run.execute()
    if report_file is not None:
        from opskit.fleet_report import write_report
        write_report(report_file, report.json_document(run.run_id, book.name, outcomes, check_mode))
    if as_json:
        report.print_json(report.json_document(run.run_id, book.name, outcomes, check_mode))
    else:
        if quiet:
            for name, outcome in outcomes.items():
                console.print(f"{name}: {outcome.status}" + (f" — {outcome.error}" if outcome.error else ""), highlight=False)
        console.print(report.summary_table(run.run_id, book.name, outcomes))
        if not quiet:
            report.print_details(console, outcomes, check_mode, show_facts=book.changes == "none", show_diff=show_diff,
                                 verbose=verbose)
        if any(o.status == "held" for o in outcomes.values()):
            console.print(f"Held. `opskit confirm {run.run_id}` keeps the changes; `opskit rollback {run.run_id}` undoes them now.")
    ctx.exit(exit_code(outcomes, run.interrupt.is_set()))


def _log_commands(verbosity: int) -> None:
    """-v: opskit.transport logs each command it sends (host, exit status, seconds) on stderr;
    -vv adds the command's text."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("opskit.transport")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    logger.propagate = False


def _pause_gc_for_startup(ctx: click.Context):
    """Start-up (the imports, the playbook, the inventory) makes some 50k objects that live as
    long as the process, and the garbage collector would walk them again and again while they
    are young. It is paused until the returned function is called, which freezes them (later
    collections skip them) and resumes it. A command that ends before (bad input) resumes it
    through its click context."""
    if not gc.isenabled():
        return lambda: None
    gc.disable()

    def resume(freeze: bool = True) -> None:
        if not gc.isenabled():
            if freeze:
                gc.freeze()
            gc.enable()

    ctx.call_on_close(lambda: resume(freeze=False))
    return resume


# SIGHUP is the terminal or the SSH session to the admin's machine going away: by default it
# kills the controller mid-change, so it is an interrupt like Ctrl-C and SIGTERM (roll back).
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _interrupts:
    """SIGINT/SIGTERM/SIGHUP set the run's interrupt event; workers roll back. A second
    Ctrl-C does not abandon the rollback: it only says that it is running."""

    def __init__(self, event: threading.Event, console=None):
        self.event, self.console, self.previous = event, console, {}   # console None: made when first needed

    def handler(self, signum, frame):
        if self.event.is_set():
            self._say("[yellow]rollback in progress — waiting for it to finish (SIGKILL would leave it to the guard)[/]")
            return
        self.event.set()
        self._say("[yellow]interrupted: rolling back every host…[/]")

    def _say(self, text: str) -> None:
        # after SIGHUP the terminal is gone and writing fails (EIO): an exception raised in a
        # signal handler would surface in the middle of the run instead of letting it roll back
        # --json made no console: plain text then, since importing rich inside a signal
        # handler can interrupt an import of it and fail half-way
        try:
            if self.console is None:
                sys.stderr.write(re.sub(r"\[/?[a-z ]*\]", "", text) + "\n")
                sys.stderr.flush()
            else:
                self.console.print(text)
        except Exception:   # noqa: BLE001 — never let the handler break the rollback
            pass

    def __enter__(self):
        for sig in INTERRUPT_SIGNALS:
            self.previous[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc):
        if self.event.is_set():
            # The rollback is done; more Ctrl-C's must not cut the report short or turn
            # exit 130 into death-by-signal while Python shuts down.
            for sig in self.previous:
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, old in self.previous.items():
            signal.signal(sig, old)


def _stderr_console():
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        # logs and pipes: long lines beat paths wrapped at 80 columns
        console = Console(stderr=True, highlight=False, width=160)
    return console


# a run in one of these states has a guard that may still act: its deadline means something
GUARDED_STATES = ("running", "held", "stale", "expired")


@cli.command("runs")
@click.option("--all", "show_all", is_flag=True, help="Also finished runs.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout (the same as --format json).")
@_format_option
def runs_cmd(show_all, as_json, fmt):
    """List runs that hold changes (or all runs, with --all)."""
    import time as _time

    from rich.console import Console
    from rich.table import Table

    from opskit.duration import format_duration
    from opskit.journal import Journal
    from opskit.listing import render
    from opskit.transaction.held import list_runs

    skipped: list[str] = []
    rows = list_runs(Journal.default(), show_all, skipped)
    for line in skipped:
        click.echo(f"opskit: warning: {line}", err=True)
    for row in rows:   # a finished run's guard is disarmed: no deadline to show, past or future
        if row["state"] not in GUARDED_STATES:
            row["deadline"] = None
    if as_json or fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        click.echo(render(rows, ["run_id", "playbook", "host", "state", "changes", "deadline"], fmt), nl=False)
        return
    if not rows:
        click.echo("no held runs" + ("" if show_all else " (--all shows finished ones)"))
        return
    console = Console()
    table = Table(box=None, pad_edge=False)
    for column in ("run", "playbook", "host", "state", "changes", "guard deadline"):
        # piped into awk or xargs, a run id must arrive whole: never wrapped or cut
        table.add_column(column, no_wrap=column in ("run", "host"), overflow="fold")
    for row in rows:
        deadline = "-"
        if row["deadline"]:
            left = row["deadline"] - _time.time()
            when = "passed" if left <= 0 else f"in {format_duration(left)}"
            deadline = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(row["deadline"])) + f" ({when})"
        table.add_row(row["run_id"], row["playbook"], row["host"], row["state"], str(row["changes"]), deadline)
    if not console.is_terminal:
        console = Console(width=max(160, console.width), no_color=True)
    console.print(table)
    states = {row["state"] for row in rows}
    if "stale" in states:
        click.echo("stale: its controller died; the host's guard undoes what it changed and gives the lock back "
                   "at the deadline (`opskit rollback RUN` does it now)")
    if "expired" in states:
        click.echo("expired: the guard's deadline passed and this machine was not told how it ended; "
                   "`opskit rollback RUN` checks the host and finishes it if needed")


def _settle(ctx, run_id: str, hosts: tuple[str, ...], inventory: str | None, mode: str, as_json: bool, accept_new: bool) -> int:
    from opskit import inventory as inv
    from opskit.journal import Journal
    from opskit.transaction.held import adopt, settle

    journal = Journal.default()
    if not (journal.run_dir(run_id) / "run.json").exists():
        # Started on another machine (a colleague's run holds the host): the hosts have the
        # records, this machine's inventory says how to reach them.
        if not hosts:
            raise InputError(f"no run {run_id!r} in {journal.root}; for a run started on another machine, "
                             "name its hosts: --host NAME (and -i INVENTORY)")
        try:
            selected = inv.load(_inventory_path(ctx, inventory)).select(hosts)
            adopt(journal, run_id, selected)
        except ValueError as exc:
            raise InputError(f"{run_id!r} is not a run id: {exc}") from None
    results = settle(journal, run_id, hosts, mode, accept_new)
    def verified(r) -> dict | None:
        if r.verified is None:
            return None
        return {"status": r.verified.status, "steps": r.verified.steps,
                "findings": [f.to_json() for f in r.verified.findings]}

    if as_json:
        click.echo(json.dumps({"run_id": run_id, "hosts": {
            r.host: {"state": r.state, "detail": r.detail, "steps": r.steps, "verified": verified(r)} for r in results}}, indent=2))
    else:
        for r in results:
            click.echo(f"{r.host}: {r.state}" + (f" — {r.detail}" if r.detail else ""))
            for step in (r.verified.steps if r.verified else []):
                click.echo(f"  {step['step']}: {step['status']}" + (f" — {step['detail']}" if step.get("detail") else ""))
    good = {"keep": ("kept",), "revert": ("rolled_back",)}[mode] + ("done",)
    checks_ok = all(r.verified is None or r.verified.status != "failed" for r in results)
    return ExitCode.OK if checks_ok and all(r.state in good for r in results) else ExitCode.HOST_FAILED


def _settle_command(name: str, mode: str, doc: str):
    """confirm and rollback take the same arguments and differ only in what the guard does."""
    @cli.command(name, help=doc)
    @click.argument("run_id", metavar="RUN", shell_complete=_complete_runs)
    @click.option("--host", "-H", "hosts", multiple=True, metavar="NAME",
                  help="Only these hosts of the run (globs allowed). For a run started on another machine, "
                       "the hosts to act on, from the inventory.")
    @_inventory_option
    @click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
    @click.option("--accept-new-host-keys", is_flag=True, help="Record unknown host keys (changed keys are always refused).")
    @click.pass_context
    def command(ctx, run_id, hosts, inventory, as_json, accept_new_host_keys):
        ctx.exit(_settle(ctx, run_id, hosts, inventory, mode, as_json, accept_new_host_keys))

    return command


confirm_cmd = _settle_command("confirm", "keep", "Keep the changes of a held RUN and disarm its guards.")
rollback_cmd = _settle_command(
    "rollback", "revert", "Undo the changes of RUN now — held or confirmed — and run its playbook's "
    "after-rollback checks (safe to repeat; conflicts are reported, never overwritten).")


@cli.group("inventory")
def inventory_group():
    """Inspect and validate the inventory."""


@inventory_group.command("check")
@_inventory_option
@_selection_options
@click.option("--connect", is_flag=True, help="Also connect to the selected hosts (reachability, host key, login).")
@click.option("--accept-new-host-keys", is_flag=True)
@click.option("--forks", type=click.IntRange(1, 500), default=20, show_default=True)
@click.pass_context
def inventory_check(ctx, inventory, hosts, excluded, groups, select_all, connect, accept_new_host_keys, forks):
    """Validate the inventory; with --connect, test each selected host."""
    from opskit import inventory as inv
    from opskit.errors import OpskitError as HostError
    from opskit.runner import for_each_host
    from opskit.transport import Session

    file = _inventory_path(ctx, inventory)
    loaded = inv.load(file)
    loaded.resolve_ssh(list(loaded.hosts.values()))   # every ssh_alias has a Host entry (ssh -G)
    click.echo(f"{file}: {len(loaded.hosts)} host(s), {len(loaded.groups)} group(s): valid")
    if not connect:
        return
    selected = _select(loaded, hosts, groups, select_all or not (hosts or groups), excluded)

    def probe(host):
        with Session(host, accept_new_host_keys) as session:
            result = session.exec("id -un")
        return f"ok as {result.stdout.strip()} ({session.connect_seconds or 0:.2f}s)"

    results = for_each_host(selected, probe, forks)
    for name, answer in results.items():
        if isinstance(answer, HostError):
            click.echo(f"{name}: {answer}")
        elif isinstance(answer, BaseException):
            click.echo(f"{name}: internal error: {type(answer).__name__}: {answer}")
        else:
            click.echo(f"{name}: {answer}")
    ctx.exit(ExitCode.OK if all(isinstance(a, str) for a in results.values()) else ExitCode.HOST_FAILED)


@inventory_group.command("show")
@_inventory_option
@_selection_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
@click.pass_context
def inventory_show(ctx, inventory, hosts, excluded, groups, select_all, fmt):
    """Print the hosts as opskit will reach them (ssh config applied), and where each value came from.

    \b
    -i takes opskit's inventory, an Ansible inventory (YAML, INI, plugins; needs ansible-core)
    or a WP-CLI config.yml / wp-cli.yml; --host @alias selects a WP-CLI alias. Default: every host."""
    from opskit import inventory as inv
    from opskit.listing import render

    loaded = inv.load(_inventory_path(ctx, inventory))
    selected = _select(loaded, hosts, groups, select_all or not (hosts or groups), excluded)
    click.echo(render(inv.show_rows(loaded, selected), inv.SHOW_COLUMNS, fmt), nl=False)


@inventory_group.command("convert")
@_inventory_option
@click.option("--from-ssh-config", "from_ssh", is_flag=False, flag_value="", default=None, metavar="[FILE]",
              help="One host per concrete Host entry of FILE (default ~/.ssh/config); wildcard patterns are skipped.")
@click.option("-o", "--output", metavar="OUT", default="-", show_default=True, help="Where to write the inventory (- : stdout).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.pass_context
def inventory_convert(ctx, inventory, from_ssh, output, force):
    """Write an opskit inventory (YAML) from an Ansible inventory, a WP-CLI alias file (-i FILE) or an ssh config."""
    from opskit import inventory_sources

    if from_ssh is not None:
        source = inventory_sources.from_ssh_config(from_ssh or None)
        origin = f"the Host entries of {from_ssh or '~/.ssh/config'}"
    else:
        file = _inventory_path(ctx, inventory)
        source = inventory_sources.read(file)
        origin = f"{file} ({source.kind}{' ' + source.format if source.format else ''})"
    text = inventory_sources.to_yaml(source, origin)
    if output == "-":
        click.echo(text, nl=False)
        return
    inventory_sources.write_new(output, text, force)
    click.echo(f"{output}: {len(source.raw['hosts'])} host(s), {len(source.raw.get('groups') or {})} group(s) from {origin}", err=True)


def _freeze_at_exit() -> None:
    """Once per process: at interpreter exit, move every object to gc's permanent generation.

    The teardown that follows runs full garbage collections, and each walks every object the
    imports made (paramiko, invoke, pydantic, ...): about 0.1 s of CPU on every command, for
    nothing, since the memory goes back with the process. Frozen objects are skipped. The output
    is written and flushed by then, and the atexit handlers registered before this one (logging's
    flush, for one) still run, after it."""
    global _freeze_registered
    if not _freeze_registered:
        _freeze_registered = True
        atexit.register(gc.freeze)


_freeze_registered = False


def main(argv: list[str] | None = None) -> None:
    """Outer entry: known errors → one line and an exit code; bugs → a traceback file."""
    _freeze_at_exit()
    args = sys.argv[1:] if argv is None else argv
    try:
        code = cli.main(args=args, prog_name="opskit", standalone_mode=False)
    except click.exceptions.Abort as exc:
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        click.echo("interrupted" if interrupted else "aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED if interrupted else ExitCode.USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except OpskitError as exc:
        click.echo(f"opskit: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception:
        if "--traceback" in args:
            raise
        from opskit.journal import state_dir

        file = state_dir() / "last-error.txt"
        text = traceback.format_exc()
        try:
            _write_private(file, text)
            where = f"The traceback is in {file}"
        except OSError as exc:
            click.echo(text, err=True)
            where = f"The traceback is above (it could not be saved to {file}: {exc.strerror or exc})"
        click.echo(f"opskit: unexpected error: {sys.exc_info()[1]!r}\n"
                   f"{where}; please attach it to a bug report (or run with --traceback).", err=True)
        sys.exit(ExitCode.HOST_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


def _write_private(file, text: str) -> None:
    """Write a 0600 file whatever the umask (a traceback shows hosts, paths and arguments)."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)   # open's mode is masked by the umask, and an older file keeps its own
        fh.write(text)
