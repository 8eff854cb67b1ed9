"""WordPress plugin facts and helpers: opskit/probes/wordpress.py (config_plugin_dir, WpPlugin.parse,
decide, plugin_findings), opskit/stack/wordpress.py (parse_marker_json, php_command),
opskit/changes/wordpress.py (activation_undo) and count_cdn_urls (opskit/checks/http.py).

WpPlugin's parser is also run on real captures by test_probe_captures.py
(tests/captures/probes/wp_plugin/); here it gets hand-written output for the states
the captures cannot show without a real WordPress, and the script runs locally on
small trees for what only a live run shows.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from opskit.stack import wordpress
from opskit.changes.wordpress import activation_undo
from opskit.checks.http import count_cdn_urls
from opskit.findings import Severity
from opskit.guard import guard_script, parse_output
from opskit.probes.wordpress import PluginParams, WpPlugin, decide, plugin_findings
from opskit.shell import quote

LAB = Path(__file__).parent.parent / "captures" / "wordpress-6.1-debian12"
PLUGIN = "cdn-enabler/cdn-enabler.php"
PD = "/home/site1/public_html/wp-content/plugins"
RUN = "20260102-000000-beef"


# -- parse_marker_json --------------------------------------------------------------------------
@pytest.mark.parametrize("output, want", [
    ('OPSKIT-WP {"active": true}', {"active": True}),
    ('Deprecated: noise\n\nOPSKIT-WP {"a": 1}\nmore noise\n', {"a": 1}),
    ('OPSKIT-WP {"a": 1}\nOPSKIT-WP {"a": 2}\n', {"a": 2}),                 # the last line counts
    ('OPSKIT-WP {"a": 1}\nOPSKIT-WP {"a": \n', None),                         # ... even when it is cut
    ('OPSKIT-WP {"p": "/a b/c", "u": "\\u00e9"}', {"p": "/a b/c", "u": "é"}),
    ("OPSKIT-WP [1, 2]", None),
    ('OPSKIT-WP "text"', None),
    ("OPSKIT-WP ", None),
    ("OPSKIT-WP", None),
    (' OPSKIT-WP {"a": 1}', None),                                            # must start the line
    ('OPSKIT-WPX {"a": 1}', None),
    ("", None),
])
def test_parse_marker_json(output, want):
    assert wordpress.parse_marker_json(output) == want


def test_parse_marker_json_with_another_marker():
    text = 'OPSKIT-WP {"a": 1}\nOPSKIT-ACT {"b": 2}\n'
    assert wordpress.parse_marker_json(text, "OPSKIT-ACT ") == {"b": 2}


# -- php_command: every value quoted ------------------------------------------------------------
FAKE_RUNNER = """#!/bin/sh
# stands in for php / wp: records its arguments, environment and folder
out={out}
printf '%s\\0' "$@" > "$out/argv"
env -0 > "$out/env"
pwd > "$out/pwd"
echo ran
"""

NASTY_ROOT = "site root/it's \"$(touch PWNED)\" `touch PWNED`; x"
NASTY_HOST = "a b'c$(touch PWNED)"


@pytest.fixture
def runner_box(tmp_path):
    bin_dir = tmp_path / "fake bin"
    bin_dir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for name in ("php", "wp"):
        (bin_dir / name).write_text(FAKE_RUNNER.format(out=quote(str(out))))
        (bin_dir / name).chmod(0o755)
    root = tmp_path / NASTY_ROOT
    root.mkdir(parents=True)
    work = tmp_path / "cwd"
    work.mkdir()

    def run(command: str) -> tuple[list[str], dict[str, str], str]:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=work,
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
        assert proc.returncode == 0 and proc.stdout == "ran\n", proc.stderr
        assert not any(p.name == "PWNED" for p in tmp_path.rglob("*")), "a value was run as a command"
        argv = (out / "argv").read_text().split("\0")[:-1]
        env = dict(item.split("=", 1) for item in (out / "env").read_text().split("\0") if item)
        return argv, env, (out / "pwd").read_text().removesuffix("\n")

    return run, root, bin_dir


@pytest.mark.parametrize("runner_path", ["php", "ABSOLUTE"])
def test_php_command_with_php_cli_quotes_every_value(runner_box, runner_path):
    run, root, bin_dir = runner_box
    runner_path = str(bin_dir / "php") if runner_path == "ABSOLUTE" else runner_path
    env = {"OPSKIT_PLUGIN": "it's/$(touch PWNED).php", "OPSKIT_OPTION": 'a "b" `c`', "OPSKIT_EMPTY": ""}
    argv, got_env, pwd = run(wordpress.php_command("php", runner_path, str(root), NASTY_HOST,
                                                   wordpress.PLUGIN_STATE_PHP, env))
    assert argv == ["-r", wordpress._PHP_BOOT + wordpress.PLUGIN_STATE_PHP]
    assert pwd == str(root)
    assert {k: got_env.get(k) for k in ("OPSKIT_WP_ROOT", "OPSKIT_WP_HOST", *env)} == {
        "OPSKIT_WP_ROOT": str(root), "OPSKIT_WP_HOST": NASTY_HOST, **env}


def test_php_command_with_wp_cli_quotes_every_value(runner_box):
    run, root, bin_dir = runner_box
    code = "echo 'it''s'; $x = \"$(touch PWNED)\";\n"
    argv, got_env, pwd = run(wordpress.php_command("wp", str(bin_dir / "wp"), str(root), NASTY_HOST, code,
                                                   {"OPSKIT_PLUGIN": PLUGIN}))
    assert argv == [f"--path={root}", f"--url=http://{NASTY_HOST}/", "--skip-themes", "--skip-plugins", "eval", code]
    assert pwd == str(root)
    assert (got_env["OPSKIT_WP_ROOT"], got_env["OPSKIT_WP_HOST"], got_env["OPSKIT_PLUGIN"]) == (str(root), NASTY_HOST, PLUGIN)


def test_php_command_without_a_site_host(runner_box):
    run, root, bin_dir = runner_box
    argv, got_env, _ = run(wordpress.php_command("wp", "wp", str(root), None, "echo 1;"))
    assert argv == [f"--path={root}", "--skip-themes", "--skip-plugins", "eval", "echo 1;"]
    assert got_env["OPSKIT_WP_HOST"] == "localhost"
    argv, got_env, _ = run(wordpress.php_command("php", "php", str(root), None, "echo 1;"))
    assert argv == ["-r", wordpress._PHP_BOOT + "echo 1;"] and got_env["OPSKIT_WP_HOST"] == "localhost"


def test_site_host():
    assert wordpress.site_host("https://site1.example.test/") == "site1.example.test"
    assert wordpress.site_host("http://site1.example.test:8080/blog") == "site1.example.test"
    assert wordpress.site_host(None) is None and wordpress.site_host("") is None
    assert wordpress.site_host("ftp://x/") is None


# -- WpPlugin.parse on hand-written output --------------------------------------------------------
# What the probe prints when PHP CLI loaded WordPress: the runner lines, PLUGIN_STATE_PHP's two
# marker lines (each after an empty line) behind "state: ", with a PHP notice WordPress printed
# first, then the shell's own checks. The JSON has the shape PLUGIN_STATE_PHP prints.
def state_json(**overrides) -> str:
    value = {"plugin_dir": PD, "content_dir": PD.removesuffix("/plugins"), "multisite": False, "active": True,
             "network_active": False, "cdn_hostname": "cdn.example.test", "wp_version": "6.1.9", **overrides}
    return json.dumps(value, separators=(",", ":"))


def loaded_output(state: str, runner: str = "php", runner_path: str = "/usr/bin/php", tail: str = "") -> str:
    return (f"runner={runner}\nrunner_path={runner_path}\n"
            "state: PHP Deprecated:  Optional parameter $x declared before required parameter in "
            "/home/site1/public_html/wp-content/plugins/old-plugin/old.php on line 12\n"
            "state: \n"
            f"state: OPSKIT-PLUGIN-DIR {PD}\n"
            "state: \n"
            f"state: OPSKIT-WP {state}\n"
            "plugin_dir_source=wordpress\n"
            f"plugin_dir={PD}\n"
            "plugin_dir_exists=1\n"
            "installed=1\n"
            "main_file=1\n"
            f"{tail}"
            "plugin_dir_writable=1\n")


def params(**overrides) -> PluginParams:
    return PluginParams(**{"root": "/home/site1/public_html", "site_url": "https://site1.example.test/",
                           "cdn_hostname": "cdn.inventory.test", "run_id": RUN, **overrides})


def parsed(**overrides) -> dict:
    """The value for an installed, active plugin read through PHP CLI, with overrides."""
    return {
        "plugin": PLUGIN, "plugin_dir": PD, "plugin_dir_source": "wordpress", "plugin_dir_writable": True,
        "installed": True, "folder": f"{PD}/cdn-enabler", "hidden_folder": f"{PD}/.cdn-enabler.opskit-{RUN}",
        "renamed_by": [], "runner": "php", "runner_path": "/usr/bin/php", "state_known": True, "state_error": None,
        "active": True, "network_active": False, "multisite": False, "wp_version": "6.1.9",
        "cdn_hostname": "cdn.example.test", "site_host": "site1.example.test",
        "should_disable": True, "reason": "active; its folder will be renamed", **overrides,
    }


def test_parse_active_plugin():
    value = WpPlugin().parse(loaded_output(state_json()), 0, params())
    assert value == parsed()
    assert WpPlugin().findings(value, params()) == []


def test_parse_network_active_plugin_falls_back_to_the_inventory_cdn_hostname():
    out = loaded_output(state_json(multisite=True, active=False, network_active=True, cdn_hostname=None))
    value = WpPlugin().parse(out, 0, params())
    assert value == parsed(multisite=True, active=False, network_active=True, cdn_hostname="cdn.inventory.test",
                           reason="network-active; its folder will be renamed")
    assert WpPlugin().findings(value, params()) == []


def test_parse_inactive_plugin():
    value = WpPlugin().parse(loaded_output(state_json(active=False)), 0, params(cdn_hostname=None))
    assert value == parsed(active=False, should_disable=False,
                           reason="installed but not active: renaming it would change nothing")
    assert [(f.cause, f.severity) for f in WpPlugin().findings(value, params())] == [("cdn-enabler-inactive", Severity.INFO)]


def test_parse_through_wp_cli_with_an_earlier_run_renamed_too():
    out = loaded_output(state_json(), runner="wp", runner_path="/home/site1/bin/wp",
                        tail="hidden=.cdn-enabler.opskit-20260101-000000-abcd\n")
    value = WpPlugin().parse(out, 0, params())
    assert value == parsed(runner="wp", runner_path="/home/site1/bin/wp", renamed_by=["20260101-000000-abcd"])


def test_parse_php_output_cannot_forge_the_shells_facts():
    # whatever WordPress prints stays behind "state: ": it is never a key=value line
    out = loaded_output(state_json(active=False)).replace("state: \n", "state: installed=1\nstate: plugin_dir=/evil\n", 1)
    out = out.replace("installed=1\nmain_file=1\n", "")
    value = WpPlugin().parse(out, 0, params())
    assert (value["installed"], value["plugin_dir"]) == (False, PD)


def test_parse_a_cut_state_line_is_an_unknown_state():
    out = loaded_output(state_json()[:40])
    value = WpPlugin().parse(out, 0, params())
    assert value == parsed(state_known=False, active=None, network_active=None, multisite=None, wp_version=None,
                           cdn_hostname="cdn.inventory.test",
                           state_error=f"php could not load WordPress: OPSKIT-PLUGIN-DIR {PD} / OPSKIT-WP {state_json()[:40]}",
                           reason="installed; activation state unknown, its folder will be renamed anyway")


def test_parse_without_any_runner():
    out = ("runner=none\nrunner_path=\nstate: \nplugin_dir_source=default\n"
           f"plugin_dir={PD}\nplugin_dir_exists=1\ninstalled=1\nmain_file=1\nplugin_dir_writable=1\n")
    value = WpPlugin().parse(out, 0, params())
    assert value == parsed(plugin_dir_source="default", runner="none", runner_path="", state_known=False,
                           state_error="neither WP-CLI nor PHP CLI is on the host: the plugin's activation state "
                                       "cannot be read or restored",
                           active=None, network_active=None, multisite=None, wp_version=None,
                           cdn_hostname="cdn.inventory.test",
                           reason="installed; activation state unknown, its folder will be renamed anyway")
    assert [f.cause for f in WpPlugin().findings(value, params())] == ["plugin-state-unknown"]


# -- decide() and plugin_findings(): the rules --------------------------------------------------
def situation(installed=True, renamed_by=(), state_known=True, active=False, network_active=False,
              writable=True) -> dict:
    return {"plugin": PLUGIN, "plugin_dir": PD, "folder": f"{PD}/cdn-enabler", "installed": installed,
            "renamed_by": list(renamed_by), "state_known": state_known,
            "active": active if state_known else None, "network_active": network_active if state_known else None,
            "state_error": None if state_known else "php could not load WordPress: boom",
            "plugin_dir_writable": writable}


RULES = [
    # (situation, should_disable, reason, [(cause, severity)])
    (situation(active=True), True, "active; its folder will be renamed", []),
    (situation(network_active=True), True, "network-active; its folder will be renamed", []),
    (situation(active=True, network_active=True), True, "network-active; its folder will be renamed", []),
    (situation(), False, "installed but not active: renaming it would change nothing",
     [("cdn-enabler-inactive", Severity.INFO)]),
    (situation(state_known=False), True, "installed; activation state unknown, its folder will be renamed anyway",
     [("plugin-state-unknown", Severity.WARNING)]),
    (situation(installed=False), False, f"not installed in {PD}", [("cdn-enabler-not-installed", Severity.INFO)]),
    # WordPress still lists it active, but the folder is gone: nothing to rename
    (situation(installed=False, active=True), False, f"not installed in {PD}",
     [("cdn-enabler-not-installed", Severity.INFO)]),
    (situation(installed=False, state_known=False), False, f"not installed in {PD}",
     [("cdn-enabler-not-installed", Severity.INFO), ("plugin-state-unknown", Severity.WARNING)]),
    (situation(installed=False, renamed_by=["r1"]), False, "already renamed away by opskit run r1",
     [("cdn-enabler-already-disabled", Severity.WARNING)]),
    (situation(installed=False, renamed_by=["r1", "r2"], active=True), False, "already renamed away by opskit run r1, r2",
     [("cdn-enabler-already-disabled", Severity.WARNING)]),
    # a folder back in place next to an old hidden copy: the folder in place decides
    (situation(renamed_by=["r1"], active=True), True, "active; its folder will be renamed", []),
    # not writable only matters when there is a folder to rename
    (situation(active=True, writable=False), True, "active; its folder will be renamed",
     [("plugins-dir-not-writable", Severity.ERROR)]),
    (situation(state_known=False, writable=False), True,
     "installed; activation state unknown, its folder will be renamed anyway",
     [("plugin-state-unknown", Severity.WARNING), ("plugins-dir-not-writable", Severity.ERROR)]),
    (situation(installed=False, writable=False), False, f"not installed in {PD}",
     [("cdn-enabler-not-installed", Severity.INFO)]),
]


@pytest.mark.parametrize("value, should, reason, findings", RULES)
def test_decide_and_findings(value, should, reason, findings):
    assert decide(value) == (should, reason)
    assert [(f.cause, f.severity) for f in plugin_findings(value)] == findings


def test_findings_evidence_and_advice():
    renamed = plugin_findings(situation(installed=False, renamed_by=["r1", "r2"]))[0]
    assert renamed.summary == f"{PLUGIN} is already renamed away by opskit run r1, r2; nothing changed"
    assert renamed.evidence == (f"{PD}/.cdn-enabler.opskit-r1", f"{PD}/.cdn-enabler.opskit-r2")
    assert "`opskit rollback r1`" in renamed.advice
    assert plugin_findings(situation(installed=False))[0].evidence == (f"no {PD}/cdn-enabler",)
    unknown = plugin_findings(situation(state_known=False))[0]
    assert unknown.evidence == ("php could not load WordPress: boom",)
    blocked = plugin_findings(situation(active=True, writable=False))[0]
    assert blocked.evidence == (PD,) and PD in blocked.summary


# -- the script, run locally on small trees ----------------------------------------------------------
class SameContext:
    """ctx.path() as the probe needs it: the roots here are absolute already."""

    def path(self, path: str) -> str:
        return path


def run_plugin_probe(tmp_path: Path, plugin_params: PluginParams) -> tuple[str, dict]:
    probe = WpPlugin()
    proc = subprocess.run(["sh", "-c", probe.script(plugin_params, SameContext())], capture_output=True, text=True,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LC_ALL": "C"})
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*")), "a path was run as a command"
    return proc.stdout, probe.parse(proc.stdout, proc.returncode, plugin_params)


def fake_tree(root: Path, config: str = "") -> Path:
    plugins = root / "wp-content" / "plugins"
    plugins.mkdir(parents=True)
    (root / "wp-load.php").write_text("<?php\n")
    (root / "wp-config.php").write_text("<?php\ndefine('DB_NAME', 'wordpress');\n" + config)
    return plugins


@pytest.mark.parametrize("name", ["it's \"$(touch PWNED)\"", "`touch PWNED`; x", "tab\there", "back\\tslash\\c"])
def test_script_with_a_hostile_root(tmp_path, name):
    root = tmp_path / name
    plugins = fake_tree(root)
    (plugins / "cdn-enabler").mkdir()
    (plugins / f".cdn-enabler.opskit-{RUN}").mkdir()
    _, value = run_plugin_probe(tmp_path, params(root=str(root)))
    assert (value["plugin_dir"], value["plugin_dir_source"], value["installed"], value["renamed_by"]) == \
        (str(plugins), "default", True, [RUN])


def test_script_takes_the_first_wp_plugin_dir_define_like_php(tmp_path):
    # PHP (if any) cannot load this fake WordPress, so the folder comes from wp-config.php via sed
    first, second = tmp_path / "first", tmp_path / "second"
    fake_tree(tmp_path / "wp", f"define('WP_PLUGIN_DIR', '{first}');\ndefine('WP_PLUGIN_DIR', '{second}');\n")
    first.mkdir()
    second.mkdir()
    _, value = run_plugin_probe(tmp_path, params(root=str(tmp_path / "wp")))
    assert (value["plugin_dir"], value["plugin_dir_source"]) == (str(first), "wp-config")


# -- activation_undo, run inside a real guard ------------------------------------------------------
FAKE_ACT_RUNNER = """#!/bin/sh
# stands in for php: prints what REACTIVATE_PHP would, chosen by $FAKE_ACT, and records its env
printf '%s|%s|%s|%s\\n' "$OPSKIT_PLUGIN" "$OPSKIT_NETWORK" "$OPSKIT_WP_HOST" "$(pwd)" >> "$HOME/act.log"
echo "PHP Notice:  something"
case $FAKE_ACT in
  garbage) printf 'PHP Fatal error: boom\\nStack trace:\\n#0 {main}' ;;
  *) printf '\\nOPSKIT-ACT %s\\n' "$FAKE_ACT" ;;
