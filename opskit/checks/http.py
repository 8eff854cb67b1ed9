"""The http check: GET a page from the controller and compare status, content and CDN URLs.

Where it connects, and as whom:

    via: origin   connect to the host's `origin` (http:// or https://, IP[:PORT]) and speak
                  as the site: its Host header and, over https, SNI and certificate
                  verification for the site's own name (the host of wordpress.url), never
                  for the IP. The site's name is never looked up in DNS.
    via: public   wordpress.url as the world sees it; with wordpress.resolve its name is
                  pinned to ADDRESS[:PORT] (like curl --resolve), for http and https alike.
    url: URL      exactly that URL.

Redirects are never followed: a 301/302/303/307/308 is reported with its Location, and
passes only when its status is in expect_status. An http origin that redirects to https
adds an info finding (origin-redirects-to-https) saying which origin to write instead.

Trust: the CA in the host's `tls: {ca_bundle: PATH}`, else $REQUESTS_CA_BUNDLE, else
$SSL_CERT_FILE, else the bundled public CAs. `tls: {verify: false}` accepts any
certificate and adds a warning finding (tls-verification-disabled). Proxies from the
environment are always ignored: the point is to reach the origin directly.

Errors are classified by exception type (`classify`), not by message text.
`requests` is imported only when a request is made: it costs ~40 ms of start-up.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from opskit.findings import Family, Finding, Severity
from opskit.inventory import parse_endpoint
from opskit.steps import Check, CheckResult, Context, Verdict, register

if TYPE_CHECKING:
    from opskit.inventory import Host, TlsSettings

CACHE_BUSTER = "opskit-nocache"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None            # default: the host's origin (with the site's Host header)
    via: Literal["origin", "public"] = "origin"
    path: str = "/"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    cdn_hostname: str | None = None   # count URLs pointing at this CDN host in the page
    expect_cdn: Literal["present", "absent", "any"] = "any"
    retry_for: float = Field(default=0.0, ge=0, le=300)   # keep asking until it passes (opcache, caches)
    timeout: float = Field(default=15.0, gt=0)
    bypass_cache: bool = True


# -- where to connect ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One request, in the site's terms and in the network's.

    url:        the URL as the site sees it (https://site.example.com/path), for reports
    request:    the URL actually fetched (https://203.0.113.10:443/path when pinned)
    headers:    Host (when pinned) and User-Agent
    connect_to: "ADDRESS:PORT" when the connection does not go where DNS would send it
    tls_name:   over https, the name sent as SNI and checked in the certificate, when it is
                not the host in `request` (None: the request's own host)
    via:        "origin", "public" or "url"
    """

    url: str
    request: str
    headers: dict[str, str]
    connect_to: str | None = None
    tls_name: str | None = None
    via: str = "url"

    @property
    def https(self) -> bool:
        return self.request.startswith("https://")

    @property
    def verify_name(self) -> str:
        """The name the certificate must be valid for."""
        return self.tls_name or urlsplit(self.request).hostname or ""

    @property
    def label(self) -> str:
        return f"{self.url} at {self.connect_to}" if self.connect_to else self.url


USER_AGENT = {"User-Agent": "opskit/0.1 (+check)"}


def http_target(params: HttpParams, ctx: Context) -> Target:
    """What to GET for these params on this host. Raises ValueError when the inventory
    lacks what the params need."""
    if params.url:
        return Target(params.url, params.url, dict(USER_AGENT))
    if params.via == "origin":
        return origin_target(ctx.host, params.path)
    return public_target(ctx.host, params.path)


def origin_target(host: "Host", path: str) -> Target:
    """The host's own web server (bypassing DNS and the CDN), spoken to as the site."""
    if not host.origin:
        raise ValueError(f"{host.name}: no 'origin' in the inventory; cannot reach the origin directly")
    origin = urlsplit(host.origin)
    address = unquote(origin.hostname or "")   # an IPv6 zone arrives URL-escaped (%25)
    site = host.site_hostname or address
    port = origin.port or DEFAULT_PORTS[origin.scheme]
    return _pinned(origin.scheme, site, site, address, port, origin.path.rstrip("/") + path, "origin")


