"""diagnose: why does the site answer 502 (or 504, or a CDN's 52x)? Every cause, ranked.

    - rule: diagnose
      with:
        public: "{{ steps.public }}"          # the hops check: the public URL and the origin directly
        dns: "{{ steps.dns }}"                # the site_dns check
        chain: {...}                          # timeout_chain's facts (rules/timeouts.py)
        fpm_timeout: {...}                    # fpm_timeout's facts
        gateway: {...}                        # gateway_timeout's facts
        kill: {...}                           # kill_script's facts (rules/kills.py)
        overload: {...}                       # overload's facts (rules/overload.py)
        upstream: {web_log: ..., fpm: ..., socket: ...}
        firewall: {rules: "{{ steps.web.firewall }}", provider: ..., ranges: [...]}
        app: "{{ steps.logs.app_errors }}"
        wp: "{{ steps.logs.wp_site }}"

It runs the check-timeouts rules on their own facts (not a copy of them), adds the causes those
do not cover, and ranks the lot: the most likely cause of the current 502 first. Causes, the
fixed vocabulary: fpm-timeout, kill-script, gateway-timeout, overload, upstream-down, firewall,
application, cdn, dns, timeout-chain. A host with no cause of an error (the site answers through
the CDN and from the origin, nothing but static advice found) gets `healthy` first. The
check-timeouts rules' notes outside the vocabulary (an unreadable log) come last.

Ranking: a base order of how directly each cause produces a 502 (upstream-down before overload
before the kills, a static timeout-chain last), raised by the severity and by what the public side
saw: a 504 raises gateway-timeout, a 500 application, a site that fails only through the CDN while
the origin answers raises firewall, cdn and dns and lowers the host's own causes. The top finding
carries the HTTP exchanges (which hop wrote the error) as evidence.

`hosts` in the value: the verdict ("healthy", or the top cause) and the ranked causes, for the
fleet table and the report.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from opskit.findings import Evidence, Family, Finding, Severity
from opskit.rules.facts import (FpmTimeoutFacts, GatewayFacts, KillFacts, LogScan, OverloadFacts, TimeoutChain,
                                when)
from opskit.rules.kills import KillScript
from opskit.rules.overload import Overload
from opskit.rules.timeouts import FpmTimeout, GatewayTimeout, TimeoutChainRule
from opskit.stack import firewall as fw
from opskit.steps import Rule, register

CAUSES = ("fpm-timeout", "kill-script", "gateway-timeout", "overload", "upstream-down", "firewall", "application",
          "cdn", "dns", "timeout-chain")
BASE = {"upstream-down": 40, "firewall": 36, "overload": 32, "fpm-timeout": 30, "kill-script": 29,
        "gateway-timeout": 28, "application": 26, "cdn": 22, "dns": 20, "timeout-chain": 5}
SEVERITY = {"critical": 150, "error": 100, "warning": 50, "info": 0}   # severity first, then the base order
HOST_CAUSES = ("fpm-timeout", "kill-script", "gateway-timeout", "overload", "upstream-down", "application")


# -- the facts ----------------------------------------------------------------------------------

class CheckValue(BaseModel):
    """A check step's value: verdict, summary, observed."""
    model_config = ConfigDict(extra="ignore")
    verdict: str | None = None
    summary: str | None = None
    observed: dict | None = None


class FpmState(BaseModel):
    """The part of phpfpm_timeouts' value this rule reads."""
    model_config = ConfigDict(extra="ignore")
    found: bool = False
    pool: str | None = None
    master_pid: int | None = None
    listen: Any = None
    reason: str | None = None


class SocketState(BaseModel):
    """upstream_socket's value."""
    model_config = ConfigDict(extra="ignore")
    kind: str
    target: str
    exists: bool | None = None
    is_socket: bool | None = None
    listening: bool = False
    readable: bool = True
    upstream: str | None = None


class UpstreamFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    web_log: LogScan | None = None      # the origin web server's error log
    edge_log: LogScan | None = None     # the edge proxy's
    fpm: FpmState | None = None
    socket: SocketState | None = None


class FirewallFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: dict | None = None           # the firewall probe's value
    provider: str | None = None         # the inventory's cdn.provider: its published ranges
    ranges: list[str] = Field(default_factory=list)   # the inventory's cdn.ranges


class WpFacts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    root: str | None = None
    cdn_plugins: list[str] = Field(default_factory=list)
    page_cache: list[str] = Field(default_factory=list)
    advanced_cache: bool = False
    wp_cache: str | None = None


