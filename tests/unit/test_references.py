"""`{{ reference }}` substitution (opskit/references.py): lookups only, never code."""

from __future__ import annotations

import pytest

from opskit import references as reference_module
from opskit.references import TemplateError, lookup, references, render

CONTEXT = {
    "host": {
        "name": "site1",
        "port": 22,
        "wordpress": {"root": "/home/site1/public_html", "url": None},
        "dns": {"resolvers": ["198.51.100.53", "198.51.100.54:5353"]},
        "vars": {"flag": True, "nested": {"list": [{"x": 1}, {"x": 2}]}},
    },
    "steps": {"wp": {"found": True, "root": "/srv/wp", "plugins": ["a", "b"]}},
    "run": {"id": "20260101-000000-abcd"},
}


@pytest.mark.parametrize("value, want", [
    ("{{ host.dns.resolvers }}", ["198.51.100.53", "198.51.100.54:5353"]),
    ("{{ host.wordpress.url }}", None),
    ("{{ host.port }}", 22),
    ("{{host.port}}", 22),
    ("  {{ host.port }}  ", 22),
    ("{{ host.vars.flag }}", True),
    ("{{ host.vars.nested.list.1.x }}", 2),
    ("{{ steps.wp }}", {"found": True, "root": "/srv/wp", "plugins": ["a", "b"]}),
])
def test_whole_reference_keeps_its_type(value, want):
    got = render(value, CONTEXT)
    assert got == want and type(got) is type(want)


def test_whole_reference_returns_the_value_not_a_copy_of_its_text():
    assert render("{{ steps.wp.plugins }}", CONTEXT) is CONTEXT["steps"]["wp"]["plugins"]


@pytest.mark.parametrize("value, want", [
    ("{{ host.wordpress.root }}/wp-content/plugins", "/home/site1/public_html/wp-content/plugins"),
    ("port {{ host.port }} on {{ host.name }}", "port 22 on site1"),
    ("url=[{{ host.wordpress.url }}]", "url=[]"),
    ("run-{{run.id}}.log", "run-20260101-000000-abcd.log"),
    ("no references at all", "no references at all"),
    ("", ""),
])
def test_embedded_reference_renders_text(value, want):
    assert render(value, CONTEXT) == want


def test_nested_lists_and_dicts_render_every_leaf_and_keep_the_rest():
    value = {
        "paths": ["{{ host.wordpress.root }}/a", "{{ steps.wp.root }}"],
        "opts": {"port": "{{ host.port }}", "resolvers": "{{ host.dns.resolvers }}", "n": 3, "off": None},
        "mixed": [["{{ run.id }}"], {"deep": "x{{ host.port }}y"}],
    }
    assert render(value, CONTEXT) == {
        "paths": ["/home/site1/public_html/a", "/srv/wp"],
        "opts": {"port": 22, "resolvers": ["198.51.100.53", "198.51.100.54:5353"], "n": 3, "off": None},
        "mixed": [["20260101-000000-abcd"], {"deep": "x22y"}],
    }


def test_render_does_not_change_its_input():
    value = {"a": ["{{ host.port }}"]}
    render(value, CONTEXT)
    assert value == {"a": ["{{ host.port }}"]}


@pytest.mark.parametrize("path, nothing_at", [
    ("host.nope", "host.nope"),
    ("host.wordpress.nope.deeper", "host.wordpress.nope"),
    ("steps.other.root", "steps.other"),
    ("host.dns.resolvers.7", "host.dns.resolvers.7"),
    ("host.port.x", "host.port.x"),
    ("nope", "nope"),
])
def test_missing_path_names_the_reference_and_where_it_stopped(path, nothing_at):
    with pytest.raises(TemplateError) as caught:
        render(f"{{{{ {path} }}}}", CONTEXT)
    message = str(caught.value)
    assert f"{{{{ {path} }}}}" in message
    assert message.endswith(f"nothing at {nothing_at}")


def test_missing_path_inside_text_raises_too():
    with pytest.raises(TemplateError, match=r"\{\{ host\.missing \}\}"):
        render("a {{ host.missing }} b", CONTEXT)


def test_lookup_walks_lists_by_index():
    assert lookup("host.dns.resolvers.0", CONTEXT) == "198.51.100.53"
    with pytest.raises(TemplateError):
        lookup("host.dns.resolvers.-1", CONTEXT)


@pytest.mark.parametrize("value", ["{{ x y }}", "{{ }}", "{{ host.a", "{{ host..a }}", "{{ host.a() }}",
                                   "{{ __import__('os') }}", "{{ 1.a }}", ["ok", {"k": "{{ a b }}"}]])