esac
"""


def activation_record(box, state: str) -> dict:
    root = box.root / "public html"
    root.mkdir(exist_ok=True)
    runner = box.bin / "fake php"
    runner.write_text(FAKE_ACT_RUNNER)
    runner.chmod(0o755)
    return {"plugin": PLUGIN, "root": str(root), "site_host": "site1.example.test", "was_active": state == "active",
            "was_network_active": state == "network-active", "runner": "php", "runner_path": str(runner),
            "state": state}


def undo_activation(box, record: dict, act: str | None = None):
    if act is not None:
        box.extra_env["FAKE_ACT"] = act
    box.install(RUN, guard_script(RUN, [activation_undo(record)]))
    proc = box.guard(RUN, "now")
    assert proc.returncode == 0, proc.stderr
    return parse_output(proc.stdout)


@pytest.mark.parametrize("state, message", [
    ("unknown", f"activation state of {PLUGIN} was not recorded (no WP-CLI/PHP); check wp-admin"),
    ("inactive", f"{PLUGIN} was inactive before; nothing to restore"),
])
def test_activation_undo_with_nothing_to_restore(box, state, message):
    report = undo_activation(box, activation_record(box, state))
    assert report.steps == {0: ("not_applied", message)}
    assert report.state == "rolled_back"
    assert not (box.home / "act.log").exists()          # no PHP was run


@pytest.mark.parametrize("state, act, outcome, message, final", [
    ("active", "activated", "undone",
     f"re-activated {PLUGIN} on the site: WordPress had dropped it while its folder was away", "rolled_back"),
    ("network-active", "activated", "undone",
     f"re-activated {PLUGIN} network-wide: WordPress had dropped it while its folder was away", "rolled_back"),
    ("active", "already", "not_applied", f"{PLUGIN} is still active on the site", "rolled_back"),
    ("network-active", "already", "not_applied", f"{PLUGIN} is still active network-wide", "rolled_back"),
    ("active", "missing", "failed", f"cannot re-activate {PLUGIN}: its main file is missing", "failed"),
    ("active", "garbage", "failed", f"could not check or restore {PLUGIN}: Stack trace: #0 {{main}}", "failed"),
])
def test_activation_undo_reactivates(box, state, act, outcome, message, final):
    record = activation_record(box, state)
    report = undo_activation(box, record, act)
    assert report.steps == {0: (outcome, message)}
    assert report.state == final
    network = "1" if state == "network-active" else "0"
    assert (box.home / "act.log").read_text() == f"{PLUGIN}|{network}|site1.example.test|{record['root']}\n"


# -- count_cdn_urls --------------------------------------------------------------------------------------
def test_count_cdn_urls_on_the_lab_pages():
    # GET / of the lab's WordPress with CDN Enabler rewriting to cdn.example.test, then with its folder renamed
    assert count_cdn_urls((LAB / "home-with-cdn-enabler.html").read_text(), "cdn.example.test") == 5
    assert count_cdn_urls((LAB / "home-without-cdn-enabler.html").read_text(), "cdn.example.test") == 0


@pytest.mark.parametrize("body, want", [
    ("<script src='https://cdn.example.test/wp-includes/js/a.js'></script>", 1),
    ('<link href="http://cdn.example.test/style.css">', 1),
    ("<img src=\"//cdn.example.test/a.png\">", 1),
    ('"concatemoji":"https:\\/\\/cdn.example.test\\/wp-includes\\/js\\/wp-emoji.js"', 1),
    ('{"u":"\\/\\/cdn.example.test\\/a.js"}', 1),
    ("https://cdn.example.test:8443/a.js", 1),
    ("https://cdn.example.test?ver=6.1", 1),
    ("<link rel='dns-prefetch' href='//cdn.example.test' />", 1),
    ("url(https://cdn.example.test/a.png) url(\"https://cdn.example.test/b.png\")", 2),
    ("srcset=\"https://cdn.example.test/a.jpg 1x, https://cdn.example.test/b.jpg 2x\"", 2),
    # look-alikes: another host, or the name in a path or in a longer name
    ("https://cdn.example.test.evil.com/a.js", 0),
    ("https://notcdn.example.test/a.js", 0),
    ("https://cdn.example.testing/a.js", 0),
    ("https://cdn-example-test/a.js https://cdnxexamplextest/a.js", 0),
    ("https://site1.example.test/cdn.example.test/a.js", 0),
    ("cdn.example.test/a.js", 0),
    ("https:\\/\\/cdn.example.test.evil.com\\/a.js", 0),
    ("", 0),
])
def test_count_cdn_urls(body, want):
    assert count_cdn_urls(body, "cdn.example.test") == want


@pytest.mark.parametrize("body", ["<link rel=dns-prefetch href=//cdn.example.test>", "https://cdn.example.test"])
def test_count_cdn_urls_at_the_end_of_an_unquoted_url(body):
    assert count_cdn_urls(body, "cdn.example.test") == 1


@pytest.mark.parametrize("body, host", [("https://cdn.example.test/a.js", "CDN.example.test"),
                                        ("HTTPS://CDN.EXAMPLE.TEST/a.js", "cdn.example.test")])
def test_count_cdn_urls_ignores_case_in_the_host(body, host):
    assert count_cdn_urls(body, host) == 1
