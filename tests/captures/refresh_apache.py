"""Capture Debian 12's Apache configuration for opskit/stack/apache.py.

    .venv/bin/python tests/captures/refresh_apache.py

Copies this machine's /etc/apache2 files that the parser needs (refused if `dpkg
--verify` says the packages' files were changed) into
tests/captures/apache-2.4-debian12/etc/apache2/, enables modules and confs there the
way `a2dismod php8.2 mpm_prefork; a2enmod mpm_event proxy_fcgi; a2enconf php8.2-fpm`
would on a host that runs PHP through php-fpm (relative symlinks, as a2enmod makes
them), adds two test virtual hosts of ours, then asks the real apache2 binary what it
reads: `apache2 -t -D DUMP_INCLUDES` and `apache2 -S` on a copy under /tmp (ServerRoot
that copy, the envvars' folders pointed into it), their paths written back as
/etc/apache2. The README there is rewritten. Nothing under /etc is changed, no server
is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CAPTURE = Path(__file__).resolve().parent / "apache-2.4-debian12"
TREE = CAPTURE / "etc" / "apache2"
DEBIAN = Path("/etc/apache2")
BASE = Path("/tmp/opskit-capture/apache")
PACKAGES = ("apache2", "apache2-bin", "apache2-data", "libapache2-mod-php8.2", "php8.2-fpm")

# (module, has a .conf): enabled in Debian's default install, minus mpm_prefork and php8.2, plus
# mpm_event, proxy and proxy_fcgi; php8.2 is copied to mods-available for the mod_php test.
ENABLED_MODULES = ("access_compat", "alias", "auth_basic", "authn_core", "authn_file", "authz_core", "authz_host",
                   "authz_user", "autoindex", "deflate", "dir", "env", "filter", "mime", "mpm_event", "negotiation",
                   "proxy", "proxy_fcgi", "reqtimeout", "setenvif", "status")
AVAILABLE_ONLY = ("mpm_prefork", "php8.2")
ENABLED_CONFS = ("charset", "localized-error-pages", "other-vhosts-access-log", "security", "serve-cgi-bin",
                 "php8.2-fpm")

OURS = {
    "sites-available/site1.conf": """\
# opskit capture: a WordPress site whose PHP runs in its own php-fpm pool (mod_proxy_fcgi)
<VirtualHost *:80>
	ServerName site1.example.test
	ServerAlias www.site1.example.test
	DocumentRoot /var/www/site1

	# longer than the pool's request_terminate_timeout, shorter than Debian's Timeout 300
	ProxyTimeout 120

	<FilesMatch \\.php$>
		SetHandler "proxy:unix:/run/php/php8.2-fpm-site1.sock|fcgi://localhost"
	</FilesMatch>

	ErrorLog ${APACHE_LOG_DIR}/site1-error.log
	CustomLog ${APACHE_LOG_DIR}/site1-access.log combined
</VirtualHost>
""",
    "sites-available/site2.conf": """\
# opskit capture: a site on php-fpm over TCP (ProxyPassMatch), with its own Timeout
<VirtualHost *:80>
	ServerName site2.example.test
	DocumentRoot /var/www/site2
	Timeout 90
	ProxyPassMatch "^/(.*\\.php(/.*)?)$" "fcgi://127.0.0.1:9000/var/www/site2/$1"

	# mod_fcgid is not loaded here: Apache skips this block
	<IfModule mod_fcgid.c>
		FcgidIOTimeout 100
		FcgidBusyTimeout 200
	</IfModule>
