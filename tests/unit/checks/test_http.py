"""The http check's pure parts (targets, trust, judging an answer) and `classify` on real
exceptions, provoked against real sockets on loopback (127.0.40.210): a closed port, a port
that accepts and never answers, a full accept queue, TLS servers with the wrong, an
expired or an unknown certificate. count_cdn_urls is covered in tests/unit/test_wordpress.py."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from lab.tls import CertificateAuthority
from opskit import inventory
from opskit.checks.http import (Answer, Http, HttpParams, Target, Trust, classify, explain, fetch, http_target,
                                judge, origin_target, public_target, trust_for, without_cache_buster)
from opskit.errors import InventoryError
from opskit.findings import Severity
from opskit.inventory import Host, TlsSettings
from opskit.steps import Context, Verdict

ADDRESS = "127.0.40.210"
ROOT = Path(__file__).resolve().parents[3]


def host(**fields) -> Host:
    return Host(name="site1", address="192.0.2.1", **fields)


def context(**fields) -> Context:
    return Context(host(**fields), session=None, run_id="test")


# -- targets ------------------------------------------------------------------------------------
def test_https_origin_by_ip_connects_to_the_ip_and_speaks_as_the_site():
    target = origin_target(host(origin="https://203.0.113.10", wordpress={"url": "https://site1.example.com/"}), "/")
    assert target.request == "https://203.0.113.10:443/"
    assert target.url == "https://site1.example.com/"
    assert target.connect_to == "203.0.113.10:443"
    assert target.headers["Host"] == "site1.example.com"
    assert target.tls_name == target.verify_name == "site1.example.com"
    assert target.https and target.via == "origin"


def test_http_origin_with_a_port_and_a_path():
    target = origin_target(host(origin="http://203.0.113.10:8080/blog/", wordpress={"url": "https://site1.example.com/"}),
                           "/wp-login.php")
    assert target.request == "http://203.0.113.10:8080/blog/wp-login.php"
    assert target.headers["Host"] == "site1.example.com"
    assert target.connect_to == "203.0.113.10:8080"
    assert target.tls_name is None and not target.https


def test_ipv6_origin_is_bracketed():
    target = origin_target(host(origin="https://[2001:db8::10]:8443", wordpress={"url": "https://site1.example.com/"}), "/")
    assert target.request == "https://[2001:db8::10]:8443/"
    assert target.connect_to == "[2001:db8::10]:8443"


def test_origin_without_a_site_url_verifies_the_origin_itself():
    target = origin_target(host(origin="https://203.0.113.10"), "/")
    assert target.verify_name == "203.0.113.10"


def test_no_origin_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'origin' in the inventory"):
        http_target(HttpParams(via="origin"), context())


@pytest.mark.parametrize("url, resolve, request_url, connect_to, host_header", [
    ("https://site1.example.com/", "198.51.100.20", "https://198.51.100.20:443/", "198.51.100.20:443", "site1.example.com"),
    ("https://site1.example.com/", "198.51.100.20:8443", "https://198.51.100.20:8443/", "198.51.100.20:8443", "site1.example.com"),
    ("http://site1.example.com/", "198.51.100.20", "http://198.51.100.20:80/", "198.51.100.20:80", "site1.example.com"),
    # the URL's own port is where the name is pinned, like curl --resolve NAME:PORT:ADDRESS
    ("https://site1.example.com:8443/shop", "198.51.100.20", "https://198.51.100.20:8443/shop/", "198.51.100.20:8443",
     "site1.example.com:8443"),
])
def test_public_url_pinned_by_resolve(url, resolve, request_url, connect_to, host_header):
    target = public_target(host(wordpress={"url": url, "resolve": resolve}), "/")
    assert (target.request, target.connect_to, target.headers["Host"]) == (request_url, connect_to, host_header)
    assert target.tls_name == ("site1.example.com" if url.startswith("https") else None)
    assert target.via == "public"


def test_public_url_without_resolve_goes_through_dns():
    target = public_target(host(wordpress={"url": "https://site1.example.com/"}), "/about/")
    assert target.request == target.url == "https://site1.example.com/about/"
    assert target.connect_to is None and target.tls_name is None and "Host" not in target.headers
    assert target.verify_name == "site1.example.com"


def test_an_explicit_url_is_fetched_as_given():
    target = http_target(HttpParams(url="https://other.example.net/x"), context(origin="http://203.0.113.10"))
    assert (target.request, target.connect_to, target.tls_name) == ("https://other.example.net/x", None, None)


# -- trust --------------------------------------------------------------------------------------
def test_the_inventory_ca_wins_over_the_environment():
    environ = {"REQUESTS_CA_BUNDLE": "/env/requests.pem", "SSL_CERT_FILE": "/env/ssl.pem"}
    assert trust_for(TlsSettings(ca_bundle="/inv/ca.pem"), environ) == Trust("/inv/ca.pem", "tls.ca_bundle")
    assert trust_for(TlsSettings(), environ) == Trust("/env/requests.pem", "REQUESTS_CA_BUNDLE")
    assert trust_for(TlsSettings(), {"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": "/env/ssl.pem"}).verify == "/env/ssl.pem"
    assert trust_for(TlsSettings(), {}).verify is True
    assert trust_for(TlsSettings(verify=False), environ).verify is False


def test_a_missing_ca_bundle_is_named_with_its_source(tmp_path):
    missing = tmp_path / "nope.pem"
    assert trust_for(TlsSettings(), {"SSL_CERT_FILE": str(missing)}).problem() == \
        f"the CA bundle {missing} (from SSL_CERT_FILE) does not exist"
    assert Trust(True, "x").problem() is None


def test_a_missing_ca_bundle_is_an_error_before_any_request(tmp_path):
    ctx = context(origin=f"https://{ADDRESS}:9", wordpress={"url": "https://site.test/"},
                  tls={"ca_bundle": str(tmp_path / "nope.pem")})
    result = Http().run(HttpParams(), ctx)
    assert result.verdict is Verdict.ERROR and "does not exist" in result.summary


# -- the inventory's tls field ------------------------------------------------------------------
def load_tls(tmp_path, text: str) -> TlsSettings:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"hosts:\n  a:\n    address: 192.0.2.1\n    tls: {text}\n")
    return inventory.load(path).hosts["a"].tls


def test_tls_ca_bundle_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/admin")
    assert load_tls(tmp_path, "{ca_bundle: ~/ca/site.pem}") == TlsSettings(ca_bundle="/home/admin/ca/site.pem")
    assert load_tls(tmp_path, "{verify: false}").verify is False
    assert inventory.load(_plain(tmp_path)).hosts["a"].tls == TlsSettings()


def _plain(tmp_path) -> Path:
    path = tmp_path / "plain.yaml"
    path.write_text("hosts:\n  a: {address: 192.0.2.1}\n")
    return path


@pytest.mark.parametrize("text, message", [
    ("{ca_file: /x.pem}", "tls.ca_file"),
    ("{verify: 'no'}", "tls.verify"),
    ("{verify: 0}", "tls.verify"),
    ("{ca_bundle: /x.pem, verify: false}", "ca_bundle has no effect with verify: false"),
])
def test_tls_refuses(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        load_tls(tmp_path, text)


# -- judging an answer --------------------------------------------------------------------------
HTTP_ORIGIN = origin_target(host(origin="http://203.0.113.10", wordpress={"url": "https://site1.example.com/"}), "/")


def answer(status=200, body="hello", location=None, **fields) -> Answer:
    return Answer(status=status, body=body, size=len(body), seconds=0.01, location=location, server="nginx", **fields)


def test_an_http_origin_redirecting_to_https_fails_with_its_location_and_an_info_finding():
    result = judge(HttpParams(), HTTP_ORIGIN, answer(301, location="https://site1.example.com/"))
    assert result.verdict is Verdict.FAILED
    assert "redirects (301) to https://site1.example.com/" in result.summary
    assert result.observed["location"] == "https://site1.example.com/"
    (finding,) = result.findings
    assert (finding.cause, finding.severity) == ("origin-redirects-to-https", Severity.INFO)
    assert finding.advice == "set origin: https://203.0.113.10 in the inventory"


def test_the_https_redirect_advice_keeps_a_non_default_port():
    result = judge(HttpParams(), HTTP_ORIGIN, answer(308, location="https://site1.example.com:8443/"))
    assert result.findings[0].advice == "set origin: https://203.0.113.10:8443 in the inventory"


def test_an_expected_redirect_passes():
    result = judge(HttpParams(expect_status=[301]), HTTP_ORIGIN, answer(301, location="https://site1.example.com/"))
    assert result.ok
    assert "redirects (301) to https://site1.example.com/" in result.summary


@pytest.mark.parametrize("target, location", [
    (HTTP_ORIGIN, "https://elsewhere.example.net/"),   # another site
    (HTTP_ORIGIN, "http://site1.example.com/new"),     # not to https
    (public_target(host(wordpress={"url": "http://site1.example.com/"}), "/"), "https://site1.example.com/"),
])
def test_other_redirects_carry_no_finding(target, location):
    result = judge(HttpParams(), target, answer(302, location=location))
    assert result.verdict is Verdict.FAILED and location in result.summary
    assert result.findings == ()


def test_observed_keeps_the_old_keys_and_adds_where_and_tls():
    target = origin_target(host(origin="https://203.0.113.10", wordpress={"url": "https://site1.example.com/"}), "/")
    result = judge(HttpParams(cdn_hostname="cdn.example.test"), target,
                   answer(body="<img src='https://cdn.example.test/a.png'>", tls_version="TLSv1.3", verified=True))
    assert result.ok
    assert result.observed == {
        "status": 200, "seconds": 0.01, "bytes": 42, "cdn_urls": 1, "server": "nginx",
        "url": "https://site1.example.com/", "connect_to": "203.0.113.10:443",
        "tls": {"version": "TLSv1.3", "verified_for": "site1.example.com"},
    }
    assert "Host: site1.example.com" in result.evidence[0] and "verified for site1.example.com" in result.evidence[0]


def test_content_and_status_problems_are_listed():
    result = judge(HttpParams(contains=["welcome"], not_contains=["error"]), HTTP_ORIGIN, answer(502, body="error"))
    assert result.verdict is Verdict.FAILED
    assert result.summary == ("http://site1.example.com/ at 203.0.113.10:80: status 502, expected [200]; "
                              "does not contain 'welcome'; contains 'error'")


@pytest.mark.parametrize("url, want", [
    ("https://s.test/?opskit-nocache=123", "https://s.test/"),
    ("https://s.test/?a=1&opskit-nocache=123", "https://s.test/?a=1"),
    ("https://s.test/?opskit-nocache=123&a=1", "https://s.test/?a=1"),
    ("https://s.test/?a=1&opskit-nocache=123&b=2", "https://s.test/?a=1&b=2"),
    ("https://s.test/?a=1", "https://s.test/?a=1"),
])
def test_without_cache_buster(url, want):
    assert without_cache_buster(url) == want


# -- real sockets: the exceptions classify() sees -----------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and certificates it signed: for site.test, for wrong.test, and an expired one."""
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create("unit test CA")
    return {
        "ca": ca.write_pem(directory / "ca.pem"),
        "good": ca.issue("site.test").write(directory, "good"),
        "wrong": ca.issue("wrong.test").write(directory, "wrong"),
        "expired": ca.issue("site.test", valid_days=(-10, -1)).write(directory, "expired"),
    }


