"""Run Debian's nginx binary on a config tree of our own: `nginx -t` and `nginx -T`
with a private prefix, for the nginx captures and the tests that check an edited
file still loads.

nginx -t is not read-only: as root it creates its temp folders (/var/lib/nginx/body,
... chowned to its user), its pid file and its logs. So a tree is run only when its
main file puts every one of them under the prefix (relative paths), which
`check_private` verifies with opskit's own parser before nginx starts.

    root = tmp_path / "nginx"
    write_tree(root, {"/etc/nginx/nginx.conf": text, ...})
    proc = run_nginx(root, "/etc/nginx/nginx.conf", dump=True)   # proc.stdout: the dump
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from opskit.stack import nginx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TEMP_KINDS = ("client_body", "fastcgi", "proxy", "scgi", "uwsgi")
PREFIX_DIRS = ("run", "logs", "tmp")


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Each {absolute path: text} under `root` (bytes written as they are)."""
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_bytes(text.encode("utf-8", "surrogateescape"))


def check_private(files: Mapping[str, str], main: str) -> None:
    """Raise unless the config keeps nginx's pid file, logs and temp folders under the prefix."""
    config = nginx.parse_files(files, main)
    http = nginx.http_block(config)
    wanted = {"pid": None, "error_log": None, **{f"{kind}_temp_path": http for kind in TEMP_KINDS}}
    for name, block in wanted.items():
        found = [d for d in config.children(block) if d.name == name]
        if not found:
            raise ValueError(f"{main}: no {name} at the {'http' if block else 'main'} level: nginx would use the system's")
        for directive in found:
            if directive.args[0].startswith("/"):
                raise ValueError(f"{directive.file}:{directive.line}: {name} {directive.args[0]} is outside the prefix")
    for directive in config.directives:
        if directive.name in ("access_log", "error_log", "include") and directive.args[0].startswith("/"):
            # an absolute include would make nginx read this machine's file, not the tree's
            raise ValueError(f"{directive.file}:{directive.line}: {directive.name} {directive.args[0]} is outside the prefix")


def run_nginx(root: Path, main: str, dump: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    """`nginx -t` (or -T) on the tree written under `root`, prefix `root`."""
    files = {
        "/" + str(path.relative_to(root)): path.read_bytes().decode("utf-8", "surrogateescape")
        for path in root.rglob("*") if path.is_file()
    }
    check_private(files, main)
    for name in PREFIX_DIRS:
        (root / name).mkdir(exist_ok=True)
    conf = root / main.lstrip("/")
    proc = subprocess.run([NGINX, "-T" if dump else "-t", "-p", f"{root}/", "-c", str(conf)],
                          capture_output=True, cwd=root, timeout=timeout,
                          env={"PATH": "/usr/sbin:/usr/bin:/bin", "LC_ALL": "C"})
    # decoded here, not with text=True: that would turn a CRLF file's lines into LF ones
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
                                       proc.stderr.decode("utf-8", "surrogateescape"))
