"""The step registries find modules by scanning their files as text; these tests hold
that scan to the truth of a full import, and check that a run imports only what its
playbook names (a fresh interpreter each, since other tests import everything)."""

import json
import subprocess
import sys

FRESH = [sys.executable, "-c"]


def _fresh(code: str) -> dict:
    out = subprocess.run(FRESH + [code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_text_scan_names_exactly_the_registered_steps():
    seen = _fresh(
        "import json\n"
        "from opskit import steps\n"
        "scanned = {k: sorted(t.index()) for k, (_, t) in steps.KINDS.items()}\n"
        "steps.load_builtin_steps()\n"
        "registered = {k: sorted(t._classes) for k, (_, t) in steps.KINDS.items()}\n"
        "print(json.dumps({'scanned': scanned, 'registered': registered}))\n")
    assert seen["scanned"] == seen["registered"]
    assert "rename" in seen["registered"]["change"] and "timeout_chain" in seen["registered"]["rule"]


def test_loading_a_playbook_imports_only_the_step_modules_it_names():
    seen = _fresh(
        "import json, sys\n"
        "from opskit import playbook\n"
        "playbook.load('facts')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opskit.'))))\n")
    assert "opskit.probes.system" in seen
    for heavy in ("opskit.stack.dns", "opskit.rules.timeouts", "opskit.checks.dns", "opskit.stack.nginx"):
        assert heavy not in seen


def test_an_unknown_name_is_a_key_error_and_not_contained():
    seen = _fresh(
        "import json\n"
        "from opskit.steps import PROBES\n"
        "try:\n    PROBES['no_such_probe']\n    got = 'found'\n"
        "except KeyError:\n    got = 'KeyError'\n"
        "print(json.dumps([got, 'no_such_probe' in PROBES, 'system' in PROBES, PROBES['system'].name]))\n")
    assert seen == ["KeyError", False, True, "system"]
