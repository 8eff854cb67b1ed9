"""Capture the real output of opskit's probes (opskit/probes/system.py, opskit/probes/wordpress.py)
for the parser tests.

    .venv/bin/python tests/captures/refresh_probes.py [OUTDIR]   (default tests/captures/probes)

Each situation runs the probe's own script, exactly as opskit sends it, with
this machine's /bin/sh, and writes

    OUTDIR/<probe>/<situation>.txt    the raw stdout, nothing added
    OUTDIR/<probe>/<situation>.json   {"exit_status", "params", "want"} (+ "findings": causes, for wp_plugin)

"want" never comes from the parser under test: it is worked out independently
(Python reading /etc/os-release, os.uname(), running `php -v` itself, looking at
the files it created, ...). WordPress trees are built under /tmp/opskit-capture
(fixed, so the captures are stable) from the Debian `wordpress` package's
version.php, and removed afterwards. The README is rewritten with the package
versions. No network, no SSH.

wp_plugin runs against fake trees (a wp-config.php, an empty wp-load.php and plugin
folders, no real WordPress): the host's PHP CLI is found as the runner but cannot
load WordPress, which is the "activation state unknown" situation. Its "want" is
written out by hand per situation; only state_error's tail is taken from the
capture: by the documented rule it is the runner's own last three non-blank lines.
The stub-wordpress-* situations load a stub wp-load.php (STUB_WP_LOAD) instead, so
PHP really runs opskit's state snippet on options taken from the lab's captures.
"plugin-dir-not-writable" runs the script as `nobody` (setpriv) when this runs as
root, since root may write anywhere.
"""

from __future__ import annotations

import json
import os
import platform
import posixpath
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from opskit.probes.system import COMMON_ROOTS, Apache, Nginx, Php, System, WordPress, WordPressParams  # noqa: E402
from opskit.probes.wordpress import PluginParams, WpPlugin  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "probes"
BASE = Path("/tmp/opskit-capture")
HOME = BASE / "home" / "site1"
EMPTY_PATH = str(BASE / "empty-bin")            # no programs at all (the probes append /usr/sbin etc.)
STD_PATH = "/usr/bin:/bin"
PACKAGES = ("base-files", "dash", "coreutils", "procps", "php8.2-cli", "nginx", "nginx-light", "apache2-bin", "wordpress")
WP_VERSION_PHP = Path("/usr/share/wordpress/wp-includes/version.php")


class FakeContext:
    """Just enough of opskit.steps.Context for WordPress.script: path() as Session.path does it."""

    def __init__(self, home: str):
        self.home = home

    def path(self, path: str) -> str:
        if path == "~":
            return self.home
        if path.startswith("~/"):
            return posixpath.join(self.home, path[2:])
        return path if path.startswith("/") else posixpath.join(self.home, path)


CTX = FakeContext(str(HOME))


def run(script: str, env: dict[str, str]) -> tuple[str, int]:
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, cwd="/", timeout=60)
    return proc.stdout, proc.returncode


def first_line(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env={"PATH": STD_PATH + ":/usr/sbin:/sbin", "LC_ALL": "C"})
    return (proc.stdout + proc.stderr).splitlines()[0].strip()


def os_pretty_name() -> str:
    return platform.freedesktop_os_release()["PRETTY_NAME"]


