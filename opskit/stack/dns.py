"""Pure knowledge of DNS answers after a host move: what a reply says (parse_reply), what one
server says about one name (merge), and what all of it means together (assess): per resolver
new / old / mixed / NXDOMAIN / SERVFAIL / timeout with the TTL left, the authoritative
servers' serials and negative-caching TTL, and when the old answer is gone everywhere asked.

    reply = parse_reply(dns.message.from_wire(wire), "www.example.com", "A")
    answer = merge("www.example.com", {"A": reply, "AAAA": reply6}, authoritative=True)
    observation = assess(Observation(names=[...], expect=[...], nameservers=[...], resolvers=[...]))
    observation.eta.seconds, observation.propagated, table(observation), summary(observation)

No network, no clock: checks/dns.py asks the servers (dnspython) and hands the replies here;
rules/dns.py draws findings from an Observation. The default public resolvers and the
commands that flush a client's cache are knowledge too, so they live here.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import dns.message

# Asked when the inventory names no resolvers (dns.resolvers). Anycast services: each address
# is many caches, so a remaining TTL seen once is one cache's. Checked 2026-12-01 against the
# operators' own pages (1.1.1.1/dns, developers.google.com/speed/public-dns, quad9.net, opendns.com).
PUBLIC_RESOLVERS: tuple[tuple[str, str], ...] = (
    ("1.1.1.1", "Cloudflare"),
    ("8.8.8.8", "Google Public DNS"),
    ("9.9.9.9", "Quad9"),
    ("208.67.222.222", "OpenDNS"),
)
PUBLIC_RESOLVERS_CHECKED = "2026-12-01"

# How to make one client forget what it cached (a visitor's machine, the admin's own).
FLUSH_COMMANDS: tuple[tuple[str, str], ...] = (
    ("Windows", "ipconfig /flushdns"),
    ("macOS", "sudo dscacheutil -flushcache; sudo killall -HUP mDNSResponder"),
    ("Linux (systemd-resolved)", "resolvectl flush-caches"),
)
# Public resolvers that let anyone drop one name from their cache.
PUBLIC_FLUSH_PAGES: tuple[tuple[str, str], ...] = (
    ("Google Public DNS", "https://developers.google.com/speed/public-dns/cache"),
    ("Cloudflare 1.1.1.1", "https://one.one.one.one/purge-cache/"),
)

MAX_CHAIN = 8                 # CNAME hops followed before the chain counts as a loop
ADDRESS_TYPES = ("A", "AAAA")

# verdicts of a resolver's answer for one name
FRESH = frozenset({"new", "cdn"})
STALE = frozenset({"old", "mixed", "other"})
NEGATIVE = frozenset({"nxdomain", "nodata"})
FAILED = frozenset({"servfail", "refused", "timeout", "unreachable", "malformed", "error", "lame", "incomplete",
                    "unknown"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hop(_Model):
    """One RRset along an answer: `name TYPE data` with its TTL (remaining, from a cache)."""

    name: str
    type: str
    ttl: int
    data: list[str]                 # the CNAME target, or the addresses (sorted)
    server: str | None = None       # authoritative hops answered by another server than the first

    def text(self) -> str:
        return f"{self.name} {self.type} {' '.join(self.data)} (TTL {self.ttl})"


class Soa(_Model):
    zone: str
    mname: str
    serial: int
    minimum: int
    ttl: int                        # the SOA RRset's own TTL (in a negative answer: what is left of it)

    @property
    def negative_ttl(self) -> int:
        """RFC 2308: a "no such name" is cached for min(SOA TTL, MINIMUM)."""
        return min(self.ttl, self.minimum)


class Reply(_Model):
    """One query's outcome. status "ok" means a DNS message came back (rcode says what it is)."""

    status: Literal["ok", "timeout", "unreachable", "malformed", "error"]
    detail: str = ""
    rcode: str | None = None
    aa: bool = False
    ra: bool = False
    chain: list[Hop] = []           # from the name asked: CNAME hops, then the RRset of the type asked
    soa: Soa | None = None          # from the answer (a SOA query) or the authority section (negative answers)
    ns: list[str] = []              # an NS query's answer, or a referral's NS names
    end: str | None = None          # the last name of the chain: the CNAME target left to resolve

    @property
    def addresses(self) -> list[str]:
        return self.chain[-1].data if self.chain and self.chain[-1].type in ADDRESS_TYPES else []


