"""DNS after a host move, asked from the controller with dnspython (no SSH, and never the
machine's own resolver: every query goes to an address named here).

    - check: dns          what the authoritative servers and the resolvers say
      with: {domain: "{{ host.dns.domain }}", expect: "{{ host.dns.expect }}", old: "{{ host.dns.old }}",
             resolvers: "{{ host.dns.resolvers }}", nameservers: "{{ host.dns.nameservers }}"}
    - check: dns_origin   does the new origin (by address, with the site's name) serve the site?
      with: {addresses: "{{ steps.dns.observed.new_addresses }}", old: "{{ host.dns.old }}"}

Authoritative side: each nameserver (the inventory's, else the zone's NS set found through
the resolvers) is asked with recursion off and must set the AA flag; its SOA (serial,
MINIMUM) and NS set are read, every name's A and AAAA are asked, and a CNAME chain that
leaves the server's zones is followed at the target zone's servers, each hop reported.
Resolver side: each resolver (the inventory's, else stack.dns.PUBLIC_RESOLVERS) is asked
with recursion on; the TTL it returns is what its cache has left.

Queries of every host go through one pool of MAX_IN_FLIGHT threads, so `--all` asks the
whole fleet concurrently with bounded parallelism; each query waits at most `timeout`
(UDP, then TCP when the answer is truncated), and nothing here raises: an unreachable,
silent, lame or malformed server is reported as such, per server.

The value (`observed`) is a stack.dns.Observation; stack.dns.assess says what it means and
rules/dns.py draws the findings.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from opskit.findings import Finding
from opskit.inventory import parse_endpoint
from opskit.stack import dns as knowledge
from opskit.stack.dns import NameAnswer, Observation, Reply, ServerReport
from opskit.steps import Check, CheckResult, Context, Verdict, register

MAX_IN_FLIGHT = 64        # queries in flight at once, for the whole process (all hosts together)
DEFAULT_TIMEOUT = 3.0


class DnsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str | None = None
    names: list[str] = Field(default_factory=list)        # default: the domain and www.<domain>
    expect: list[str] = Field(default_factory=list)       # the new address(es); empty: what the zone says now
    old: list[str] = Field(default_factory=list)
    resolvers: list[str] = Field(default_factory=list)    # ip or ip:port; empty: stack.dns.PUBLIC_RESOLVERS
    nameservers: list[str] = Field(default_factory=list)  # ip or ip:port; empty: the zone's NS set
    cdn_hostname: str | None = None                       # a chain through it is the CDN's business ("cdn")
    types: list[Literal["A", "AAAA"]] = Field(default_factory=lambda: ["A", "AAAA"], min_length=1)
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=60)


@dataclass(frozen=True)
class Server:
    text: str                 # as written: ip or ip:port
    address: str
    port: int
    label: str | None = None


def parse_servers(texts: list[str], labels: dict[str, str] | None = None) -> tuple[list[Server], list[ServerReport]]:
    """The usable servers, and a report for each malformed one."""
    good, bad = [], []
    for text in texts:
        try:
            address, port = parse_endpoint(str(text), 53)
        except ValueError as exc:
            bad.append(ServerReport(server=str(text), status="malformed", detail=str(exc)))
            continue
        good.append(Server(str(text), address, port, (labels or {}).get(str(text))))
    return good, bad


# -- one query -------------------------------------------------------------------------------------
def make_query(qname: str, qtype: str, recursion: bool, query_id: int | None = None):
    """(message, wire): EDNS with a 1232-byte payload, RD as asked. One per (name, type, RD) is
    enough for every server (each exchange has its own socket and source port)."""
    import dns.flags
    import dns.message

    if query_id is None:
        query_id = int.from_bytes(os.urandom(2), "big")
    query = dns.message.make_query(qname, qtype, use_edns=0, payload=1232, id=query_id)
    if not recursion:
        query.flags &= ~dns.flags.RD
    return query, query.to_wire()


def ask(server: Server, qname: str, qtype: str, recursion: bool, timeout: float, prepared=None) -> Reply:
    """One query; never raises. UDP first, TCP when the answer is truncated, all within `timeout`.
    A reply must come from the server asked and answer the question sent."""
    import socket

    import dns.exception
    import dns.flags
    import dns.inet
    import dns.query

    try:
        query, wire = prepared or make_query(qname, qtype, recursion)
        expiration = time.time() + timeout
        destination = (server.address, server.port)
        with socket.socket(dns.inet.af_for_address(server.address), socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            dns.query.send_udp(sock, wire, destination, expiration)
            response, _ = dns.query.receive_udp(sock, destination, expiration, ignore_unexpected=True, query=query)
        if not query.is_response(response):
            raise dns.query.BadResponse()
        if response.flags & dns.flags.TC:
            left = expiration - time.time()
            if left <= 0:
                raise dns.exception.Timeout()
            response = dns.query.tcp(query, server.address, timeout=left, port=server.port)
        return knowledge.parse_reply(response, qname, qtype)
    except dns.exception.Timeout:
        return Reply(status="timeout", detail=f"no answer in {timeout:g}s")
    except ConnectionRefusedError:
        return Reply(status="unreachable", detail="connection refused")
    except OSError as exc:
        return Reply(status="unreachable", detail=exc.strerror or str(exc))
    except dns.exception.DNSException as exc:   # FormError, BadResponse, TrailingJunk, ShortHeader ...
        return Reply(status="malformed", detail=f"{type(exc).__name__}: {exc}".rstrip(": "))
    except Exception as exc:   # noqa: BLE001 — a server's bytes must never crash the run
        return Reply(status="error", detail=f"{type(exc).__name__}: {exc}")


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="opskit-dns")
        return _pool


def ask_all(jobs: dict, timeout: float) -> dict:
    """{key: (server, qname, qtype, recursion)} → {key: Reply}, MAX_IN_FLIGHT at a time across
    every host of the run."""
    pool = _executor()
    prepared: dict = {}
    futures = {}
    # query ids from the system's CSPRNG, all in one read (dnspython reads it once per query,
    # and on a busy VM one read can cost a millisecond)
    ids = iter(struct.unpack(f"!{len(jobs)}H", os.urandom(2 * len(jobs))))
    for key, (server, qname, qtype, recursion) in jobs.items():
        if (qname, qtype, recursion) not in prepared:
            prepared[(qname, qtype, recursion)] = make_query(qname, qtype, recursion, next(ids))
        futures[key] = pool.submit(ask, server, qname, qtype, recursion, timeout, prepared[(qname, qtype, recursion)])
    return {key: future.result() for key, future in futures.items()}


# -- finding the nameservers -----------------------------------------------------------------------
def discover(name: str, resolvers: list[Server], timeout: float) -> tuple[str | None, list[str], list[Server], str]:
    """The zone `name` is in, its NS names and their addresses, asked of the first resolver
    that answers: (zone, ns names, servers on port 53, problem)."""
    problems = []
    for resolver in resolvers:
        asked = name
        soa = ask(resolver, asked, "SOA", True, timeout)
        while soa.status == "ok" and knowledge.aliased(soa) and knowledge.parent(asked):
            asked = knowledge.parent(asked)   # a CNAME's zone is its parent's
            soa = ask(resolver, asked, "SOA", True, timeout)
        if soa.status != "ok" or soa.soa is None:
            problems.append(f"{resolver.text}: {soa.detail or soa.rcode or soa.status}")
            continue
        zone = soa.soa.zone
        ns = ask(resolver, zone, "NS", True, timeout)
        if ns.status != "ok" or not ns.ns:
            problems.append(f"{resolver.text}: no NS set for {zone} ({ns.detail or ns.rcode or ns.status})")
            continue
        replies = ask_all({(n, t): (resolver, n, t, True) for n in ns.ns for t in ("A", "AAAA")}, timeout)
        servers: list[Server] = []
        for ns_name in ns.ns:
            addresses = [a for t in ("A", "AAAA") for a in replies[(ns_name, t)].addresses]
            servers += [Server(a, a, 53, ns_name) for a in addresses if all(s.address != a for s in servers)]
            if not addresses:
                problems.append(f"{ns_name} has no address")
        return zone, ns.ns, servers, "; ".join(problems)
    return None, [], [], "no resolver told the zone's NS set (" + "; ".join(problems) + ")"


# -- the whole picture -----------------------------------------------------------------------------
def inspect(params: DnsParams) -> Observation:
    """Ask every server about every name (concurrently) and assess the answers."""
    started, asked_at = time.monotonic(), time.time()
    problems: list[str] = []
    domain = _name_or_problem(params.domain, problems) if params.domain else None
    names = [n for n in (_name_or_problem(n, problems) for n in params.names) if n]
    if not names and domain:
        names = knowledge.default_names(domain)
    expect = _addresses_or_problems(params.expect, "expect", problems)
    old = _addresses_or_problems(params.old, "old", problems)
    cdn = params.cdn_hostname.lower().rstrip(".") if params.cdn_hostname else None
    base = dict(domain=domain, names=names, expect=expect, old=old, cdn_hostname=cdn, asked_at=asked_at)
    if not names:
        problems.append("no domain to check: set dns.domain (and dns.expect) for this host in the inventory")
        return Observation(problems=problems, **base)
    if params.resolvers:
        resolvers, bad_resolvers = parse_servers(params.resolvers)
        resolvers_source = "inventory"
    else:
        labels = dict(knowledge.PUBLIC_RESOLVERS)
        resolvers, bad_resolvers = parse_servers(list(labels), labels)
        resolvers_source = "public-default"
    zone, ns_set, ns_source = None, [], "inventory"
    if params.nameservers:
        nameservers, bad_nameservers = parse_servers(params.nameservers)
    else:
        ns_source, bad_nameservers = "ns-set", []
        zone, ns_set, nameservers, problem = discover(domain or names[0], resolvers, params.timeout)
        if problem:
            problems.append(f"finding the nameservers: {problem}")
    apex = domain or names[0]
    jobs: dict = {}
    for server in nameservers:
        jobs[("soa", server)] = (server, zone or apex, "SOA", False)
        jobs[("ns", server)] = (server, zone or apex, "NS", False)
    for role, servers, recursion in (("auth", nameservers, False), ("res", resolvers, True)):
        for server in servers:
            for name in names:
                for qtype in params.types:
                    jobs[(role, server, name, qtype)] = (server, name, qtype, recursion)
    replies = ask_all(jobs, params.timeout)
    zone = zone or knowledge.zone_of([replies[("soa", s)] for s in nameservers])
    if zone is None and any(knowledge.aliased(replies[("soa", s)]) for s in nameservers):
        zone = _zone_above(apex, nameservers, params.timeout)
    if zone and zone != apex and not ns_set:
        # the domain is below its zone's apex: the SOA's own TTL and the NS set are at the apex
        replies.update(ask_all({(kind, s): (s, zone, kind.upper(), False) for s in nameservers for kind in ("soa", "ns")},
                               params.timeout))
    reports = [_nameserver_report(s, replies, names, params.types, zone) for s in nameservers]
    reports = _follow_chains(reports, nameservers, resolvers, params)
    if not ns_set:
        ns_set = next((replies[("ns", s)].ns for s in nameservers if replies[("ns", s)].status == "ok"
                       and replies[("ns", s)].aa), [])
    resolver_reports = [_resolver_report(s, replies, names, params.types) for s in resolvers]
    observation = Observation(
        zone=zone, ns_source=ns_source, ns_set=ns_set, resolvers_source=resolvers_source,
        nameservers=bad_nameservers + reports, resolvers=bad_resolvers + resolver_reports,
        problems=problems, seconds=round(time.monotonic() - started, 3), **base)
    return knowledge.assess(observation)


def _zone_above(name: str, nameservers: list[Server], timeout: float) -> str | None:
    """The zone of a name that is a CNAME: its parent's (asked of the same servers)."""
    candidate = knowledge.parent(name)
    while candidate:
        replies = ask_all({s: (s, candidate, "SOA", False) for s in nameservers}, timeout)
        zone = knowledge.zone_of(list(replies.values()))
        if zone:
            return zone
        candidate = knowledge.parent(candidate)
    return None