def loadavg() -> str:
    """The three load averages (the rest of /proc/loadavg changes with every new process)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- situations --------------------------------------------------------------------------
def system_situations():
    env = {"HOME": str(HOME), "PATH": STD_PATH, "LC_ALL": "C"}
    script = System().script(None, CTX)
    for _ in range(20):   # the load average moves every few seconds: keep a capture that matches a reading
        before = loadavg()
        out, status = run(script, env)
        if loadavg() == before:
            break
    else:
        raise SystemExit("the load average kept changing during the capture; try again")
    yield "present", out, status, {}, {
        "os": os_pretty_name(), "kernel": os.uname().release, "user": pwd.getpwuid(os.getuid()).pw_name,
        "home": str(HOME), "cores": os.sysconf("SC_NPROCESSORS_ONLN"), "load1": float(before.split()[0]),
    }
    out, status = run(script, {"PATH": STD_PATH, "LC_ALL": "C"})          # no HOME in the environment
    assert "home=\n" in out
    yield "no-home", out, status, {}, None   # want filled below from the same oracles
    odd_home = str(BASE / "home" / "back\\tslash\\c end")     # dash's echo would rewrite \\t and stop at \\c
    out, status = run(script, {"HOME": odd_home, "PATH": STD_PATH, "LC_ALL": "C"})
    yield "home-with-backslashes", out, status, {}, {"home": odd_home}   # the rest filled below, like no-home
    out, status = run(script, {"HOME": str(HOME), "PATH": EMPTY_PATH})    # uname, id, getconf, cat all missing
    yield "no-tools", out, status, {}, {"os": os_pretty_name(), "kernel": None, "user": None, "home": str(HOME),
                                        "cores": None, "load1": None}


def binary_situations(probe, oracle_argv):
    script = probe.script(None, CTX)
    out, status = run(script, {"HOME": str(HOME), "PATH": STD_PATH, "LC_ALL": "C"})
    found = None
    for candidate in probe.candidates:
        found = shutil.which(candidate, path=STD_PATH + ":/usr/sbin:/sbin:/usr/local/sbin")
        if found:
            break
    if found:
        yield "present", out, status, {}, {"present": True, "path": found, "version": first_line([found, *oracle_argv])}
    out, status = run(script, {"HOME": str(HOME), "PATH": EMPTY_PATH})
    if out:   # installed under /usr/sbin (the probe always looks there): absence cannot be captured here
        out, status = "", 0
        print(f"{probe.name}: absent built as empty output (the binary is under /usr/sbin here)", file=sys.stderr)
    yield "absent", out, status, {}, {"present": False, "path": None, "version": None}


def wp_tree(root: Path, config_up: bool = False, version: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wp-load.php").write_text("<?php\n")
    config = (root.parent if config_up else root) / "wp-config.php"
    config.write_text("<?php\ndefine('DB_NAME', 'wordpress');\n")
    if version:
        (root / "wp-includes").mkdir(exist_ok=True)
        shutil.copy(WP_VERSION_PHP, root / "wp-includes" / "version.php")


def wp_version() -> str:
    return re.search(r"^\$wp_version = '([^']+)';", WP_VERSION_PHP.read_text(), re.M).group(1)


def wordpress_situations():
    probe = WordPress()
    env = {"HOME": str(HOME), "PATH": STD_PATH, "LC_ALL": "C"}

    def capture(name, root_param, make, want):
        reset()
        make()
        params = WordPressParams(root=root_param)
        out, status = run(probe.script(params, CTX), env)
        searched = probe.candidates(params, CTX)
        return name, out, status, params.model_dump(), {**want, "searched": want.get("searched", searched)}

    h = str(HOME)
    yield capture("root-given", "~/public_html", lambda: wp_tree(HOME / "public_html"),
                  {"found": True, "root": f"{h}/public_html", "config": f"{h}/public_html/wp-config.php",
                   "version": wp_version()})
    yield capture("config-one-level-up", "~/www/wordpress", lambda: wp_tree(HOME / "www" / "wordpress", config_up=True),
                  {"found": True, "root": f"{h}/www/wordpress", "config": f"{h}/www/wp-config.php",
                   "version": wp_version()})
    yield capture("searched-common-roots", None, lambda: wp_tree(HOME / "htdocs"),
                  {"found": True, "root": f"{h}/htdocs", "config": f"{h}/htdocs/wp-config.php", "version": wp_version(),
                   "searched": [CTX.path(c) for c in COMMON_ROOTS[:3]]})
    yield capture("no-version-file", "~/public_html", lambda: wp_tree(HOME / "public_html", version=False),
                  {"found": True, "root": f"{h}/public_html", "config": f"{h}/public_html/wp-config.php", "version": None})
    yield capture("path-with-spaces-and-quotes", "~/client's site/public html",
                  lambda: wp_tree(HOME / "client's site" / "public html"),
                  {"found": True, "root": f"{h}/client's site/public html",
                   "config": f"{h}/client's site/public html/wp-config.php", "version": wp_version()})
    odd = "~/back\\tslash\\c/public_html"                  # dash's echo would rewrite \\t and stop at \\c
    yield capture("path-with-backslashes", odd, lambda: wp_tree(Path(CTX.path(odd))),
                  {"found": True, "root": CTX.path(odd), "config": CTX.path(odd) + "/wp-config.php",
                   "version": wp_version()})
    if any(Path(CTX.path(c), "wp-config.php").exists() for c in COMMON_ROOTS):
        raise SystemExit("a common root on this machine holds wp-config.php: cannot capture 'absent'")
    yield capture("absent", None, lambda: HOME.mkdir(parents=True, exist_ok=True),
                  {"found": False, "root": None, "config": None, "version": None})
    yield capture("absent-root-given", "~/public_html", lambda: (HOME / "public_html").mkdir(parents=True),
                  {"found": False, "root": None, "config": None, "version": None})


class SameContext:
    """The wp_plugin captures give absolute roots: path() returns them unchanged."""

    def path(self, path: str) -> str:
        return path


def wp_plugin_situations():
    probe = WpPlugin()
    if shutil.which("wp", path=f"{STD_PATH}:/usr/local/bin"):
        raise SystemExit("WP-CLI is installed here: the wp_plugin captures expect PHP CLI as the runner")
    php = shutil.which("php", path=STD_PATH)
    if not php:
        raise SystemExit("no PHP CLI on this machine: the wp_plugin captures need one")
    root = HOME / "public_html"
    default_dir = f"{root}/wp-content/plugins"
    run_id, earlier = "20260102-000000-beef", "20260101-000000-abcd"
    base_params = {"root": str(root), "site_url": "https://site1.example.test/", "cdn_hostname": "cdn.example.test",
                   "run_id": run_id}

    def tree(config_extra: str = "") -> None:
        (root / "wp-content" / "plugins" / "akismet").mkdir(parents=True)
        (root / "wp-load.php").write_text("<?php\n")
        (root / "wp-config.php").write_text("<?php\ndefine('DB_NAME', 'wordpress');\n" + config_extra)

    def plugin(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "cdn-enabler.php").write_text("<?php\n/* Plugin Name: CDN Enabler */\n")

    def capture(name, make, want, as_nobody=False, **params):
        reset()
        make()
        params = PluginParams(**{**base_params, **params})
        script = probe.script(params, SameContext())
        env = {"HOME": str(HOME), "PATH": STD_PATH, "LC_ALL": "C"}
        if as_nobody:
            if os.geteuid() == 0:
                script = "exec setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c " + shlex.quote(script)
            else:
                Path(want["plugin_dir"]).chmod(0o555)
        out, status = run(script, env)
        if as_nobody and os.geteuid() != 0:
            Path(want["plugin_dir"]).chmod(0o755)
        state = [line[7:] for line in out.splitlines() if line.startswith("state: ")]
        assert "OPSKIT-WP " not in out, "PHP loaded a fake WordPress?"
        # the first PHP fatal/parse error line, else the last three lines
        fatal = [line.strip() for line in state if "Fatal error" in line or "Parse error" in line]
        tail = fatal[0] if fatal else " / ".join(line for line in state[-3:] if line.strip())
        slug_dir = want["plugin_dir"]
        full = {
            "plugin": "cdn-enabler/cdn-enabler.php", "plugin_dir": None, "plugin_dir_source": None,
            "plugin_dir_writable": True, "installed": True,
            "folder": f"{slug_dir}/cdn-enabler", "hidden_folder": f"{slug_dir}/.cdn-enabler.opskit-{params.run_id}",
            "renamed_by": [], "runner": "php", "runner_path": php, "state_known": False,
            "state_error": "php could not load WordPress" + (f": {tail}" if tail else ""),
            "active": None, "network_active": None, "multisite": None, "wp_version": None,
            "cdn_hostname": params.cdn_hostname, "site_host": "site1.example.test",
            "should_disable": True, "reason": "installed; activation state unknown, its folder will be renamed anyway",
            **want,
        }
        findings = full.pop("findings")
        return name, out, status, params.model_dump(), full, findings

    yield capture("installed-state-unknown", lambda: (tree(), plugin(root / "wp-content/plugins/cdn-enabler")),
                  {"plugin_dir": default_dir, "plugin_dir_source": "default", "findings": ["plugin-state-unknown"]})
    yield capture("not-installed", tree,
                  {"plugin_dir": default_dir, "plugin_dir_source": "default", "installed": False,
                   "should_disable": False, "reason": f"not installed in {default_dir}",
                   "findings": ["cdn-enabler-not-installed", "plugin-state-unknown"]}, cdn_hostname=None)
    yield capture("renamed-by-an-earlier-run",
                  lambda: (tree(), plugin(root / f"wp-content/plugins/.cdn-enabler.opskit-{earlier}")),
                  {"plugin_dir": default_dir, "plugin_dir_source": "default", "installed": False,
                   "renamed_by": [earlier], "should_disable": False,
                   "reason": f"already renamed away by opskit run {earlier}",
                   "findings": ["cdn-enabler-already-disabled", "plugin-state-unknown"]})
    shared = f"{HOME}/shared/plugins"
    yield capture("wp-plugin-dir-in-wp-config",
                  lambda: (tree(f"define( 'WP_PLUGIN_DIR', '{shared}' );\n"), plugin(Path(shared) / "cdn-enabler")),
                  {"plugin_dir": shared, "plugin_dir_source": "wp-config", "findings": ["plugin-state-unknown"]})
    yield capture("plugin-dir-not-writable", lambda: (tree(), plugin(root / "wp-content/plugins/cdn-enabler")),
                  {"plugin_dir": default_dir, "plugin_dir_source": "default", "plugin_dir_writable": False,
                   "findings": ["plugin-state-unknown", "plugins-dir-not-writable"]},
                  as_nobody=True)


# A stand-in for wp-load.php with just the WordPress functions PLUGIN_STATE_PHP calls; the
# options come from stub-options.json, filled from the lab's real captures.
STUB_WP_LOAD = r"""<?php
define('ABSPATH', __DIR__ . '/');
define('WP_CONTENT_DIR', __DIR__ . '/wp-content');
define('WP_PLUGIN_DIR', WP_CONTENT_DIR . '/plugins');
$GLOBALS['opskit_stub'] = json_decode(file_get_contents(__DIR__ . '/stub-options.json'), true);
function get_option($name, $default = false) { return $GLOBALS['opskit_stub']['options'][$name] ?? $default; }
function get_site_option($name, $default = false) { return $GLOBALS['opskit_stub']['site_options'][$name] ?? $default; }
function is_multisite() { return $GLOBALS['opskit_stub']['multisite']; }
function get_bloginfo($what) { return $what === 'version' ? '6.1.9' : ''; }
echo "page output hidden by ob_start\n";
"""
LAB_CAPTURES = Path(__file__).resolve().parent / "wordpress-6.1-debian12"


def wp_plugin_stub_situations():
    """PLUGIN_STATE_PHP really run by PHP CLI, against a stub wp-load.php."""
    probe = WpPlugin()
    php = shutil.which("php", path=STD_PATH)
    root = HOME / "public_html"
    plugins = f"{root}/wp-content/plugins"
    lab = {name: json.loads((LAB_CAPTURES / name).read_text()) for name in
           ("active_plugins.json", "active_plugins-after-admin-page.json", "multisite-active_sitewide_plugins.json")}
    multisite_site_plugins = []   # multisite-active_plugins.var_export.txt: array ( )

    def capture(name, options, want, findings, multisite=False, site_options=None, **params):
        reset()
        (root / "wp-content" / "plugins" / "cdn-enabler").mkdir(parents=True)
        (root / "wp-content" / "plugins" / "cdn-enabler" / "cdn-enabler.php").write_text("<?php\n")
        (root / "wp-config.php").write_text("<?php\ndefine('DB_NAME', 'wordpress');\n")
        (root / "wp-load.php").write_text(STUB_WP_LOAD)
        (root / "stub-options.json").write_text(json.dumps({"options": options, "site_options": site_options or {},
                                                            "multisite": multisite}))
        params = PluginParams(root=str(root), site_url="https://site1.example.test/", run_id="20260102-000000-beef",
                              **params)
        out, status = run(probe.script(params, SameContext()), {"HOME": str(HOME), "PATH": STD_PATH, "LC_ALL": "C"})
        full = {
            "plugin": "cdn-enabler/cdn-enabler.php", "plugin_dir": plugins, "plugin_dir_source": "wordpress",
            "plugin_dir_writable": True, "installed": True, "folder": f"{plugins}/cdn-enabler",
            "hidden_folder": f"{plugins}/.cdn-enabler.opskit-20260102-000000-beef", "renamed_by": [],
            "runner": "php", "runner_path": php, "state_known": True, "state_error": None,
            "active": False, "network_active": False, "multisite": multisite, "wp_version": "6.1.9",
            "cdn_hostname": "cdn.example.test", "site_host": "site1.example.test", **want,
        }
        return name, out, status, params.model_dump(), full, findings

    yield capture("stub-wordpress-active", {"active_plugins": lab["active_plugins.json"],
                                            "cdn_enabler": {"cdn_hostname": "cdn.example.test"}},
                  {"active": True, "should_disable": True, "reason": "active; its folder will be renamed"}, [])
    yield capture("stub-wordpress-network-active", {"active_plugins": multisite_site_plugins},
                  {"network_active": True, "should_disable": True, "reason": "network-active; its folder will be renamed"},
                  [], multisite=True, cdn_hostname="cdn.example.test",
                  site_options={"active_sitewide_plugins": lab["multisite-active_sitewide_plugins.json"]})
    yield capture("stub-wordpress-inactive", {"active_plugins": lab["active_plugins-after-admin-page.json"]},
                  {"cdn_hostname": None, "should_disable": False,
                   "reason": "installed but not active: renaming it would change nothing"}, ["cdn-enabler-inactive"])


def reset() -> None:
    shutil.rmtree(BASE, ignore_errors=True)
    HOME.mkdir(parents=True)
    Path(EMPTY_PATH).mkdir()


def versions() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                         capture_output=True, text=True).stdout
    return ", ".join(line for line in out.splitlines() if line.split()[1:])


def main(out_dir: Path) -> None:
    reset()
    written: list[str] = []
    try:
        situations = {
            "system": list(system_situations()),
            "php": list(binary_situations(Php(), ["-v"])),
            "nginx": list(binary_situations(Nginx(), ["-v"])),
            "apache": list(binary_situations(Apache(), ["-v"])),
            "wordpress": list(wordpress_situations()),
            "wp_plugin": list(wp_plugin_situations()) + list(wp_plugin_stub_situations()),
        }
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    present_system = situations["system"][0][4]
    for probe, cases in situations.items():
        folder = out_dir / probe
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, output, status, params, want, *findings in cases:
            if probe == "system" and name == "no-home":
                want = {**present_system, "home": None}
                want["load1"] = _load_from(output)
            if probe == "system" and name == "home-with-backslashes":
                want = {**present_system, **want}
                want["load1"] = _load_from(output)
            (folder / f"{name}.txt").write_text(output)
            spec = {"exit_status": status, "params": params, "want": want}
            if findings:   # the causes of the probe's findings, in order
                spec["findings"] = findings[0]
            (folder / f"{name}.json").write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")
            written.append(f"{probe}/{name}")
    (out_dir / "README.md").write_text(
        f"Probe outputs captured on Debian 12 (bookworm), {versions()}, by tests/captures/refresh_probes.py "
        "(each probe's own script run with /bin/sh = dash; no network, no SSH).\n\n"
        "- <probe>/<situation>.txt: the raw stdout, nothing added; <situation>.json: exit status, parameters and the "
        "expected parse, worked out independently of the parser (see the script's docstring).\n"
        "- WordPress trees were built under /tmp/opskit-capture/home/site1 from the `wordpress` package's version.php.\n"
        "- system/home-with-backslashes and wordpress/path-with-backslashes: paths holding '\\t' and '\\c', "
        "which dash's echo would rewrite (the probes print paths with printf).\n"
        "- system/no-home: run without HOME; system/no-tools: run with an empty PATH, so uname, id, getconf and cat "
        "are missing (os-release is read by the shell itself).\n"
        "- php/absent is a real capture (PATH without /usr/bin; the probe adds only the sbin folders). "
        "nginx/absent and apache/absent cannot be captured on this machine, because the probe always adds /usr/sbin "
        "where both are installed: they are built as empty output, which is what the script prints when no "
        "candidate is found (the same as php/absent).\n"
        "- wp_plugin/*: fake WordPress trees under /tmp/opskit-capture/home/site1 (wp-config.php, an empty "
        "wp-load.php, plugin folders; no real WordPress): the runner found is PHP CLI and it cannot load WordPress, "
        "so the activation state is unknown. plugin-dir-not-writable was run as `nobody` (setpriv). "
        "wp_plugin/stub-wordpress-*: the same script with a stub wp-load.php defining only the functions the "
        "state snippet calls (get_option, get_site_option, is_multisite, get_bloginfo), its options taken from "
        "the lab's real captures in tests/captures/wordpress-6.1-debian12: so PHP really runs opskit's snippet.\n"
        f"\nSituations: {', '.join(written)}.\n"
    )
    print(f"wrote {len(written)} captures to {out_dir}")


def _load_from(output: str) -> float | None:
    """The no-home capture's load average (read by the shell at that moment)."""
    match = re.search(r"^loadavg=(\S+)", output, re.M)
    return float(match.group(1)) if match else None


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
