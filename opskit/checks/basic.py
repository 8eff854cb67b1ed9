"""Basic checks: a path's state on the host, an HTTP request from the controller."""

from __future__ import annotations

import stat as stat_module
import time
from typing import Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from opskit.steps import Check, CheckResult, Context, Verdict, register


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
    timeout: float = Field(default=15.0, gt=0)
    bypass_cache: bool = True


def http_target(params: HttpParams, ctx: Context) -> tuple[str, dict[str, str]]:
    """URL to fetch and headers: origin = host's origin address + Host header of the site."""
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
    return host.wordpress.url.rstrip("/") + params.path, headers


def fetch(url: str, headers: dict[str, str], timeout: float, bypass_cache: bool) -> tuple[requests.Response, float]:
    if bypass_cache:
        headers = {**headers, "Cache-Control": "no-cache", "Pragma": "no-cache"}
        url += ("&" if "?" in url else "?") + f"opskit-nocache={time.time_ns()}"
    with requests.Session() as http:
        http.trust_env = False   # never route through a proxy from the environment
        started = time.monotonic()
        response = http.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        return response, time.monotonic() - started


@register
class Http(Check):
    """GET a page and compare status and content. 'failed' = it answered wrong; 'error' = no answer."""

    name = "http"
    Params = HttpParams

    def run(self, params: HttpParams, ctx: Context) -> CheckResult:
        try:
            url, headers = http_target(params, ctx)
        except ValueError as exc:
            return CheckResult(Verdict.ERROR, str(exc))
        try:
            response, seconds = fetch(url, headers, params.timeout, params.bypass_cache)
        except requests.Timeout:
            return CheckResult(Verdict.ERROR, f"GET {url}: no answer in {params.timeout:g}s")
        except requests.ConnectionError as exc:
            return CheckResult(Verdict.ERROR, f"GET {url}: cannot connect ({type(exc).__name__})")
        problems = []
        if response.status_code not in params.expect_status:
            problems.append(f"status {response.status_code}, expected {params.expect_status}")
        body = response.text
        problems += [f"does not contain {s!r}" for s in params.contains if s not in body]
        problems += [f"contains {s!r}" for s in params.not_contains if s in body]
        evidence = (f"GET {url} (Host: {headers.get('Host', '-')}) → {response.status_code} in {seconds:.3f}s",)
        observed = {"status": response.status_code, "seconds": round(seconds, 3)}
        if problems:
            return CheckResult(Verdict.FAILED, f"{url}: " + "; ".join(problems), observed, params.expect_status, evidence)
        return CheckResult(Verdict.PASSED, f"{url} answered {response.status_code} in {seconds:.2f}s", observed, params.expect_status, evidence)
