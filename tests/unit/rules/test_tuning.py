"""tune-timeouts' planner (opskit/rules/tuning.py): the captures' values (the harness in
test_rule_captures.py checks their findings), that every planned edit is one config_edits
accepts, and the reading side of config_edits (parse_read) on hand-made output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opskit.changes.config_edit import ConfigEditsParams, _mode, parse_read, precheck_script, read_script
from opskit.rules.tuning import TimeoutPlan, TimeoutPlanFacts, plan_edits
from opskit.steps import load_builtin_steps

CAPTURES = Path(__file__).parent.parent.parent / "captures" / "rules" / "timeout_plan"

load_builtin_steps()


def situations():
    return sorted(CAPTURES.glob("*.json"))


@pytest.mark.parametrize("capture", situations(), ids=lambda p: p.stem)
def test_capture_value(capture: Path):
    spec = json.loads(capture.read_text())
    value = plan_edits(TimeoutPlanFacts.model_validate(spec["facts"]))
    want = spec["want_value"]
    got = {"before": value["before"], "after": value["after"],
           "edits": [{k: e[k] for k in want_keys(want["edits"], i) if k in e} for i, e in enumerate(value["edits"])],
           "manual": [{k: m[k] for k in ("layer", "to", "line", "where")} for m in value["manual"]]}
    assert got == want, f"\n{capture}\nGOT: {json.dumps(got, indent=1, ensure_ascii=False)}"


def want_keys(edits: list[dict], index: int) -> list[str]:
    return list(edits[index]) if index < len(edits) else ["layer"]


@pytest.mark.parametrize("capture", situations(), ids=lambda p: p.stem)
def test_every_planned_edit_is_one_config_edits_accepts(capture: Path):
    spec = json.loads(capture.read_text())
    value = TimeoutPlan().value(TimeoutPlanFacts.model_validate(spec["facts"]))
    json.dumps(value)   # JSON-able, as the next steps receive it
    params = ConfigEditsParams.model_validate({"edits": value["edits"]})
    for edit, planned in zip(params.edits, value["edits"]):
        assert edit.file.startswith("/") and edit.directive == planned["directive"]
        if edit.format != "php-ini" or edit.server_config:
            assert edit.handlers, planned          # every server edit reloads its server
        assert edit.validator == ("none" if edit.format == "php-ini" and not edit.server_config else
                                  "php-fpm" if edit.format in ("php-ini", "php-fpm") else edit.format)


def test_request_terminate_timeout_is_never_left_at_zero():
    spec = json.loads((CAPTURES / "fastcgi-default-added-in-location.json").read_text())
    value = plan_edits(TimeoutPlanFacts.model_validate(spec["facts"]))
    terminate = next(e for e in value["edits"] if e["layer"] == "request_terminate_timeout")
    assert terminate["from"] == 0 and terminate["to"] > value["chain"]["proposal"]["max_execution_time"]


FENCE = "@@F"


def test_parse_read_modes_missing_and_prechecks():
    out = "\n".join([
        f"{FENCE} begin file:/etc/a.conf", "aGVsbG8K", f"{FENCE} end file:/etc/a.conf 0",
        f"{FENCE} begin writable:/etc/a.conf", "0 0:0 rw-r--r--", f"{FENCE} end writable:/etc/a.conf 0",
        f"{FENCE} begin missing:/home/u/.user.ini", "", f"{FENCE} end missing:/home/u/.user.ini 0",
        f"{FENCE} begin writable:/home/u/.user.ini", "1", f"{FENCE} end writable:/home/u/.user.ini 0",
        f"{FENCE} begin valid", "ERROR: [pool www] unknown entry 'x'", f"{FENCE} end valid 78",
        f"{FENCE} begin reload:php-fpm", "pid 12: kill: Operation not permitted", f"{FENCE} end reload:php-fpm 1",
    ])
    answer = parse_read(out, FENCE)
    assert answer.files == {"/etc/a.conf": b"hello\n"}
    assert answer.writable == {"/etc/a.conf": (False, "0:0"), "/home/u/.user.ini": (True, "")}
    assert answer.modes == {"/etc/a.conf": 0o644} and answer.missing == {"/home/u/.user.ini"}
    assert answer.invalid == "ERROR: [pool www] unknown entry 'x'"
    assert answer.unreloadable == {"php-fpm": "pid 12: kill: Operation not permitted"}


@pytest.mark.parametrize("text, mode", [("rw-r--r--", 0o644), ("rwxr-x---", 0o750), ("rwsr-xr-x", 0o4755),
                                        ("rw-rw-r-T", 0o1664), ("", None), ("rw-", None)])
def test_mode_from_ls(text, mode):
    assert _mode(text) == mode


def test_the_read_carries_the_prechecks_of_the_server_it_reloads():
    spec = json.loads((CAPTURES / "vps-sudo.json").read_text())
    edits = ConfigEditsParams.model_validate({"edits": plan_edits(TimeoutPlanFacts.model_validate(spec["facts"]))["edits"]}).edits
    ini, pool, edge = edits
    assert "begin valid" in precheck_script(pool, FENCE) and "begin reload:php-fpm" in precheck_script(pool, FENCE)
    assert "-c /etc/php/8.2/fpm/php.ini" in precheck_script(ini, FENCE)            # php.ini: php-fpm -t reads it
    assert "begin valid" not in precheck_script(edge, FENCE)                         # nginx -T tests it already
    assert "-e /var/log/nginx-edge/error.log" in read_script(edge, FENCE, become=True)
