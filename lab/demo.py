"""The demo: a real WordPress host on loopback, and opskit's main job run against it.

    python -m lab.demo [--hold 20s] [--serve]

It starts one simulated host (its own sshd on 127.0.40.1, its own unix user)
whose user owns a real WordPress site (MariaDB, php-fpm, nginx from Debian)
with a CDN-Enabler-like plugin active and a gateway (nginx reverse proxy) in
front standing in for the CDN edge. Then it runs, as an admin would:

    opskit inventory check --connect
    opskit run facts --all
    opskit run disable-cdn --host site1 --check
    opskit run disable-cdn --host site1 --hold 20s

and shows the page before, during and after. Everything stops at the end
(--serve keeps the site up until Ctrl-C, with the inventory path printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from lab.sshd import Lab
from lab.wordpress import CDN_HOSTNAME, WordPressSite, make_lab_dir

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def wordpress_host(prefix: str = "opskit-demo", subnet: str = "127.0.40.", multisite: bool = False, name: str = "site1"):
    """One sshd host whose user owns a running WordPress site; yields (lab, site, inventory path)."""
    base = Path(tempfile.mkdtemp(prefix="opskit-wphost-"))
    os.chmod(base, 0o755)
    lab = Lab(base, count=1, prefix=prefix, subnet=subnet)
    site = None
    try:
        lab.start()
        host = lab.hosts[0]
        site = WordPressSite(make_lab_dir(f"{prefix}-wp-"), host.address, host.user, host.home,
                             multisite=multisite, gateway=True).start()
        inventory = lab.inventory(base / "inventory.yaml", hosts={host.name: {
            "wordpress": {"root": "~/public_html", "url": f"http://{site.server_name}/",
                          "resolve": f"{site.address}:{site.gateway_port}"},
            "origin": site.origin_url.rstrip("/"),
            "cdn": {"provider": "keycdn", "hostname": CDN_HOSTNAME, "timeout": 100},
        }})
        if name != host.name:
            text = inventory.read_text().replace(f"\n  {host.name}:\n", f"\n  {name}:\n")
            inventory.write_text(text)
        yield lab, site, inventory
    finally:
        if site is not None:
            site.stop()
            shutil.rmtree(site.base_dir, ignore_errors=True)
        lab.stop()
        lab.remove_users()
        shutil.rmtree(base, ignore_errors=True)


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def opskit(inventory: Path, *args: str) -> int:
    command = [sys.executable, "-m", "opskit", "-i", str(inventory), *args]
    print("$ opskit " + " ".join(["-i", str(inventory), *args]), flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


def page_state(site: WordPressSite) -> str:
    response = site.fetch_home()
    cdn = response.text.count(CDN_HOSTNAME)
    return f"origin answered {response.status_code}; {cdn} mentions of {CDN_HOSTNAME}; active_plugins={site.active_plugins()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hold", default="20s", help="hold window for disable-cdn (default 20s)")
    parser.add_argument("--serve", action="store_true", help="keep the demo site running until Ctrl-C")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the demo starts sshd and creates a user: run it as root (scripts/demo.sh does)", file=sys.stderr)
        return 2
    os.environ.setdefault("OPSKIT_STATE_DIR", tempfile.mkdtemp(prefix="opskit-demo-state-"))
    # SIGTERM must stop the servers too, not just this process.
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))
    with wordpress_host() as (lab, site, inventory):
        print(f"demo host: sshd on {lab.hosts[0].address}:{lab.hosts[0].port} as {lab.hosts[0].user}; "
              f"WordPress origin {site.origin_url} (Host: {site.server_name}); gateway {site.gateway_url}")
        print(f"inventory: {inventory}")
        if args.serve:
            print("serving until Ctrl-C; e.g. opskit -i", inventory, "run disable-cdn --host site1")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        banner("the inventory, and can we reach the host?")
        opskit(inventory, "inventory", "check", "--connect")
        banner("read-only facts")
        opskit(inventory, "run", "facts", "--all")
        banner("what disable-cdn would do (--check: nothing changes)")
        opskit(inventory, "run", "disable-cdn", "--host", "site1", "--check")
        banner(f"before: {page_state(site)}")
        banner(f"disable-cdn with a {args.hold} hold; an admin opens wp-admin/plugins.php meanwhile")
        during: list[str] = []

        def meanwhile() -> None:
            plugins = site.plugins_dir
            while not any(p.name.startswith(".cdn-enabler.opskit-") for p in plugins.iterdir()):
                time.sleep(0.2)
            time.sleep(1)
            site.open_plugins_admin_page()   # WordPress now drops the plugin from active_plugins
            during.append(page_state(site))

        watcher = threading.Thread(target=meanwhile, daemon=True)
        watcher.start()
        rc = opskit(inventory, "run", "disable-cdn", "--host", "site1", "--hold", args.hold)
        watcher.join(timeout=5)
        if during:
            banner(f"during the hold, after wp-admin was opened: {during[0]}")
        banner(f"after: {page_state(site)}")
        return rc


if __name__ == "__main__":
    sys.exit(main())
