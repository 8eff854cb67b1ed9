"""Capture real WordPress outputs for opskit's parser tests.

    python -m lab.capture_wordpress [OUTDIR]   (as root; default
    tests/captures/wordpress-6.1-debian12)

Starts a lab site (single site with gateway, then a multisite), records the
outputs listed in the README it writes, and stops everything again.  Needs the
same Debian packages and unix user handling as tests/integration.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from lab.wordpress import PLUGIN_FILE, WordPressSite, make_lab_dir

USER = "opskit-wplab"
RENAMED = ".cdn-enabler.opskit-test"
PACKAGES = ("wordpress", "php8.2-cli", "php8.2-fpm", "php8.2-mysql", "mariadb-server",
            "nginx-light")
DEFAULT_OUT = (Path(__file__).resolve().parent.parent
               / "tests" / "captures" / "wordpress-6.1-debian12")


def _as_owner(site: WordPressSite, argv: list[str]) -> str:
    return subprocess.run(
        ["setpriv", f"--reuid={site.uid}", f"--regid={site.gid}", "--init-groups", "--", *argv],
        capture_output=True, text=True, check=True, cwd=site.docroot,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(site.home)},
    ).stdout


def _versions() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                         capture_output=True, text=True).stdout
    return ", ".join(out.split("\n")[:-1])


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # On disk, not tmpfs, so that `ls -la` shows what a real host shows.
    root = make_lab_dir("opskit-wpcapture-", prefer_shm=False)
    created = False
    try:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "-M", "-d", str(root / "home"), "-s", "/bin/sh", USER],
                           check=True)
            created = True
        pw = pwd.getpwnam(USER)
        for d in ("home", "home-ms"):
            (root / d).mkdir()
            os.chown(root / d, pw.pw_uid, pw.pw_gid)
        files: dict[str, str] = {}

        site = WordPressSite(base_dir=root / "single", address="127.0.20.11", owner=USER,
                             home=root / "home", gateway=True)
        with site:
            files["php-v.txt"] = _as_owner(site, ["php", "-v"])
            files["plugins-ls-la.txt"] = _as_owner(site, ["ls", "-la", "wp-content/plugins"])
            files["active_plugins.var_export.txt"] = site.php(
                "var_export(get_option('active_plugins'));")
            files["active_plugins.json"] = site.php(
                "echo json_encode(get_option('active_plugins'));")
            files["home-with-cdn-enabler.html"] = site.fetch_home().text

            os.rename(site.plugin_dir, site.plugins_dir / RENAMED)
            files["plugins-ls-la-renamed.txt"] = _as_owner(
                site, ["ls", "-la", "wp-content/plugins"])
            files["home-without-cdn-enabler.html"] = site.fetch_home().text
            files["active_plugins-renamed-before-admin.var_export.txt"] = site.php(
                "var_export(get_option('active_plugins'));")
            session = site.login()
            page = session.get(site.origin_url + "wp-admin/plugins.php", timeout=30).text
            notice = [ln for ln in page.splitlines() if "deactivated due to an error" in ln]
            files["plugins-admin-page-deactivated-notice.html"] = "\n".join(notice) + "\n"
            files["active_plugins-after-admin-page.var_export.txt"] = site.php(
                "var_export(get_option('active_plugins'));")
            files["active_plugins-after-admin-page.json"] = site.php(
                "echo json_encode(get_option('active_plugins'));")
            os.rename(site.plugins_dir / RENAMED, site.plugin_dir)
            site.activate_plugin()

            site.stop_php_fpm()
            r = site.fetch_home(via_gateway=True)
            files["gateway-502-php-fpm-down.http"] = (
                f"HTTP/1.1 {r.status_code} {r.reason}\n"
                + "".join(f"{k}: {v}\n" for k, v in r.headers.items() if k.lower() != "date")
                + "\n" + r.text
            )
            err = (site.logs_dir / "nginx-error.log").read_text().splitlines()
            files["nginx-error-php-fpm-down.log"] = "\n".join(
                ln for ln in err if "[error]" in ln or "[crit]" in ln) + "\n"
            site.start_php_fpm()

        ms = WordPressSite(base_dir=root / "multisite", address="127.0.20.12", owner=USER,
                           home=root / "home-ms", multisite=True)
        with ms:
            files["multisite-active_sitewide_plugins.var_export.txt"] = ms.php(
                "var_export(get_site_option('active_sitewide_plugins'));")
            files["multisite-active_sitewide_plugins.json"] = ms.php(
                "echo json_encode(get_site_option('active_sitewide_plugins'));")
            files["multisite-active_plugins.var_export.txt"] = ms.php(
                "var_export(get_option('active_plugins'));")
            assert ms.network_active_plugins() == [PLUGIN_FILE]

        # The lab paths are random temp dirs; make the captures stable.
        for name, text in files.items():
            text = text.replace(str(root), "/LABROOT")
            if not text.endswith("\n"):
                text += "\n"
            (out / name).write_text(text)
        readme = (
            "Captured by `python -m lab.capture_wordpress` (lab/capture_wordpress.py) "
            f"on Debian 12 from real servers started by lab/wordpress.py: {_versions()}.  "
            f"Single site + multisite, docroot owned by the unix user {USER}, "
            f"plugin = lab/plugins/cdn-enabler (the CDN Enabler test double); "
            f"temp paths replaced by /LABROOT.\n\n"
            "- php-v.txt: `php -v` run as the site owner\n"
            "- plugins-ls-la.txt / plugins-ls-la-renamed.txt: `LC_ALL=C ls -la wp-content/plugins` "
            f"with the plugin folder in place / renamed to {RENAMED}\n"
            "- active_plugins*.var_export.txt / *.json: PHP with wp-load.php, "
            "`var_export(get_option('active_plugins'))` and `echo json_encode(...)`: "
            "plugin active, folder renamed before anyone opened wp-admin, and after "
            "wp-admin/plugins.php was opened\n"
            "- plugins-admin-page-deactivated-notice.html: the lines of wp-admin/plugins.php "
            "announcing the deactivation (folder renamed)\n"
            "- home-with-cdn-enabler.html / home-without-cdn-enabler.html: GET / on the origin "
            "with Host: site1.example.test, plugin loaded / folder renamed\n"
            "- gateway-502-php-fpm-down.http: the gateway's (nginx reverse proxy) answer with "
            "php-fpm stopped (Date header removed); nginx-error-php-fpm-down.log: the origin "
            "nginx's [error]/[crit] lines from that moment\n"
            "- multisite-*: subdirectory multisite with the plugin network-activated: "
            "`get_site_option('active_sitewide_plugins')` and the main site's active_plugins\n"
        )
        (out / "README.md").write_text(readme)
        print(f"wrote {len(files) + 1} files to {out}")
    finally:
        if created:
            subprocess.run(["userdel", USER], check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