def test_malformed_reference_raises(value):
    with pytest.raises(TemplateError, match="malformed reference"):
        references(value)


@pytest.mark.parametrize("value", ["{{ host.name }} and {{ x y }}", "{{ x y }} {{ host.name }}",
                                   "{{ host.name }}{{", "a {{ host.name }} b {{ host.port", "{{ host.name }} }} {{",
                                   {"k": ["{{ run.id }}/{{ nope() }}"]}])
def test_malformed_reference_next_to_a_good_one_raises(value):
    with pytest.raises(TemplateError, match="malformed reference"):
        references(value)


def test_references_collects_from_nested_values_in_order():
    value = {"a": "{{ host.name }}/{{ run.id }}", "b": ["{{steps.wp.root}}", 3, None, {"c": "{{ host.port }}"}]}
    assert references(value) == ["host.name", "run.id", "steps.wp.root", "host.port"]
    assert references(42) == [] and references(None) == [] and references("plain") == []


def test_reference_syntax_is_lookup_only():
    # attribute/call/index syntax is not a reference at all
    for text in ("{{ host.__class__() }}", "{{ host['name'] }}", "{{ host.name|upper }}"):
        assert not reference_module.REF.fullmatch(text)


# -- truth: what `when:` and `check: require` mean by true ---------------------------------
@pytest.mark.parametrize("value", ["false", "False", "FALSE", "no", "No", "off", "OFF", "0", "", "  ", "none", "None",
                                   "null", "NULL", "~", " false ", False, 0, 0.0, None, [], {}])
def test_truthy_false(value):
    assert reference_module.truthy(value) is False


@pytest.mark.parametrize("value", ["true", "yes", "on", "1", "00", "0.0", "falsey", "n", "/srv/wp", True, 1, -1, 0.5,
                                   ["false"], {"a": 0}])
def test_truthy_true(value):
    assert reference_module.truthy(value) is True


@pytest.mark.parametrize("text, want", [("false", False), ("no", False), ("0", False), ("", False), ("Off", False),
                                        ("true", True), ("yes", True), (False, False), (True, True), (None, False)])
def test_a_when_from_a_playbook_renders_to_its_truth(tmp_path, text, want):
    # the runner skips a step when `not references.render(step.when, values)`
    from opskit import playbook

    path = tmp_path / "p.yaml"
    path.write_text('name: p\ndescription: d\nsteps:\n  - probe: system\n    when: "{{ host.vars.enabled }}"\n')
    when = playbook.load(str(path)).steps[0].when
    assert when == "{{ host.vars.enabled }}" and str(when) == "{{ host.vars.enabled }}"
    assert render(when, {"host": {"vars": {"enabled": text}}}) is want


@pytest.mark.parametrize("text, want", [("false", True), ("no", True), ("", True), (None, True), (False, True),
                                        ("yes", False), (True, False), ("anything", False)])
def test_a_when_not_renders_to_the_opposite_truth(tmp_path, text, want):
    from opskit import playbook

    path = tmp_path / "p.yaml"
    path.write_text('name: p\ndescription: d\nsteps:\n  - probe: system\n    when: "{{  not   host.vars.enabled }}"\n')
    when = playbook.load(str(path)).steps[0].when
    assert str(when) == "{{  not   host.vars.enabled }}" and when.parts == (True, "host.vars.enabled")
    assert render(when, {"host": {"vars": {"enabled": text}}}) is want


@pytest.mark.parametrize("when", ["{{ not }}", "{{ not not host.ssh }}", "{{ notahost.ssh }}", "not {{ host.ssh }}",
                                  "{{ not steps.nope.x }}"])
def test_a_when_that_is_neither_a_reference_nor_its_negation_is_refused_with_its_line(tmp_path, when):
    from opskit import playbook
    from opskit.errors import InputError

    path = tmp_path / "p.yaml"
    path.write_text(f'name: p\ndescription: d\nsteps:\n  - probe: system\n    when: "{when}"\n')
    with pytest.raises(InputError) as caught:
        playbook.load(str(path))
    assert f"{path}:5: steps.0.when:" in str(caught.value)


def test_require_uses_the_same_truth():
    from opskit.checks.require import Require, RequireParams
    from opskit.steps import Verdict

    assert Require().run(RequireParams(value="false"), None).verdict == Verdict.FAILED
    assert Require().run(RequireParams(value="0"), None).verdict == Verdict.FAILED
    assert Require().run(RequireParams(value="yes"), None).verdict == Verdict.PASSED
    assert Require().run(RequireParams(value=True), None).verdict == Verdict.PASSED
