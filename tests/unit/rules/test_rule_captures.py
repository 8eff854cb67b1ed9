"""Every rule, tested from data: tests/captures/rules/<rule>/<situation>.json holds the facts
the rule is given ("facts", as a playbook's `with:` would pass them) and the findings it must
draw ("want": cause, severity, family and evidence, in order). One harness for all rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opskit.steps import RULES, load_builtin_steps

CAPTURES = Path(__file__).parent.parent.parent / "captures" / "rules"

load_builtin_steps()


def _situations():
    for file in sorted(CAPTURES.glob("*/*.json")):
        yield pytest.param(file, id=f"{file.parent.name}/{file.stem}")


def test_every_rule_has_situations():
    with_data = {folder.name for folder in CAPTURES.iterdir() if any(folder.glob("*.json"))}
    assert set(RULES) <= with_data, f"rules without captures: {sorted(set(RULES) - with_data)}"
    assert with_data <= set(RULES), f"captures for unknown rules: {sorted(with_data - set(RULES))}"


@pytest.mark.parametrize("situation", list(_situations()))
def test_rule_situation(situation: Path):
    spec = json.loads(situation.read_text())
    rule = RULES[situation.parent.name]()
    findings = rule.evaluate(rule.Params.model_validate(spec["facts"]))
    got = [{"cause": f.cause, "severity": f.severity.value, "family": f.family.value if f.family else None,
            "evidence": [e.to_json() for e in f.evidence]} for f in findings]
    assert got == spec["want"], f"\n{situation}\nGOT:  {json.dumps(got, indent=1)}"
    for finding in findings:   # every finding reads as a sentence and says what to do, or why not
        assert finding.summary.strip()
