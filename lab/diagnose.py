"""The diagnose tests' site: lab/timeouts.py's php-fpm + origin nginx + edge nginx, plus what the
diagnose scenarios need, all on the caller's loopback addresses.

    site = DiagnoseSite(base, "127.0.80.1", owner, home, edge_source="127.0.80.2").start()
    site.configure(closing=True)      # the origin's server answers nothing (nginx `return 444`)
    site.stop_fpm()                   # php-fpm stopped: its socket is gone
    site.configure(broken=True)       # a plugin with a PHP fatal error, loaded by every page (→ 500)

The edge proxies from its own address (`edge_source`, proxy_bind), as a CDN edge comes from
its own range, so a firewall rule can drop it alone (`EdgeBlock`, an nftables table of the
test's own that drops only edge_source → the origin's port, removed afterwards). The docroot
holds a minimal wp-config.php (the wordpress probe finds the root by it) and a plugin whose
PHP calls an undefined function (a real PHP fatal error).

`SiteZone` is one nsd (lab/dns.py) on the caller's address, authoritative for the site's zone.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.dns import Nsd, zone_text
from lab.timeouts import TimeoutSite

# the home page loads the "active" plugins as WordPress does (wp-content/active-plugins.txt
# stands in for the active_plugins option): a broken active plugin breaks every page
INDEX = ("<?php\n$list = __DIR__ . '/wp-content/active-plugins.txt';\n"
         "foreach (is_file($list) ? file($list, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) : [] as $plugin) {\n"
         "    include __DIR__ . '/wp-content/plugins/' . basename(dirname($plugin)) . '/' . basename($plugin);\n}\n"
         "echo \"lab home\\n\";\n")
BROKEN_PLUGIN = ("<?php\n/* Plugin Name: Broken (opskit lab) */\n"
                 "ini_set('error_log', dirname(__DIR__, 2) . '/debug.log');   // as WP_DEBUG_LOG does\n"
                 "opskit_lab_undefined_function();\n")


@dataclass
class DiagnoseSite(TimeoutSite):
    edge_source: str = "127.0.80.2"
    closing: bool = False
    broken: bool = False          # the broken plugin is "active": every page loads it

    def start(self) -> "DiagnoseSite":
        super().start()
        return self

    def configure(self, closing: bool = False, broken: bool = False, **settings) -> None:
        self.closing, self.broken = closing, broken
        super().configure(**settings)

    def _write_all(self) -> None:
        super()._write_all()
        site = self.site_conf.read_text()
        if self.closing:
            site = site.replace("    index index.php;\n", "    index index.php;\n    return 444;   # closes without answering\n")
        self.site_conf.write_text(site)
        edge = self.edge_conf.read_text()
        edge = edge.replace(f"proxy_bind {self.address};", f"proxy_bind {self.edge_source};")
        edge = edge.replace("            proxy_read_timeout", "            proxy_connect_timeout 2s;\n            proxy_read_timeout")
        self.edge_conf.write_text(edge)
        self._plant()

    def _plant(self) -> None:
        user = pwd.getpwnam(self.owner)
        plugin = self.docroot / "wp-content" / "plugins" / "broken"
        plugin.mkdir(parents=True, exist_ok=True)
        (plugin / "broken.php").write_text(BROKEN_PLUGIN)
        (self.docroot / "index.php").write_text(INDEX)
        active = self.docroot / "wp-content" / "active-plugins.txt"
        active.write_text("broken/broken.php\n" if self.broken else "")
        config = self.docroot / "wp-config.php"
        if not config.exists():
            config.write_text("<?php\n/* a stand-in: the lab serves no WordPress, the probes only look for this file */\n")
        for path in (self.docroot / "wp-content", plugin.parent, plugin, plugin / "broken.php", config, active,
                     self.docroot / "index.php"):
            os.chown(path, user.pw_uid, user.pw_gid)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def stop_fpm(self) -> None:
        self._stop("php-fpm")

    def reset_logs(self) -> None:
        super().reset_logs()
        debug = self.docroot / "wp-content" / "debug.log"
        debug.unlink(missing_ok=True)


class EdgeBlock:
    """An nftables table of the test's own: drop TCP from `source` to `address`:`port`, nothing else."""

    TABLE = "opskit_x_edge_block"

    def __init__(self, source: str, address: str, port: int):
        self.source, self.address, self.port = source, address, port

    def __enter__(self) -> "EdgeBlock":
        rules = (f"table inet {self.TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
                 f"    ip saddr {self.source} ip daddr {self.address} tcp dport {self.port} drop\n  }}\n}}\n")
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["nft", "delete", "table", "inet", self.TABLE], capture_output=True)

    @staticmethod
    def available() -> str | None:
        """None when this machine lets us add an nftables table, else why not."""
        try:
            probe = subprocess.run(["nft", "add", "table", "inet", "opskit_x_probe"], capture_output=True, text=True)
        except FileNotFoundError:
            return "nft is not installed (apt-get install nftables)"
        if probe.returncode != 0:
            return probe.stderr.strip() or "nft refused"
        subprocess.run(["nft", "delete", "table", "inet", "opskit_x_probe"], capture_output=True)
        return None


class SiteZone:
    """nsd on `address`:53, authoritative for `zone` with the site's name pointing at `site_address`."""

    def __init__(self, base: Path, address: str, zone: str, name: str):
        self.base, self.address, self.zone, self.name = base, address, zone, name
        self.serial = 1
        self.nsd: Nsd | None = None

    def _text(self, site_address: str) -> str:
        return zone_text(self.zone, self.serial, {self.name: [f"60 A {site_address}"], "ns1": [f"60 A {self.address}"]})

    def start(self, site_address: str) -> "SiteZone":
        self.nsd = Nsd(self.base, self.address, {self.zone: self._text(site_address)}).start()
        return self

    def point(self, site_address: str) -> None:
        self.serial += 1
        self.nsd.replace_zone(self.zone, self._text(site_address), self.serial)

    def stop(self) -> None:
        if self.nsd is not None:
            self.nsd.stop()
