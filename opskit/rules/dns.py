"""Rules about DNS after a host move, from the dns check's value (a stack.dns.Observation) and
the dns_origin check's. Pure: the time comes in as `now` ({{ run.now }}).

    - rule: dns_authoritative   with: {dns: "{{ steps.dns }}"}
    - rule: dns_propagation     with: {dns: "{{ steps.dns }}"}
    - rule: dns_advice          with: {dns: "{{ steps.dns }}", now: "{{ run.now }}", move_at: "{{ host.dns.move_at }}",
                                       move_ttl: "{{ host.dns.move_ttl }}"}
    - rule: dns_old_origin      with: {dns: "{{ steps.dns }}", origin: "{{ steps.origin }}"}

Every finding has cause `dns` (family dns); the origin check's own failure is `upstream-down`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from opskit.findings import Evidence, Family, Finding, Severity
from opskit.stack import dns as knowledge
from opskit.stack.dns import NameAnswer, Observation
from opskit.steps import Rule, register

CAUSE = "dns"


class DnsValue(BaseModel):
    """The dns check step's value."""

    model_config = ConfigDict(extra="ignore")
    verdict: str
    summary: str = ""
    observed: Observation | None = None


class OriginValue(BaseModel):
    """The dns_origin check step's value."""

    model_config = ConfigDict(extra="ignore")
    verdict: str
    summary: str = ""
    observed: dict | None = None


class DnsFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dns: DnsValue


class AdviceFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dns: DnsValue
    now: float
    move_at: str | None = None          # a planned move (ISO 8601; naive is UTC)
    move_ttl: int = Field(default=300, gt=0)   # the TTL to lower to before a move


class OriginFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dns: DnsValue
    origin: OriginValue


def _finding(severity: Severity, summary: str, evidence=(), advice: str = "") -> Finding:
    return Finding(CAUSE, severity, summary, tuple(evidence), advice, family=Family.DNS)


def _hop_line(hop) -> str:
    at = f" (from {hop.server})" if hop.server else ""
    return f"{hop.name} {hop.ttl} {hop.type} {' '.join(hop.data)}{at}"


# -- the authoritative side --------------------------------------------------------------------------
@register
class DnsAuthoritative(Rule):
    """What the authoritative servers say: lame or silent servers, serials out of sync, a zone
    that does not say what the move expects, names that do not exist, CNAME chains hop by hop."""

    name = "dns_authoritative"
    Params = DnsFacts

    def evaluate(self, facts: DnsFacts) -> list[Finding]:
        obs = facts.dns.observed
        return authoritative_findings(obs) if obs is not None else []


def authoritative_findings(obs: Observation) -> list[Finding]:
    out = []
    if obs.problems and obs.names:
        out.append(_finding(Severity.WARNING, "some DNS inputs were not usable and were left out", obs.problems,
                            "fix these entries of dns: in the inventory"))
    for server in obs.nameservers:
        if server.status == "malformed":
            out.append(_finding(Severity.ERROR, f"nameserver {server.server!r} is not an address: {server.detail}",
                                (), "write nameservers as ip or ip:port"))
        elif server.status in ("timeout", "unreachable"):
            out.append(_finding(
                Severity.ERROR, f"nameserver {server.shown} does not answer ({server.detail})",
                (f"SOA {obs.zone or obs.names[0]} @{server.server} without recursion: {server.detail}",),
                "resolvers that pick it wait, then try another: fix it or take it out of the NS set "
                "(at the registrar too)"))
        elif server.status == "lame":
            out.append(_finding(
                Severity.ERROR, f"nameserver {server.shown} is lame for {obs.zone or obs.names[0]}: {server.detail}",
                (f"SOA {obs.zone or obs.names[0]} @{server.server} without recursion: {server.detail}",),
                "serve the zone on it (add the zone, let it transfer) or remove it from the NS set and the registrar's "
                "delegation; resolvers that ask it get SERVFAIL or nothing"))
        elif server.status == "error":
            out.append(_finding(Severity.ERROR, f"nameserver {server.shown}: {server.detail}"))
    if obs.in_sync is False:
        by_serial = sorted(obs.serials.items(), key=lambda kv: -kv[1])
        out.append(_finding(
            Severity.WARNING,
            f"the nameservers of {obs.zone} are out of sync: serial "
            + ", ".join(f"{serial} on {server}" for server, serial in by_serial),
            tuple(f"{server}: SOA serial {serial}" for server, serial in by_serial),
            "a resolver gets whichever server it asks: make every nameserver serve the newest zone (NOTIFY and "
            "zone transfer from the primary, or edit the zone on each server) and bump the serial with every change"))
    positive = [line for line in obs.lagging if not line.endswith(("NXDOMAIN", "NODATA"))]   # the rest: _name_findings
    if positive:
        every = _every_server_lags(obs)
        expected = " ".join(obs.expect) or "the newest zone's answer"
        summary = (f"the zone itself does not say {expected} yet: " if every
                   else f"some nameservers still serve an answer other than {expected}: ") + "; ".join(positive)
        out.append(_finding(
            Severity.ERROR, summary, tuple(positive),
            ("change the records at the DNS provider (or fix dns.expect if the move is not done yet): resolvers "
             "cannot pick up an answer the authoritative servers do not give") if every else
            "reload the lagging servers: resolvers that ask them fetch the old answer again"))
    for name, answer in obs.reference.items():
        out += _name_findings(obs, name, answer)
    return out