class AppFacts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    groups: list[dict] = Field(default_factory=list)
    logs: list[dict] = Field(default_factory=list)


class DnsFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check: CheckValue | None = None     # the site_dns check's value
    expect: list[str] = Field(default_factory=list)      # the host's addresses (SSH address, dns.expect)
    origin: str | None = None           # the inventory's origin URL: its address is the host's too
    cdn_hostname: str | None = None
    cdn_provider: str | None = None
    cdn_ranges: list[str] = Field(default_factory=list)
    host_name: str | None = None        # the inventory's name of the host, for the advice

    @field_validator("expect", mode="before")
    @classmethod
    def _flat(cls, value):
        """[address, [dns.expect ...]] as a playbook writes it: flattened, empty parts dropped."""
        out = []
        for item in value or []:
            out += [str(i) for i in item if i] if isinstance(item, list) else ([str(item)] if item else [])
        return out

    def addresses(self) -> set[str]:
        found = set(self.expect)
        if self.origin:
            host = urlsplit(self.origin).hostname
            if host:
                found.add(host)
        return found


class DiagnoseFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ssh: bool = True                    # False: the host side was not collected (no SSH access)
    public: CheckValue | None = None
    dns: DnsFacts | None = None
    chain: TimeoutChain | None = None
    fpm_timeout: FpmTimeoutFacts | None = None
    gateway: GatewayFacts | None = None
    kill: KillFacts | None = None
    overload: OverloadFacts | None = None
    upstream: UpstreamFacts | None = None
    firewall: FirewallFacts | None = None
    app: AppFacts | None = None
    wp: WpFacts | None = None


# -- the public side ----------------------------------------------------------------------------

def _ok(answer: dict | None) -> bool:
    return bool(answer) and answer.get("status") is not None and answer["status"] < 500


def _bad(answer: dict | None) -> bool:
    return bool(answer) and not _ok(answer)


def _exchange(answer: dict | None, label: str) -> Evidence | None:
    if not answer:
        return None
    return Evidence(f"{label}: {answer.get('evidence') or answer.get('detail')}")


def public_side(public: CheckValue | None) -> tuple[dict | None, dict | None]:
    observed = (public.observed or {}) if public else {}
    return observed.get("public"), observed.get("origin")


def hop_findings(facts: DiagnoseFacts, host_found: list[Finding]) -> list[Finding]:
    """What the two requests alone say: the origin not answering at all, or the CDN path failing alone."""
    public, origin = public_side(facts.public)
    out = []
    if origin and origin.get("status") is None:
        out.append(Finding(
            "upstream-down", Severity.ERROR,
            f"the origin web server did not answer: {origin['detail']} (asked directly at {origin.get('connect_to')}, "
            "bypassing DNS and the CDN); the CDN or proxy in front gets no answer either and shows 502",
            tuple(e for e in (_exchange(origin, "origin"), _exchange(public, "public")) if e),
            "look at the web server on the host (nginx/Apache): is it running and listening on that address and port, "
            "does its error log say why it closed the connection (a `return 444`, a crash, a full accept queue)",
            family=Family.UPSTREAM))
    elif _ok(origin) and _bad(public):
        blocked = [f for f in host_found if f.cause == "firewall"]
        identity = (public.get("identity") or {}).get("detail") if public.get("status") else public.get("detail")
        if not blocked:
            out.append(Finding(
                "cdn", Severity.ERROR,
                f"the site fails only through the CDN path: the public URL gives "
                f"{public.get('status') or public.get('error')} ({identity}) while the origin answers "
                f"{origin['status']} directly",
                tuple(e for e in (_exchange(public, "public"), _exchange(origin, "origin")) if e),
                "the edge cannot use the origin: check the CDN's origin address and port, its TLS mode against the "
                "origin's certificate, and firewalls or rate limits in front of the origin (run with become: sudo so "
                "opskit can read them); while it lasts, `opskit run disable-cdn` takes CDN Enabler's asset URLs "
                "out of the pages",
                family=Family.CDN))
    elif not facts.ssh and _bad(origin):
        out += _origin_error_alone(origin, public)
    return out