def public_target(host: "Host", path: str) -> Target:
    """wordpress.url, reached through DNS unless wordpress.resolve pins its name to an address."""
    if not host.wordpress.url:
        raise ValueError(f"{host.name}: no wordpress.url in the inventory")
    public = urlsplit(host.wordpress.url)
    full_path = public.path.rstrip("/") + path
    if not host.wordpress.resolve:
        return Target(host.wordpress.url.rstrip("/") + path, host.wordpress.url.rstrip("/") + path,
                      dict(USER_AGENT), via="public")
    site = public.hostname or ""
    address, port = parse_endpoint(host.wordpress.resolve, public.port or DEFAULT_PORTS[public.scheme])
    # the Host header a browser sends for this URL: with its port when the URL has one
    host_header = f"{site}:{public.port}" if public.port else site
    return _pinned(public.scheme, site, host_header, address, port, full_path, "public")


def _pinned(scheme: str, site: str, host_header: str, address: str, port: int, path: str, via: str) -> Target:
    """A request to ADDRESS:PORT that speaks as `site` (Host header, and SNI for https)."""
    netloc = _netloc(address, port)
    return Target(
        url=f"{scheme}://{host_header}{path}",
        request=f"{scheme}://{netloc}{path}",
        headers={**USER_AGENT, "Host": host_header},
        connect_to=netloc,
        tls_name=site if scheme == "https" else None,
        via=via,
    )


def _netloc(address: str, port: int) -> str:
    if ":" in address:   # IPv6: brackets, and a zone's % escaped as URLs want it
        return f"[{address.replace('%', '%25')}]:{port}"
    return f"{address}:{port}"


# -- whom to trust ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trust:
    """requests' `verify`: True (the bundled public CAs), a CA file or directory, or False."""

    verify: bool | str
    source: str

    def problem(self) -> str | None:
        if isinstance(self.verify, str) and not os.path.exists(self.verify):
            return f"the CA bundle {self.verify} (from {self.source}) does not exist"
        return None


def trust_for(tls: "TlsSettings", environ: Mapping[str, str]) -> Trust:
    """The inventory's tls settings win over the environment; the environment over the
    bundled CAs. (trust_env is off to ignore proxies, so requests would not read these.)"""
    if not tls.verify:
        return Trust(False, "tls.verify: false")
    if tls.ca_bundle:
        return Trust(tls.ca_bundle, "tls.ca_bundle")
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if environ.get(name):
            return Trust(environ[name], name)
    return Trust(True, "the bundled public CAs")


# -- the request --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """What the server said, reduced to what the check compares."""

    status: int
    body: str
    size: int
    seconds: float
    location: str | None = None       # absolute, without opskit's cache-busting parameter
    server: str | None = None
    tls_version: str | None = None    # "TLSv1.3" over https
    verified: bool = False            # the certificate was checked
    headers: tuple[tuple[str, str], ...] = ()   # every response header, lower-case names (diagnose's hops)

    @property
    def redirect(self) -> bool:
        return self.status in REDIRECTS


def fetch(target: Target, trust: Trust, timeout: float, bypass_cache: bool) -> Answer:
    """GET with caches bypassed (no-cache headers and a unique query string, which page
    caches — WordPress caching plugins, nginx fastcgi_cache, CDN HTML caches — key on)."""
    import requests

    url, headers = target.request, dict(target.headers)
    if bypass_cache:
        headers = {**headers, "Cache-Control": "no-cache", "Pragma": "no-cache"}
        url += ("&" if "?" in url else "?") + f"{CACHE_BUSTER}={time.time_ns()}"
    if trust.verify is False:
        _silence_insecure_request_warning()
    with requests.Session() as http:
        http.trust_env = False   # never route through a proxy from the environment
        http.mount("https://", tls_adapter(target.tls_name))
        started = time.monotonic()
        # stream: the connection (and what it saw of TLS) is released once the body is read
        with http.get(url, headers=headers, timeout=timeout, allow_redirects=False,
                      verify=trust.verify, stream=True) as response:
            tls_version, verified = getattr(response.raw.connection, "tls_seen", (None, False))
            content = response.content
            seconds = time.monotonic() - started
            location = response.headers.get("Location")
            return Answer(
                status=response.status_code, body=response.text, size=len(content), seconds=seconds,
                location=without_cache_buster(urljoin(target.url, location)) if location else None,
                server=response.headers.get("Server"), tls_version=tls_version, verified=verified,
                headers=tuple((k.lower(), v) for k, v in response.headers.items()))


