"""Probe parsers on real captured output (opskit/probes/system.py, opskit/probes/wordpress.py, and
check-timeouts' probes: nginx_timeouts, apache_timeouts, phpfpm_timeouts, php_timeouts, kill_evidence,
log_scan, host_load).

tests/captures/probes/<probe>/<situation>.txt holds the raw output of the probe's
own script (captured by tests/captures/refresh_probes.py, see the README there);
<situation>.json beside it holds the exit status, the parameters, the expected
value and (wp_plugin) the causes of the findings. One harness turns each capture
into a test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from opskit.probes.system import WordPress, WordPressParams, key_values
from opskit.rules.wordpress import CdnEnabler, CdnEnablerFacts
from opskit.steps import PROBES, load_builtin_steps

CAPTURES = Path(__file__).parent.parent / "captures" / "probes"
FINDINGS_RULE = {"wp_plugin": lambda value: CdnEnabler().evaluate(CdnEnablerFacts(plugin=value))}

load_builtin_steps()


def _captures():
    for txt in sorted(CAPTURES.glob("*/*.txt")):
        yield pytest.param(txt, id=f"{txt.parent.name}/{txt.stem}")


def test_captures_are_complete():
    txts = {p.with_suffix("") for p in CAPTURES.glob("*/*.txt")}
    jsons = {p.with_suffix("") for p in CAPTURES.glob("*/*.json")}
    assert txts == jsons, f"captures without expectations or the reverse: {sorted(txts ^ jsons)}"
    probes = {p.parent.name for p in txts}
    # check-timeouts' probes: tests/captures/refresh_timeout_probes.py
    timeouts = {"nginx_timeouts", "apache_timeouts", "phpfpm_timeouts", "php_timeouts", "kill_evidence", "log_scan",
                "host_load"}
    # diagnose's own probes: tests/captures/refresh_diagnose_probes.py
    diagnose = {"firewall", "upstream_socket", "app_errors", "wp_site"}
    assert probes == {"system", "php", "nginx", "apache", "wordpress", "wp_plugin"} | timeouts | diagnose \
        and probes <= set(PROBES)
    for probe in ("nginx_timeouts", "phpfpm_timeouts", "apache_timeouts"):
        assert "absent" in {p.name for p in txts if p.parent.name == probe}, f"{probe}: no 'absent' capture"
    for probe in ("php", "nginx", "apache", "wordpress"):
        situations = {p.name for p in txts if p.parent.name == probe}
        assert situations & {"present", "root-given"}, f"{probe}: no 'present' capture"
        assert "absent" in situations, f"{probe}: no 'absent' capture"
    assert {p.name for p in txts if p.parent.name == "wp_plugin"} == {
        "installed-state-unknown", "not-installed", "renamed-by-an-earlier-run", "wp-plugin-dir-in-wp-config",
        "plugin-dir-not-writable", "stub-wordpress-active", "stub-wordpress-network-active", "stub-wordpress-inactive"}
    assert "Debian 12 (bookworm)" in (CAPTURES / "README.md").read_text()


@pytest.mark.parametrize("capture", list(_captures()))
def test_parse_capture(capture: Path):
    spec = json.loads(capture.with_suffix(".json").read_text())
    probe = PROBES[capture.parent.name]()
    params = probe.Params(**spec["params"])
    got = probe.parse(capture.read_text(), spec["exit_status"], params)
    want = spec["want"]
    assert got == want, (f"\n{capture.parent.name}/{capture.name}\n"
                         f"GOT:  {json.dumps(got, sort_keys=True)}\nWANT: {json.dumps(want, sort_keys=True)}")
    # the findings about a probe's value come from the rule a playbook runs after it
    rule = FINDINGS_RULE.get(capture.parent.name)
    causes = [finding.cause for finding in rule(got)] if rule else []
    assert causes == spec.get("findings", []), f"\nfindings GOT: {causes}\nWANT: {spec.get('findings', [])}"


# -- the pure helper ------------------------------------------------------------------------
def test_key_values():
    text = "a=1\nb = two words \nnot a pair\nc=x=y\n=novalue\nwith space=no\nempty=\na=3\n"
    # a key with a space around '=' is not a key (probes print key=value exactly)
    assert key_values(text) == {"a": "3", "c": "x=y", "empty": ""}
    assert key_values("home=/home/a b \n") == {"home": "/home/a b"}


# -- the WordPress script, run locally with hostile paths ---------------------------------------
class FakeContext:
    def __init__(self, home: Path):
        self.home = str(home)

    def path(self, path: str) -> str:
        if path == "~":
            return self.home
        if path.startswith("~/"):
            return f"{self.home}/{path[2:]}"
        return path


def wp_tree(root: Path, config_up: bool = False) -> None:
    root.mkdir(parents=True)
    (root / "wp-load.php").write_text("<?php\n")
    ((root.parent if config_up else root) / "wp-config.php").write_text("<?php\n")
    (root / "wp-includes").mkdir()
    (root / "wp-includes" / "version.php").write_text("<?php\n$wp_version = '6.1.9';\n")


def run_probe(tmp_path: Path, root: str, shell: str = "sh") -> dict:
    probe = WordPress()
    params = WordPressParams(root=root)
    script = probe.script(params, FakeContext(tmp_path / "home"))
    proc = subprocess.run([shell, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*")), "a path was run as a command"
    return probe.parse(proc.stdout, proc.returncode, params)


@pytest.mark.parametrize("name", ["$(touch PWNED)", "`touch PWNED`", "a;touch PWNED", "it's", 'say "hi"'])
def test_wordpress_script_quotes_the_root(tmp_path, name):
    wp_tree(tmp_path / "home" / name)
    got = run_probe(tmp_path, f"~/{name}")
    root = f"{tmp_path}/home/{name}"
    assert got == {"found": True, "root": root, "config": f"{root}/wp-config.php", "version": "6.1.9",
                   "searched": [root]}


@pytest.mark.parametrize("parent", ["two  spaces", "tab\tsep", "star * here", "back\\tslash"])
def test_wordpress_config_one_level_up_keeps_the_path(tmp_path, parent):
    wp_tree(tmp_path / "home" / parent / "wordpress", config_up=True)
    got = run_probe(tmp_path, f"~/{parent}/wordpress")
    root = f"{tmp_path}/home/{parent}/wordpress"
    assert got == {"found": True, "root": root, "config": f"{tmp_path}/home/{parent}/wp-config.php",
                   "version": "6.1.9", "searched": [root]}


@pytest.mark.parametrize("name", ["back\\tslash", "cut\\chere", "oct\\0101", "-e"])
def test_wordpress_root_with_a_backslash_under_dash(tmp_path, name):
    assert shutil.which("dash"), "dash (Debian's /bin/sh, an Essential package) is needed for this test"
    # the probe prints paths with printf: dash's echo would rewrite \\t, \\0101 and stop at \\c
    wp_tree(tmp_path / "home" / name)
    got = run_probe(tmp_path, f"~/{name}", shell="dash")
    root = f"{tmp_path}/home/{name}"
    assert got == {"found": True, "root": root, "config": f"{root}/wp-config.php", "version": "6.1.9",
                   "searched": [root]}
