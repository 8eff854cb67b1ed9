"""An nginx whose master runs as a lab host's own user, its whole tree under that user's
home: the setup of a VPS account that runs its own web server. Used by the tests of
config edits, so the SSH user may edit the files, test them and reload the server without
root (sudo is a separate matter).

    server = UserNginx(host, port).start()      # serves http://ADDRESS:PORT/ → "v1"
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
    def __init__(self, host, port: int):
        self.host = host
        self.port = port
        self.prefix = Path(host.home) / "nginx"
        self.conf = self.prefix / "nginx.conf"
        self.process: subprocess.Popen | None = None

    def start(self) -> "UserNginx":
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONFIG.format(user=self.host.user, prefix=self.prefix, address=self.host.address, port=self.port))
        subprocess.run(["chown", "-R", f"{self.host.user}:", str(self.prefix)], check=True)
        self.process = subprocess.Popen(
            ["runuser", "-u", self.host.user, "--", NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.fetch() == "v1":
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx as {self.host.user} exited: {self.error_log()}")
            time.sleep(0.05)
        raise RuntimeError(f"nginx as {self.host.user} did not answer: {self.error_log()}")

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