def _every_server_lags(obs: Observation) -> bool:
    serving = [s for s in obs.nameservers if s.status == "ok"]
    lagging_servers = {line.split(": ", 1)[0] for line in obs.lagging}
    return bool(serving) and all(s.server in lagging_servers for s in serving)


def _name_findings(obs: Observation, name: str, answer: NameAnswer) -> list[Finding]:
    out = []
    negative = obs.negative_ttl
    soa = next((s.soa for s in obs.nameservers if s.soa), None)
    soa_line = (f"{soa.zone} SOA serial {soa.serial}, TTL {soa.ttl}, MINIMUM {soa.minimum}: negative TTL "
                f"min({soa.ttl}, {soa.minimum}) = {soa.negative_ttl}") if soa else "no SOA seen"
    if answer.status == "nxdomain":
        out.append(_finding(
            Severity.ERROR,
            f"{name} does not exist: the authoritative servers answer NXDOMAIN"
            + (f"; every resolver that asks now remembers that for up to {negative}s" if negative is not None else ""),
            (f"{name} A @{obs.nameservers[0].server if obs.nameservers else '?'}: NXDOMAIN (AA)", soa_line),
            "create the record (check the spelling of dns.domain); a resolver that cached the NXDOMAIN keeps it for the "
            "negative TTL, so create names before anyone is told to visit them"))
    elif answer.status == "nodata":
        out.append(_finding(
            Severity.WARNING, f"{name} exists but has no A or AAAA record", (f"{name}: NOERROR, no address (AA)", soa_line),
            f"add an A (and AAAA) record for {name}, or drop it from dns.names"))
    cnames = [h for h in answer.chain if h.type == "CNAME"]
    if cnames:
        final = " ".join(answer.addresses) or answer.status
        out.append(_finding(
            Severity.INFO,
            f"{name} is a chain of {len(cnames)} CNAME(s) ending at {answer.chain[-1].name} ({final}); each hop is cached "
            f"for its own TTL",
            tuple(_hop_line(h) for h in answer.chain),
            "a move that changes a CNAME waits for that hop's TTL, not the final record's"))
    if answer.status == "incomplete":
        out.append(_finding(Severity.ERROR, f"{name}: the CNAME chain does not end in an address ({answer.detail})",
                            tuple(_hop_line(h) for h in answer.chain), "fix the CNAME target"))
    return out


# -- the resolvers ---------------------------------------------------------------------------------
@register
class DnsPropagation(Rule):
    """What the resolvers still serve and for how long: the ETA (a lower bound when some
    resolver's state is unknown), negatively cached names, resolvers that fail."""

    name = "dns_propagation"
    Params = DnsFacts

    def evaluate(self, facts: DnsFacts) -> list[Finding]:
        obs = facts.dns.observed
        return propagation_findings(obs) if obs is not None and obs.names else []