class Server:
    """A listening socket on ADDRESS whose accepted connections a thread hands to `handle`."""

    def __init__(self, handle, tls: ssl.SSLContext | None = None, backlog: int = 8):
        self.listener = socket.create_server((ADDRESS, 0), backlog=backlog)
        self.port = self.listener.getsockname()[1]
        self.handle, self.tls = handle, tls
        self.sni: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.sni.append(name)
        if handle is not None:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return   # closed
            try:
                if self.tls is not None:
                    connection = self.tls.wrap_socket(connection, server_side=True)
                self.handle(connection)
            except (OSError, ssl.SSLError):
                pass     # the client refused our certificate: that is the test
            finally:
                connection.close()

    def close(self):
        self.listener.close()


def read_request(connection) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def answer_ok(connection):
    read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: unit\r\nConnection: close\r\n\r\nok")


def reset_after_request(connection):
    read_request(connection)
    # linger 0: close() sends RST instead of FIN
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def close_after_request(connection):
    read_request(connection)


def speak_plain_http(connection):
    connection.recv(4096)   # a TLS ClientHello, answered as a plain http server would
    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def tls_context(pair) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, pair))
    return context


@pytest.fixture
def serve():
    servers = []

    def start(handle, tls=None, backlog=8) -> Server:
        servers.append(Server(handle, tls, backlog))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def https_origin(port: int) -> Target:
    return origin_target(host(origin=f"https://{ADDRESS}:{port}", wordpress={"url": "https://site.test/"}), "/")


