"""The human report of check-timeouts: the chain table (layer, value, where set, what fires first)
rendered from the timeout_chain rule's value, and the --json document's `timeouts` key."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from opskit import report
from opskit.rules.timeouts import TimeoutChainRule
from opskit.runner import HostOutcome

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "rules" / "timeout_chain"


def chain_value(situation: str) -> dict:
    rule = TimeoutChainRule()
    facts = rule.Params.model_validate(json.loads((CAPTURES / f"{situation}.json").read_text())["facts"])
    return {**rule.value(facts), "causes": ["timeout-chain"], "findings": []}


def rendered(value: dict, short=lambda text: text) -> list[str]:
    console = Console(record=True, width=200)
    console.print(report.chain_table(value, short))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_the_chain_table_says_where_each_layer_is_set_and_which_fires_first():
    lines = rendered(chain_value("misordered-fastcgi-504"), lambda text: text.replace("/etc/php/8.2/", "…/"))
    assert lines[0].split() == ["layer", "value", "where", "set", "visitor", "sees", "fires", "first"]
    rows = {line.strip().split("  ")[0]: " ".join(line.split()) for line in lines[1:]}
    assert rows["PHP max_execution_time"] == "PHP max_execution_time 30 …/fpm/php.ini:409 500 first when busy on the CPU"
    assert rows["php-fpm request_terminate_timeout"] == "php-fpm request_terminate_timeout 300 …/fpm/pool.d/www.conf:412 502"
    assert rows["nginx fastcgi_read_timeout"] == "nginx fastcgi_read_timeout 60s default 504 first"


def test_unknown_and_off_layers_and_the_cdn():
    text = "\n".join(rendered(chain_value("shared-hosting-unknown")) + rendered(chain_value("terminate-off")))
    assert "unknown" in text and "(off)" in text


def test_the_json_document_adds_timeouts_and_keeps_its_keys():
    outcome = HostOutcome("h1", steps=[{"step": "Which timeout fires first", "id": "chain", "kind": "rule",
                                        "status": "ok", "value": chain_value("cloudflare-524")}])
    document = report.json_document("r", "check-timeouts", {"h1": outcome}, False)
    host = document["hosts"]["h1"]
    assert set(outcome.to_json()) < set(host) and set(host) - set(outcome.to_json()) == {"timeouts"}
    assert host["timeouts"]["chain"]["fires_first"] == chain_value("cloudflare-524")["fires_first"]
    assert host["timeouts"]["measure"] is None
    plain = report.json_document("r", "facts", {"h1": HostOutcome("h1")}, False)
    assert "timeouts" not in plain["hosts"]["h1"]