def _name_or_problem(text: str, problems: list[str]) -> str | None:
    try:
        return knowledge.normalize_name(text)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _addresses_or_problems(texts: list[str], field: str, problems: list[str]) -> list[str]:
    out = []
    for text in texts:
        try:
            out.append(knowledge.normalize_address(text))
        except ValueError:
            problems.append(f"dns.{field}: not an IP address: {text!r}")
    return out


def _nameserver_report(server: Server, replies: dict, names: list[str], types: list[str], zone: str | None) -> ServerReport:
    soa = replies[("soa", server)]
    ns = replies[("ns", server)]
    answers = {name: knowledge.merge(name, {t: replies[("auth", server, name, t)] for t in types}, authoritative=True)
               for name in names}
    common = dict(server=server.text, label=server.label, answers=answers)
    if soa.status != "ok":
        return ServerReport(status=soa.status, detail=soa.detail, **common)
    if soa.rcode != "NOERROR" or not soa.aa or soa.soa is None:
        why = (f"answered {soa.rcode}" if soa.rcode != "NOERROR" else "answered without the AA flag") \
            + f" for the SOA of {zone or names[0]}: it does not serve the zone"
        return ServerReport(status="lame", detail=why, **common)
    return ServerReport(soa=soa.soa, ns=ns.ns if ns.status == "ok" and ns.aa else [], **common)