def http_origin(port: int) -> Target:
    return origin_target(host(origin=f"http://{ADDRESS}:{port}", wordpress={"url": "http://site.test/"}), "/")


def provoke(target: Target, trust: Trust = Trust(True, "test"), timeout: float = 3.0) -> BaseException:
    with pytest.raises(requests.RequestException) as caught:
        fetch(target, trust, timeout, bypass_cache=True)
    return caught.value


def test_tls_to_the_ip_with_sni_and_verification_for_the_site(serve, pki):
    server = serve(answer_ok, tls_context(pki["good"]))
    got = fetch(https_origin(server.port), Trust(str(pki["ca"]), "test"), 3.0, bypass_cache=True)
    assert (got.status, got.body, got.server, got.verified) == (200, "ok", "unit", True)
    assert got.tls_version in ("TLSv1.2", "TLSv1.3")
    assert server.sni == ["site.test"]


def test_hostname_mismatch(serve, pki):
    server = serve(answer_ok, tls_context(pki["wrong"]))
    kind, detail = classify(provoke(https_origin(server.port), Trust(str(pki["ca"]), "test")))
    assert kind == "tls-hostname-mismatch"
    assert "site.test" in detail and "wrong.test" in detail


def test_hostname_mismatch_found_by_openssl(serve, pki):
    # without the site-name adapter OpenSSL matches the name itself (verify_code 62)
    server = serve(answer_ok, tls_context(pki["wrong"]))
    with pytest.raises(requests.RequestException) as caught:
        with requests.Session() as http:
            http.trust_env = False
            adapter = requests.adapters.HTTPAdapter()
            adapter.init_poolmanager(1, 1, server_hostname="site.test")
            http.mount("https://", adapter)
            http.get(f"https://{ADDRESS}:{server.port}/", verify=str(pki["ca"]), timeout=3)
    assert classify(caught.value)[0] == "tls-hostname-mismatch"