def _origin_error_alone(origin: dict, public: dict | None) -> list[Finding]:
    """No SSH: what the origin's own error page says, as a warning (the host could not be asked why)."""
    identity = origin.get("identity") or {}
    status = origin["status"]
    evidence = tuple(e for e in (_exchange(origin, "origin"), _exchange(public, "public")) if e)
    advice = "give opskit SSH access to the host to see why (its logs, php-fpm, the firewall)"
    if status == 504:
        return [Finding("gateway-timeout", Severity.WARNING,
                        f"the origin answers 504 itself ({identity.get('detail')}): its web server stopped waiting for PHP",
                        evidence, advice + "; `opskit run check-timeouts` then shows which timeout fires", family=Family.KILL)]
    if identity.get("hop") == "php" or status == 500:
        return [Finding("application", Severity.WARNING,
                        f"the origin answers {status} from the application ({identity.get('detail')})",
                        evidence, advice + "; PHP's error log names the failing code", family=Family.CODE)]
    return [Finding("upstream-down", Severity.WARNING,
                    f"the origin answers {status} itself ({identity.get('detail')}): its web server got no answer from PHP",
                    evidence, advice, family=Family.UPSTREAM)]


# -- upstream down ------------------------------------------------------------------------------

_DOWN = ("nginx-upstream-missing", "nginx-upstream-refused", "nginx-no-live-upstreams", "nginx-upstream-denied",
         "apache-fcgi-connect-failed")


def upstream_findings(facts: UpstreamFacts | None) -> list[Finding]:
    if facts is None:
        return []
    evidence, parts = [], []
    denied = False
    for log in (facts.web_log, facts.edge_log):
        if log is None or not log.readable:
            continue
        for name in _DOWN:
            found = log.seen(name)
            if found is None:
                continue
            evidence.append(log.evidence(name))
            denied = denied or name == "nginx-upstream-denied"
            words = {"nginx-upstream-missing": "found no socket file", "nginx-upstream-refused": "was refused",
                     "nginx-no-live-upstreams": "had no live upstream left", "nginx-upstream-denied":
                     "may not open php-fpm's socket", "apache-fcgi-connect-failed": "could not connect to php-fpm"}
            who = "the edge proxy" if log is facts.edge_log else "the web server"
            parts.append(f"{who} {words[name]} {when(found)}")
    down_now = False
    socket = facts.socket
    if socket is not None and socket.readable and not socket.listening:
        down_now = True
        if socket.kind == "unix" and socket.exists is False:
            evidence.append(Evidence(f"{socket.target}: no such file (the web server passes PHP to {socket.upstream})"))
            parts.append(f"php-fpm's socket {socket.target} does not exist")
        elif socket.kind == "unix":
            evidence.append(Evidence(f"{socket.target}: a socket file nobody listens on (/proc/net/unix)"))
            parts.append(f"nothing listens on {socket.target}")
        else:
            evidence.append(Evidence(f"{socket.target}: no listening socket (/proc/net/tcp)"))
            parts.append(f"nothing listens on {socket.target}")
    fpm = facts.fpm
    if fpm is not None and not fpm.master_pid and fpm.reason and "no php-fpm master" in fpm.reason:
        down_now = True
        evidence.append(Evidence(f"ps: {fpm.reason}"))
        parts.append("no php-fpm master process runs")
    if not parts:
        return []
    if denied and not down_now:
        advice = ("give the web server's user access to php-fpm's socket: the pool's listen.owner, listen.group "
                  "and listen.mode (or listen.acl_users) must let it connect")
    else:
        advice = ("start php-fpm (systemctl start php8.2-fpm, or the panel's PHP restart) and read its log for why it "
                  "stopped (a config error, the OOM killer); check that the pool's listen matches the web server's "
                  "fastcgi_pass")
    return [Finding("upstream-down", Severity.ERROR if down_now or not denied else Severity.ERROR,
                    "php-fpm is down or unreachable: " + "; ".join(parts) + " — every PHP request gets 502",
                    tuple(evidence), advice, family=Family.UPSTREAM)]


# -- firewall -----------------------------------------------------------------------------------

