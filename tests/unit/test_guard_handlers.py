"""Handlers in the guard (opskit/guard.py): after the undos, once; a failed one keeps the
rollback open for a retry; the controller's own run after the applies. Run for real with
this machine's sh, HOME a temp dir (see conftest.Box)."""

from __future__ import annotations


from opskit.guard import guard_script, handlers_script, parse_handlers, parse_output
from opskit.shell import quote

RUN = "20260101-000000-abcd"


def traced(name: str, outcome: str = "undone") -> str:
    """A body that appends its name to $HOME/order, then reports."""
    report = f"{outcome} {quote(name)}" if outcome else ""
    return f'echo {quote(name)} >> "$HOME/order"\n{report}'


def order(box) -> list[str]:
    file = box.home / "order"
    return file.read_text().split() if file.exists() else []


def handler(name: str, ok: bool = True) -> str:
    result = f"handled {quote(name + ' done')}" if ok else f"handler_failed {quote(name + ' refused')}"
    return f'echo {quote(name)} >> "$HOME/order"\n{result}'


def test_handlers_run_once_after_every_undo_in_order(box):
    box.install(RUN, guard_script(RUN, [traced("undo0"), traced("undo1")], [handler("reload-nginx"), handler("reload-fpm")]))
    proc = box.guard(RUN, "now")
    assert order(box) == ["undo1", "undo0", "reload-nginx", "reload-fpm"]
    report = parse_output(proc.stdout)
    assert report.state == "rolled_back"
    assert report.handlers == [(0, True, "reload-nginx done"), (1, True, "reload-fpm done")]
    again = box.guard(RUN, "now")   # already rolled back: neither undone nor reloaded again
    assert order(box) == ["undo1", "undo0", "reload-nginx", "reload-fpm"]
    assert parse_output(again.stdout).state == "rolled_back"


def test_a_failed_handler_fails_the_rollback_and_is_retried(box):
    tx = box.install(RUN, guard_script(RUN, [traced("undo0")], [handler("reload", ok=False)]))
    first = parse_output(box.guard(RUN, "now").stdout)
    assert first.state == "failed" and first.handlers == [(0, False, "reload refused")]
    # the server comes back: the retry (cron, the next connection) reloads, without undoing twice
    box.install(RUN, guard_script(RUN, [traced("undo0")], [handler("reload")]))
    second = parse_output(box.guard(RUN, "now").stdout)
    assert second.state == "rolled_back" and second.handlers == [(0, True, "reload done")]
    assert order(box) == ["undo0", "reload", "reload"]
    assert (tx / "handled").exists()


def test_handlers_wait_for_a_failed_undo(box):
    box.install(RUN, guard_script(RUN, [traced("undo0", "failed")], [handler("reload")]))
    report = parse_output(box.guard(RUN, "now").stdout)
    assert report.state == "failed" and report.handlers == []
    assert order(box) == ["undo0"]   # files not restored yet: reloading would change nothing


def test_the_controllers_handler_run_reports_each(box, tmp_path):
    box.install(RUN, guard_script(RUN, [traced("undo0")]))
    script = handlers_script(RUN, [handler("a"), handler("b", ok=False)])
    proc = box.run(script)
    assert parse_handlers(proc.stdout) == [(0, True, "a done"), (1, False, "b refused")]
    assert order(box) == ["a", "b"]


def test_no_reload_when_no_undo_restored_anything(box):
    box.install(RUN, guard_script(RUN, [traced("undo0", "not_applied")], [handler("reload")]))
    report = parse_output(box.guard(RUN, "now").stdout)
    assert report.state == "rolled_back" and report.handlers == []
    assert order(box) == ["undo0"]
