"""Capture the real output of diagnose's own probes (firewall, upstream_socket, app_errors, wp_site).

    .venv/bin/python tests/captures/refresh_diagnose_probes.py [OUTDIR]    (as root; default tests/captures/probes)

It re-runs itself in a private network namespace (`unshare --net`), so the firewall rules it
writes (iptables-nft and nftables, Debian 12's iptables 1.8.9 and nftables 1.0.6) and the
sockets it listens on exist only there: nothing of the machine's is touched or shown. Each
situation is set up for real (rules added with the real tools, a unix socket and a TCP port
listened on by this process, PHP fatal errors written by the real php-cli 8.2 into its
error_log and into a WordPress-like tree's wp-content/debug.log, plugin folders), then each
probe's own script runs exactly as opskit sends it, with /bin/sh (dash), as root or as
`nobody` (the unreadable cases). It writes

    OUTDIR/<probe>/<situation>.txt    the raw stdout
    OUTDIR/<probe>/<situation>.json   {"exit_status", "params", "want"}

"want" is the parser's value at capture time, written only after `expect` checked its key
fields against what the script itself set up. BASE is deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from opskit.probes.app_errors import AppErrors  # noqa: E402
from opskit.probes.firewall import FirewallRules  # noqa: E402
from opskit.probes.upstream_socket import UpstreamSocket  # noqa: E402
from opskit.probes.wp_site import WpSite  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "probes"
BASE = Path("/tmp/opskit-capture/diagnose-probes")
PHP = "/usr/bin/php8.2"


class Ctx:
    run_id = "20261201-000000-beef"

    def path(self, path: str) -> str:
        return path


def run_probe(probe, params: dict, as_nobody: bool = False) -> tuple[str, int, dict]:
    model = probe.Params(**params)
    script = probe.script(model, Ctx())
    argv = ["/bin/sh", "-c", script]
    if as_nobody:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    env = {"HOME": "/nonexistent" if as_nobody else "/root", "PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/", timeout=60)
    return proc.stdout, proc.returncode, probe.parse(proc.stdout, proc.returncode, model)


def save(out: Path, probe: str, situation: str, text: str, status: int, params: dict, value) -> None:
    folder = out / probe
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{situation}.txt").write_text(text)
    (folder / f"{situation}.json").write_text(json.dumps({"exit_status": status, "params": params, "want": value},
                                                         indent=1) + "\n")
    print(f"{probe}/{situation}")


def sh(*commands: str) -> None:
    for command in commands:
        subprocess.run(["sh", "-c", command], check=True, capture_output=True)


def firewall(out: Path) -> None:
    sh("iptables -N f2b-nginx-limit-req",
       "iptables -A INPUT -i lo -j ACCEPT",
       "iptables -A INPUT -s 162.158.0.0/15 -p tcp -m multiport --dports 80,443 -j DROP",
       "iptables -A INPUT -p tcp --dport 443 -m connlimit --connlimit-above 20 -j REJECT --reject-with tcp-reset",
       "iptables -A INPUT -p tcp -m multiport --dports 80,443 -j f2b-nginx-limit-req",
       "iptables -A f2b-nginx-limit-req -s 104.16.5.9/32 -j REJECT",
       "iptables -A f2b-nginx-limit-req -j RETURN",
       "ip6tables -A INPUT -s 2606:4700::/32 -p tcp --dport 443 -j DROP",
       "nft add table inet filter",
       "nft add chain inet filter input '{ type filter hook input priority 0; policy accept; }'",
       "nft add set inet filter blocked '{ type ipv4_addr; flags interval; }'",
       "nft add element inet filter blocked '{ 172.64.0.0/13, 198.51.100.4 }'",
       "nft add rule inet filter input ip saddr @blocked tcp dport '{ 80, 443 }' drop",
       "nft add rule inet filter input ip saddr 127.0.80.2 tcp dport 8080 drop",
       "nft add rule inet filter input ip saddr 192.0.2.1 accept")
    text, status, value = run_probe(FirewallRules(), {})
    sources = {s for b in value["blocks"] for s in b["sources"]}
    assert {"162.158.0.0/15", "104.16.5.9/32", "2606:4700::/32", "172.64.0.0/13", "127.0.80.2"} <= sources, sources
    assert not any("192.0.2.1" in b["sources"] for b in value["blocks"]), "an accept rule counted as a block"
    # the iptables-nft tables show in nft too: read once, from iptables-save
    assert sum(1 for b in value["blocks"] if "162.158.0.0/15" in b["sources"]) == 1, value["blocks"]
    assert any(b["action"] == "rate-limit" for b in value["blocks"])
    assert sum(1 for b in value["blocks"] if "2606:4700::/32" in b["sources"]) == 1, value["blocks"]
    save(out, "firewall", "iptables-and-nft-as-root", text, status, {}, value)
    text, status, value = run_probe(FirewallRules(), {}, as_nobody=True)
    assert not value["blocks"] and {"iptables-save", "nft list ruleset"} <= set(value["unreadable"]), value
    save(out, "firewall", "not-root", text, status, {}, value)
    sh("nft flush ruleset")
    text, status, value = run_probe(FirewallRules(), {})
    assert not value["blocks"] and "nft list ruleset" in value["read"], value
    save(out, "firewall", "no-rules", text, status, {}, value)


def upstream(out: Path) -> None:
    path = BASE / "run" / "php-fpm.sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    params = {"upstream": f"unix:{path}"}
    text, status, value = run_probe(UpstreamSocket(), params)
    assert value["exists"] is False and value["listening"] is False, value
    save(out, "upstream_socket", "unix-socket-missing", text, status, params, value)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    text, status, value = run_probe(UpstreamSocket(), params)   # bound, not listening: a stale socket file
    assert value["is_socket"] is True and value["listening"] is False, value
    save(out, "upstream_socket", "unix-socket-stale", text, status, params, value)
    server.listen(8)
    text, status, value = run_probe(UpstreamSocket(), params)
    assert value["listening"] is True, value
    save(out, "upstream_socket", "unix-socket-listening", text, status, params, value)
    server.close()
    sh("ip link set lo up")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 9000))
    tcp.listen(8)
    params = {"upstream": "127.0.0.1:9000"}
    text, status, value = run_probe(UpstreamSocket(), params)
    assert value["listening"] is True, value
    save(out, "upstream_socket", "tcp-listening", text, status, params, value)
    params = {"upstream": "127.0.0.1:9001"}
    text, status, value = run_probe(UpstreamSocket(), params)
    assert value["listening"] is False, value
    save(out, "upstream_socket", "tcp-nothing-listening", text, status, params, value)
    tcp.close()


def wordpress_tree() -> Path:
    root = BASE / "site" / "public_html"
    for plugin in ("broken", "cdn-enabler", "wp-super-cache", "akismet", ".cdn-enabler.opskit-20261201-000000-beef"):
        (root / "wp-content" / "plugins" / plugin).mkdir(parents=True, exist_ok=True)
    (root / "wp-content" / "advanced-cache.php").write_text("<?php // WP Super Cache's drop-in\n")
    (root / "wp-config.php").write_text("<?php\ndefine( 'WP_CACHE', true );\ndefine('WP_DEBUG_LOG', true);\n")
    (root / "wp-content" / "plugins" / "broken" / "broken.php").write_text(
        "<?php\nfunction broken_boot() {\n    opskit_capture_undefined();\n}\nbroken_boot();\n")
    (root / "wp-content" / "plugins" / "broken" / "throws.php").write_text(
        "<?php\nthrow new RuntimeException('payment gateway said 402 for order 123456');\n")
    return root


def app_errors(out: Path) -> None:
    root = wordpress_tree()
    logs = BASE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    php_log = logs / "php-error.log"
    debug = root / "wp-content" / "debug.log"
    for log, script, times in ((php_log, "broken.php", 3), (debug, "throws.php", 2), (debug, "broken.php", 1)):
        for _ in range(times):
            subprocess.run([PHP, "-n", "-d", "log_errors=1", "-d", "display_errors=0", "-d", "date.timezone=UTC",
                            "-d", f"error_log={log}", str(root / "wp-content" / "plugins" / "broken" / script)],
                           capture_output=True)
    params = {"php": str(php_log), "wp_root": str(root), "fpm": str(logs / "php-fpm.log")}
    text, status, value = run_probe(AppErrors(), params)
    # one group per signature over both logs: broken.php 3 times in PHP's log and once in debug.log
    groups = {(g["count"], tuple(g["logs"])) for g in value["groups"]}
    assert groups == {(4, (str(php_log), str(debug))), (2, (str(debug),))}, value
    assert any(g["code_file"] and g["code_file"].endswith("broken.php") and g["code_line"] == 3
               for g in value["groups"]), value
    assert any(l["role"] == "fpm" and not l["readable"] for l in value["logs"]), value
    save(out, "app_errors", "php-log-and-debug-log", text, status, params, value)
    os.chmod(php_log, 0o600)
    text, status, value = run_probe(AppErrors(), {"php": str(php_log)}, as_nobody=True)
    assert value["logs"][0]["reason"] == "Permission denied" and not value["groups"], value
    save(out, "app_errors", "unreadable", text, status, {"php": str(php_log)}, value)


def wp_site(out: Path) -> None:
    root = wordpress_tree()
    params = {"root": str(root)}
    text, status, value = run_probe(WpSite(), params)
    assert value["cdn_plugins"] == ["cdn-enabler"] and value["page_cache"] == ["wp-super-cache"], value
    assert value["advanced_cache"] and value["wp_cache"] == "true", value
    assert value["renamed_by_opskit"] == ["20261201-000000-beef"], value
    save(out, "wp_site", "cdn-enabler-and-page-cache", text, status, params, value)
    shutil.rmtree(root / "wp-content" / "plugins" / "cdn-enabler")
    shutil.rmtree(root / "wp-content" / "plugins" / "wp-super-cache")
    shutil.rmtree(root / "wp-content" / "plugins" / ".cdn-enabler.opskit-20261201-000000-beef")
    (root / "wp-content" / "advanced-cache.php").unlink()
    (root / "wp-config.php").write_text("<?php\n")
    text, status, value = run_probe(WpSite(), params)
    assert value["cdn_plugins"] == [] and value["page_cache"] == [] and not value["advanced_cache"], value
    save(out, "wp_site", "plain", text, status, params, value)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    if os.environ.get("OPSKIT_CAPTURE_NETNS") != "1":
        os.execvp("unshare", ["unshare", "--net", "env", "OPSKIT_CAPTURE_NETNS=1", sys.executable, __file__, str(out)])
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    os.chmod(BASE.parent, 0o755)
    os.chmod(BASE, 0o755)
    try:
        firewall(out)
        upstream(out)
        app_errors(out)
        wp_site(out)
    finally:
        shutil.rmtree(BASE, ignore_errors=True)


if __name__ == "__main__":
    main()