def test_unknown_issuer(serve, pki):
    server = serve(answer_ok, tls_context(pki["good"]))
    kind, detail = classify(provoke(https_origin(server.port)))   # the bundled public CAs only
    assert (kind, detail) == ("tls-unknown-issuer", "unable to get local issuer certificate")


def test_expired(serve, pki):
    server = serve(answer_ok, tls_context(pki["expired"]))
    assert classify(provoke(https_origin(server.port), Trust(str(pki["ca"]), "test"))) == \
        ("tls-expired", "certificate has expired")


def test_tls_to_a_plain_http_port_is_a_handshake_failure(serve):
    server = serve(speak_plain_http)
    assert classify(provoke(https_origin(server.port)))[0] == "tls-handshake"


def test_closed_port_is_refused():
    # bound but not listening: the kernel answers RST, and nobody else can take the port
    with socket.socket() as bound:
        bound.bind((ADDRESS, 0))
        assert classify(provoke(http_origin(bound.getsockname()[1]))) == ("refused", "Connection refused")


def test_accepts_and_never_answers_is_a_read_timeout(serve):
    server = serve(None)   # the kernel accepts; nobody reads or answers
    exc = provoke(http_origin(server.port), timeout=0.3)
    assert classify(exc) == ("read-timeout", "no response after connecting")
    assert explain("read-timeout", "", http_origin(server.port), 0.3) == "connected but no response in 0.3s"


def test_a_full_accept_queue_is_a_connect_timeout(serve):
    server = serve(None, backlog=0)
    fillers = [socket.socket() for _ in range(3)]
    try:
        for filler in fillers:   # fill the accept queue: the kernel then drops new SYNs
            filler.setblocking(False)
            try:
                filler.connect((ADDRESS, server.port))
            except BlockingIOError:
                pass
        time.sleep(0.1)
        target = http_origin(server.port)
        kind, _ = classify(provoke(target, timeout=0.3))
        assert kind == "connect-timeout"
        assert explain(kind, "", target, 0.3) == f"no answer in 0.3s from {ADDRESS}:{server.port}"
    finally:
        for filler in fillers:
            filler.close()


def test_reset(serve):
    server = serve(reset_after_request)
    assert classify(provoke(http_origin(server.port)))[0] == "reset"


def test_closed_without_an_answer(serve):
    server = serve(close_after_request)
    assert classify(provoke(http_origin(server.port)))[0] == "closed"


def test_name_resolution(monkeypatch):
    # the one failure loopback cannot produce without asking a real resolver: the lookup
    # itself fails here, and urllib3 and requests wrap it as they would
    real = socket.getaddrinfo

    def no_such_name(name, *args, **kwargs):
        if name == "unresolvable.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    target = public_target(host(wordpress={"url": "http://unresolvable.test/"}), "/")
    assert classify(provoke(target)) == ("name-resolution", "Name or service not known")


def test_anything_else_keeps_its_type_and_text():
    assert classify(ValueError("odd")) == ("other", "ValueError: odd")


def test_explain_names_the_certificate_problem():
    target = https_origin(443)
    assert explain("tls-hostname-mismatch", "d", target, 15).startswith("certificate for site.test not valid: hostname mismatch")
    assert explain("tls-unknown-issuer", "d", target, 15).startswith("certificate for site.test not valid: unknown issuer")
    assert explain("tls-expired", "d", target, 15).startswith("certificate for site.test not valid: expired")


# -- start-up cost ------------------------------------------------------------------------------
def test_importing_the_check_does_not_import_requests():
    timings = subprocess.run([sys.executable, "-X", "importtime", "-c", "import opskit.checks.http"],
                             capture_output=True, text=True, cwd=ROOT, check=True).stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in timings.splitlines()}
    assert not {"requests", "urllib3", "ssl"} & imported