def _resolver_report(server: Server, replies: dict, names: list[str], types: list[str]) -> ServerReport:
    answers = {name: knowledge.merge(name, {t: replies[("res", server, name, t)] for t in types}, authoritative=False)
               for name in names}
    statuses = {a.status for a in answers.values()}
    if len(statuses) == 1 and statuses <= {"timeout", "unreachable", "malformed"}:
        status = statuses.pop()
        detail = next(iter(answers.values())).detail.split(": ", 1)[-1]
        return ServerReport(server=server.text, label=server.label, status=status, detail=detail, answers=answers)
    return ServerReport(server=server.text, label=server.label, answers=answers)


def _follow_chains(reports: list[ServerReport], nameservers: list[Server], resolvers: list[Server],
                   params: DnsParams) -> list[ServerReport]:
    """Authoritative answers that stop at a CNAME into a zone the server does not serve: ask
    the same server for the target (it may serve that zone too), else the target zone's own
    nameservers (found through the resolvers); each hop keeps the server that gave it."""
    by_text = {s.text: s for s in nameservers}
    elsewhere: dict[str, list[Server]] = {}
    for _ in range(knowledge.MAX_CHAIN):
        pending = [(r, name, a) for r in reports for name, a in r.answers.items()
                   if a.status == "incomplete" and a.cname_end and not _looped(a) and len(a.chain) < knowledge.MAX_CHAIN]
        if not pending:
            break
        jobs = {(r.server, name, t): (by_text[r.server], a.cname_end, t, False)
                for r, name, a in pending for t in params.types}
        replies = ask_all(jobs, params.timeout)
        updated: dict[tuple[str, str], NameAnswer] = {}
        for r, name, answer in pending:
            target = answer.cname_end
            more = knowledge.merge(target, {t: replies[(r.server, name, t)] for t in params.types}, authoritative=True)
            server_text = r.server
            if more.status in ("lame", "refused"):
                if target not in elsewhere:
                    _, _, elsewhere[target], _ = discover(target, resolvers, params.timeout)
                more = NameAnswer(name=target, status="lame", detail=f"no server answered for {target}")
                for other in elsewhere[target]:
                    tried = knowledge.merge(target, {t: ask(other, target, t, False, params.timeout) for t in params.types},
                                            authoritative=True)
                    if tried.status not in ("lame", "refused", "timeout", "unreachable"):
                        more, server_text = tried, other.text
                        break
            updated[(r.server, name)] = knowledge.extend_chain(answer, more, server_text if server_text != r.server else None)
        reports = [r.model_copy(update={"answers": {n: updated.get((r.server, n), a) for n, a in r.answers.items()}})
                   for r in reports]
    return reports