def firewall_findings(facts: FirewallFacts | None, cdn_path_failing: bool) -> list[Finding]:
    if facts is None or not facts.rules:
        return []
    try:
        ranges = fw.cdn_ranges(facts.provider, facts.ranges)
    except ValueError as exc:
        return [Finding("firewall", Severity.WARNING, f"the CDN's ranges could not be used: {exc}", (),
                        "fix cdn.ranges in the inventory", family=Family.CDN)]
    if not ranges:
        return []
    blocks = [fw.Block(**{**b, "sources": tuple(b.get("sources") or ()), "ports": tuple(b.get("ports") or ())})
              for b in facts.rules.get("blocks", [])]
    hits = fw.against(blocks, ranges)
    out = []
    blocking = [h for h in hits if h.block.action != "rate-limit"]
    limits = [h for h in hits if h.block.action == "rate-limit"]
    if blocking:
        evidence = []
        for hit in blocking[:6]:
            evidence.append(Evidence(hit.block.text, file=hit.block.file, line=hit.block.line))
            shown = ", ".join(f"{r.network} ({r.source})" for r in hit.ranges[:3])
            evidence.append(Evidence(f"{hit.block.action}s sources in the CDN's ranges: {shown}"))
        out.append(Finding(
            "firewall", Severity.ERROR if cdn_path_failing else Severity.WARNING,
            f"the host's firewall {'drops' if any(h.block.action == 'drop' for h in blocking) else 'blocks'} "
            f"the CDN's edge addresses ({len(blocking)} rule{'s' if len(blocking) > 1 else ''}): the edge cannot reach "
            "the origin and answers 502/504/522",
            tuple(evidence),
            "remove those rules or allow the CDN's ranges before them (for Cloudflare, whitelist "
            "https://www.cloudflare.com/ips-v4 and ips-v6); if fail2ban or CSF banned an edge, unban it and make "
            "them read the visitor's address (CF-Connecting-IP / X-Forwarded-For) instead of the edge's",
            family=Family.CDN))
    if limits:
        evidence = [Evidence(h.block.text, file=h.block.file, line=h.block.line) for h in limits[:4]]
        out.append(Finding(
            "firewall", Severity.WARNING,
            "a per-source connection limit applies to the web ports: a CDN edge carries many visitors from one "
            "address, so it reaches such a limit first and gets refused",
            tuple(evidence),
            "exempt the CDN's ranges from the limit (CSF: add them to csf.allow / csf.ignore; ufw: "
            "`ufw insert 1 allow proto tcp from RANGE to any port 443` for each range; nftables/iptables: accept "
            "them before the limit)",
            family=Family.CDN))
    return out


# -- defective code -----------------------------------------------------------------------------

def application_findings(facts: AppFacts | None) -> list[Finding]:
    if facts is None or not facts.groups:
        return []
    groups = sorted(facts.groups, key=lambda g: (-g["count"], g.get("last") or ""))
    total = sum(g["count"] for g in groups)
    evidence, names = [], []
    for g in groups[:3]:
        evidence.append(Evidence(g["sample"], file=g["log"], line=g.get("line")))
        if g.get("code_file"):
            evidence.append(Evidence(f"the failing code ({g['count']} × {g['kind']})", file=g["code_file"],
                                     line=g.get("code_line")))
        names.append(_component(g.get("code_file")))
    top = groups[0]
    component = next((n for n in names if n), None)
    advice = ("fix the code, or take it out of the path: rename its plugin folder under wp-content/plugins "
              "(WordPress then skips it) or `wp plugin deactivate`; update it first if an update exists")
    if component:
        advice = f"the failing code is in {component}: " + advice
    return [Finding(
        "application", Severity.ERROR,
        f"the site's PHP fails: {total} fatal error line{'s' if total > 1 else ''} of {len(groups)} kind"
        f"{'s' if len(groups) > 1 else ''}; the most frequent, {top['count']} × {top['signature']!r}"
        f" (newest {top.get('last') or 'time unknown'})",
        tuple(evidence), advice, family=Family.CODE)]


def _component(path: str | None) -> str | None:
    if not path:
        return None
    for marker, label in (("/wp-content/plugins/", "the plugin"), ("/wp-content/themes/", "the theme"),
                          ("/wp-content/mu-plugins/", "the must-use plugin")):
        if marker in path:
            return f"{label} {path.split(marker, 1)[1].split('/')[0]!r}"
    return None


# -- CDN plugins, page caches --------------------------------------------------------------------