class NameAnswer(_Model):
    """What one server says about one name (its A and AAAA queries together)."""

    name: str
    status: Literal["answer", "nxdomain", "nodata", "servfail", "refused", "lame", "incomplete", "timeout",
                    "unreachable", "malformed", "error"]
    detail: str = ""
    rcode: str | None = None
    aa: bool | None = None
    chain: list[Hop] = []
    addresses: list[str] = []
    ttl: int | None = None          # positive: the smallest TTL along the chain; negative: the SOA's in the authority section
    verdict: str | None = None      # resolvers: new, old, mixed, other, cdn, nxdomain, nodata, servfail, timeout, ...
    expires_in: int | None = None   # resolvers serving a stale answer: seconds until they must ask again

    @property
    def cname_end(self) -> str | None:
        return self.chain[-1].data[0] if self.chain and self.chain[-1].type == "CNAME" else None


class ServerReport(_Model):
    server: str                     # as the inventory writes it: ip or ip:port
    label: str | None = None        # the NS name, or the public resolver's operator
    status: Literal["ok", "malformed", "timeout", "unreachable", "lame", "error"] = "ok"
    detail: str = ""
    soa: Soa | None = None          # nameservers: the zone's SOA as this server serves it
    ns: list[str] = []              # nameservers: the NS set this server lists for the zone
    answers: dict[str, NameAnswer] = {}

    @property
    def shown(self) -> str:
        return f"{self.server} ({self.label})" if self.label else self.server


class Eta(_Model):
    seconds: int | None = None      # until the resolvers asked serve the new answer; None: cannot say
    lower_bound: bool = False       # some resolver's state is unknown: it may take longer
    reasons: list[str] = []
    longest: list[str] = []         # "resolver name" whose cache sets the ETA


class Observation(_Model):
    """The dns check's value (`observed`): everything asked and what it means."""

    domain: str | None = None
    names: list[str] = []
    expect: list[str] = []
    old: list[str] = []
    cdn_hostname: str | None = None
    expect_source: Literal["inventory", "authoritative", "none"] = "none"
    zone: str | None = None
    ns_source: Literal["inventory", "ns-set"] = "inventory"
    ns_set: list[str] = []          # the NS names the zone lists
    resolvers_source: Literal["inventory", "public-default"] = "inventory"
    nameservers: list[ServerReport] = []
    resolvers: list[ServerReport] = []
    reference: dict[str, NameAnswer] = {}   # per name: the authoritative answer (highest serial) caches converge to
    serials: dict[str, int] = {}
    in_sync: bool | None = None
    negative_ttl: int | None = None
    answer_ttl: dict[str, int] = {}          # per name: the authoritative TTL of its answer (the largest along the chain)
    lagging: list[str] = []                  # authoritative answers that are not the new one
    new_addresses: list[str] = []
    eta: Eta = Eta()
    propagated: bool = False
    problems: list[str] = []                 # input problems (a malformed name or address)
    asked_at: float | None = None            # epoch of the queries (the controller's clock)
    seconds: float | None = None


# -- names and addresses ---------------------------------------------------------------------------
def normalize_name(text: str) -> str:
    """'WWW.Example.COM.' → 'www.example.com'; ValueError for anything that is not a host name
    (IDN in Unicode is turned into its xn-- form)."""
    import dns.name

    raw = str(text).strip()
    if not raw or raw != str(text) or any(c.isspace() for c in raw):
        raise ValueError(f"not a domain name: {text!r}")
    try:
        name = dns.name.from_text(raw)
    except Exception as exc:   # dnspython raises several types (EmptyLabel, LabelTooLong, IDNA errors)
        raise ValueError(f"not a domain name: {text!r} ({exc})") from None
    shown = name.to_text(omit_final_dot=True).lower()
    labels = shown.split(".")
    if shown == "" or len(labels) < 2 or not all(_label_ok(label) for label in labels):
        raise ValueError(f"not a domain name: {text!r}")
    return shown