def _looped(answer: NameAnswer) -> bool:
    return answer.cname_end in {h.name for h in answer.chain}


def judge(observation: Observation) -> CheckResult:
    """Pure: passed when every resolver asked serves the new answer and no authoritative server
    serves another; error when there is nothing to ask or nothing to compare with."""
    observed = observation.model_dump(mode="json")
    evidence = tuple(observation.problems) + tuple(knowledge.table(observation))
    expected = observation.new_addresses
    if not observation.names:
        return CheckResult(Verdict.ERROR, "; ".join(observation.problems), observed, expected, evidence)
    if observation.expect_source == "none":
        why = "no expected address (dns.expect) and no authoritative answer to compare the resolvers with"
        return CheckResult(Verdict.ERROR, f"{', '.join(observation.names)}: {why}", observed, expected, evidence)
    verdict = Verdict.PASSED if observation.propagated else Verdict.FAILED
    return CheckResult(verdict, knowledge.summary(observation), observed, expected, evidence)


@register
class Dns(Check):
    """What the authoritative servers and each resolver say about the site's names."""

    name = "dns"
    needs_host = False    # asked from the controller
    Params = DnsParams

    def run(self, params: DnsParams, ctx: Context) -> CheckResult:
        return judge(inspect(params))


# -- the origin, by address ------------------------------------------------------------------------
class DnsOriginParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    addresses: list[str] = Field(default_factory=list)   # the new origin's address(es)
    old: list[str] = Field(default_factory=list)         # the previous host's, asked the same way (reported only)
    domain: str | None = None                            # the site's name when wordpress.url is not set
    path: str = "/"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    contains: list[str] = Field(default_factory=list)
    timeout: float = Field(default=10.0, gt=0, le=300)