def propagation_findings(obs: Observation) -> list[Finding]:
    out = []
    stale, negative = [], []
    for resolver in obs.resolvers:
        for name, answer in resolver.answers.items():
            if answer.expires_in is None and answer.verdict not in knowledge.STALE:
                continue
            line = (f"{resolver.shown} {name}: {answer.verdict} {knowledge.describe(answer)}, "
                    f"{answer.expires_in if answer.expires_in is not None else '?'}s left")
            if answer.verdict in knowledge.NEGATIVE:
                negative.append((resolver, name, answer, line))
            elif answer.verdict in knowledge.STALE:
                stale.append(line)
    eta = obs.eta
    total = sum(len(r.answers) for r in obs.resolvers)
    if stale or negative:
        if eta.seconds is None:
            summary = (f"{len(stale) + len(negative)} of {total} resolver answers are not the new one, and no ETA can be "
                       "given: " + "; ".join(eta.reasons))
        else:
            when = f" (at {knowledge.utc_text(obs.asked_at + eta.seconds)})" if obs.asked_at else ""
            bound = "at least " if eta.lower_bound else ""
            summary = (f"{len(stale) + len(negative)} of {total} resolver answers still hold the old answer; it is gone "
                       f"from every resolver asked in {bound}{knowledge.seconds_text(eta.seconds)}{when}")
        evidence = stale + [n[3] for n in negative] + [f"lower bound: {r}" for r in eta.reasons if eta.lower_bound]
        out.append(_finding(
            Severity.WARNING, summary, evidence,
            "nothing can empty other people's caches sooner; resolvers not asked here may keep the old answer for up "
            "to the TTL it had when they fetched it. `opskit run dns-check --watch` follows it to the end"))
    for resolver, name, answer, line in negative:
        soa_minimum = obs.negative_ttl
        out.append(_finding(
            Severity.WARNING,
            f"{resolver.shown} still caches that {name} does not exist ({answer.verdict.upper()}), from before the record "
            f"was created, for {answer.expires_in}s more",
            (line, f"negative TTL of {obs.zone}: {soa_minimum}s = min(SOA TTL, SOA MINIMUM)"),
            "negative answers are cached for min(SOA TTL, MINIMUM): keep MINIMUM short (300) and create records before "
            "announcing them; flushing your own cache helps only you"))
    for resolver in obs.resolvers:
        out += _resolver_failures(resolver)
    return out


def _resolver_failures(resolver) -> list[Finding]:
    if resolver.status == "malformed":
        return [_finding(Severity.ERROR, f"resolver {resolver.server!r} is not an address: {resolver.detail}", (),
                         "write resolvers as ip or ip:port")]
    if resolver.status in ("timeout", "unreachable"):
        return [_finding(Severity.WARNING, f"resolver {resolver.shown} does not answer ({resolver.detail}); what it "
                         "caches is unknown", (f"{resolver.server}: {resolver.detail}",),
                         "check the address, or drop it from dns.resolvers")]
    failed = {name: a for name, a in resolver.answers.items() if a.verdict in knowledge.FAILED and a.verdict != "unknown"}
    if not failed:
        return []
    kinds = sorted({a.verdict for a in failed.values()})
    why = {"servfail": "it cannot get an answer from the authoritative servers (or DNSSEC validation fails)",
           "refused": "it refuses this client (not an open resolver)",
           "timeout": "it did not answer in time", "unreachable": "it cannot be reached"}
    return [_finding(Severity.WARNING,
                     f"resolver {resolver.shown} answers {'/'.join(k.upper() for k in kinds)} for "
                     f"{', '.join(failed)}: {'; '.join(why.get(k, k) for k in kinds)}",
                     tuple(f"{resolver.server} {name}: {a.verdict} {a.detail}".rstrip() for name, a in failed.items()),
                     "a lame or silent nameserver makes resolvers SERVFAIL: see the authoritative findings")]


# -- advice ----------------------------------------------------------------------------------------
@register
class DnsAdvice(Rule):
    """Before a move: lower the TTL first, and by when. While old answers linger: how to flush
    the caches one controls (Windows, macOS, Linux, the public resolvers' flush pages)."""

    name = "dns_advice"
    Params = AdviceFacts

    def evaluate(self, facts: AdviceFacts) -> list[Finding]:
        obs = facts.dns.observed
        if obs is None or not obs.names:
            return []
        return ttl_advice(obs, facts.now, facts.move_at, facts.move_ttl) + flush_advice(obs)


