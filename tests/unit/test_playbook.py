"""Playbook loading and validation (opskit/playbook.py).

Malformed playbooks live one per file in tests/unit/data/bad-playbook/, with
what the error must say in expected.json beside them; one harness runs them all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opskit import playbook
from opskit.errors import InputError, PlaybookError
from tests.unit.badfiles import BadFiles

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad-playbook"
TEST_PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


def test_shipped_facts_playbook():
    book = playbook.load("facts")
    assert book.name == "facts"
    assert book.file == playbook.BUILTIN_DIR / "facts.yaml"
    assert book.changes == "none" and not book.changes_things
    assert book.hold == 15 * 60
    assert "Read-only" in book.description and not book.description.endswith("\n")
    assert len(book.steps) == 1 and book.after_rollback == ()
    step = book.steps[0]
    assert step.kind == "probe"
    assert step.names == ("system", "php", "nginx", "apache", "wordpress")
    assert (step.id, step.label, step.on_fail, step.when) == ("facts", "Gather facts", "stop", None)
    assert step.params == {"root": "{{ host.wordpress.root }}"}
    assert step.line == 7


@pytest.mark.parametrize("name", sorted(playbook.available()))
def test_every_shipped_playbook_loads(name):
    book = playbook.load(name)
    assert book.name == name and book.steps
    assert book.changes_things == (book.changes != "none")


def test_facts_by_path_is_the_same_playbook():
    by_name = playbook.load("facts")
    by_path = playbook.load(str(playbook.BUILTIN_DIR / "facts.yaml"))
    assert by_path == by_name


def test_a_temporary_playbook_with_after_rollback():
    book = playbook.load(str(TEST_PLAYBOOKS / "rename-hold.yaml"))
    assert (book.changes, book.hold, book.changes_things) == ("temporary", 30, True)
    assert [s.kind for s in book.steps] == ["change", "change", "check"]
    assert [s.names[0] for s in book.steps] == ["rename", "write_file", "path"]
    assert book.steps[0].id == "mv" and book.steps[0].params["missing_ok"] is False
    assert [s.names for s in book.after_rollback] == [("path",)]
    assert book.after_rollback[0].label == "The folder is back"
    assert book.steps[1].label == "Edit the file"


def test_default_label_and_when(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""\
name: p
description: " padded "
steps:
  - id: wp
    probe: wordpress
  - check: path
    when: "{{ steps.wp.found }}"
    on_fail: warn
    finding: {cause: no WordPress, advice: set wordpress.root, severity: warning}
    with: {path: "{{ steps.wp.root }}/wp-config.php", state: file}
""")
    book = playbook.load(str(path))
    check = book.steps[1]
    assert (check.label, check.when, check.on_fail) == ("check path", "{{ steps.wp.found }}", "warn")
    assert check.finding == {"cause": "no WordPress", "advice": "set wordpress.root", "severity": "warning"}
    assert book.steps[0].label == "probe wordpress"
    assert book.description == "padded"
    assert [s.line for s in book.steps] == [4, 6]


# -- malformed playbooks: one file per situation, one harness -------------------------------
BAD_SET = BadFiles(BAD)


def test_every_bad_playbook_has_an_expectation_and_vice_versa():
    assert BAD_SET.described() == set(BAD_SET.files)



@pytest.mark.parametrize("name, want", BAD_SET.cases())
def test_bad_playbook(name, want):
    path = BAD / name
    with pytest.raises(PlaybookError) as caught:
        playbook.load(str(path))
    got = str(caught.value)
    location = f"{path}:{want['line']}"
    problems = [] if re.search(re.escape(location) + r"(?!\d)", got) else [f"does not name {location}"]
    problems += [f"lacks {fragment!r}" for fragment in want["contains"] if fragment not in got]
    assert not problems, f"\nGOT:  {got}\nWANT: {location} ... {want['contains']}\n" + "\n".join(problems)


@pytest.mark.parametrize("text, line, fragment", [
    ("- a list\n", 1, "a playbook is a mapping"),
    ("name: x\ndescription: d\nsteps: [{probe: system}]\nextra: 1\n", 4, "extra: unknown field"),
    ("name: x\nsteps: [{probe: system}]\n", None, "description: required text"),
    ("name: x\ndescription: d\nchanges: maybe\nsteps: [{probe: system}]\n", 3, "must be none, temporary or permanent"),
    ("name: x\ndescription: d\nsteps: []\n", 3, "a non-empty list of steps"),
    ("name: x\ndescription: d\nchanges: temporary\nsteps: [{probe: system}]\n", 3, "the playbook has no change steps"),
    ("name: x\ndescription: d\nsteps:\n  - probe: system\n    on_fail: ignore\n", 5, "must be stop or warn"),
    ("name: x\ndescription: d\nsteps:\n  - probe: system\n    id: 'a b'\n", 5, "ids use letters"),
    ("name: x\ndescription: d\nsteps:\n  - probe: system\n    colour: red\n", 5, "unknown step field"),
    ("name: x\ndescription: d\nsteps:\n  - probes: []\n", 4, "must name a step kind"),
    ("name: x\ndescription: d\nsteps:\n  - probe: systen\n", 4, "did you mean system?"),
    ("name: x\ndescription: d\nsteps:\n  - check: path\n    with: {path: '{{ x y }}'}\n", 5, "malformed reference"),
    ("name: x\ndescription: d\nsteps:\n  - check: path\n    with: [path]\n", 5, "must be a mapping of parameters"),
    ("name: x\ndescription: d\nsteps:\n  - probe: system\n    finding: {why: x}\n", 5, "cause, severity and advice"),
    ("name: x\ndescription: d\nsteps:\n  - check: path\n", 4, "Field required"),
])
def test_structural_errors(tmp_path, text, line, fragment):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError) as caught:
        playbook.load(str(path))
    got = str(caught.value)
    where = f"{path}:{line}:" if line else f"{path}:"
    assert got.startswith(where) and fragment in got, f"\nGOT:  {got}\nWANT: {where} ... {fragment}"


