"""Basic checks: a path's state on the host, an HTTP request from the controller."""

from __future__ import annotations

import re
import stat as stat_module
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from opskit.steps import Check, CheckResult, Context, Verdict, register
from opskit.template import truthy


class PathParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    state: Literal["present", "absent", "file", "directory"] = "present"


@register
class PathState(Check):
    name = "path"
    Params = PathParams

    def run(self, params: PathParams, ctx: Context) -> CheckResult:
        path = ctx.path(params.path)
        attrs = ctx.session.stat(path)
        if attrs is None:
            observed = "absent"
        elif stat_module.S_ISDIR(attrs.st_mode or 0):
            observed = "directory"
        else:
            observed = "file"
        wanted = params.state
        ok = observed == wanted or (wanted == "present" and observed != "absent")
        verdict = Verdict.PASSED if ok else Verdict.FAILED
        return CheckResult(verdict, f"{path} is {observed} (expected {wanted})", observed, wanted, (f"stat {path}: {observed}",))


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


def http_target(params: HttpParams, ctx: Context) -> tuple[str, dict[str, str]]:
    """URL to connect to and headers.

    origin: the host's `origin` (its own web server, bypassing DNS and the CDN) with the
            site's Host header. public: wordpress.url as the world sees it — unless the
            inventory pins it with wordpress.resolve (like curl --resolve).
    """
    headers: dict[str, str] = {"User-Agent": "opskit/0.1 (+check)"}
    if params.url:
        return params.url, headers
    host = ctx.host
    if params.via == "origin":
        if not host.origin:
            raise ValueError(f"{host.name}: no 'origin' in the inventory; cannot reach the origin directly")
        if host.site_hostname:
            headers["Host"] = host.site_hostname
        return host.origin.rstrip("/") + params.path, headers
    if not host.wordpress.url:
        raise ValueError(f"{host.name}: no wordpress.url in the inventory")
    if host.wordpress.resolve:
        if not host.wordpress.url.startswith("http://"):
            raise ValueError(f"{host.name}: wordpress.resolve works with http:// URLs only")
        headers["Host"] = host.site_hostname or ""
        return f"http://{host.wordpress.resolve}" + params.path, headers
    return host.wordpress.url.rstrip("/") + params.path, headers


def fetch(url: str, headers: dict[str, str], timeout: float, bypass_cache: bool):
    """GET with caches bypassed: no-cache headers and a unique query string, which
    page caches (WordPress caching plugins, nginx fastcgi_cache, CDN HTML caches) key on."""
    import requests  # lazily: it costs ~40 ms of start-up for runs that never check HTTP

    if bypass_cache:
        headers = {**headers, "Cache-Control": "no-cache", "Pragma": "no-cache"}
        url += ("&" if "?" in url else "?") + f"opskit-nocache={time.time_ns()}"
    with requests.Session() as http:
        http.trust_env = False   # never route through a proxy from the environment
        started = time.monotonic()
        response = http.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        return response, time.monotonic() - started


def count_cdn_urls(body: str, cdn_hostname: str) -> int:
    """Pure: how many URLs in the page point at the CDN host (plain or JSON-escaped, any
    case; a longer host that merely starts with it does not count)."""
    host = re.escape(cdn_hostname)
    return len(re.findall(r"(?:https?:)?(?:\\?/){2}" + host + r"(?![A-Za-z0-9.-])", body, re.IGNORECASE))


@register
class Http(Check):
    """GET a page and compare status, content and CDN URLs.
    'failed' = it answered wrong; 'error' = no answer (or nothing to compare with)."""

    name = "http"
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

    def once(self, params: HttpParams, ctx: Context) -> CheckResult:
        try:
            url, headers = http_target(params, ctx)
        except ValueError as exc:
            return CheckResult(Verdict.ERROR, str(exc))
        if params.expect_cdn != "any" and not params.cdn_hostname:
            return CheckResult(Verdict.ERROR, "the CDN hostname is unknown (set cdn.hostname in the inventory)")
        import requests

        try:
            response, seconds = fetch(url, headers, params.timeout, params.bypass_cache)
        except requests.Timeout:
            return CheckResult(Verdict.ERROR, f"GET {url}: no answer in {params.timeout:g}s")
        except requests.ConnectionError as exc:
            reason = "cannot resolve the name" if "NameResolution" in repr(exc) or "resolve" in str(exc) else "cannot connect"
            return CheckResult(Verdict.ERROR, f"GET {url}: {reason}")
        problems = []
        if response.status_code not in params.expect_status:
            problems.append(f"status {response.status_code}, expected {params.expect_status}")
        body = response.text
        problems += [f"does not contain {s!r}" for s in params.contains if s not in body]
        problems += [f"contains {s!r}" for s in params.not_contains if s in body]
        observed = {"status": response.status_code, "seconds": round(seconds, 3), "bytes": len(response.content)}
        cdn_note = ""
        if params.cdn_hostname:
            cdn_urls = count_cdn_urls(body, params.cdn_hostname)
            observed["cdn_urls"] = cdn_urls
            cdn_note = f", {cdn_urls} URLs to {params.cdn_hostname}"
            if params.expect_cdn == "absent" and cdn_urls:
                problems.append(f"still has {cdn_urls} URLs to {params.cdn_hostname}")
            if params.expect_cdn == "present" and not cdn_urls:
                problems.append(f"has no URLs to {params.cdn_hostname}")
        via = f" (Host: {headers['Host']})" if "Host" in headers else ""
        evidence = (f"GET {url}{via} → {response.status_code} in {seconds:.3f}s{cdn_note}",)
        if problems:
            return CheckResult(Verdict.FAILED, f"{url}: " + "; ".join(problems), observed, params.expect_status, evidence)
        return CheckResult(Verdict.PASSED, f"{url} answered {response.status_code} in {seconds:.2f}s{cdn_note}",
                           observed, params.expect_status, evidence)


class RequireParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: object = None          # usually a {{ reference }}; passes when true (template.truthy: "false" is not)
    message: str = "a required condition is false"


@register
class Require(Check):
    """Stop the transaction (before anything changes) unless a fact holds."""

    name = "require"
    Params = RequireParams

    def run(self, params: RequireParams, ctx: Context) -> CheckResult:
        if truthy(params.value):
            return CheckResult(Verdict.PASSED, "condition holds", params.value, True)
        return CheckResult(Verdict.FAILED, params.message, params.value, True)
