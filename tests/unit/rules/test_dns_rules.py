"""The dns rules' pure helpers beyond the captured situations (tests/captures/rules/dns_*/):
the TTL advice's arithmetic, and what is said when nothing lingers."""

from __future__ import annotations

import json
from pathlib import Path

from opskit.rules.dns import AdviceFacts, DnsAdvice, DnsValue, flush_advice, ttl_advice
from opskit.stack.dns import Observation

CAPTURES = Path(__file__).resolve().parents[2] / "captures" / "rules"


def observed(rule: str, situation: str) -> Observation:
    return DnsValue.model_validate(json.loads((CAPTURES / rule / f"{situation}.json").read_text())["facts"]["dns"]).observed


def test_lower_the_ttl_one_old_ttl_before_a_planned_move():
    obs = observed("dns_advice", "not-moved-no-plan")       # the zone still says the old address, TTL 3600
    now = 1_800_000_000.0
    found = ttl_advice(obs, now, "2027-01-15T12:00:00+00:00", 300)
    assert len(found) == 2
    assert all("lower it to 300s by 2027-01-15 11:00:00 UTC" in f.summary for f in found)


def test_a_naive_move_time_is_utc():
    obs = observed("dns_advice", "not-moved-no-plan")
    found = ttl_advice(obs, 1_800_000_000.0, "2027-01-15T12:00", 300)
    assert "by 2027-01-15 11:00:00 UTC" in found[0].summary


def test_a_short_ttl_needs_no_lowering():
    obs = observed("dns_advice", "not-moved-no-plan")
    found = ttl_advice(obs, 1_800_000_000.0, None, 3600)
    assert [f.severity.value for f in found] == ["info"] and "already short" in found[0].summary


def test_a_move_in_the_past_that_is_done_gets_no_ttl_advice():
    obs = observed("dns_advice", "moved-caches-linger")
    assert ttl_advice(obs, 1_800_000_000.0, "2020-01-01", 300) == []


def test_nothing_to_flush_once_propagated():
    assert flush_advice(observed("dns_advice", "propagated")) == []
    rule = DnsAdvice()
    facts = AdviceFacts.model_validate({"dns": {"verdict": "error", "observed": None}, "now": 0})
    assert rule.evaluate(facts) == []
