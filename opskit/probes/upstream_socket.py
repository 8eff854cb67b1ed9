"""Is anything listening where the web server passes the site's PHP (php-fpm's socket or port)?

    upstream: "unix:/run/php/php8.2-fpm.sock"  →  {"kind": "unix", "target": "/run/php/php8.2-fpm.sock",
               "exists": False, "is_socket": False, "listening": False, "readable": True}
    upstream: "127.0.0.1:9000"                 →  {"kind": "tcp", "target": "127.0.0.1:9000", "listening": True, ...}

From /proc/net/unix (the listening sockets by path) and /proc/net/tcp and tcp6 (state 0A,
LISTEN; an address of 0.0.0.0 or :: listens on every address): any user may read them, no tool
needed. A socket file with nobody listening on it is php-fpm stopped uncleanly (connect() then
fails with 111: Connection refused); no file at all is php-fpm stopped, or another path (2: No
such file or directory). None when the web server's upstream is unknown.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.shell import quote
from opskit.stack.keyvalues import key_values
from opskit.steps import Context, Probe, register


class UpstreamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstream: str | None = None     # nginx's fastcgi_pass (nginx_timeouts' upstream) or Apache's


def target(upstream: str | None) -> tuple[str, str] | None:
    """("unix", path) or ("tcp", "host:port") for a fastcgi_pass / proxy_fcgi value."""
    if not upstream:
        return None
    text = upstream.strip()
    for prefix in ("fcgi://", "fastcgi://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if text.startswith("unix:"):
        return "unix", text[5:].split("|")[0].rstrip(":")
    if text.startswith("/"):
        return "unix", text
    host, _, port = text.rpartition(":")
    if port.isdigit():
        return "tcp", f"{host or '127.0.0.1'}:{port}"
    return None


@register
class UpstreamSocket(Probe):
    name = "upstream_socket"
    Params = UpstreamParams

    def script(self, params: UpstreamParams, ctx: Context) -> str:
        found = target(params.upstream)
        if found is None:
            return "true"
        kind, where = found
        if kind == "unix":
            q = quote(where)
            return (f"p={q}\nprintf 'kind=unix\\ntarget=%s\\n' \"$p\"\n"
                    "[ -e \"$p\" ] && echo exists=1 || echo exists=0\n"
                    "[ -S \"$p\" ] && echo is_socket=1 || echo is_socket=0\n"
                    "if [ -r /proc/net/unix ]; then echo readable=1; "
                    "awk -v p=\"$p\" '$NF == p && $4 == \"00010000\" { n++ } END { print \"listening=\" (n ? 1 : 0) }' /proc/net/unix; "
                    "else echo readable=0; fi")
        host, _, port = where.rpartition(":")
        return (f"printf 'kind=tcp\\ntarget=%s\\n' {quote(where)}\n"
                "for f in /proc/net/tcp /proc/net/tcp6; do [ -r $f ] && echo readable=1 && "
                "awk '$4 == \"0A\" { print \"listen=\" $2 }' $f; done\ntrue")

    def parse(self, output: str, exit_status: int, params: UpstreamParams) -> dict[str, Any] | None:
        found = target(params.upstream)
        if found is None:
            return None
        kind, where = found
        kv = key_values(output)
        if kind == "unix":
            return {"kind": kind, "target": where, "exists": kv.get("exists") == "1",
                    "is_socket": kv.get("is_socket") == "1", "listening": kv.get("listening") == "1",
                    "readable": kv.get("readable") == "1", "upstream": params.upstream}
        host, _, port = where.rpartition(":")
        listens = [line[7:] for line in output.splitlines() if line.startswith("listen=")]
        return {"kind": kind, "target": where, "exists": None, "is_socket": None,
                "listening": any(_matches(entry, host, int(port)) for entry in listens),
                "readable": kv.get("readable") == "1", "upstream": params.upstream}


def _matches(entry: str, host: str, port: int) -> bool:
    """Does a /proc/net/tcp local_address (hex "0100007F:1F90") listen on host:port?"""
    address_hex, _, port_hex = entry.partition(":")
    try:
        if int(port_hex, 16) != port:
            return False
        raw = bytes.fromhex(address_hex)
        # the kernel prints each 32-bit word in host order (little-endian here)
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        listening = ipaddress.ip_address(words)
        wanted = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if listening.is_unspecified:
        return True
    if isinstance(listening, ipaddress.IPv6Address) and listening.ipv4_mapped:
        listening = listening.ipv4_mapped
    return listening == wanted