def tls_adapter(site_name: str | None):
    """A requests transport adapter for https that records each connection's TLS version and
    verification, and, given `site_name`, connects where the URL says (an IP) but does TLS as
    that site: SNI and certificate verification for that name, like curl --connect-to."""
    return _tls_adapter_class()(site_name)


@functools.cache
def _tls_adapter_class():
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPSConnection
    from urllib3.connectionpool import HTTPSConnectionPool

    class RecordingConnection(HTTPSConnection):
        # kept on the connection object: http.client drops the socket itself as soon as the
        # headers of a "Connection: close" answer are read
        tls_seen: tuple[str | None, bool] = (None, False)

        def connect(self):
            super().connect()
            self.tls_seen = (self.sock.version(), bool(self.is_verified))

    class RecordingPool(HTTPSConnectionPool):
        ConnectionCls = RecordingConnection

    class TlsAdapter(HTTPAdapter):
        def __init__(self, site_name: str | None):
            self.site_name = site_name   # set first: HTTPAdapter.__init__ calls init_poolmanager
            super().__init__()

        def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
            if self.site_name:
                # urllib3's HTTPSConnectionPool: server_hostname is the SNI, assert_hostname
                # the name the certificate is matched against
                pool_kwargs.update(server_hostname=self.site_name, assert_hostname=self.site_name)
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
            self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme,
                                                       "https": RecordingPool}

    return TlsAdapter


@functools.cache
def _silence_insecure_request_warning() -> None:
    """urllib3 warns on every unverified request; the check reports it once, as a finding.
    A process-wide filter rather than catch_warnings, which is not thread-safe (hosts run
    in parallel threads)."""
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)


def without_cache_buster(url: str) -> str:
    """Pure: `url` without the opskit-nocache=N parameter fetch() added (servers copy it
    into their redirects' Location)."""
    match = re.search(rf"([?&]){CACHE_BUSTER}=\d+(&?)", url)
    if not match:
        return url
    separator, more = match.groups()
    return url[:match.start()] + (separator if more else "") + url[match.end():]


def count_cdn_urls(body: str, cdn_hostname: str) -> int:
    """Pure: how many URLs in the page point at the CDN host (plain or JSON-escaped, any
    case; a longer host that merely starts with it does not count)."""
    host = re.escape(cdn_hostname)
    return len(re.findall(r"(?:https?:)?(?:\\?/){2}" + host + r"(?![A-Za-z0-9.-])", body, re.IGNORECASE))


