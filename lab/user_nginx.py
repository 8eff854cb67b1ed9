"""An nginx for the tests of config edits, serving http://ADDRESS:PORT/ → "v1".

UserNginx: its master runs as a lab host's own user, its whole tree under that user's home —
a VPS account that runs its own web server: the SSH user may edit, test and reload it
without root. RootNginx: master as root, tree owned by root outside the home — Debian's
/etc/nginx — so the SSH user needs `become: sudo` (lab.sudo grants it for one test).

    server = UserNginx(host, port).start()
    server.conf, server.prefix, server.fetch(), server.reloads(), server.stop()
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

NGINX = "/usr/sbin/nginx"

CONFIG = """\
# a lab nginx run by {user}; everything it writes is under {prefix}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    proxy_temp_path {prefix}/tmp/proxy;
    scgi_temp_path {prefix}/tmp/scgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    server {{
        listen {address}:{port};
        server_name site.test;
        location / {{
            return 200 "v1\\n";   # the tests edit this line
        }}
    }}
}}
"""


class UserNginx:
    def __init__(self, host, port: int, prefix: Path | None = None):
        self.host = host
        self.port = port
        self.prefix = prefix or Path(host.home) / "nginx"
        self.conf = self.prefix / "nginx.conf"
        self.process: subprocess.Popen | None = None

    owner = property(lambda self: self.host.user)

    def start(self) -> "UserNginx":
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONFIG.format(user=self.owner, prefix=self.prefix, address=self.host.address, port=self.port))
        subprocess.run(["chown", "-R", f"{self.owner}:", str(self.prefix)], check=True)
        as_owner = ["runuser", "-u", self.owner, "--"] if self.owner != "root" else []
        self.process = subprocess.Popen(
            [*as_owner, NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.fetch() == "v1":
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx as {self.owner} exited: {self.error_log()}")
            time.sleep(0.05)
        raise RuntimeError(f"nginx as {self.owner} did not answer: {self.error_log()}")

    def fetch(self) -> str:
        request = urllib.request.Request(f"http://{self.host.address}:{self.port}/", headers={"Host": "site.test"})
        with urllib.request.urlopen(request, timeout=2) as response:   # loopback only
            return response.read().decode().strip()

    def error_log(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text() if log.exists() else ""

    def reloads(self) -> int:
        """How many reloads the master has done (nginx logs each SIGHUP)."""
        return self.error_log().count("signal 1 (SIGHUP) received")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RootNginx(UserNginx):
    """The same server with a root master and a root-owned tree under `prefix` (not writable
    by the host's user, readable by everyone, as /etc/nginx is)."""

    owner = property(lambda self: "root")

    def start(self) -> "RootNginx":
        super().start()
        self.prefix.chmod(0o755)
        return self
