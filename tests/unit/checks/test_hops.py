"""opskit.checks.hops' pure part, and upstream_socket's /proc/net/tcp reading."""

from __future__ import annotations

from opskit.checks.hops import passed_on
from opskit.probes.upstream_socket import _matches, target


def answer(status, software, size, detail):
    return {"status": status, "bytes": size, "identity": {"hop": "web-server", "software": software, "detail": detail},
            "evidence": f"GET x → {status}; {detail}"}


def test_the_origins_error_passed_through():
    public = answer(502, "nginx/1.22.1", 157, "a reverse proxy's own 502 page")
    origin = answer(502, "nginx/1.22.1", 157, "the web server's own 502 page")
    passed_on(public, origin)
    assert public["identity"]["passed_on"] and public["identity"]["hop"] == "web-server"
    assert public["evidence"].endswith("the origin's own 502 passed on unchanged (same page as asked directly)")


def test_a_page_of_its_own_is_left_alone():
    public = answer(504, "nginx/1.22.1", 167, "a reverse proxy's own 504 page")
    passed_on(public, answer(200, "nginx/1.22.1", 9, "the site answered 200"))
    assert public["identity"]["detail"] == "a reverse proxy's own 504 page"
    passed_on(public, None)
    assert "passed_on" not in public["identity"]


def test_upstream_targets_and_proc_net_tcp():
    assert target("unix:/run/php/php8.2-fpm.sock") == ("unix", "/run/php/php8.2-fpm.sock")
    assert target("fcgi://127.0.0.1:9000") == ("tcp", "127.0.0.1:9000")
    assert target("unix:/run/php.sock|fcgi://localhost") == ("unix", "/run/php.sock")
    assert target(None) is None and target("php-backend") is None
    assert _matches("0100007F:2328", "127.0.0.1", 9000)
    assert _matches("00000000:2328", "127.0.0.1", 9000)          # 0.0.0.0 listens everywhere
    assert not _matches("0100007F:2329", "127.0.0.1", 9000)
    assert _matches("00000000000000000000000001000000:2328", "::1", 9000)