def wordpress_findings(facts: WpFacts | None, cdn_path_failing: bool) -> list[Finding]:
    if facts is None:
        return []
    out = []
    if facts.cdn_plugins:
        out.append(Finding(
            "cdn", Severity.WARNING if cdn_path_failing else Severity.INFO,
            f"{', '.join(facts.cdn_plugins)} is installed: the pages' asset URLs point at the CDN, so a failing CDN "
            "breaks the site even when the origin is fine",
            tuple(Evidence(f"{facts.root}/wp-content/plugins/{p}/") for p in facts.cdn_plugins),
            "`opskit run disable-cdn` takes it out of the path for a hold window (and puts it back, re-activated)",
            family=Family.CDN))
    caches = list(facts.page_cache)
    if facts.advanced_cache:
        caches.append("advanced-cache.php drop-in")
    if caches:
        out.append(Finding(
            "cdn", Severity.INFO,
            f"page caching is on ({', '.join(caches)}): cached pages may hide a failing PHP, or keep serving an "
            "error page after the cause is fixed",
            tuple(Evidence(c) for c in caches),
            "compare a cached and an uncached request (opskit's checks bypass caches); purge the cache after a fix",
            family=Family.CDN))
    return out


# -- DNS ----------------------------------------------------------------------------------------

def dns_findings(facts: DnsFacts | None) -> list[Finding]:
    if facts is None or facts.check is None or not facts.check.observed:
        return []
    observed = facts.check.observed
    name = observed.get("name")
    expect = facts.addresses()
    try:
        ranges = [ipaddress.ip_network(r.network) for r in fw.cdn_ranges(facts.cdn_provider, facts.cdn_ranges)]
    except ValueError:
        ranges = []
    asked = observed.get("resolvers", [])
    if asked and not any(e.get("answered") for e in asked):
        return [Finding("dns", Severity.WARNING, f"{name}: no resolver answered, so whether it points here is unknown",
                        tuple(Evidence(f"{name} at {e['resolver']}: {', '.join(e.get('status') or [])}") for e in asked),
                        "check dns.resolvers in the inventory (they must be reachable from this machine)",
                        family=Family.DNS)]
    wrong, nothing = [], []
    for entry in asked:
        if not entry.get("answered"):
            continue
        through_cdn = facts.cdn_hostname and any(facts.cdn_hostname.rstrip(".") in c.rstrip(".")
                                                 for c in entry.get("cnames", []))
        if through_cdn:
            continue
        addresses = entry.get("addresses", [])
        if not addresses:
            nothing.append(entry)
            continue
        others = [a for a in addresses if a not in expect and not _in(a, ranges)]
        if others:
            wrong.append((entry, others))
    if not wrong and not nothing:
        return []
    evidence = [Evidence(f"{name} at {e['resolver']}: " + ", ".join(e.get("addresses") or []) +
                         (f" (CNAME {', '.join(e['cnames'])})" if e.get("cnames") else "")) for e, _ in wrong]
    evidence += [Evidence(f"{name} at {e['resolver']}: no address ({', '.join(str(r) for r in e.get('rcode') if r)})")
                 for e in nothing]
    evidence.append(Evidence(f"this host: {', '.join(sorted(expect)) or 'unknown'}"))
    others = sorted({a for _, o in wrong for a in o})
    summary = (f"{name} resolves to {', '.join(others)}, not to this host ({', '.join(sorted(expect))}) nor its CDN: "
               "visitors (and a CDN that resolves the origin by name) go elsewhere" if wrong
               else f"{name} has no address at {', '.join(e['resolver'] for e in nothing)}")
    host = f" --host {facts.host_name}" if facts.host_name else ""
    return [Finding("dns", Severity.ERROR, summary, tuple(evidence),
                    f"`opskit run dns-check{host}` shows what the authoritative servers and each resolver say and when "
                    "an old answer expires; fix the record at the DNS provider if the zone itself is wrong",
                    family=Family.DNS)]


def _in(address: str, ranges: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in ranges)


# -- all of it, ranked ----------------------------------------------------------------------------

def collect_findings(facts: DiagnoseFacts) -> list[Finding]:
    public, origin = public_side(facts.public)
    cdn_path_failing = _bad(public) and _ok(origin)
    found: list[Finding] = []
    found += upstream_findings(facts.upstream)
    if facts.overload is not None:
        found += Overload().evaluate(facts.overload)
    if facts.fpm_timeout is not None:
        found += FpmTimeout().evaluate(facts.fpm_timeout)
    if facts.kill is not None:
        found += KillScript().evaluate(facts.kill)
    if facts.gateway is not None:
        found += GatewayTimeout().evaluate(facts.gateway)
    found += application_findings(facts.app)
    found += firewall_findings(facts.firewall, cdn_path_failing)
    found += wordpress_findings(facts.wp, cdn_path_failing)
    found += dns_findings(facts.dns)
    if facts.chain is not None:
        found += TimeoutChainRule().evaluate(facts.chain)
    found = hop_findings(facts, found) + found
    return _dedupe(found)