def ttl_advice(obs: Observation, now: float, move_at: str | None, goal: int) -> list[Finding]:
    """Lower the TTL before a planned move (move_at), or before the move the zone still waits for."""
    planned = knowledge.parse_when(move_at).timestamp() if move_at else None
    pending = bool(obs.lagging) and _every_server_lags(obs)     # the zone does not say the new address yet
    if planned is not None and planned <= now and not pending:
        planned = None                                          # that move is done
    if planned is None and not pending:
        return []
    long = {name: ttl for name, ttl in obs.answer_ttl.items() if ttl > goal}
    if not long:
        return [_finding(Severity.INFO, f"the TTLs ({', '.join(f'{n} {t}s' for n, t in obs.answer_ttl.items())}) are "
                         f"already short ({goal}s or less): caches follow a move within that time",
                         (), "after the move has settled you may raise them again")] if obs.answer_ttl else []
    out = []
    for name, ttl in long.items():
        plan = knowledge.move_plan(ttl, goal, planned, now)
        evidence = [f"{name}: authoritative TTL {ttl}s"]
        if planned is not None:
            evidence.append(f"planned move (dns.move_at): {knowledge.utc_text(planned)}")
        if planned is None:
            summary = (f"{name} has a TTL of {knowledge.seconds_text(ttl)}: lower it to {goal}s now and switch the "
                       f"address no earlier than {knowledge.utc_text(plan['earliest_move'])}")
            severity = Severity.WARNING
        elif plan["late"]:
            summary = (f"{name} has a TTL of {knowledge.seconds_text(ttl)}: it should have been lowered to {goal}s by "
                       f"{knowledge.utc_text(plan['lower_by'])}; lower it now, and move at "
                       f"{knowledge.utc_text(plan['earliest_move'])} or later (or accept caches holding the old address "
                       f"up to {knowledge.seconds_text(ttl)} after the move)")
            severity = Severity.WARNING
        else:
            summary = (f"{name} has a TTL of {knowledge.seconds_text(ttl)}: lower it to {goal}s by "
                       f"{knowledge.utc_text(plan['lower_by'])}, one TTL before the move at {knowledge.utc_text(planned)}")
            severity = Severity.WARNING
        out.append(_finding(severity, summary, evidence,
                            "caches keep the record for the TTL they fetched it with: only a TTL lowered one old TTL "
                            "ahead makes the switch quick; raise it again once the move has settled"))
    return out


def flush_advice(obs: Observation) -> list[Finding]:
    lingering = any(a.expires_in is not None for r in obs.resolvers for a in r.answers.values())   # stale answers only
    if not lingering:
        return []
    evidence = [Evidence(f"{system}: {command}") for system, command in knowledge.FLUSH_COMMANDS]
    evidence += [Evidence(f"{name}: {page} (drops one name from its cache)") for name, page in knowledge.PUBLIC_FLUSH_PAGES]
    return [_finding(
        Severity.INFO, "to see the new site now from a machine that cached the old answer, flush its DNS cache",
        evidence, "a browser keeps its own cache too (restart it, or chrome://net-internals/#dns); the ISP's resolver "
        "keeps its copy until the TTL runs out")]


# -- the origins -----------------------------------------------------------------------------------
@register
class DnsOldOrigin(Rule):
    """Where visitors still sent to the old address end up: the old host still serving the site,
    or not answering (a CDN pointing there shows 502)."""

    name = "dns_old_origin"
    Params = OriginFacts

    def evaluate(self, facts: OriginFacts) -> list[Finding]:
        obs, origin = facts.dns.observed, facts.origin.observed or {}
        if obs is None:
            return []
        out = []
        eta = knowledge.eta_text(obs.eta)
        for entry in origin.get("old", []):
            address, verdict = entry["address"], entry["verdict"]
            stale = [f"{r.shown} {name}" for r in obs.resolvers for name, a in r.answers.items()
                     if a.verdict in knowledge.STALE and address in a.addresses]
            evidence = [f"old origin {address}: {entry['summary']}"] + [f"still served by {line}" for line in stale]
            if verdict == "passed":
                out.append(_finding(
                    Severity.INFO if not stale else Severity.WARNING,
                    f"the old origin {address} still serves the site"
                    + (f": {len(stale)} resolver answer(s) still send visitors there (ETA {eta})" if stale else ""),
                    evidence, "keep the old host up (and its content frozen) until the old answer has expired "
                    "everywhere; changes made on the new host meanwhile are missing there"))
            else:
                out.append(_finding(
                    Severity.ERROR if stale else Severity.INFO,
                    f"the old origin {address} does not serve the site"
                    + (f", yet {len(stale)} resolver answer(s) still send visitors there: they get errors (a CDN "
                       f"pointing there shows 502) until the old answer expires (ETA {eta})" if stale else ""),
                    evidence, "keep the old host serving (or proxying to the new one) until the old answer expires, "
                    "and check the CDN's origin setting points at the new address"))
        return out
