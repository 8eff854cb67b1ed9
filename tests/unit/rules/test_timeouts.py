"""The timeout chain (opskit/rules/timeouts.py): which layer fires first, and the chain it
proposes. The capture harness checks the findings; this checks value() against each capture's
"want_value", the edge cases, and, with hypothesis, that every proposal is a consistent chain."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from opskit.rules.facts import Setting, TimeoutChain
from opskit.rules.timeouts import TimeoutChainRule, chain_layers, chain_value, fires_first, propose
from opskit.steps import RULES, load_builtin_steps

CAPTURES = Path(__file__).parent.parent.parent / "captures" / "rules"
MINE = ("timeout_chain", "fpm_timeout", "kill_script", "gateway_timeout", "overload")

load_builtin_steps()


def chain(**fields) -> TimeoutChain:
    fields.setdefault("max_execution_time", {"seconds": 30, "source": "set", "file": "/etc/php.ini", "line": 1})
    fields.setdefault("request_terminate_timeout", {"seconds": 35, "source": "set", "file": "/pool.conf", "line": 2})
    return TimeoutChain.model_validate(fields)


def at(seconds, source="set") -> dict:
    return {"seconds": seconds, "source": source, **({"file": "/f", "line": 1} if source == "set" else {})}


# -- the captures' values ---------------------------------------------------------

@pytest.mark.parametrize("capture", sorted((CAPTURES / "timeout_chain").glob("*.json")), ids=lambda p: p.stem)
def test_capture_value(capture: Path):
    spec = json.loads(capture.read_text())
    value = chain_value(TimeoutChain.model_validate(spec["facts"]))
    got = {key: value[key] for key in spec["want_value"]}
    assert got == spec["want_value"], f"\n{capture}\nGOT: {json.dumps(got, indent=1)}"


@pytest.mark.parametrize("rule", MINE)
def test_every_finding_says_what_to_do(rule: str):
    for capture in sorted((CAPTURES / rule).glob("*.json")):
        instance = RULES[rule]()
        for finding in instance.evaluate(instance.Params.model_validate(json.loads(capture.read_text())["facts"])):
            assert finding.advice.strip(), f"{capture}: {finding.cause} has no advice"


def test_rule_value_is_the_chain_value():
    facts = chain(fastcgi_read_timeout=at(40))
    assert TimeoutChainRule().value(facts) == chain_value(facts)
    json.dumps(chain_value(facts))   # JSON-able, as later steps receive it


# -- edge cases ---------------------------------------------------------------------

def test_a_waiting_request_is_not_stopped_by_the_cpu_limit():
    value = chain_value(chain(fastcgi_read_timeout=at(40)))
    assert value["fires_first"] == "request_terminate_timeout" and value["visitor_sees"] == "502"
    assert value["cpu_bound"]["fires_first"] == "max_execution_time" and value["cpu_bound"]["visitor_sees"] == "500"


def test_a_tie_goes_to_the_outer_layer_and_is_misordered():
    value = chain_value(chain(request_terminate_timeout=at(60), fastcgi_read_timeout=at(60, "default")))
    assert value["fires_first"] == "fastcgi_read_timeout" and value["visitor_sees"] == "504"
    assert value["misordered"] == [{"inner": "request_terminate_timeout", "outer": "fastcgi_read_timeout",
                                    "inner_seconds": 60, "outer_seconds": 60}]


def test_closer_than_the_margin_is_a_warning():
    facts = chain(request_terminate_timeout=at(32), fastcgi_read_timeout=at(60))
    [finding] = TimeoutChainRule().evaluate(facts)
    assert finding.severity.value == "warning"
    assert chain_value(facts)["tight"][0]["outer"] == "request_terminate_timeout"
    assert chain_value(facts)["proposal"]["request_terminate_timeout"] == 35


def test_terminate_off_is_never_proposed():
    value = chain_value(chain(request_terminate_timeout=at(0, "default"), fastcgi_read_timeout=at(60, "default")))
    assert value["off"] == ["request_terminate_timeout"]
    assert value["proposal"]["request_terminate_timeout"] == 35
    assert [c["layer"] for c in value["changes"]] == ["request_terminate_timeout"]


def test_nothing_fires_for_a_waiting_request():
    facts = chain(request_terminate_timeout=at(0, "default"))       # no web server known, no edge, no CDN
    value = chain_value(facts)
    assert value["fires_first"] is None and value["certain"] is True
    assert "nothing ends a slow request" in TimeoutChainRule().evaluate(facts)[0].summary


def test_unknown_layers_make_it_uncertain_never_guessed():
    facts = chain(request_terminate_timeout={"source": "unknown", "reason": "not readable"},
                  fastcgi_read_timeout=at(60, "default"))
    value = chain_value(facts)
    assert value["fires_first"] == "fastcgi_read_timeout" and value["certain"] is False
    assert value["unknown"] == ["request_terminate_timeout"] and value["consistent"] is None
    [finding] = TimeoutChainRule().evaluate(facts)
    assert "could fire sooner" in finding.summary
    assert "request_terminate_timeout: unknown (not readable)" in finding.evidence


def test_a_setting_with_no_seconds_is_unknown_whatever_its_source():
    facts = chain(request_terminate_timeout={"source": "default"})
    assert chain_value(facts)["unknown"] == ["request_terminate_timeout"]


def test_no_script_time_no_proposal():
    for met in ({"source": "unknown"}, at(0)):
        value = chain_value(chain(max_execution_time=met))
        assert value["proposal"] == {} and value["changes"] == [] and "--script-time" in value["proposal_note"]
    assert chain_value(chain(max_execution_time=at(0), script_time=60))["proposal"]["max_execution_time"] == 60


def test_a_cdn_too_short_for_the_layers():
    value = chain_value(chain(fastcgi_read_timeout=at(40), cdn_timeout=10, cdn_name="cloudflare"))
    assert value["proposal"] == {} and "no room" in value["proposal_note"]


def test_a_cdn_without_a_timeout_is_an_unknown_layer():
    value = chain_value(chain(fastcgi_read_timeout=at(40), cdn_name="cloudflare"))
    assert value["unknown"] == ["cdn"] and value["certain"] is False
    assert "not fitted under it" in value["proposal_note"]


def test_cloudflare_gives_524_others_their_own_error():
    assert chain_value(chain(cdn_timeout=1, cdn_name="Cloudflare"))["visitor_sees"] == "524"
    assert chain_value(chain(cdn_timeout=1, cdn_name="fastly"))["visitor_sees"] == "the CDN's timeout error"
    assert chain_value(chain(cdn_timeout=1))["visitor_sees"] == "the CDN's timeout error"


def test_apache_proxy_timeout_falls_back_to_timeout_but_not_when_unknown():
    facts = chain(apache_proxy_timeout={"seconds": 60, "source": "default"}, apache_timeout=at(300))
    assert chain_value(facts)["layers"][2]["seconds"] == 300
    unknown = chain(apache_proxy_timeout={"source": "unknown"}, apache_timeout=at(300))
    assert chain_value(unknown)["unknown"] == ["apache_proxy_timeout"]
    only_timeout = chain(apache_timeout=at(20))      # ProxyTimeout not given at all: Timeout applies
    value = chain_value(only_timeout)
    assert value["served_by"] == "apache-proxy-fcgi" and value["fires_first"] == "apache_proxy_timeout"
    assert value["visitor_sees"] == "504"
    assert value["changes"] == [{"layer": "apache_proxy_timeout", "from": 20, "to": 40, "raw": None, "source": "default",
                                 "file": None, "line": None, "where": None}]


def test_apache_reports_php_fpm_kills_as_503():
    assert chain_value(chain(apache_timeout=at(300)))["visitor_sees"] == "503"


def test_fcgid_busy_timeout_is_a_backstop():
    facts = chain(request_terminate_timeout=None, fcgid_io_timeout=at(40, "default"),
                  fcgid_busy_timeout=at(20), proxy_read_timeout=at(60))
    value = chain_value(facts)
    assert value["served_by"] == "apache-fcgid"
    assert {p["outer"] for p in value["misordered"]} == {"fcgid_busy_timeout"}    # under PHP's and mod_fcgid's own
    assert all(p["inner"] != "fcgid_busy_timeout" for p in value["misordered"])  # never against what is in front
    assert value["proposal"]["fcgid_busy_timeout"] == value["proposal"]["fcgid_io_timeout"] + 5
    assert "request_terminate_timeout" not in value["proposal"]                   # no php-fpm under mod_fcgid


def test_served_by_says_which_settings_count():
    facts = chain(served_by="nginx", apache_timeout=at(10))
    value = chain_value(facts)
    assert [row["layer"] for row in value["layers"]] == ["max_execution_time", "request_terminate_timeout",
                                                         "fastcgi_read_timeout"]
    assert value["unknown"] == ["fastcgi_read_timeout"]


def test_durations_and_typos():
    assert chain(script_time="2m", cdn_timeout="100s").script_time == 120
    with pytest.raises(ValidationError):
        chain(script_time="soon")
    with pytest.raises(ValidationError):
        chain(fastcgi_read_timout=at(40))         # a typo in a playbook's with:
    assert Setting.model_validate({"seconds": 1, "source": "set", "directive": "x"}).seconds == 1   # a probe may say more


def test_fractional_values_and_margin():
    facts = chain(fastcgi_read_timeout={"seconds": 0.5, "raw": "500ms", "source": "set", "file": "/f", "line": 3},
                  margin=2.5)
    value = chain_value(facts)
    assert value["fires_first"] == "fastcgi_read_timeout" and value["fires_first_seconds"] == 0.5
    assert value["proposal"] == {"max_execution_time": 30, "request_terminate_timeout": 33, "fastcgi_read_timeout": 36}


def test_a_consistent_chain_is_kept_and_a_longer_script_moves_it():
    facts = chain(fastcgi_read_timeout=at(300), proxy_read_timeout=at(600))
    assert chain_value(facts)["changes"] == []
    moved = chain_value(chain(fastcgi_read_timeout=at(300), proxy_read_timeout=at(600), script_time=400))
    assert moved["proposal"] == {"max_execution_time": 400, "request_terminate_timeout": 405,
                                 "fastcgi_read_timeout": 410, "proxy_read_timeout": 600}


def test_fires_first_of_no_layers():
    assert fires_first([]).layer is None


# -- every proposal is a consistent chain --------------------------------------------

seconds = st.one_of(st.integers(0, 900), st.floats(0, 900, allow_nan=False).map(lambda x: round(x, 1)))
known = st.builds(lambda s, source: {"seconds": s, "source": source, "file": "/f", "line": 1},
                  seconds, st.sampled_from(["set", "inherited", "default"]))
unknown = st.just({"source": "unknown", "reason": "not readable"})
setting = st.one_of(known, known, unknown)


@st.composite
def chains(draw) -> TimeoutChain:
    server = draw(st.sampled_from([None, "nginx", "apache-proxy-fcgi", "apache-fcgid"]))
    fields = {"max_execution_time": draw(setting), "request_terminate_timeout": draw(st.one_of(st.none(), setting)),
              "margin": draw(st.floats(1, 30, allow_nan=False)), "served_by": draw(st.sampled_from([None, server]))}
    if server == "nginx":
        fields["fastcgi_read_timeout"] = draw(setting)
    elif server == "apache-proxy-fcgi":
        fields["apache_proxy_timeout"] = draw(st.one_of(st.none(), setting))
        fields["apache_timeout"] = draw(setting)
    elif server == "apache-fcgid":
        fields["fcgid_io_timeout"] = draw(setting)
        fields["fcgid_busy_timeout"] = draw(st.one_of(st.none(), setting))
    fields["proxy_read_timeout"] = draw(st.one_of(st.none(), setting))
    fields["cdn_timeout"] = draw(st.one_of(st.none(), st.integers(1, 900)))
    fields["cdn_name"] = draw(st.sampled_from([None, "cloudflare", "fastly"]))
    fields["script_time"] = draw(st.one_of(st.none(), st.integers(1, 900), st.floats(0.1, 900, allow_nan=False)))
    return TimeoutChain.model_validate(fields)


def applied(facts: TimeoutChain, proposal: dict) -> TimeoutChain:
    """The facts as they would be once tune-timeouts set the proposal."""
    fields = facts.model_dump()
    for layer, value in proposal.items():
        fields[layer] = {"seconds": value, "raw": str(value), "source": "set", "file": "/tuned", "line": 1}
    fields["script_time"] = None       # from now on the chain's own max_execution_time is the script time
    return TimeoutChain.model_validate(fields)


@settings(max_examples=200, deadline=None)
@given(chains())
def test_every_proposal_is_a_consistent_chain(facts: TimeoutChain):
    layers = chain_layers(facts)
    value = chain_value(facts)
    proposal = value["proposal"]
    if not proposal:
        assert value["proposal_note"]
        return
    step = math.ceil(facts.margin)
    main = [l.name for l in layers if l.settable and not l.backstop and l.name in proposal]
    numbers = [proposal[name] for name in main]
    assert main[0] == "max_execution_time" and numbers[0] == value["script_time"] >= 1
    assert all(b - a >= step for a, b in zip(numbers, numbers[1:])), numbers         # strictly increasing, by the margin
    assert proposal.get("request_terminate_timeout", 1) > 0                           # never 0
    if facts.cdn_timeout is not None:
        assert numbers[-1] + step <= facts.cdn_timeout                                # under the CDN
    elif facts.script_time is not None:
        assert numbers[0] == math.ceil(facts.script_time)
    if "fcgid_busy_timeout" in proposal:
        assert proposal["fcgid_busy_timeout"] - proposal["fcgid_io_timeout"] >= step
    assert {c["layer"] for c in value["changes"]} <= set(proposal)

    again = chain_value(applied(facts, proposal))       # set it, look again: consistent, nothing left to change
    assert again["misordered"] == [] and again["tight"] == [] and again["off"] == []
    assert again["changes"] == [] and again["proposal"] == proposal
    if again["unknown"] == []:
        assert again["consistent"] is True
        assert TimeoutChainRule().evaluate(applied(facts, proposal))[0].severity.value == "info"


@settings(max_examples=100, deadline=None)
@given(chains())
def test_a_consistent_chain_needs_no_change(facts: TimeoutChain):
    value = chain_value(facts)
    met = facts.max_execution_time
    if value["consistent"] and (facts.script_time is None or math.ceil(facts.script_time) == met.seconds):
        assert value["changes"] == [] or met.seconds != math.ceil(met.seconds)


@settings(max_examples=100, deadline=None)
@given(chains())
def test_the_finding_always_reads(facts: TimeoutChain):
    [finding] = TimeoutChainRule().evaluate(facts)
    assert finding.cause == "timeout-chain" and finding.summary and finding.advice
    assert len(finding.evidence) >= len(chain_layers(facts))
    assert propose(facts, chain_layers(facts)).seconds == chain_value(facts)["proposal"]