def _dedupe(found: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for finding in found:
        key = (finding.cause, finding.summary)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def score(finding: Finding, facts: DiagnoseFacts) -> int:
    if finding.cause not in CAUSES:
        return SEVERITY[finding.severity.value] - 200
    value = BASE[finding.cause] + SEVERITY[finding.severity.value]
    public, origin = public_side(facts.public)
    statuses = {a.get("status") for a in (public, origin) if a}
    if _bad(public) and _ok(origin):
        value += 40 if finding.cause in ("firewall", "cdn", "dns") else 0
        value -= 40 if finding.cause in HOST_CAUSES else 0
    if 504 in statuses and finding.cause == "gateway-timeout":
        value += 25
    if 500 in statuses and finding.cause == "application":
        value += 45
    if _load_only(finding) and _ok(public) and (origin is None or _ok(origin)):
        value -= 60   # a busy CPU while the site answers is not what made a 502
    return value


def _load_only(finding: Finding) -> bool:
    """An overload finding resting on the load average alone (no worker, memory or log evidence)."""
    return finding.cause == "overload" and bool(finding.evidence) and all(
        e.file == "/proc/loadavg" for e in finding.evidence)


def healthy(facts: DiagnoseFacts, ranked: list[Finding]) -> Finding | None:
    """The site answers on both paths and nothing but static advice was found."""
    public, origin = public_side(facts.public)
    answered = [a for a in (public, origin) if a]
    if not answered or not all(_ok(a) for a in answered):
        return None
    serious = [f for f in ranked if f.cause in CAUSES and f.cause != "timeout-chain" and not _load_only(f)
               and f.severity in (Severity.ERROR, Severity.CRITICAL)]
    if serious:
        return None
    notes = [f for f in ranked if f.cause in CAUSES and f.severity is not Severity.INFO]
    side = "" if facts.ssh else " (public side only: no SSH access, the host was not inspected)"
    tail = (f"; {len(notes)} finding{'s' if len(notes) > 1 else ''} below to act on before an incident" if notes
            else "")
    return Finding(
        "healthy", Severity.INFO,
        "the site answers through the public URL and from the origin, and no cause of a 502 was found"
        + side + tail,
        tuple(e for e in (_exchange(public, "public"), _exchange(origin, "origin")) if e),
        "nothing to do now" if not notes else "see the findings below", family=Family.ORIGIN)


def rank(facts: DiagnoseFacts) -> list[Finding]:
    found = collect_findings(facts)
    ranked = [f for _, _, f in sorted(((-score(f, facts), i, f) for i, f in enumerate(found)),
                                      key=lambda t: (t[0], t[1]))]
    well = healthy(facts, ranked)
    if well is not None:
        return [well, *ranked]
    if ranked and ranked[0].cause in CAUSES:
        public, origin = public_side(facts.public)
        extra = tuple(e for e in (_exchange(public, "public"), _exchange(origin, "origin"))
                      if e and str(e) not in {str(x) for x in ranked[0].evidence} and not any(
                          str(e).split(": ", 1)[-1] in str(x) for x in ranked[0].evidence))
        ranked[0] = replace(ranked[0], evidence=ranked[0].evidence + extra)
    if not facts.ssh:
        ranked.append(Finding("public-only", Severity.INFO,
                              "public side only: no SSH access to this host, so its logs, php-fpm and firewall "
                              "were not inspected", (), "give opskit SSH access (address, user, key) for the host side",
                              family=Family.ORIGIN))
    return ranked


@register
class Diagnose(Rule):
    """Every cause of a 502 the facts show, the most likely first; `healthy` when there is none."""

    name = "diagnose"
    Params = DiagnoseFacts

    def evaluate(self, facts: DiagnoseFacts) -> list[Finding]:
        return rank(facts)

    def value(self, facts: DiagnoseFacts) -> dict:
        ranked = rank(facts)
        causes = [f.cause for f in ranked if f.cause in CAUSES or f.cause == "healthy"]
        public, origin = public_side(facts.public)
        return {"verdict": causes[0] if causes else "unknown", "ranked": causes, "ssh": facts.ssh,
                "public": {k: (a or {}).get(k) for a in [public] for k in ("status", "error", "seconds", "server")}
                if public else None,
                "origin": {k: (a or {}).get(k) for a in [origin] for k in ("status", "error", "seconds", "server")}
                if origin else None}
