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


def _selection_options(f):
    f = click.option("--all", "select_all", is_flag=True, help="Every host in the inventory.")(f)
    f = click.option("--group", "-g", "groups", multiple=True, metavar="NAME", help="Hosts of this group (repeatable).")(f)
    f = click.option("--host", "-H", "hosts", multiple=True, metavar="NAME",
                     help="Host name or shell-style glob like 'site*' (repeatable).")(f)
    return f


def _inventory_path(ctx: click.Context, value: str | None):
    from opskit import inventory

    return inventory.resolve_path(value or (ctx.obj or {}).get("inventory"))


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


@cli.command("list")
@click.option("--playbook-path", multiple=True, metavar="DIR", help="Also look for playbooks in DIR (repeatable).")
def list_cmd(playbook_path):
    """List playbooks with their descriptions."""
    from rich.console import Console
    from rich.table import Table

    from opskit import playbook as pb
    from opskit.duration import format_duration

    table = Table(show_header=True, box=None)
    table.add_column("playbook", style="bold")
    table.add_column("changes")
    table.add_column("description")
    for name, file in pb.available(tuple(playbook_path)).items():
        book = pb.load(str(file), tuple(playbook_path))
        first_sentence = book.description.split(". ")[0].rstrip(".") + "."
        hold = f" (hold {format_duration(book.hold)})" if book.changes == "temporary" else ""
        table.add_row(name, book.changes + hold, first_sentence)
    Console().print(table)


@cli.command("show")
@click.argument("name")
@click.option("--playbook-path", multiple=True, metavar="DIR", help="Also look for playbooks in DIR (repeatable).")
def show_cmd(name, playbook_path):
    """Print a playbook's steps and what it may change."""
    from opskit import playbook as pb
    from opskit.duration import format_duration

    book = pb.load(name, tuple(playbook_path))
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
@click.argument("playbook")
@_inventory_option
@_selection_options
@click.option("--check", "check_mode", is_flag=True, help="Show what would change (diffs, renames); change nothing, arm nothing.")
@click.option("--hold", metavar="DURATION", help="Hold window for temporary changes, e.g. 90s, 15m, 1h (default: the playbook's).")
@click.option("--forks", type=click.IntRange(1, 500), default=20, show_default=True, help="Hosts worked on at once.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (progress stays off).")
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
@click.pass_context
def run_cmd(ctx, playbook, inventory, hosts, groups, select_all, check_mode, hold, forks, as_json, yes, detach,
            accept_new_host_keys, playbook_path, watch, watch_limit, measure, measure_max):
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
    try:
        hold_seconds = parse_duration(hold, maximum=MAX_HOLD) if hold is not None else None
    except ValueError as exc:
        raise InputError(f"--hold: {exc}") from None
    if hold_seconds is not None and hold_seconds < 1:
        raise InputError("--hold: must be at least 1s")
    inventory_file = _inventory_path(ctx, inventory)
    loaded = inv.load(inventory_file)
    selected = loaded.select(hosts, groups, select_all)
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
    if as_json:
        from opskit.runner import NullObserver
        observer = NullObserver()
    elif console.is_terminal:
        observer = report.RichObserver(console, len(selected))
    else:
        observer = report.PlainObserver(sys.stderr)
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
    if as_json:
        report.print_json(report.json_document(run.run_id, book.name, outcomes, check_mode))
    else:
        console.print(report.summary_table(run.run_id, book.name, outcomes))
        report.print_details(console, outcomes, check_mode, show_facts=book.changes == "none")
        if any(o.status == "held" for o in outcomes.values()):
            console.print(f"Held. `opskit confirm {run.run_id}` keeps the changes; `opskit rollback {run.run_id}` undoes them now.")
    ctx.exit(exit_code(outcomes, run.interrupt.is_set()))


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


@cli.command("runs")
@click.option("--all", "show_all", is_flag=True, help="Also finished runs.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def runs_cmd(show_all, as_json):
    """List runs that hold changes (or all runs, with --all)."""
    from rich.console import Console
    from rich.table import Table

    from opskit.journal import Journal
    from opskit.transaction.held import list_runs

    skipped: list[str] = []
    rows = list_runs(Journal.default(), show_all, skipped)
    for line in skipped:
        click.echo(f"opskit: warning: {line}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no held runs" + ("" if show_all else " (--all shows finished ones)"))
        return
    import time as _time

    table = Table(box=None)
    for column in ("run", "playbook", "host", "state", "changes", "guard deadline"):
        table.add_column(column)
    from opskit.duration import format_duration

    for row in rows:
        deadline = "-"
        if row["deadline"]:
            left = row["deadline"] - _time.time()
            when = "passed" if left <= 0 else f"in {format_duration(left)}"
            deadline = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(row["deadline"])) + f" ({when})"
        table.add_row(row["run_id"], row["playbook"], row["host"], row["state"], str(row["changes"]), deadline)
    Console().print(table)
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
    @click.argument("run_id", metavar="RUN")
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
def inventory_check(ctx, inventory, hosts, groups, select_all, connect, accept_new_host_keys, forks):
    """Validate the inventory; with --connect, test each selected host."""
    from opskit import inventory as inv
    from opskit.errors import OpskitError as HostError
    from opskit.runner import for_each_host
    from opskit.transport import Session

    file = _inventory_path(ctx, inventory)
    loaded = inv.load(file)
    click.echo(f"{file}: {len(loaded.hosts)} host(s), {len(loaded.groups)} group(s): valid")
    if not connect:
        return
    selected = loaded.select(hosts, groups, select_all or not (hosts or groups))

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