</VirtualHost>
""",
}


def verify_packages() -> None:
    changed = subprocess.run(["dpkg", "--verify", *PACKAGES], capture_output=True, text=True).stdout
    if changed.strip():
        raise SystemExit(f"dpkg --verify reports changed files, not copying them:\n{changed}")


def symlink(tree: Path, link: str, target: str) -> None:
    path = tree / link
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    os.symlink(target, path)


def build(tree: Path) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for name in ("apache2.conf", "ports.conf", "envvars"):
        shutil.copyfile(DEBIAN / name, tree / name)
    (tree / "conf-available").mkdir()
    for conf in sorted((DEBIAN / "conf-available").glob("*.conf")):
        shutil.copyfile(conf, tree / "conf-available" / conf.name)
    (tree / "mods-available").mkdir()
    for module in (*ENABLED_MODULES, *AVAILABLE_ONLY):
        for suffix in (".load", ".conf"):
            source = DEBIAN / "mods-available" / (module + suffix)
            if source.exists():
                shutil.copyfile(source, tree / "mods-available" / source.name)
    for module in ENABLED_MODULES:
        for suffix in (".load", ".conf"):
            if (tree / "mods-available" / (module + suffix)).exists():
                symlink(tree, f"mods-enabled/{module}{suffix}", f"../mods-available/{module}{suffix}")
    for conf in ENABLED_CONFS:
        symlink(tree, f"conf-enabled/{conf}.conf", f"../conf-available/{conf}.conf")
    (tree / "sites-available").mkdir()
    shutil.copyfile(DEBIAN / "sites-available" / "000-default.conf", tree / "sites-available" / "000-default.conf")
    for name, text in OURS.items():
        (tree / name).write_text(text)
    for site in ("000-default", "site1", "site2"):
        symlink(tree, f"sites-enabled/{site}.conf", f"../sites-available/{site}.conf")


def ask_apache(copy: Path) -> dict[str, str]:
    """apache2's own view of the copy, its paths named as on the host."""
    run = BASE / "run"
    for sub in ("run", "lock", "log"):
        (BASE / sub).mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C", "APACHE_RUN_USER": "www-data", "APACHE_RUN_GROUP": "www-data",
           "APACHE_PID_FILE": str(run / "apache2.pid"), "APACHE_RUN_DIR": str(run),
           "APACHE_LOCK_DIR": str(BASE / "lock"), "APACHE_LOG_DIR": str(BASE / "log")}
    outputs = {}
    for name, flags in (("apache2-t-DUMP_INCLUDES.txt", ["-t", "-D", "DUMP_INCLUDES"]), ("apache2-S.txt", ["-S"])):
        proc = subprocess.run(["/usr/sbin/apache2", "-d", str(copy), "-f", str(copy / "apache2.conf"), *flags],
                              capture_output=True, text=True, env=env, timeout=30)
        if proc.returncode != 0:
            raise SystemExit(f"apache2 {' '.join(flags)} failed:\n{proc.stdout}{proc.stderr}")
        text = proc.stdout + proc.stderr
        outputs[name] = text.replace(str(copy), "/etc/apache2").replace(str(BASE), "/BASE")
    return outputs


def versions() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                         capture_output=True, text=True, check=True).stdout
    return ", ".join(out.splitlines())


def main() -> None:
    verify_packages()
    build(TREE)
    copy = BASE / "etc" / "apache2"
    if BASE.exists():
        shutil.rmtree(BASE)
    shutil.copytree(TREE, copy, symlinks=True)
    for name, text in ask_apache(copy).items():
        (CAPTURE / name).write_text(text)
    shutil.rmtree(BASE)
    (CAPTURE / "README.md").write_text(f"""# Apache 2.4 on Debian 12: the configuration tree, and what apache2 reads of it

Made by `.venv/bin/python tests/captures/refresh_apache.py` on Debian 12 (bookworm) with {versions()}.

- etc/apache2/apache2.conf, ports.conf, envvars, conf-available/*.conf, sites-available/000-default.conf and
  mods-available/<module>.load/.conf for the modules below: copied unchanged (`cp`) from this machine's /etc/apache2
  (`dpkg --verify` reported no change to the packages' files). Debian's apache2.conf sets `Timeout 300`.
- Enabled as a php-fpm host has them (what `a2dismod php8.2 mpm_prefork; a2enmod mpm_event proxy_fcgi;
  a2enconf php8.2-fpm` leaves): mods-enabled/ and conf-enabled/ hold relative symlinks into *-available/, as a2enmod
  makes them. Modules: {", ".join(ENABLED_MODULES)}. Confs: {", ".join(ENABLED_CONFS)}
  (conf-available/php8.2-fpm.conf is the php8.2-fpm package's: SetHandler "proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost"
  inside <IfModule !mod_php8.c> and <IfModule proxy_fcgi_module>). mods-available/ also has {", ".join(AVAILABLE_ONLY)}
  (not enabled), for the mod_php test.
- Ours: sites-available/site1.conf (ServerName site1.example.test, ProxyTimeout 120, SetHandler to a pool's unix socket
  in <FilesMatch>) and site2.conf (Timeout 90, ProxyPassMatch to fcgi://127.0.0.1:9000, FcgidIOTimeout/FcgidBusyTimeout
  inside <IfModule mod_fcgid.c>, a module not loaded), both enabled in sites-enabled/ like 000-default.conf.
- apache2-t-DUMP_INCLUDES.txt and apache2-S.txt: the output (stdout + stderr) of `/usr/sbin/apache2 -d COPY -f
  COPY/apache2.conf -t -D DUMP_INCLUDES` and `... -S`, COPY being a copy of etc/apache2 under /tmp with the envvars'
  APACHE_RUN_DIR/APACHE_LOCK_DIR/APACHE_LOG_DIR/APACHE_PID_FILE pointed under a private /tmp folder (written /BASE here);
  the copy's path is written /etc/apache2. No server was started.
""")
    print(f"wrote {TREE} and apache2's outputs")


if __name__ == "__main__":
    main()