def _label_ok(label: str) -> bool:
    return 0 < len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label) and label.isascii() \
        and not label.startswith("-") and not label.endswith("-")


def default_names(domain: str) -> list[str]:
    """The apex and its www (either may be the one the inventory names)."""
    if domain.startswith("www."):
        return [domain[4:], domain]
    return [domain, f"www.{domain}"]


def normalize_address(text: str) -> str:
    return ipaddress.ip_address(str(text).split("%")[0]).compressed


def _name_text(name) -> str:
    text = name.to_text(omit_final_dot=True).lower()
    return text or "."


# -- one reply ---------------------------------------------------------------------------------------
def parse_reply(message: "dns.message.Message", qname: str, qtype: str) -> Reply:
    """What a DNS message says about `qname`/`qtype`: the CNAME chain from qname to the RRset
    asked (or to where the message stops), the SOA (answer or authority section) and NS names."""
    import dns.flags
    import dns.name
    import dns.rcode
    import dns.rdatatype

    rrsets = {(_name_text(r.name), dns.rdatatype.to_text(r.rdtype)): r for r in message.answer}
    chain: list[Hop] = []
    current, seen, end = qname.lower(), set(), None
    while len(chain) <= MAX_CHAIN:
        if (current, qtype) in rrsets:
            chain.append(_hop(rrsets[(current, qtype)]))
            break
        cname = rrsets.get((current, "CNAME"))
        if cname is None or qtype == "CNAME":
            end = current if chain else None
            break
        hop = _hop(cname)
        chain.append(hop)
        seen.add(current)
        current = hop.data[0]
        if current in seen:
            end = current
            break
    soa = None
    for section in (message.answer, message.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA and soa is None:
                record = rrset[0]
                soa = Soa(zone=_name_text(rrset.name), mname=_name_text(record.mname), serial=record.serial,
                          minimum=record.minimum, ttl=rrset.ttl)
    ns: list[str] = []
    for section in (message.answer, message.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.NS and not ns:
                ns = sorted(_name_text(r.target) for r in rrset)
    return Reply(status="ok", rcode=dns.rcode.to_text(message.rcode()), aa=bool(message.flags & dns.flags.AA),
                 ra=bool(message.flags & dns.flags.RA), chain=chain, soa=soa, ns=ns, end=end)


def _hop(rrset) -> Hop:
    import dns.rdatatype

    kind = dns.rdatatype.to_text(rrset.rdtype)
    if kind in ADDRESS_TYPES:
        data = sorted((normalize_address(r.address) for r in rrset), key=_address_key)
    elif kind == "CNAME":
        data = [_name_text(rrset[0].target)]
    else:
        data = sorted(r.to_text() for r in rrset)
    return Hop(name=_name_text(rrset.name), type=kind, ttl=rrset.ttl, data=data)


def _address_key(address: str):
    parsed = ipaddress.ip_address(address)
    return (parsed.version, parsed)


RCODE_STATUS = {"NXDOMAIN": "nxdomain", "SERVFAIL": "servfail", "REFUSED": "refused", "NOTAUTH": "lame",
                "NOTIMP": "refused"}


def merge(name: str, replies: dict[str, Reply], authoritative: bool) -> NameAnswer:
    """One server's A and AAAA replies for `name` as one answer. On the authoritative side an
    answer without the AA flag (a referral, a cached copy) is lame."""
    first_type = next(t for t in ("A", "AAAA") if t in replies)
    first = replies[first_type]
    if first.status != "ok":
        return NameAnswer(name=name, status=first.status, detail=f"{first_type}: {first.detail}")
    rcode = first.rcode or "?"
    if authoritative and rcode in ("NOERROR", "NXDOMAIN") and not first.aa:
        referral = f" (a referral to {', '.join(first.ns)})" if first.ns and not first.chain else ""
        return NameAnswer(name=name, status="lame", rcode=rcode, aa=False,
                          detail=f"answered {rcode} without the AA flag: not authoritative for {name}{referral}")
    if rcode != "NOERROR":
        status = RCODE_STATUS.get(rcode, "error")
        negative_ttl = first.soa.ttl if first.soa and status == "nxdomain" else None
        return NameAnswer(name=name, status=status, rcode=rcode, aa=first.aa, ttl=negative_ttl,
                          detail="" if status != "error" else f"rcode {rcode}")
    chain = list(first.chain)
    details = []
    for other_type, other in replies.items():
        if other_type == first_type:
            continue
        if other.status != "ok" or other.rcode != "NOERROR":
            details.append(f"{other_type}: {other.detail or other.rcode or other.status}")
            continue
        known = {(h.name, h.type) for h in chain}
        chain += [h for h in other.chain if (h.name, h.type) not in known]
    addresses = sorted({a for h in chain if h.type in ADDRESS_TYPES for a in h.data}, key=_address_key)
    detail = "; ".join(details)
    if not chain:
        ttl = first.soa.ttl if first.soa else None
        return NameAnswer(name=name, status="nodata", rcode=rcode, aa=first.aa, ttl=ttl, detail=detail)
    ttl = min(h.ttl for h in chain)
    if not addresses:
        end = chain[-1]
        loop = end.type == "CNAME" and end.data[0] in {h.name for h in chain}
        detail = "; ".join([f"CNAME loop at {end.data[0]}" if loop else f"the chain stops at {end.data[0]}"] + details)
        return NameAnswer(name=name, status="incomplete", rcode=rcode, aa=first.aa, chain=chain, ttl=ttl, detail=detail)
    return NameAnswer(name=name, status="answer", rcode=rcode, aa=first.aa, chain=chain, addresses=addresses, ttl=ttl,
                      detail=detail)


def extend_chain(answer: NameAnswer, more: NameAnswer, server: str | None) -> NameAnswer:
    """An authoritative answer that stopped at a CNAME into another zone, continued with that
    zone's answer for the target (its hops marked with the server that gave them)."""
    hops = answer.chain + [h.model_copy(update={"server": server}) for h in more.chain]
    if more.status not in ("answer", "nodata", "nxdomain", "incomplete"):
        return answer.model_copy(update={"detail": f"{answer.cname_end}: {more.status} {more.detail}".strip()})
    status = {"answer": "answer", "incomplete": "incomplete"}.get(more.status, more.status)
    ttl = min([h.ttl for h in hops] + ([more.ttl] if more.ttl is not None and not more.chain else []))
    return answer.model_copy(update={"status": status, "chain": hops, "addresses": more.addresses, "ttl": ttl,
                                     "detail": more.detail, "rcode": more.rcode})


def zone_of(replies: list[Reply]) -> str | None:
    """The zone a name is in, from SOA replies (the answer at the apex, the authority below it).
    A name that is a CNAME says nothing of its own zone (the SOA is the target's): None."""
    for reply in replies:
        if reply.status == "ok" and reply.soa is not None and not aliased(reply):
            return reply.soa.zone
    return None


def aliased(reply: Reply) -> bool:
    """The name asked is a CNAME (its zone is its parent's)."""
    return bool(reply.chain) and reply.chain[0].type == "CNAME"


def parent(name: str) -> str | None:
    return name.split(".", 1)[1] if "." in name else None


# -- what it all means -------------------------------------------------------------------------------
def verdict(answer: NameAnswer, new: set[str], old: set[str], cdn_hostname: str | None) -> str:
    """A resolver's answer for one name, against the new (expected) and old addresses."""
    if answer.status in ("nxdomain", "nodata"):
        return answer.status
    if answer.status != "answer":
        return answer.status
    if cdn_hostname and any(cdn_hostname in (h.name, *h.data) for h in answer.chain if h.type == "CNAME"):
        return "cdn"
    addresses = set(answer.addresses)
    if not new:
        return "unknown"
    if addresses <= new:
        return "new"
    if addresses & new:
        return "mixed"
    if addresses & old or not old:
        return "old"
    return "other"


def stale(answer: NameAnswer, reference: NameAnswer | None) -> bool:
    """Does this resolver answer still hold something the authoritative servers no longer say?
    (An old answer the zone itself still gives is not a cache lagging: the zone is.)"""
    if answer.verdict in STALE:
        return reference is None or reference.status != "answer" or set(answer.addresses) != set(reference.addresses)
    if answer.verdict in NEGATIVE:
        return reference is not None and reference.status == "answer"
    return False


def expires_in(answer: NameAnswer, reference: NameAnswer | None) -> int | None:
    """Seconds until a stale answer must be fetched again: the TTL left on the first hop that
    differs from what the authoritative servers say (a changed CNAME outlives the A behind it);
    for a cached "no such name", the negative TTL left."""
    if answer.status in ("nxdomain", "nodata"):
        return answer.ttl
    if reference is not None and reference.chain:
        theirs = {(h.name, h.type): set(h.data) for h in reference.chain}
        for hop in answer.chain:
            if theirs.get((hop.name, hop.type)) != set(hop.data):
                return hop.ttl
    address_ttls = [h.ttl for h in answer.chain if h.type in ADDRESS_TYPES]
    return max(address_ttls) if address_ttls else answer.ttl


def assess(obs: Observation) -> Observation:
    """Fill in what the answers mean: the reference answer per name, serials and sync, the
    negative-caching TTL, authoritative answers that lag, each resolver answer's verdict and
    expiry, the ETA and whether the move has propagated."""
    expect = {normalize_address(a) for a in obs.expect}
    old = {normalize_address(a) for a in obs.old}
    serving = [s for s in obs.nameservers if s.status == "ok"]
    serials = {s.server: s.soa.serial for s in serving if s.soa}
    in_sync = len(set(serials.values())) == 1 if serials else None
    ranked = sorted(serving, key=lambda s: s.soa.serial if s.soa else -1, reverse=True)
    reference: dict[str, NameAnswer] = {}
    for name in obs.names:
        for server in ranked:
            answer = server.answers.get(name)
            if answer is not None and answer.status in ("answer", "nxdomain", "nodata"):
                reference[name] = answer
                break
    soas = [s.soa for s in ranked if s.soa]
    negative_ttl = soas[0].negative_ttl if soas else None
    answer_ttl = {name: max(h.ttl for h in ref.chain) for name, ref in reference.items() if ref.chain}

    def new_for(name: str) -> set[str]:
        if expect:
            return expect
        ref = reference.get(name)
        return set(ref.addresses) if ref is not None and ref.status == "answer" else set()

    cdn = obs.cdn_hostname.lower().rstrip(".") if obs.cdn_hostname else None
    lagging = []
    for server in serving:
        for name in obs.names:
            answer = server.answers.get(name)
            if answer is None or answer.status not in ("answer", "nxdomain", "nodata"):
                continue
            if _through_cdn(answer, cdn):
                continue
            new = new_for(name)
            if answer.status != "answer" and expect:
                lagging.append(f"{server.server}: {name} {answer.status.upper()}")
            elif answer.status == "answer" and new and not set(answer.addresses) <= new:
                lagging.append(f"{server.server}: {name} {' '.join(answer.addresses)}")
    resolvers = []
    stale_answers: list[tuple[str, str, int | None]] = []
    unknown: list[str] = []
    for resolver in obs.resolvers:
        if resolver.status != "ok":
            if resolver.status != "malformed":   # a typo in the inventory is not a resolver in an unknown state
                unknown.append(f"{resolver.server} ({resolver.status})")
            resolvers.append(resolver)
            continue
        answers = {}
        for name in obs.names:
            answer = resolver.answers.get(name)
            if answer is None:
                continue
            ref = reference.get(name)
            judged = answer.model_copy(update={"verdict": verdict(answer, new_for(name), old, cdn)})
            if stale(judged, ref):
                judged = judged.model_copy(update={"expires_in": expires_in(judged, ref)})
                stale_answers.append((resolver.server, name, judged.expires_in))
            elif judged.verdict in FAILED:
                unknown.append(f"{resolver.server}: {name} {judged.verdict}")
            answers[name] = judged
        resolvers.append(resolver.model_copy(update={"answers": answers}))
    eta = _eta(stale_answers, unknown, lagging, obs.nameservers, obs.names and bool(expect or reference))
    answered = any(a.verdict in FRESH | STALE | NEGATIVE for r in resolvers for a in r.answers.values())
    propagated = bool(obs.names) and answered and not stale_answers and not unknown and not lagging \
        and bool(expect or reference)
    new_addresses = sorted(expect, key=_address_key) if expect else sorted(
        {a for ref in reference.values() if ref.status == "answer" and not _through_cdn(ref, cdn) for a in ref.addresses},
        key=_address_key)
    return obs.model_copy(update={
        "reference": reference, "serials": serials, "in_sync": in_sync, "negative_ttl": negative_ttl,
        "answer_ttl": answer_ttl, "lagging": lagging, "resolvers": resolvers, "eta": eta, "propagated": propagated,
        "new_addresses": new_addresses,
        "expect_source": "inventory" if expect else ("authoritative" if reference else "none")})


def _through_cdn(answer: NameAnswer, cdn: str | None) -> bool:
    return bool(cdn) and any(cdn in (h.name, *h.data) for h in answer.chain if h.type == "CNAME")


def _eta(stale_answers, unknown, lagging, nameservers: list[ServerReport], comparable: bool) -> Eta:
    reasons = []
    if lagging:
        reasons.append("the authoritative servers still serve another answer (" + "; ".join(lagging[:4]) + "): "
                       "resolvers fetch it again, so there is no end to wait for until the zone is fixed")
        return Eta(seconds=None, lower_bound=False, reasons=reasons)
    if not comparable:
        return Eta(seconds=None, reasons=["nothing to compare with: no expected address and no authoritative answer"])
    known = [s for s in stale_answers if s[2] is not None]
    seconds = max((s[2] for s in known), default=0)
    longest = [f"{server} {name}" for server, name, left in known if left == seconds and seconds]
    lower = False
    if unknown:
        lower = True
        reasons.append("no usable answer from " + "; ".join(unknown[:6]) + ": they may still hold the old answer")
    if len(known) < len(stale_answers):
        lower = True
        reasons.append("the TTL left is unknown for some stale answers")
    unreachable = [s.server for s in nameservers if s.status in ("timeout", "unreachable")]
    if unreachable:
        lower = True
        reasons.append(f"nameserver(s) {', '.join(unreachable)} did not answer: what they serve is unknown")
    return Eta(seconds=seconds, lower_bound=lower, reasons=reasons, longest=longest)


# -- how to say it -----------------------------------------------------------------------------------
def describe(answer: NameAnswer) -> str:
    """'CNAME shop.cdn.test → CNAME edge.cdn.test → A 127.0.60.20' or 'NXDOMAIN'."""
    if answer.status == "answer" or answer.status == "incomplete":
        parts = []
        for hop in answer.chain:
            parts.append(f"{hop.type} {' '.join(hop.data)}")
        return " → ".join(parts)
    if answer.status in ("nxdomain", "nodata", "servfail", "refused"):
        return answer.status.upper() if answer.status != "nodata" else "no address (NODATA)"
    return f"{answer.status}" + (f": {answer.detail}" if answer.detail else "")


def table(obs: Observation) -> list[str]:
    """The per-server table, one line per server and name (evidence lines, aligned)."""
    rows = [("", "server", "name", "verdict", "answer", "TTL")]
    for server in obs.nameservers:
        if server.status != "ok":
            rows.append(("authoritative", server.shown, "-", server.status, server.detail, ""))
            continue
        serial = f"serial {server.soa.serial}" if server.soa else "no SOA"
        for name in obs.names:
            answer = server.answers.get(name)
            if answer is None:
                continue
            flag = "AA" if answer.aa else answer.status
            ttl = _ttl_text(answer)
            rows.append(("authoritative", server.shown, name, flag, describe(answer), f"{ttl} {serial}".strip()))
    for server in obs.resolvers:
        if server.status != "ok":
            rows.append(("resolver", server.shown, "-", server.status, server.detail, ""))
            continue
        for name in obs.names:
            answer = server.answers.get(name)
            if answer is None:
                continue
            left = answer.expires_in if answer.expires_in is not None else answer.ttl
            rows.append(("resolver", server.shown, name, answer.verdict or answer.status, describe(answer),
                         f"{left}s left" if left is not None else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return ["  ".join(cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(row)).rstrip() for row in rows]


def _ttl_text(answer: NameAnswer) -> str:
    if answer.status in ("answer", "incomplete") and answer.chain:
        return "TTL " + "/".join(str(h.ttl) for h in answer.chain)
    if answer.ttl is not None:
        return f"negative TTL {answer.ttl}"
    return ""


def eta_text(eta: Eta) -> str:
    if eta.seconds is None:
        return "no ETA"
    if eta.seconds == 0:
        return "unknown (some servers did not answer)" if eta.lower_bound else "propagated"
    return ("at least " if eta.lower_bound else "") + f"{eta.seconds}s"


def summary(obs: Observation) -> str:
    """One line for the check's result."""
    names = ", ".join(obs.names) or "(no names)"
    answering = [r for r in obs.resolvers if r.status == "ok"]
    if obs.propagated:
        addresses = " ".join(obs.new_addresses) or "the new answer"
        serials = sorted(set(obs.serials.values()))
        serial = f", serial {serials[0]} on {len(obs.serials)} nameserver(s)" if len(serials) == 1 else ""
        ttls = sorted(set(obs.answer_ttl.values()))
        ttl = f"; authoritative TTL {'/'.join(map(str, ttls))}" if ttls else ""
        return f"{names}: every resolver asked ({len(answering)}) serves {addresses}{ttl}{serial}"
    answers = [a for r in answering for a in r.answers.values()]
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer.verdict or answer.status] = counts.get(answer.verdict or answer.status, 0) + 1
    parts = [f"{names}: not propagated"]
    if answers:
        parts.append(", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
                     + f" of {len(answers)} resolver answers")
    broken = [f"{r.server} ({r.status})" for r in obs.resolvers if r.status != "ok"]
    if broken:
        parts.append(f"unusable resolvers: {', '.join(broken)}")
    if obs.in_sync is False:
        parts.append("nameservers out of sync (serials " + ", ".join(f"{s} {n}" for s, n in obs.serials.items()) + ")")
    if obs.lagging:
        parts.append("authoritative: " + "; ".join(obs.lagging[:3]))
    parts.append(f"ETA {eta_text(obs.eta)}")
    return "; ".join(parts)


# -- planning a move -----------------------------------------------------------------------------------
def parse_when(text: str) -> datetime.datetime:
    """An ISO 8601 date or time ('2026-12-05', '2026-12-05T22:00', '...+01:00'); naive is UTC."""
    value = datetime.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def utc_text(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_text(seconds: float) -> str:
    """3581 → '3581s (59m41s)'; short ones stay plain."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    human = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs and not hours else "")
    return f"{seconds}s ({human})"


def move_plan(ttl: int, goal: int, move_at: float | None, now: float) -> dict:
    """When to lower a TTL before a move: every cache must have fetched the short TTL before the
    switch, so the lowered record must be published at least one old TTL before it.
    {"lower_by": epoch | None, "late": bool, "earliest_move": epoch}"""
    if ttl <= goal:
        return {"lower_by": None, "late": False, "earliest_move": now}
    if move_at is None:
        return {"lower_by": None, "late": False, "earliest_move": now + ttl}
    lower_by = move_at - ttl
    return {"lower_by": lower_by, "late": lower_by < now, "earliest_move": max(move_at, now + ttl)}

