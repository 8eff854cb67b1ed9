"""A real nginx speaking TLS on loopback, for the HTTP check's tests.

``TlsNginx`` makes a private CA (lab/tls.py) and starts Debian's nginx as a child
process, with its config, certificates, pid file and logs under ``base_dir``, on
one loopback address (127.0.40.201 by default: the demo uses 127.0.40.1, the
test lab 127.0.11.x and 127.0.16.x). Every port is picked free. It serves:

* ``https_port``   — https for ``hostname`` with a certificate the CA signed;
                     ``/`` answers 200, ``/moved`` redirects (301) to ``/new``;
* ``http_port``    — plain http that 301-redirects every request to the https
                     server above (``https://HOST:https_port/...``), as sites that
                     force https do;
* ``wrong_port``   — https with a CA-signed certificate for ``wrong_hostname``;
* ``expired_port`` — https with a CA-signed certificate for ``hostname`` that
                     expired yesterday.

Nothing resolves ``hostname``: clients connect to ``address`` and send SNI and a
Host header for it.

    with TlsNginx(tmp_path) as nginx:
        requests.get(nginx.https_url, verify=str(nginx.ca_pem), ...)
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from lab.sshd import end_process, free_port, wait_for_port
from lab.tls import CertificateAuthority

__all__ = ["TlsNginx", "DEFAULT_ADDRESS", "HOME_PAGE"]

DEFAULT_ADDRESS = "127.0.40.201"
HOME_PAGE = "hello over https from {hostname}"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_RUNNING: weakref.WeakSet["TlsNginx"] = weakref.WeakSet()


@atexit.register
def _stop_forgotten() -> None:
    """Safety net: never leave an nginx behind when a test run dies before stop()."""
    for server in list(_RUNNING):
        server.stop()


@dataclass(eq=False)   # a handle on a running server: identity, not value
class TlsNginx:
    base_dir: Path
    address: str = DEFAULT_ADDRESS
    hostname: str = "site.test"
    wrong_hostname: str = "wrong.test"

    https_port: int = field(default=0, init=False)
    http_port: int = field(default=0, init=False)
    wrong_port: int = field(default=0, init=False)
    expired_port: int = field(default=0, init=False)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def ca_pem(self) -> Path:
        """The CA certificate that signed every certificate served (what a client trusts)."""
        return self.base_dir / "tls" / "ca.pem"

    @property
    def conf(self) -> Path:
        return self.base_dir / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.base_dir / "logs" / "error.log"

    @property
    def https_url(self) -> str:
        return f"https://{self.address}:{self.https_port}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}/"

    def __enter__(self) -> "TlsNginx":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "TlsNginx":
        self.base_dir = Path(self.base_dir)
        for directory in ("logs", "tmp"):   # nginx makes its temp dirs, but not their parent
            (self.base_dir / directory).mkdir(parents=True, exist_ok=True)
        certificates = self._write_certificates()
        for name in ("https_port", "http_port", "wrong_port", "expired_port"):
            setattr(self, name, free_port(self.address))
        self.conf.write_text(self._config(certificates))
        command = [NGINX, "-p", f"{self.base_dir}/", "-c", str(self.conf), "-e", str(self.error_log)]
        tested = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=30)
        if tested.returncode != 0:
            raise RuntimeError(f"nginx -t refused {self.conf}:\n{tested.stderr}")
        self.process = subprocess.Popen([*command, "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _RUNNING.add(self)
        try:
            for port in (self.https_port, self.http_port, self.wrong_port, self.expired_port):
                wait_for_port(self.address, port, timeout=10, log=self.error_log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process)
        _RUNNING.discard(self)

    def _write_certificates(self) -> dict[str, tuple[Path, Path]]:
        """The CA and one certificate per https server, as {server: (crt, key)}."""
        ca = CertificateAuthority.create("opskit lab CA")
        ca.write_pem(self.ca_pem)
        directory = self.ca_pem.parent
        return {
            "good": ca.issue(self.hostname).write(directory, "good"),
            "wrong": ca.issue(self.wrong_hostname).write(directory, "wrong"),
            "expired": ca.issue(self.hostname, valid_days=(-30, -1)).write(directory, "expired"),
        }

    def _config(self, certificates: dict[str, tuple[Path, Path]]) -> str:
        prefix = self.base_dir
        temp = "\n".join(f"    {kind}_temp_path {prefix / 'tmp' / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        page = HOME_PAGE.format(hostname=self.hostname)
        return f"""# written by opskit's lab (lab/tls_nginx.py)
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {self.error_log} notice;
events {{ worker_connections 64; }}

http {{
    access_log {prefix / 'logs' / 'access.log'};
{temp}
    default_type text/plain;
    server_tokens on;
    ssl_protocols TLSv1.2 TLSv1.3;

    # the site over https, with a certificate the private CA signed
    server {{
        listen {self.address}:{self.https_port} ssl;
        server_name {self.hostname};
        ssl_certificate {certificates['good'][0]};
        ssl_certificate_key {certificates['good'][1]};
        location = /moved {{ return 301 https://$host:$server_port/new; }}
        location / {{ return 200 "{page}\\n"; }}
    }}

    # plain http that sends everyone to https, as sites that force https do
    server {{
        listen {self.address}:{self.http_port};
        server_name {self.hostname};
        location / {{ return 301 https://$host:{self.https_port}$request_uri; }}
    }}

    # https with a valid certificate for another name
    server {{
        listen {self.address}:{self.wrong_port} ssl;
        server_name {self.hostname};
        ssl_certificate {certificates['wrong'][0]};
        ssl_certificate_key {certificates['wrong'][1]};
        location / {{ return 200 "{page}\\n"; }}
    }}

    # https with the site's certificate, expired yesterday
    server {{
        listen {self.address}:{self.expired_port} ssl;
        server_name {self.hostname};
        ssl_certificate {certificates['expired'][0]};
        ssl_certificate_key {certificates['expired'][1]};
        location / {{ return 200 "{page}\\n"; }}
    }}
}}
"""