# -- why a request got no answer ----------------------------------------------------------------
# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code)
UNKNOWN_ISSUER_CODES = frozenset({2, 18, 19, 20, 21})   # issuer missing, self-signed, unverifiable leaf
EXPIRED_CODE, NOT_YET_VALID_CODE = 10, 9
HOSTNAME_MISMATCH_CODES = frozenset({62, 64})           # hostname, IP address


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything behind it, outermost first, each once: __cause__, __context__,
    urllib3's `reason` (MaxRetryError), and exceptions passed as arguments (requests wraps
    urllib3's errors, and urllib3 the socket's, that way)."""
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        behind = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        queue += [e for e in behind if isinstance(e, BaseException)]


def classify(exc: BaseException) -> tuple[str, str]:
    """Pure: (kind, detail) for an exception a request raised, from the exception types in
    its chain. Kinds: tls-hostname-mismatch, tls-unknown-issuer, tls-expired,
    tls-not-yet-valid, tls-invalid, tls-handshake, refused, name-resolution, unreachable,
    connect-timeout, read-timeout, closed, reset, protocol, other. The detail is the
    innermost telling message (OpenSSL's verify message, the socket's strerror)."""
    chain = list(exception_chain(exc))
    for rule in (_certificate, _tls_handshake, _refused, _name_resolution, _unreachable,
                 _connect_timeout, _read_timeout, _closed, _reset, _protocol):
        found = rule(chain)
        if found:
            return found
    return "other", f"{type(exc).__name__}: {exc}"


def _first(chain: list[BaseException], kind: type | tuple[type, ...]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, kind)), None)


def _certificate(chain):
    import ssl

    from urllib3.util.ssl_match_hostname import CertificateError as NameMismatch

    mismatch = _first(chain, NameMismatch)   # urllib3 matches names itself when assert_hostname is set
    if mismatch is not None:
        return "tls-hostname-mismatch", str(mismatch)
    failed = _first(chain, ssl.SSLCertVerificationError)
    if failed is None:
        return None
    code, message = failed.verify_code, failed.verify_message or str(failed)
    if code in HOSTNAME_MISMATCH_CODES:
        return "tls-hostname-mismatch", message
    if code in UNKNOWN_ISSUER_CODES:
        return "tls-unknown-issuer", message
    if code == EXPIRED_CODE:
        return "tls-expired", message
    if code == NOT_YET_VALID_CODE:
        return "tls-not-yet-valid", message
    return "tls-invalid", message


def _tls_handshake(chain):
    import ssl

    failed = _first(chain, ssl.SSLError)
    if failed is not None:
        return "tls-handshake", failed.reason or str(failed)
    return None


def _refused(chain):
    refused = _first(chain, ConnectionRefusedError)
    return ("refused", refused.strerror or str(refused)) if refused is not None else None


def _name_resolution(chain):
    import socket

    from urllib3.exceptions import NameResolutionError

    failed = _first(chain, socket.gaierror)
    if failed is not None:
        return "name-resolution", failed.strerror or str(failed)
    failed = _first(chain, NameResolutionError)
    return ("name-resolution", str(failed)) if failed is not None else None


def _unreachable(chain):
    import errno

    failed = next((e for e in chain if isinstance(e, OSError)
                   and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)), None)
    return ("unreachable", failed.strerror or str(failed)) if failed is not None else None


def _connect_timeout(chain):
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    # urllib3's NewConnectionError (refused, unreachable, ...) is a ConnectTimeoutError
    # for backward compatibility; it is not a timeout
    if any(isinstance(e, ConnectTimeout) or isinstance(e, ConnectTimeoutError)
           and not isinstance(e, NewConnectionError) for e in chain):
        return "connect-timeout", "no answer while connecting"
    return None


def _read_timeout(chain):
    from requests.exceptions import ReadTimeout
    from urllib3.exceptions import ReadTimeoutError

    if _first(chain, (ReadTimeout, ReadTimeoutError)) is not None:
        return "read-timeout", "no response after connecting"
    return None


def _closed(chain):
    from http.client import RemoteDisconnected

    closed = _first(chain, RemoteDisconnected)
    return ("closed", str(closed) or "closed without an answer") if closed is not None else None


def _reset(chain):
    reset = _first(chain, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError))
    return ("reset", reset.strerror or str(reset)) if reset is not None else None


def _protocol(chain):
    from requests.exceptions import ChunkedEncodingError, ContentDecodingError
    from urllib3.exceptions import ProtocolError

    failed = _first(chain, (ProtocolError, ChunkedEncodingError, ContentDecodingError))
    return ("protocol", str(failed)) if failed is not None else None


def explain(kind: str, detail: str, target: Target, timeout: float) -> str:
    """Pure: the summary line for a request that got no answer."""
    name, where = target.verify_name, target.connect_to or urlsplit(target.request).netloc
    certificate = f"certificate for {name} not valid"
    texts = {
        "tls-hostname-mismatch": f"{certificate}: hostname mismatch ({detail})",
        "tls-unknown-issuer": f"{certificate}: unknown issuer ({detail}); give its CA in tls.ca_bundle or REQUESTS_CA_BUNDLE",
        "tls-expired": f"{certificate}: expired ({detail})",
        "tls-not-yet-valid": f"{certificate}: not valid yet ({detail}); check the clocks",
        "tls-invalid": f"{certificate}: {detail}",
        "tls-handshake": f"TLS handshake with {where} failed: {detail}",
        "refused": f"cannot connect to {where}: connection refused",
        "name-resolution": f"cannot resolve {urlsplit(target.request).hostname}: {detail}",
        "unreachable": f"cannot reach {where}: {detail}",
        "connect-timeout": f"no answer in {timeout:g}s from {where}",
        "read-timeout": f"connected but no response in {timeout:g}s",
        "closed": "the server closed the connection without an answer",
        "reset": f"the connection was reset ({detail})",
    }
    return texts.get(kind, detail)


# -- judging the answer -------------------------------------------------------------------------
def judge(params: HttpParams, target: Target, answer: Answer, findings: tuple[Finding, ...] = ()) -> CheckResult:
    """Pure: the verdict on an answer. 'failed' = it answered, but wrong."""
    problems = _status_problems(params, answer)
    problems += [f"does not contain {s!r}" for s in params.contains if s not in answer.body]
    problems += [f"contains {s!r}" for s in params.not_contains if s in answer.body]
    observed = _observed(target, answer)
    cdn_note = ""
    if params.cdn_hostname:
        cdn_urls = count_cdn_urls(answer.body, params.cdn_hostname)
        observed["cdn_urls"] = cdn_urls
        cdn_note = f", {cdn_urls} URLs to {params.cdn_hostname}"
        if params.expect_cdn == "absent" and cdn_urls:
            problems.append(f"still has {cdn_urls} URLs to {params.cdn_hostname}")
        if params.expect_cdn == "present" and not cdn_urls:
            problems.append(f"has no URLs to {params.cdn_hostname}")
    evidence = (_evidence_line(target, answer) + cdn_note,)
    redirect = https_redirect_finding(target, answer)
    findings = tuple(findings) + ((redirect,) if redirect else ())
    if problems:
        return CheckResult(Verdict.FAILED, f"{target.label}: " + "; ".join(problems), observed,
                           params.expect_status, evidence, findings)
    answered = (f"redirects ({answer.status}) to {answer.location}" if answer.redirect
                else f"answered {answer.status}")
    return CheckResult(Verdict.PASSED, f"{target.label} {answered} in {answer.seconds:.2f}s{cdn_note}",
                       observed, params.expect_status, evidence, findings)


def _status_problems(params: HttpParams, answer: Answer) -> list[str]:
    if answer.status in params.expect_status:
        return []
    if answer.redirect:
        return [f"redirects ({answer.status}) to {answer.location or '(no Location)'}, expected {params.expect_status}"]
    return [f"status {answer.status}, expected {params.expect_status}"]


def _observed(target: Target, answer: Answer) -> dict:
    observed = {"status": answer.status, "seconds": round(answer.seconds, 3), "bytes": answer.size,
                "url": target.url, "connect_to": target.connect_to, "server": answer.server}
    if answer.location:
        observed["location"] = answer.location
    if target.https:
        observed["tls"] = {"version": answer.tls_version, "verified_for": target.verify_name if answer.verified else None}
    return observed


def _evidence_line(target: Target, answer: Answer) -> str:
    host = f" (Host: {target.headers['Host']})" if "Host" in target.headers else ""
    tls = ""
    if target.https:
        tls = f" [{answer.tls_version}, certificate " + (f"verified for {target.verify_name}]" if answer.verified
                                                        else "NOT verified]")
    moved = f" Location: {answer.location}" if answer.location else ""
    return f"GET {target.request}{host}{tls} → {answer.status}{moved} in {answer.seconds:.3f}s"


def https_redirect_finding(target: Target, answer: Answer) -> Finding | None:
    """Pure: an http origin that sends the site to https is healthy, just asked the wrong way."""
    if target.via != "origin" or target.https or not answer.redirect or not answer.location:
        return None
    moved = urlsplit(answer.location)
    connected = urlsplit(target.request)
    site = urlsplit(target.url).hostname
    if moved.scheme != "https" or moved.hostname not in {site, connected.hostname}:
        return None
    origin = _https_origin(connected.hostname or "", moved.port)
    return Finding(
        "origin-redirects-to-https", Severity.INFO,
        f"the origin answers http with a redirect to {answer.location}: the site is served over https",
        (_evidence_line(target, answer),),
        f"set origin: {origin} in the inventory", family=Family.ORIGIN)


def _https_origin(address: str, port: int | None) -> str:
    """What to write as `origin` for https at this address (the port only when not 443)."""
    if port and port != DEFAULT_PORTS["https"]:
        return f"https://{_netloc(address, port)}"
    return f"https://[{address}]" if ":" in address else f"https://{address}"


def verification_disabled_finding(target: Target, trust: Trust) -> Finding | None:
    if not target.https or trust.verify is not False:
        return None
    return Finding(
        "tls-verification-disabled", Severity.WARNING,
        f"{target.label}: the certificate is not checked (tls.verify: false)",
        (f"GET {target.request} without certificate verification",),
        f"remove tls.verify: false, or set tls.ca_bundle to the CA that signed {target.verify_name}'s certificate",
        family=Family.ORIGIN)


# -- the check ----------------------------------------------------------------------------------
@register
class Http(Check):
    """GET a page and compare status, content and CDN URLs.
    'failed' = it answered wrong; 'error' = no answer (or nothing to compare with)."""

    name = "http"
    needs_host = False   # it asks from the controller: no SSH session needed
    Params = HttpParams

    def run(self, params: HttpParams, ctx: Context) -> CheckResult:
        deadline = time.monotonic() + params.retry_for
        attempts = 0
        while True:
            attempts += 1
            result = self.once(params, ctx)
            if result.ok or time.monotonic() >= deadline or result.verdict is Verdict.ERROR and attempts > 3:
                if attempts > 1:
                    result.summary += f" (after {attempts} tries)"
                    result.observed = {**(result.observed or {}), "tries": attempts}
                return result
            time.sleep(0.5)

    def preflight(self, params: HttpParams, ctx: Context) -> str | None:
        try:
            target = http_target(params, ctx)
        except ValueError as exc:
            return str(exc)
        if params.expect_cdn != "any" and not params.cdn_hostname:
            return "the CDN hostname is unknown (set cdn.hostname in the inventory)"
        if target.https and (problem := trust_for(ctx.host.tls, os.environ).problem()):
            return f"{target.label}: {problem}"
        return None

    def once(self, params: HttpParams, ctx: Context) -> CheckResult:
        if unmet := self.preflight(params, ctx):
            return CheckResult(Verdict.ERROR, unmet, unmet=unmet)
        target = http_target(params, ctx)
        trust = trust_for(ctx.host.tls, os.environ)
        unverified = verification_disabled_finding(target, trust)
        findings = (unverified,) if unverified else ()
        import requests

        try:
            answer = fetch(target, trust, params.timeout, params.bypass_cache)
        except requests.RequestException as exc:
            kind, detail = classify(exc)
            summary = explain(kind, detail, target, params.timeout)
            observed = {"error": kind, "url": target.url, "connect_to": target.connect_to}
            return CheckResult(Verdict.ERROR, f"{target.label}: {summary}", observed, params.expect_status,
                               (f"GET {target.request}: {kind}: {detail}",), findings)
        return judge(params, target, answer, findings)