def test_a_reference_stands_in_for_a_required_parameter(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndescription: d\nsteps:\n  - check: path\n    with: {path: '{{ host.vars.p }}', state: '{{ host.vars.s }}'}\n")
    assert playbook.load(str(path)).steps[0].params == {"path": "{{ host.vars.p }}", "state": "{{ host.vars.s }}"}


def test_probes_in_one_step_share_with(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndescription: d\nsteps:\n  - probes: [system, wordpress]\n    with: {root: /srv}\n")
    step = playbook.load(str(path)).steps[0]
    assert step.names == ("system", "wordpress")
    from opskit.probes.system import WordPressParams
    from opskit.steps import NoParams
    assert playbook.params_for(WordPressParams, step.params) == {"root": "/srv"}
    assert playbook.params_for(NoParams, step.params) == {}


# -- finding playbooks ----------------------------------------------------------------------
def test_unknown_playbook_suggests():
    with pytest.raises(InputError, match=r"unknown playbook 'fact' \(did you mean facts\?\)"):
        playbook.load("fact")


def test_user_folder_wins_over_builtin(tmp_path):
    (tmp_path / "facts.yaml").write_text("name: my-facts\ndescription: mine\nsteps: [{probe: system}]\n")
    (tmp_path / "extra.yml").write_text("name: extra\ndescription: d\nsteps: [{probe: php}]\n")
    assert playbook.load("facts", (str(tmp_path),)).name == "my-facts"
    assert playbook.load("facts").name == "facts"
    found = playbook.available((str(tmp_path),))
    assert found["facts"] == tmp_path / "facts.yaml" and found["extra"] == tmp_path / "extra.yml"


def test_missing_playbook_folder(tmp_path):
    with pytest.raises(InputError, match="playbook folder not found"):
        playbook.available((str(tmp_path / "nope"),))


@pytest.mark.parametrize("ref", ["host", "host.name", "host.port", "host.wordpress", "host.wordpress.root",
                                 "host.cdn.timeout", "host.dns.resolvers.0", "host.vars.anything.at.all",
                                 "host.logs.nginx_error", "host.origin"])
def test_references_to_inventory_fields_load(tmp_path, ref):
    path = tmp_path / "p.yaml"
    path.write_text(f'name: x\ndescription: d\nsteps:\n  - check: require\n    with: {{value: "{{{{ {ref} }}}}"}}\n'
                    f'    when: "{{{{ {ref} }}}}"\n')
    assert playbook.load(str(path)).steps[0].params == {"value": f"{{{{ {ref} }}}}"}


def test_an_unknown_host_field_is_refused_before_any_inventory_or_connection(tmp_path):
    # `opskit run`, `show` and `list` all load the playbook first: the typo is a file:line error, exit 2
    path = tmp_path / "p.yaml"
    path.write_text('name: x\ndescription: d\nsteps:\n  - probe: system\n    with: {}\n  - check: path\n'
                    '    with: {path: "{{ host.wordpress.url }}/{{ host.conect_timeout }}"}\n')
    with pytest.raises(PlaybookError) as caught:
        playbook.load(str(path))
    assert str(caught.value) == (f"{path}:7: steps.1.with: {{{{ host.conect_timeout }}}}: host has no field "
                                 "'conect_timeout' (did you mean connect_timeout, command_timeout?)")


def test_a_change_behind_an_option_that_is_off_cannot_change_anything(tmp_path):
    book = tmp_path / "opt.yaml"
    book.write_text(
        "name: opt\ndescription: d\nchanges: temporary\nhold: 10s\n"
        "options: {measure: {default: false, help: measure}}\nsteps:\n"
        "  - probe: system\n"
        "  - change: write_file\n    with: {path: ~/x, content: y}\n    when: \"{{ run.measure }}\"\n")
    loaded = playbook.load(str(book))
    assert loaded.changes_things
    assert not loaded.may_change({}) and not loaded.may_change({"measure": False})
    assert loaded.may_change({"measure": True})
