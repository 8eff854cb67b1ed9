"""The public side of a diagnosis, from the controller: the site through the CDN and the origin directly.

    - check: hops
      with: {path: /, timeout: 10}

Two GETs, at the same time: the public URL (wordpress.url, through DNS and the CDN, or pinned with
wordpress.resolve) and the origin (the inventory's `origin`: the host's address with the site's Host
header and SNI, bypassing DNS and the CDN), both with caches bypassed and redirects not followed
(opskit.checks.http). For each: status, seconds, Server, the CDN headers (cf-ray, X-Cache,
X-Edge-Location …) and who wrote the answer (opskit.stack.error_pages: the CDN edge, a reverse
proxy, the origin web server, PHP), or, without an answer, why (refused, closed, reset, timeout).

The check observes; the diagnose rule concludes ("down for everyone, or only through the CDN?").
It passes when both requests were made (whatever they answered), fails with an error when the
inventory gives neither a URL nor an origin.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from opskit.checks.http import (Target, classify, explain, fetch, origin_target, public_target, trust_for,
                                _evidence_line)
from opskit.stack import error_pages
from opskit.steps import Check, CheckResult, Context, Verdict, register


class HopsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "/"
    timeout: float = Field(default=10.0, gt=0, le=120)


def observe(target: Target, trust, timeout: float, via_proxy: bool) -> dict:
    """One request, reduced to what the rule reads. Never raises for a network failure."""
    import requests

    base = {"via": target.via, "url": target.url, "request": target.request, "connect_to": target.connect_to}
    try:
        answer = fetch(target, trust, timeout, bypass_cache=True)
    except requests.RequestException as exc:
        kind, detail = classify(exc)
        return {**base, "status": None, "error": kind, "detail": explain(kind, detail, target, timeout),
                "evidence": f"GET {target.request}"
                            + (f" (Host: {target.headers['Host']})" if "Host" in target.headers else "")
                            + f": {kind}: {detail}"}
    headers = dict(answer.headers)
    identity = error_pages.identify(answer.status, answer.server, headers, answer.body, via_proxy=via_proxy)
    return {**base, "status": answer.status, "error": None, "seconds": round(answer.seconds, 3),
            "server": answer.server, "location": answer.location, "cdn_headers": identity.cdn_headers,
            "identity": identity.to_json(), "bytes": answer.size,
            "evidence": _evidence_line(target, answer) + _headers_note(answer.server, identity.cdn_headers)
                        + f"; {identity.detail}"}


def _headers_note(server: str | None, cdn: dict) -> str:
    parts = [f"Server: {server}"] if server else []
    parts += [f"{k}: {v}" for k, v in cdn.items()]
    return (" [" + ", ".join(parts) + "]") if parts else ""


def passed_on(public: dict | None, origin: dict | None) -> None:
    """The public answer is the origin's own error, passed through (same status, same page):
    say so, since a proxy that does not intercept errors forwards the origin's page as it is."""
    if not public or not origin or public.get("status") is None or public["status"] != origin.get("status"):
        return
    mine, theirs = public.get("identity") or {}, origin.get("identity") or {}
    if public["status"] < 500 or mine.get("software") != theirs.get("software") or public.get("bytes") != origin.get("bytes"):
        return
    detail = f"the origin's own {public['status']} passed on unchanged (same page as asked directly)"
    public["identity"] = {**mine, "hop": theirs.get("hop"), "detail": detail, "passed_on": True}
    public["evidence"] = public["evidence"].rsplit("; ", 1)[0] + f"; {detail}"


@register
class Hops(Check):
    """GET the public URL and the origin directly; say who answered what."""

    name = "hops"
    needs_host = False
    Params = HopsParams

    def run(self, params: HopsParams, ctx: Context) -> CheckResult:
        host = ctx.host
        targets = {}
        problems = []
        for name, make in (("public", public_target), ("origin", origin_target)):
            try:
                targets[name] = make(host, params.path)
            except ValueError as exc:
                problems.append(str(exc))
        if not targets:
            return CheckResult(Verdict.ERROR, "; ".join(problems), {"public": None, "origin": None})
        trust = trust_for(host.tls, os.environ)
        through_cdn = bool(host.cdn.provider or host.cdn.hostname)
        # One after the other, the origin first: asked at once, the two requests compete for the
        # site's PHP workers, and on a pool with one worker free the loser's 502 would be ours
        # (a site "failing only through the CDN" that merely lost the race to diagnose itself).
        observed = {name: observe(targets[name], trust, params.timeout,
                                  name == "public" and (through_cdn or bool(host.wordpress.resolve)))
                    for name in ("origin", "public") if name in targets}
        observed.setdefault("public", None)
        observed.setdefault("origin", None)
        passed_on(observed["public"], observed["origin"])
        observed["missing"] = problems
        summary = "; ".join(f"{name}: " + (f"{o['status']} ({o['identity']['detail']})" if o["status"] is not None
                                            else o["detail"])
                            for name, o in observed.items() if isinstance(o, dict) and "url" in o)
        evidence = tuple(o["evidence"] for o in (observed["public"], observed["origin"]) if o)
        return CheckResult(Verdict.PASSED, summary, observed, None, evidence)