def origin_at(host, address: str, domain: str | None):
    """The host as the http check sees it, with its origin moved to `address`: the scheme, port
    and path of `origin` (else of wordpress.url, default ports), the site's name for Host and SNI."""
    if host.origin:
        parts = urlsplit(host.origin)
        scheme, port, path = parts.scheme, parts.port, parts.path
    else:
        scheme = urlsplit(host.wordpress.url).scheme if host.wordpress.url else "https"
        port, path = None, ""
    netloc = f"[{address}]" if ":" in address else address
    update: dict = {"origin": f"{scheme}://{netloc}{f':{port}' if port else ''}{path}"}
    if not host.wordpress.url and domain:
        update["wordpress"] = host.wordpress.model_copy(update={"url": f"{scheme}://{domain}/"})
    return host.model_copy(update=update)


@register
class DnsOrigin(Check):
    """The http check (origin by address with the site's Host header and SNI, bypassing DNS and
    the CDN) against the new address(es), and the old one(s) for the report. Passes when every
    new address serves the site."""

    name = "dns_origin"
    needs_host = False
    Params = DnsOriginParams

    def run(self, params: DnsOriginParams, ctx: Context) -> CheckResult:
        from opskit.checks.http import Http, HttpParams

        problems = []
        targets: list[tuple[str, str]] = []
        for role, texts in (("new", params.addresses), ("old", params.old)):
            for text in texts:
                try:
                    targets.append((role, str(ipaddress.ip_address(str(text)))))
                except ValueError:
                    problems.append(f"{role} origin: not an IP address: {text!r}")
        if not any(role == "new" for role, _ in targets):
            return CheckResult(Verdict.ERROR, "; ".join(problems) or "no new address to ask (dns.expect)",
                               {"new": [], "old": []}, params.addresses, tuple(problems))
        http = HttpParams(via="origin", path=params.path, expect_status=params.expect_status,
                          contains=params.contains, timeout=params.timeout)

        def one(address: str) -> CheckResult:
            moved = Context(origin_at(ctx.host, address, params.domain), ctx.session, ctx.run_id, ctx.check_mode)
            return Http().run(http, moved)

        with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
            results = list(pool.map(lambda target: one(target[1]), targets))
        observed: dict = {"new": [], "old": []}
        findings: list[Finding] = []
        evidence = list(problems)
        for (role, address), result in zip(targets, results):
            observed[role].append({"address": address, "verdict": result.verdict.value, "summary": result.summary,
                                   "observed": result.observed})
            evidence += [f"{role} origin {address}: {line}" for line in result.evidence or (result.summary,)]
            findings += [f for f in result.findings if all((f.cause, f.summary) != (g.cause, g.summary) for g in findings)]
        new = [r for (role, _), r in zip(targets, results) if role == "new"]
        observed["serves_new"] = all(r.ok for r in new)
        observed["old_answers"] = [r.verdict.value for (role, _), r in zip(targets, results) if role == "old"]
        parts = [f"{role} origin: {result.summary}" for (role, _), result in zip(targets, results)]
        if all(r.ok for r in new):
            verdict = Verdict.PASSED
        elif any(r.verdict is Verdict.FAILED for r in new):
            verdict = Verdict.FAILED
        else:
            verdict = Verdict.ERROR
        return CheckResult(verdict, "; ".join(parts + problems), observed, params.addresses, tuple(evidence), tuple(findings))

