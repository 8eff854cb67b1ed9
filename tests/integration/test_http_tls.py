"""The http check against a real nginx speaking TLS on loopback (lab/tls_nginx.py, 127.0.40.201):
the origin by IP with SNI and verification for the site's name, the CA from the inventory or
the environment, http → https redirects, a wrong, an expired and an unknown certificate, and
wordpress.resolve over https.

No sshd: the http check runs from the controller, so the Context has no session. The site's
name (site.test) is never looked up: every test fails if anything asks DNS for a name.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
import yaml

from lab.tls import CertificateAuthority
from lab.tls_nginx import HOME_PAGE, TlsNginx
from opskit import inventory
from opskit.checks.http import Http, HttpParams
from opskit.findings import Severity
from opskit.steps import CheckResult, Context, Verdict

pytestmark = pytest.mark.integration

SITE = "site.test"


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    server = TlsNginx(tmp_path_factory.mktemp("tls-nginx"), hostname=SITE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    """Every name lookup fails the test: the check must connect to addresses only."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def addresses_only(name, *args, **kwargs):
        try:
            ipaddress.ip_address(str(name).strip("[]"))
        except ValueError:
            asked.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"the test forbids looking up {name}") from None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", addresses_only)
    yield
    assert asked == [], f"DNS was asked for {asked}"


@pytest.fixture(autouse=True)
def no_ca_from_the_environment(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def run_check(tmp_path, nginx, fields: dict, **params) -> CheckResult:
    """The http check for a host of a real inventory file (written, then loaded)."""
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": {"site": {"address": nginx.address, **fields}}}))
    host = inventory.load(path).hosts["site"]
    return Http().run(HttpParams(**params), Context(host, session=None, run_id="test-http-tls"))


def https_origin(nginx, port=None, **fields) -> dict:
    return {"origin": f"https://{nginx.address}:{port or nginx.https_port}", "wordpress": {"url": f"https://{SITE}/"},
            **fields}


def test_https_origin_by_ip_verified_with_the_inventory_ca(tmp_path, nginx):
    result = run_check(tmp_path, nginx, https_origin(nginx, tls={"ca_bundle": str(nginx.ca_pem)}),
                       contains=[HOME_PAGE.format(hostname=SITE)])
    assert result.ok, result.summary
    observed = result.observed
    assert observed["url"] == f"https://{SITE}/"
    assert observed["connect_to"] == f"{nginx.address}:{nginx.https_port}"
    assert observed["tls"]["verified_for"] == SITE
    assert observed["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert observed["server"].startswith("nginx")
    assert result.findings == ()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_https_origin_verified_with_the_ca_from_the_environment(tmp_path, nginx, monkeypatch, variable):
    monkeypatch.setenv(variable, str(nginx.ca_pem))
    result = run_check(tmp_path, nginx, https_origin(nginx))
    assert result.ok, result.summary
    assert result.observed["tls"]["verified_for"] == SITE


def test_the_inventory_ca_wins_over_the_environment(tmp_path, nginx, monkeypatch):
    other_ca = CertificateAuthority.create("some other CA").write_pem(tmp_path / "other-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    assert run_check(tmp_path, nginx, https_origin(nginx)).verdict is Verdict.ERROR
    assert run_check(tmp_path, nginx, https_origin(nginx, tls={"ca_bundle": str(nginx.ca_pem)})).ok


def test_http_origin_redirecting_to_https_is_reported_with_a_finding(tmp_path, nginx):
    fields = {"origin": f"http://{nginx.address}:{nginx.http_port}", "wordpress": {"url": f"https://{SITE}/"}}
    result = run_check(tmp_path, nginx, fields)
    location = f"https://{SITE}:{nginx.https_port}/"
    assert result.verdict is Verdict.FAILED
    assert f"redirects (301) to {location}" in result.summary
    assert result.observed["location"] == location
    (finding,) = result.findings
    assert (finding.cause, finding.severity) == ("origin-redirects-to-https", Severity.INFO)
    advised = f"https://{nginx.address}:{nginx.https_port}"
    assert finding.advice == f"set origin: {advised} in the inventory"
    # and the advice works
    followed = run_check(tmp_path, nginx, {**fields, "origin": advised, "tls": {"ca_bundle": str(nginx.ca_pem)}})
    assert followed.ok, followed.summary


def test_an_expected_redirect_passes_and_names_its_location(tmp_path, nginx):
    result = run_check(tmp_path, nginx, https_origin(nginx, tls={"ca_bundle": str(nginx.ca_pem)}),
                       path="/moved", expect_status=[301])
    assert result.ok, result.summary
    assert result.observed["location"] == f"https://{SITE}:{nginx.https_port}/new"
    assert f"redirects (301) to https://{SITE}:{nginx.https_port}/new" in result.summary


def test_a_certificate_for_another_name_is_a_hostname_mismatch(tmp_path, nginx):
    result = run_check(tmp_path, nginx, https_origin(nginx, nginx.wrong_port, tls={"ca_bundle": str(nginx.ca_pem)}))
    assert result.verdict is Verdict.ERROR
    assert f"certificate for {SITE} not valid: hostname mismatch" in result.summary
    assert nginx.wrong_hostname in result.summary
    assert result.observed["error"] == "tls-hostname-mismatch"


def test_a_certificate_from_an_unknown_ca_is_an_unknown_issuer(tmp_path, nginx):
    result = run_check(tmp_path, nginx, https_origin(nginx))   # only the bundled public CAs
    assert result.verdict is Verdict.ERROR
    assert f"certificate for {SITE} not valid: unknown issuer" in result.summary
    assert result.observed["error"] == "tls-unknown-issuer"


def test_an_expired_certificate(tmp_path, nginx):
    result = run_check(tmp_path, nginx, https_origin(nginx, nginx.expired_port, tls={"ca_bundle": str(nginx.ca_pem)}))
    assert result.verdict is Verdict.ERROR
    assert f"certificate for {SITE} not valid: expired" in result.summary


def test_wordpress_resolve_over_https(tmp_path, nginx):
    fields = {"wordpress": {"url": f"https://{SITE}/", "resolve": f"{nginx.address}:{nginx.https_port}"},
              "tls": {"ca_bundle": str(nginx.ca_pem)}}
    result = run_check(tmp_path, nginx, fields, via="public")
    assert result.ok, result.summary
    assert result.observed["connect_to"] == f"{nginx.address}:{nginx.https_port}"
    assert result.observed["tls"]["verified_for"] == SITE


def test_verification_disabled_passes_with_a_warning(tmp_path, nginx):
    result = run_check(tmp_path, nginx, https_origin(nginx, nginx.wrong_port, tls={"verify": False}))
    assert result.ok, result.summary
    assert result.observed["tls"]["verified_for"] is None
    (finding,) = result.findings
    assert (finding.cause, finding.severity) == ("tls-verification-disabled", Severity.WARNING)
