"""Capture real DNS answers from the lab (lab/dns.py: Debian's nsd and unbound on 127.0.60.x)
for the unit tests of opskit/stack/dns.py and the rules of opskit/rules/dns.py.

    sudo .venv/bin/python tests/captures/dns-nsd4.6-unbound1.17-debian12/refresh.py [--rules]

Writes, next to this script, one <situation>.json per DNS message: the query, the message's
wire bytes (hex) exactly as the server sent them, dnspython's text form of it, and "want": what
stack.dns.parse_reply must find in it. "want" never comes from parse_reply: it is written out
below from the lab's zones (lab/dns.py), with the TTLs a cache had left read from the text form.

With --rules it also writes tests/captures/rules/dns_*/<situation>.json: the facts (the dns and
dns_origin checks' values, as a playbook step hands them to the rules) from real scenarios on
the lab, and the findings the rule draws. Those "want" lists are the rules' own output at the
time of capture, each read and checked by hand against its scenario (the "about" says what it
must show); a rule change that alters them shows up as a diff to review.

Nothing leaves loopback: every query names a lab server; the servers are stopped at the end.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from lab.dns import NEW, OLD, SUBNET, DnsLab, query  # noqa: E402


def ttl_in(text: str, owner: str, rdtype: str) -> int:
    match = re.search(rf"^{re.escape(owner)} (\d+) IN {rdtype} ", text, re.MULTILINE)
    assert match, (owner, rdtype, text)
    return int(match.group(1))


def hop(name, kind, ttl, data):
    return {"name": name, "type": kind, "ttl": ttl, "data": data, "server": None}


def soa(zone, serial, ttl, minimum, mname="ns1.opskit.test"):
    return {"zone": zone, "mname": mname, "serial": serial, "minimum": minimum, "ttl": ttl}


def reply(rcode, aa, ra, chain=(), soa_=None, ns=(), end=None):
    return {"status": "ok", "detail": "", "rcode": rcode, "aa": aa, "ra": ra, "chain": list(chain), "soa": soa_,
            "ns": list(ns), "end": end}


def capture(server, name, rdtype, recursion, about, want_of) -> dict:
    message = query(server.address, server.port, name, rdtype, recursion=recursion, timeout=3)
    text = message.to_text()
    return {"about": about, "server": server.name, "query": {"name": name, "type": rdtype, "recursion": recursion},
            "wire": message.to_wire().hex(), "text": text, "want": want_of(text)}


def wire_captures(lab: DnsLab) -> dict[str, dict]:
    ns1, ns2, r1 = lab.ns1, lab.ns2, lab.r1
    base = lab.serials["ns1"]["opskit.test"]
    out = {}
    out["auth-a-aa"] = capture(ns1, "www.opskit.test", "A", False, "nsd: an authoritative A answer (AA, TTL as configured)",
                               lambda t: reply("NOERROR", True, False, [hop("www.opskit.test", "A", 3600, [OLD])],
                                               ns=["ns1.opskit.test", "ns2.opskit.test"]))
    out["auth-soa-apex"] = capture(ns1, "opskit.test", "SOA", False, "nsd: the zone's SOA at the apex: its own TTL (120) and MINIMUM (45)",
                                   lambda t: reply("NOERROR", True, False, [hop("opskit.test", "SOA", 120, [
                                       f"ns1.opskit.test. hostmaster.opskit.test. {base} 3600 600 86400 45"])],
                                       soa("opskit.test", base, 120, 45), ["ns1.opskit.test", "ns2.opskit.test"]))
    out["auth-ns"] = capture(ns1, "opskit.test", "NS", False, "nsd: the NS set",
                             lambda t: reply("NOERROR", True, False, [hop("opskit.test", "NS", 3600,
                                                                          ["ns1.opskit.test.", "ns2.opskit.test."])],
                                             ns=["ns1.opskit.test", "ns2.opskit.test"]))
    out["auth-nxdomain"] = capture(ns1, "gone.opskit.test", "A", False,
                                   "nsd: NXDOMAIN; the SOA in the authority section has TTL min(120, 45)",
                                   lambda t: reply("NXDOMAIN", True, False, [], soa("opskit.test", base, 45, 45)))
    out["auth-nodata-aaaa"] = capture(ns1, "www.opskit.test", "AAAA", False, "nsd: the name exists, no AAAA (NODATA)",
                                      lambda t: reply("NOERROR", True, False, [], soa("opskit.test", base, 45, 45)))
    out["auth-cname-chain"] = capture(ns1, "shop.opskit.test", "A", False,
                                      "nsd follows the chain into cdn.test, a zone it also serves",
                                      lambda t: reply("NOERROR", True, False, [
                                          hop("shop.opskit.test", "CNAME", 300, ["shop.cdn.test"]),
                                          hop("shop.cdn.test", "CNAME", 300, ["edge.cdn.test"]),
                                          hop("edge.cdn.test", "A", 60, [NEW])], ns=["ns1.opskit.test", "ns2.opskit.test"]))
    out["auth-soa-of-a-cname"] = capture(ns1, "shop.opskit.test", "SOA", False,
                                         "a SOA query for a CNAME: the chain, then the target zone's SOA (not the name's own zone)",
                                         lambda t: reply("NOERROR", True, False, [
                                             hop("shop.opskit.test", "CNAME", 300, ["shop.cdn.test"]),
                                             hop("shop.cdn.test", "CNAME", 300, ["edge.cdn.test"])],
                                             soa("cdn.test", lab.serials["ns1"]["cdn.test"], 20, 600), end="edge.cdn.test"))
    out["auth-refused"] = capture(ns2, "lame.test", "SOA", False, "nsd asked for a zone it does not serve: REFUSED, no AA",
                                  lambda t: reply("REFUSED", False, False))
    lab.publish("opskit.test", {"alias": ["300 CNAME www.lame.test."]})
    out["auth-cname-out-of-zone"] = capture(ns2, "alias.opskit.test", "A", False,
                                            "ns2 does not serve lame.test: the answer stops at the CNAME",
                                            lambda t: reply("NOERROR", True, False,
                                                            [hop("alias.opskit.test", "CNAME", 300, ["www.lame.test"])],
                                                            end="www.lame.test"))
    lab.reset()
    # the resolvers: what a cache has left
    lab.warm("www.opskit.test", "late.opskit.test")
    lab.publish("opskit.test", {"www": [f"3600 A {NEW}"], "late": [f"300 A {NEW}"]})
    time.sleep(2)
    out["resolver-old-cached"] = capture(r1, "www.opskit.test", "A", True,
                                         "unbound still serves the old address, with the TTL it has left (< 3600)",
                                         lambda t: reply("NOERROR", False, True,
                                                         [hop("www.opskit.test", "A", ttl_in(t, "www.opskit.test.", "A"), [OLD])]))
    out["resolver-nxdomain-cached"] = capture(r1, "late.opskit.test", "A", True,
                                              "unbound still serves the NXDOMAIN it cached before the name existed; "
                                              "the SOA's TTL is the negative TTL left (< 45)",
                                              lambda t: reply("NXDOMAIN", False, True, [], soa(
                                                  "opskit.test", lab.serials["ns1"]["opskit.test"] - 1,
                                                  ttl_in(t, "opskit.test.", "SOA"), 45)))
    out["resolver-cname-chain"] = capture(r1, "shop.opskit.test", "A", True, "unbound: the whole chain, each hop its own TTL",
                                          lambda t: reply("NOERROR", False, True, [
                                              hop("shop.opskit.test", "CNAME", ttl_in(t, "shop.opskit.test.", "CNAME"), ["shop.cdn.test"]),
                                              hop("shop.cdn.test", "CNAME", ttl_in(t, "shop.cdn.test.", "CNAME"), ["edge.cdn.test"]),
                                              hop("edge.cdn.test", "A", ttl_in(t, "edge.cdn.test.", "A"), [NEW])]))
    out["resolver-servfail"] = capture(r1, "www.dead.test", "A", True,
                                       "unbound cannot get an answer (its only server for dead.test refuses): SERVFAIL",
                                       lambda t: reply("SERVFAIL", False, True))
    out["resolver-root-nxdomain"] = capture(r1, "example.com", "A", True,
                                            "a name outside the lab ends at the lab's own root: NXDOMAIN, root.lab's SOA",
                                            lambda t: reply("NXDOMAIN", False, True, [], soa(
                                                ".", 1, ttl_in(t, ".", "SOA"), 300, mname="root.lab")))
    lab.reset()
    return out


# -- rule facts ---------------------------------------------------------------------------------------
def rule_captures(lab: DnsLab, base: Path) -> dict[str, dict[str, dict]]:
    from lab.tls_nginx import TlsNginx
    from opskit.checks.dns import DnsOrigin, DnsOriginParams, DnsParams, inspect, judge
    from opskit.inventory import Host
    from opskit.steps import Context

    def params(**more) -> DnsParams:
        values = {"domain": "opskit.test", "expect": [NEW], "old": [OLD], "resolvers": [lab.r1.endpoint, lab.r2.endpoint],
                  "nameservers": [lab.ns1.endpoint, lab.ns2.endpoint], "timeout": 1}
        values.update(more)
        return DnsParams(**values)

    def value(p: DnsParams) -> dict:
        result = judge(inspect(p))
        return {"verdict": result.verdict.value, "summary": result.summary, "observed": result.observed}

    moved = lambda: lab.publish("opskit.test", {"@": [f"3600 A {NEW}"], "www": [f"3600 A {NEW}"]})  # noqa: E731
    values: dict[str, tuple[str, dict]] = {}
    lab.reset()
    lab.warm("opskit.test", "www.opskit.test")
    moved()
    lab.r2.flush()
    time.sleep(1.5)
    values["move"] = ("after the move: r1 still caches the old address (ETA = its TTL left), r2 was flushed", value(params()))
    lab.reset()
    moved()
    values["propagated"] = ("every resolver serves the new address, both nameservers in sync", value(params()))
    lab.reset()
    moved()
    lab.publish("opskit.test", {"www": [f"3600 A {SUBNET}22"]}, on=("ns1",))
    values["out-of-sync"] = ("ns1 has a newer serial (www → .22), ns2 still serves .20: no ETA",
                             value(params(expect=[f"{SUBNET}22"], names=["www.opskit.test"])))
    lab.reset()
    values["zone-not-moved"] = ("the zone still says the old address: it lags everywhere", value(params()))
    values["nxdomain"] = ("the name does not exist at the authoritative servers (negative TTL 45)",
                          value(params(domain="gone.opskit.test", names=["gone.opskit.test"])))
    lab.warm("late.opskit.test")
    lab.publish("opskit.test", {"late": [f"300 A {NEW}"]})
    lab.r2.flush()
    values["negative-cache"] = ("r1 cached NXDOMAIN before the name was created; r2 was flushed",
                                value(params(domain="late.opskit.test", names=["late.opskit.test"])))
    lab.reset()
    moved()
    values["silent-servers"] = ("a resolver and a nameserver that never answer: timeouts, the ETA a lower bound",
                                value(params(resolvers=[lab.r1.endpoint, lab.silent.endpoint],
                                             nameservers=[lab.ns1.endpoint, lab.silent.endpoint])))
    values["lame-ns-set"] = ("no nameservers given: lame.test's NS set found through r1; ns2 does not serve it",
                             value(params(domain="lame.test", nameservers=[], resolvers=[lab.r1.endpoint])))
    values["cname-chain"] = ("shop.opskit.test → shop.cdn.test → edge.cdn.test → A; no expect: the zone's answer",
                             value(params(domain="shop.opskit.test", names=["shop.opskit.test"], expect=[], old=[])))
    values["servfail"] = ("both resolvers answer SERVFAIL for www.dead.test; ns1 does not serve dead.test",
                          value(params(domain="dead.test", names=["www.dead.test"], nameservers=[lab.ns1.endpoint])))
    values["malformed-inputs"] = ("malformed resolver, nameserver, name and address entries; nothing asked",
                                  value(params(domain="opskit.test", names=["bad name"], expect=["not-an-ip"],
                                               resolvers=["300.1.1.1"], nameservers=["1.2.3.4:99999"])))
    # the origins: nginx on NEW serving www.opskit.test; nothing on OLD nor on .23
    origins: dict[str, tuple[str, dict, dict]] = {}
    with TlsNginx(base / "nginx", address=NEW, hostname="www.opskit.test") as nginx:
        host = Host(name="site1", address=f"{SUBNET}250", origin=f"https://{NEW}:{nginx.https_port}",
                    wordpress={"url": "https://www.opskit.test/"}, tls={"ca_bundle": str(nginx.ca_pem)})

        def origin(addresses, old) -> dict:
            result = DnsOrigin().run(DnsOriginParams(addresses=addresses, old=old, timeout=3),
                                     Context(host, None, "capture"))
            return {"verdict": result.verdict.value, "summary": result.summary, "observed": result.observed}

        lab.reset()
        lab.warm("opskit.test", "www.opskit.test")
        moved()
        lab.r2.flush()
        origins["old-down-still-cached"] = ("r1 still sends visitors to OLD, where nothing answers",
                                            value(params()), origin([NEW], [OLD]))
        lab.r1.flush()
        origins["old-down-propagated"] = ("nothing sends visitors to OLD any more", value(params()), origin([NEW], [OLD]))
        lab.reset()
        moved()
        lab.warm("opskit.test", "www.opskit.test")
        lab.publish("opskit.test", {"@": [f"3600 A {SUBNET}23"], "www": [f"3600 A {SUBNET}23"]})
        origins["old-still-serving"] = ("moved on from .20 to .23 (down); r1/r2 still cache .20, whose host still serves the site",
                                        value(params(expect=[f"{SUBNET}23"], old=[NEW])), origin([f"{SUBNET}23"], [NEW]))
    lab.reset()
    now = values["zone-not-moved"][1]["observed"]["asked_at"]
    facts: dict[str, dict[str, dict]] = {"dns_authoritative": {}, "dns_propagation": {}, "dns_advice": {}, "dns_old_origin": {}}
    for situation in ("move", "out-of-sync", "zone-not-moved", "nxdomain", "silent-servers", "lame-ns-set", "cname-chain",
                      "malformed-inputs", "servfail"):
        about, dns = values[situation]
        facts["dns_authoritative"][situation] = {"about": about, "facts": {"dns": dns}}
    for situation in ("move", "propagated", "negative-cache", "silent-servers", "servfail", "out-of-sync"):
        about, dns = values[situation]
        facts["dns_propagation"][situation] = {"about": about, "facts": {"dns": dns}}
    advice = {
        "move-planned-in-2h": ("zone-not-moved", now + 7200, "a move planned in 2 hours: lower the 3600s TTL an hour before"),
        "move-planned-too-soon": ("zone-not-moved", now + 600, "a move in 10 minutes: it is too late to lower the TTL in time"),
        "not-moved-no-plan": ("zone-not-moved", None, "the zone still says the old address, no date: lower it now"),
        "moved-caches-linger": ("move", None, "the move is done and r1 lingers: how to flush caches, no TTL advice"),
        "propagated": ("propagated", None, "done everywhere: nothing to advise"),
    }
    for situation, (source, move_at, about) in advice.items():
        dns = values[source][1]
        when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(move_at)) if move_at else None
        facts["dns_advice"][situation] = {"about": about, "facts": {"dns": dns, "now": now, "move_at": when, "move_ttl": 300}}
    for situation, (about, dns, checked) in origins.items():
        facts["dns_old_origin"][situation] = {"about": about, "facts": {"dns": dns, "origin": checked}}
    return facts


def write_rule_captures(facts: dict[str, dict[str, dict]]) -> None:
    from opskit.steps import RULES, load_builtin_steps

    load_builtin_steps()
    out_dir = ROOT / "tests" / "captures" / "rules"
    for rule_name, situations in facts.items():
        folder = out_dir / rule_name
        folder.mkdir(parents=True, exist_ok=True)
        rule = RULES[rule_name]()
        for situation, spec in situations.items():
            found = rule.evaluate(rule.Params.model_validate(spec["facts"]))
            spec["want"] = [{"cause": f.cause, "severity": f.severity.value, "family": f.family.value if f.family else None,
                             "evidence": [e.to_json() for e in f.evidence]} for f in found]
            spec["summaries"] = [f.summary for f in found]   # for the reader; the harness compares "want"
            (folder / f"{situation}.json").write_text(json.dumps(spec, indent=1) + "\n")
            print(f"{rule_name}/{situation}: {[f.summary[:90] for f in found]}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="opskit-dns-capture-") as tmp, DnsLab(Path(tmp) / "dns") as lab:
        for situation, spec in wire_captures(lab).items():
            (HERE / f"{situation}.json").write_text(json.dumps(spec, indent=1) + "\n")
            print(f"{situation}: {spec['query']}")
        if "--rules" in sys.argv:
            write_rule_captures(rule_captures(lab, Path(tmp)))


if __name__ == "__main__":
    main()
