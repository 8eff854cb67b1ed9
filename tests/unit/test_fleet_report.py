"""opskit.fleet_report: verdicts, the hosts × causes matrix and the report files, from a --json
document built from the diagnose rule captures (tests/captures/rules/diagnose/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opskit import fleet_report
from opskit.errors import InputError
from opskit.steps import RULES, load_builtin_steps

CAPTURES = Path(__file__).parent.parent / "captures" / "rules" / "diagnose"

load_builtin_steps()


def host_doc(situation: str, status: str = "ok") -> dict:
    spec = json.loads((CAPTURES / f"{situation}.json").read_text())
    rule = RULES["diagnose"]()
    facts = rule.Params.model_validate(spec["facts"])
    findings = [f.to_json() for f in rule.evaluate(facts)]
    value = {**rule.value(facts), "findings": findings}
    return {"status": status, "error": None, "findings": findings,
            "steps": [{"step": "Why it answers 502, ranked", "id": "diagnosis", "kind": "rule", "status": "ok",
                       "value": value}]}


@pytest.fixture
def document() -> dict:
    return {"run_id": "20261201-120000-abcd", "playbook": "diagnose", "check": False,
            "hosts": {"site-a": host_doc("php-fpm-stopped"), "site-b": host_doc("healthy"),
                      "site-<c>": host_doc("public-side-only-origin-refuses"),
                      "down": {"status": "unreachable", "error": "cannot connect", "findings": [], "steps": []}}}


def test_verdicts_and_matrix(document):
    summary = fleet_report.fleet(document)
    assert summary["hosts"] == 4
    assert summary["verdicts"] == {"upstream-down": 2, "healthy": 1, "unreachable": 1}
    assert summary["causes"]["upstream-down"] == ["site-a", "site-<c>"]
    causes, rows = fleet_report.matrix(document)
    assert causes[0] == "upstream-down"
    assert rows[0][:2] == ("site-a", "upstream-down") and rows[0][2]["upstream-down"] == "error"
    assert rows[3] == ("down", "unreachable", {})


def test_html_is_self_contained_and_escaped(document):
    page = fleet_report.render_html(document)
    assert "<script" not in page and "<link" not in page and "src=" not in page and "@import" not in page
    assert "site-&lt;c&gt;" in page and "site-<c>" not in page
    assert 'id="host-site-a"' in page and ">upstream-down</span></h2>" in page
    assert "Public side only" in page     # the URL-only host is marked


def test_markdown(document):
    text = fleet_report.render_markdown(document)
    assert "| site-a | upstream-down | error |" in text
    assert "## down: unreachable" in text and "**error:** cannot connect" in text
    assert "*Public side only" in text


def test_report_paths(tmp_path, document):
    for name in ("r.html", "r.md"):
        fleet_report.write_report(str(tmp_path / name), document)
        assert "site-a" in (tmp_path / name).read_text()
    with pytest.raises(InputError, match="FILE.html"):
        fleet_report.report_format("report.pdf")
