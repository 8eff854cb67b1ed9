"""Capture real `nginx -T` output for opskit/stack/nginx.py and the config_edit planner.

    .venv/bin/python tests/captures/refresh_nginx.py

1. tests/captures/nginx-1.22-debian12/nginx-T.txt: Debian 12's nginx binary run as
   `nginx -T -p BASE/ -c BASE/etc/nginx/nginx.conf` (stdout only) on a tree written
   under BASE = /tmp/opskit-capture/nginx (fixed, so the paths in the capture are
   stable) that mimics Debian's /etc/nginx: Debian's own nginx.conf, mime.types,
   fastcgi.conf, snippets/fastcgi-php.conf and sites-available/default copied from
   this machine's nginx-common package (refused if `dpkg --verify` says they were
   modified), with the changes listed in DEBIAN_CONF_CHANGES, plus our own
   conf.d/ files, a WordPress site (sites-available/example.com, enabled by a
   symlink as on Debian) and a snippet it includes. The README there is rewritten.
2. tests/captures/changes/config_edit/<situation>/nginx-T.txt for each situation
   whose files/ hold etc/nginx/nginx.conf: nginx -T on a copy of files/ under
   /tmp/opskit-capture/config_edit/<situation>, the copy's folder removed from the
   "# configuration file" lines, so the dump names the files as the host would.
   Not for the situations in NO_DUMP: the planner gets no dump there.

Every tree keeps nginx's pid file, logs and temp folders under the prefix
(lab/nginx_tree.py checks it before nginx runs). No network, no SSH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from lab.nginx_tree import NGINX, run_nginx  # noqa: E402

CAPTURES = Path(__file__).resolve().parent
OUT = CAPTURES / "nginx-1.22-debian12"
SITUATIONS = CAPTURES / "changes" / "config_edit"
BASE = Path("/tmp/opskit-capture/nginx")
EDIT_BASE = Path("/tmp/opskit-capture/config_edit")
DEBIAN = Path("/etc/nginx")
DEBIAN_COPIES = ("nginx.conf", "mime.types", "fastcgi.conf", "snippets/fastcgi-php.conf", "sites-available/default")

# (Debian's line, ours): absolute paths made relative, so the tree is read from BASE
# and nginx never touches this machine's /run, /var/log or /var/lib/nginx.
DEBIAN_CONF_CHANGES = (
    ("pid /run/nginx.pid;", "pid run/nginx.pid;"),
    ("error_log /var/log/nginx/error.log;", "error_log logs/error.log;"),
    ("include /etc/nginx/modules-enabled/*.conf;", "include modules-enabled/*.conf;"),
    ("include /etc/nginx/mime.types;", "include mime.types;"),
    ("access_log /var/log/nginx/access.log;", "access_log logs/access.log;"),
    ("include /etc/nginx/conf.d/*.conf;", "include conf.d/*.conf;"),
    ("include /etc/nginx/sites-enabled/*;", "include sites-enabled/*;"),
    ("\tdefault_type application/octet-stream;\n",
     "\tdefault_type application/octet-stream;\n\n"
     "\t# opskit capture: PHP may run for five minutes on every site\n"
     "\tfastcgi_read_timeout 300s;\n"),
    ("\t##\n\t# Virtual Host Configs\n",
     "\t##\n\t# opskit capture: temp files inside the private prefix (Debian: /var/lib/nginx/*)\n\t##\n\n"
     "\tclient_body_temp_path tmp/body;\n\tfastcgi_temp_path tmp/fastcgi;\n\tproxy_temp_path tmp/proxy;\n"
     "\tscgi_temp_path tmp/scgi;\n\tuwsgi_temp_path tmp/uwsgi;\n\n"
     "\t##\n\t# Virtual Host Configs\n"),
)

OURS = {
    "conf.d/timeouts.conf": """\
# opskit capture: fleet-wide settings (http context, included by nginx.conf)
proxy_read_timeout 90s;
client_max_body_size 64m;
""",
    "conf.d/upstreams.conf": """\
upstream php82 {
	server unix:/run/php/php8.2-fpm.sock;
}
""",
    "snippets/wordpress.conf": """\
# opskit capture: WordPress rules shared by the sites, included inside a server block
proxy_read_timeout 75s;

location = /favicon.ico { log_not_found off; access_log off; }

location ~ /\\.(?!well-known) {
	deny all;
}
""",
    "sites-available/example.com": """\
# example.com: WordPress on php8.2-fpm (opskit capture)
# Two server blocks: the www. redirect and the site itself.

server {
	listen 80;
	listen [::]:80;
	server_name www.example.com;
	return 301 http://example.com$request_uri;
}

server {
	listen 80;
	listen [::]:80;
	server_name example.com;   # the canonical name

	root /var/www/example.com;
	index index.php index.html;

	include snippets/wordpress.conf;
	add_header X-Opskit-Note "a;b #not a comment" always; fastcgi_send_timeout 45s;

	location / {
		try_files $uri $uri/ /index.php?$args;
	}

	location ~ \\.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass php82;
		fastcgi_read_timeout 120s; # the importer needs two minutes
	}

	location /wp-admin/ {
		client_max_body_size 256m;
	}

	location = /xmlrpc.php { deny all; access_log off; }
}
""",
}
# Situations planned from the files alone, as when the runner could not run nginx -T.
NO_DUMP = {"nginx-files-without-dump": "the includes are resolved from the files read",
           "nginx-missing-include-blocked": "a file it includes was not read (nginx -T would fail on the copy)"}
SYMLINKS = {"sites-enabled/default": "../sites-available/default",
            "sites-enabled/example.com": "../sites-available/example.com"}


def package_version(package: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                          check=True).stdout


def check_debian_files() -> None:
    """Refuse to copy Debian's files if this machine's were edited."""
    verify = subprocess.run(["dpkg", "--verify", "nginx-common"], capture_output=True, text=True).stdout
    edited = [name for name in DEBIAN_COPIES if str(DEBIAN / name) in verify]
    if edited:
        sys.exit(f"these files differ from the nginx-common package, not copying them: {edited}")


def debian_nginx_conf() -> str:
    text = (DEBIAN / "nginx.conf").read_text()
    for old, new in DEBIAN_CONF_CHANGES:
        if text.count(old) != 1:
            sys.exit(f"Debian's nginx.conf changed: {old!r} is not there exactly once")
        text = text.replace(old, new)
    return text


def build_capture_tree() -> None:
    shutil.rmtree(BASE, ignore_errors=True)
    etc = BASE / "etc" / "nginx"
    for name in DEBIAN_COPIES[1:]:
        (etc / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEBIAN / name, etc / name)
    (etc / "nginx.conf").write_text(debian_nginx_conf())
    (etc / "modules-enabled").mkdir()   # empty: its include glob matches nothing
    for name, text in OURS.items():
        (etc / name).parent.mkdir(parents=True, exist_ok=True)
        (etc / name).write_text(text)
    for name, target in SYMLINKS.items():
        (etc / name).parent.mkdir(parents=True, exist_ok=True)
        (etc / name).symlink_to(target)


def capture_main() -> None:
    check_debian_files()
    build_capture_tree()
    proc = run_nginx(BASE, "/etc/nginx/nginx.conf", dump=True)
    if proc.returncode != 0:
        sys.exit(f"nginx -T failed:\n{proc.stderr}")
    OUT.mkdir(exist_ok=True)
    (OUT / "nginx-T.txt").write_bytes(proc.stdout.encode("utf-8", "surrogateescape"))
    (OUT / "README.md").write_text(readme(proc.stderr))
    print(f"wrote {OUT / 'nginx-T.txt'}")


def readme(stderr: str) -> str:
    version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    changes = "\n".join(f"  - `{old.strip()}` → `{new.strip()}`".replace("\n", " ") for old, new in DEBIAN_CONF_CHANGES[:7])
    return f"""\
# nginx 1.22 on Debian 12: a real `nginx -T` capture

- nginx-T.txt: the stdout of `{NGINX} -T -p {BASE}/ -c {BASE}/etc/nginx/nginx.conf`, nothing added,
  made by `.venv/bin/python tests/captures/refresh_nginx.py` on Debian 12 (bookworm) with
  nginx-light {package_version('nginx-light')}, nginx-common {package_version('nginx-common')} ({version}).
- The tree under {BASE}/etc/nginx mimics Debian's /etc/nginx. Copied unchanged from this machine's
  nginx-common package (checked with `dpkg --verify`): {', '.join(DEBIAN_COPIES[1:])}.
  nginx.conf is Debian's with these changes, so nginx reads the tree and keeps its pid file, logs and
  temp folders under the prefix:
{changes}
  - `fastcgi_read_timeout 300s;` added to http, after `default_type`;
  - client_body/fastcgi/proxy/scgi/uwsgi `*_temp_path tmp/...;` added to http.
- Ours: conf.d/timeouts.conf (proxy_read_timeout 90s, client_max_body_size 64m), conf.d/upstreams.conf,
  snippets/wordpress.conf (included inside example.com's server: proxy_read_timeout 75s, two locations),
  sites-available/example.com (a www. redirect server and the WordPress server: a quoted "a;b #not a
  comment", two directives on one line, fastcgi_read_timeout 120s in `location ~ \\.php$`,
  client_max_body_size in `location /wp-admin/`, a one-line `location = /xmlrpc.php`).
  sites-enabled/default and sites-enabled/example.com are symlinks to sites-available/, as on Debian;
  modules-enabled/ is empty (its glob matches nothing).
- nginx printed on stderr (not in the capture):

```
{stderr.strip()}
```
"""


def capture_situations() -> None:
    for situation in sorted(SITUATIONS.glob("*/files/etc/nginx/nginx.conf")):
        folder = situation.parent.parent.parent.parent
        if folder.name in NO_DUMP:
            continue
        work = EDIT_BASE / folder.name
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(folder / "files", work)
        proc = run_nginx(work, "/etc/nginx/nginx.conf", dump=True)
        if proc.returncode != 0:
            sys.exit(f"{folder.name}: nginx -T failed:\n{proc.stderr}")
        header = "# configuration file "
        dump = proc.stdout.replace(f"\n{header}{work}/", f"\n{header}/")
        dump = dump.replace(f"{header}{work}/", f"{header}/", 1) if dump.startswith(f"{header}{work}/") else dump
        (folder / "nginx-T.txt").write_bytes(dump.encode("utf-8", "surrogateescape"))
        print(f"wrote {folder / 'nginx-T.txt'}")


if __name__ == "__main__":
    capture_main()
    capture_situations()
