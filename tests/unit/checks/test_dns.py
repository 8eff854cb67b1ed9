"""The dns checks' pure parts (opskit/stack/dns.py: parsing real answers, merging A and AAAA,
verdicts, expiry, the ETA) and the network layer's failure handling (`ask`) against small
servers of our own on loopback (127.0.60.200: a truncating one, a garbage one, a silent one).

Real answers come from tests/captures/dns-nsd4.6-unbound1.17-debian12/ (nsd and unbound,
captured by the refresh.py there). Nothing here asks a real resolver: the tests that reach
`inspect` replace `ask`, so the public default list is chosen but never queried.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
import pytest

from opskit.checks import dns as check
from opskit.checks.dns import DnsOrigin, DnsOriginParams, DnsParams, Server, ask, inspect, judge, origin_at, parse_servers
from opskit.inventory import Host
from opskit.stack import dns as knowledge
from opskit.stack.dns import Eta, Hop, NameAnswer, Observation, Reply, ServerReport, Soa
from opskit.steps import Context, Verdict

CAPTURES = Path(__file__).resolve().parents[2] / "captures" / "dns-nsd4.6-unbound1.17-debian12"
_SENT_OUTSIDE: list | None = None


def _audit(event, args):
    """Every socket destination of this module's tests must be on loopback (and no name lookups)."""
    if _SENT_OUTSIDE is None:
        return
    import ipaddress

    if event in ("socket.connect", "socket.sendto", "socket.sendmsg") and isinstance(args[-1], tuple):
        where = args[-1][0]
    elif event == "socket.getaddrinfo" and args[0] is not None:
        where = args[0].decode() if isinstance(args[0], bytes) else args[0]
    else:
        return
    try:
        if ipaddress.ip_address(str(where).split("%")[0]).is_loopback:
            return
    except ValueError:
        pass
    _SENT_OUTSIDE.append((event, where))


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def loopback_only():
    global _SENT_OUTSIDE
    _SENT_OUTSIDE = []
    yield
    sent, _SENT_OUTSIDE = _SENT_OUTSIDE, None
    assert sent == [], f"traffic beyond loopback: {sent}"
ADDRESS = "127.0.60.200"
NEW, OLD = "127.0.60.20", "127.0.60.21"


def captured(situation: str) -> tuple[dict, Reply]:
    spec = json.loads((CAPTURES / f"{situation}.json").read_text())
    message = dns.message.from_wire(bytes.fromhex(spec["wire"]))
    return spec, knowledge.parse_reply(message, spec["query"]["name"], spec["query"]["type"])


# -- real answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("situation", sorted(p.stem for p in CAPTURES.glob("*.json")))
def test_parse_reply_on_captured_answers(situation):
    spec, reply = captured(situation)
    assert reply.model_dump() == spec["want"], spec["text"]


def test_captures_cover_both_servers_and_every_kind():
    servers = {json.loads(p.read_text())["server"] for p in CAPTURES.glob("*.json")}
    assert {"ns1", "ns2", "r1"} <= servers
    kinds = {p.stem for p in CAPTURES.glob("*.json")}
    assert {"auth-a-aa", "auth-nxdomain", "auth-cname-chain", "auth-refused", "resolver-old-cached",
            "resolver-nxdomain-cached", "resolver-servfail"} <= kinds


def test_merge_a_and_nodata_aaaa_from_nsd():
    _, a = captured("auth-a-aa")
    _, aaaa = captured("auth-nodata-aaaa")
    answer = knowledge.merge("www.opskit.test", {"A": a, "AAAA": aaaa}, authoritative=True)
    assert answer.status == "answer" and answer.aa is True
    assert answer.addresses == [OLD] and answer.ttl == 3600
    assert [h.type for h in answer.chain] == ["A"]


def test_merge_nxdomain_keeps_the_negative_ttl():
    _, reply = captured("auth-nxdomain")
    answer = knowledge.merge("gone.opskit.test", {"A": reply, "AAAA": reply}, authoritative=True)
    assert answer.status == "nxdomain" and answer.ttl == 45


def test_merge_a_resolver_answer_is_lame_on_the_authoritative_side():
    _, reply = captured("resolver-old-cached")           # RA, no AA
    assert knowledge.merge("www.opskit.test", {"A": reply}, authoritative=False).status == "answer"
    lame = knowledge.merge("www.opskit.test", {"A": reply}, authoritative=True)
    assert lame.status == "lame" and "without the AA flag" in lame.detail


def test_merge_refused_and_servfail():
    _, refused = captured("auth-refused")
    assert knowledge.merge("lame.test", {"A": refused}, authoritative=True).status == "refused"
    _, servfail = captured("resolver-servfail")
    assert knowledge.merge("www.dead.test", {"A": servfail}, authoritative=False).status == "servfail"


def test_merge_a_chain_that_leaves_the_servers_zones_is_incomplete():
    _, reply = captured("auth-cname-out-of-zone")
    answer = knowledge.merge("alias.opskit.test", {"A": reply}, authoritative=True)
    assert answer.status == "incomplete" and answer.cname_end == "www.lame.test"
    more = NameAnswer(name="www.lame.test", status="answer", aa=True, addresses=[NEW], ttl=300,
                      chain=[Hop(name="www.lame.test", type="A", ttl=300, data=[NEW])])
    joined = knowledge.extend_chain(answer, more, "127.0.60.1")
    assert joined.status == "answer" and joined.addresses == [NEW]
    assert [(h.name, h.server) for h in joined.chain] == [("alias.opskit.test", None), ("www.lame.test", "127.0.60.1")]


def test_merge_a_failed_query_and_a_failed_aaaa():
    timeout = Reply(status="timeout", detail="no answer in 1s")
    assert knowledge.merge("x.test", {"A": timeout, "AAAA": timeout}, authoritative=False).status == "timeout"
    _, a = captured("resolver-old-cached")
    answer = knowledge.merge("www.opskit.test", {"A": a, "AAAA": timeout}, authoritative=False)
    assert answer.status == "answer" and "AAAA: no answer in 1s" in answer.detail


def test_soa_of_a_cname_is_not_its_zone():
    _, reply = captured("auth-soa-of-a-cname")
    assert knowledge.aliased(reply) and knowledge.zone_of([reply]) is None
    _, apex = captured("auth-soa-apex")
    assert knowledge.zone_of([reply, apex]) == "opskit.test"
    assert apex.soa.negative_ttl == 45                      # min(SOA TTL 120, MINIMUM 45)


# -- verdicts, expiry, the ETA ----------------------------------------------------------------------
def answer(name="www.opskit.test", addresses=(NEW,), ttl=300, status="answer", chain=None, **more) -> NameAnswer:
    hops = chain if chain is not None else ([Hop(name=name, type="A", ttl=ttl, data=list(addresses))] if addresses else [])
    return NameAnswer(name=name, status=status, aa=True, addresses=list(addresses), chain=hops,
                      ttl=ttl if status != "answer" or hops else None, **more)


@pytest.mark.parametrize("addresses, expected", [
    ([NEW], "new"), ([OLD], "old"), ([NEW, OLD], "mixed"), (["192.0.2.9"], "other"), ([OLD, "192.0.2.9"], "old")])
def test_verdict_against_new_and_old(addresses, expected):
    assert knowledge.verdict(answer(addresses=addresses), {NEW}, {OLD}, None) == expected


def test_verdict_without_old_addresses_calls_anything_not_new_old():
    assert knowledge.verdict(answer(addresses=["192.0.2.9"]), {NEW}, set(), None) == "old"


def test_verdict_for_failures_negative_answers_and_the_cdn():
    assert knowledge.verdict(answer(status="nxdomain", addresses=()), {NEW}, set(), None) == "nxdomain"
    assert knowledge.verdict(answer(status="timeout", addresses=()), {NEW}, set(), None) == "timeout"
    chain = [Hop(name="www.example.com", type="CNAME", ttl=300, data=["site-1a2b.kxcdn.com"]),
             Hop(name="site-1a2b.kxcdn.com", type="A", ttl=60, data=["198.51.100.7"])]
    through = answer(addresses=["198.51.100.7"], chain=chain)
    assert knowledge.verdict(through, {NEW}, {OLD}, "site-1a2b.kxcdn.com") == "cdn"
    assert knowledge.verdict(through, set(), set(), None) == "unknown"


def test_expiry_is_the_ttl_of_the_first_hop_that_differs():
    reference = answer(addresses=[NEW], chain=[Hop(name="www.opskit.test", type="CNAME", ttl=3600, data=["new.cdn.test"]),
                                               Hop(name="new.cdn.test", type="A", ttl=60, data=[NEW])])
    changed_cname = answer(addresses=[OLD], chain=[Hop(name="www.opskit.test", type="CNAME", ttl=2900, data=["old.cdn.test"]),
                                                   Hop(name="old.cdn.test", type="A", ttl=20, data=[OLD])])
    assert knowledge.expires_in(changed_cname, reference) == 2900          # not the A's 20s
    changed_a = answer(addresses=[OLD], chain=[Hop(name="www.opskit.test", type="CNAME", ttl=2900, data=["new.cdn.test"]),
                                               Hop(name="new.cdn.test", type="A", ttl=20, data=[OLD])])
    assert knowledge.expires_in(changed_a, reference) == 20
    assert knowledge.expires_in(answer(status="nxdomain", addresses=(), ttl=33), reference) == 33


def nameserver(server="127.0.60.1", serial=5, names=None, status="ok", soa_ttl=120, minimum=45) -> ServerReport:
    soa = Soa(zone="opskit.test", mname="ns1.opskit.test", serial=serial, minimum=minimum, ttl=soa_ttl)
    return ServerReport(server=server, status=status, soa=soa if status == "ok" else None,
                        answers=names or {"www.opskit.test": answer(addresses=[NEW], ttl=3600)})


def resolver(server, addresses=(NEW,), ttl=300, status="ok", answer_status="answer") -> ServerReport:
    answers = {} if status != "ok" else {"www.opskit.test": answer(addresses=addresses, ttl=ttl, status=answer_status)}
    return ServerReport(server=server, status=status, answers=answers, detail="" if status == "ok" else "no answer in 1s")


def observe(resolvers, nameservers=None, expect=(NEW,), old=(OLD,), **more) -> Observation:
    return knowledge.assess(Observation(names=["www.opskit.test"], expect=list(expect), old=list(old),
                                        nameservers=nameservers or [nameserver(), nameserver("127.0.60.2")],
                                        resolvers=resolvers, zone="opskit.test", **more))


def test_eta_is_the_largest_ttl_left_among_old_answers():
    obs = observe([resolver("r1", [OLD], 1200), resolver("r2", [OLD], 400), resolver("r3", [NEW], 3600)])
    verdicts = {r.server: r.answers["www.opskit.test"].verdict for r in obs.resolvers}
    assert verdicts == {"r1": "old", "r2": "old", "r3": "new"}
    assert obs.eta == Eta(seconds=1200, lower_bound=False, reasons=[], longest=["r1 www.opskit.test"])
    assert not obs.propagated and obs.in_sync is True and obs.negative_ttl == 45
    assert obs.answer_ttl == {"www.opskit.test": 3600}


def test_eta_is_a_lower_bound_when_a_resolver_does_not_answer():
    obs = observe([resolver("r1", [OLD], 1200), resolver("r2", status="timeout")])
    assert obs.eta.seconds == 1200 and obs.eta.lower_bound is True
    assert "r2 (timeout)" in obs.eta.reasons[0]
    assert knowledge.eta_text(obs.eta) == "at least 1200s"


def test_no_eta_while_a_nameserver_still_serves_the_old_answer():
    lagging = nameserver("127.0.60.2", serial=4, names={"www.opskit.test": answer(addresses=[OLD], ttl=3600)})
    obs = observe([resolver("r1", [NEW])], nameservers=[nameserver(serial=5), lagging])
    assert obs.in_sync is False and obs.serials == {"127.0.60.1": 5, "127.0.60.2": 4}
    assert obs.lagging == [f"127.0.60.2: www.opskit.test {OLD}"]
    assert obs.eta.seconds is None and not obs.propagated
    assert obs.reference["www.opskit.test"].addresses == [NEW]            # the highest serial's answer


def test_an_old_answer_the_zone_itself_still_gives_is_not_a_lagging_cache():
    zone_old = {"www.opskit.test": answer(addresses=[OLD], ttl=3600)}
    obs = observe([resolver("r1", [OLD], 3000)], nameservers=[nameserver(names=zone_old)])
    r1 = obs.resolvers[0].answers["www.opskit.test"]
    assert r1.verdict == "old" and r1.expires_in is None                  # flushing it would change nothing
    assert obs.eta.seconds is None and obs.lagging


def test_propagated_when_every_resolver_serves_the_new_answer():
    obs = observe([resolver("r1", [NEW]), resolver("r2", [NEW])])
    assert obs.propagated and obs.eta.seconds == 0 and knowledge.eta_text(obs.eta) == "propagated"
    assert judge(obs).verdict is Verdict.PASSED


def test_without_expect_the_zone_answer_is_the_new_one():
    obs = observe([resolver("r1", [NEW]), resolver("r2", [OLD], 50)], expect=(), old=())
    assert obs.expect_source == "authoritative" and obs.new_addresses == [NEW]
    assert [r.answers["www.opskit.test"].verdict for r in obs.resolvers] == ["new", "old"]
    assert obs.eta.seconds == 50


def test_negative_ttl_is_the_smaller_of_soa_ttl_and_minimum():
    obs = observe([resolver("r1")], nameservers=[nameserver(soa_ttl=20, minimum=600)])
    assert obs.negative_ttl == 20


def test_a_cached_nxdomain_for_a_name_that_now_exists_is_stale():
    obs = observe([resolver("r1", (), 30, answer_status="nxdomain")])
    r1 = obs.resolvers[0].answers["www.opskit.test"]
    assert r1.verdict == "nxdomain" and r1.expires_in == 30 and obs.eta.seconds == 30


def test_table_and_summary_read_as_a_table():
    obs = observe([resolver("127.0.60.11:5301", [OLD], 1200), resolver("127.0.60.12:5302", [NEW], 3600)])
    lines = knowledge.table(obs)
    assert lines[0].split() == ["server", "name", "verdict", "answer", "TTL"]
    assert any(line.split()[:4] == ["resolver", "127.0.60.11:5301", "www.opskit.test", "old"] and "1200s left" in line
               for line in lines)
    assert len({line.index("www.opskit.test") for line in lines[1:]}) == 1   # aligned
    assert knowledge.summary(obs) == ("www.opskit.test: not propagated; 1 new, 1 old of 2 resolver answers; ETA 1200s")


# -- names, times -------------------------------------------------------------------------------------
def test_names():
    assert knowledge.normalize_name("WWW.Example.COM.") == "www.example.com"
    assert knowledge.default_names("example.com") == ["example.com", "www.example.com"]
    assert knowledge.default_names("www.example.com") == ["example.com", "www.example.com"]
    for bad in ("bad name", "", "-x.example.com", "example", "a..b", "x.example.com\n"):
        with pytest.raises(ValueError):
            knowledge.normalize_name(bad)
    assert knowledge.normalize_address("2001:DB8::0:1") == "2001:db8::1"


def test_move_plan():
    now = 1_000_000.0
    assert knowledge.move_plan(300, 300, None, now) == {"lower_by": None, "late": False, "earliest_move": now}
    assert knowledge.move_plan(3600, 300, None, now)["earliest_move"] == now + 3600
    assert knowledge.move_plan(3600, 300, now + 7200, now) == {"lower_by": now + 3600, "late": False, "earliest_move": now + 7200}
    late = knowledge.move_plan(86400, 300, now + 600, now)
    assert late["late"] and late["earliest_move"] == now + 86400
    assert knowledge.parse_when("2026-12-05T10:00").tzinfo is not None        # naive is UTC


# -- the network layer, against servers of our own on loopback ---------------------------------------
class FakeServer:
    """UDP (and TCP) on ADDRESS: `udp(query) -> bytes | None` decides each datagram's answer."""

    def __init__(self, udp, tcp=None):
        self.udp_handler, self.tcp_handler = udp, tcp
        self.port = 0
        self.stopping = threading.Event()

    def __enter__(self):
        from lab.dns import free_dns_port

        self.port = free_dns_port(ADDRESS)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((ADDRESS, self.port))
        self.udp.settimeout(0.1)
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((ADDRESS, self.port))
        self.tcp.listen(8)
        self.tcp.settimeout(0.1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        return self

    def serve(self):
        while not self.stopping.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
                reply = self.udp_handler(dns.message.from_wire(data))
                if reply is not None:
                    self.udp.sendto(reply, peer)
            except socket.timeout:
                pass
            if self.tcp_handler is None:
                continue
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            with conn:
                length = struct.unpack("!H", conn.recv(2))[0]
                query = dns.message.from_wire(conn.recv(length))
                reply = self.tcp_handler(query)
                conn.sendall(struct.pack("!H", len(reply)) + reply)

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(2)
        self.udp.close()
        self.tcp.close()

    @property
    def server(self) -> Server:
        return Server(f"{ADDRESS}:{self.port}", ADDRESS, self.port)


def a_reply(query, address=NEW, ttl=300, truncated=False) -> bytes:
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    if truncated:
        reply.flags |= dns.flags.TC
    else:
        reply.answer.append(dns.rrset.from_text(query.question[0].name, ttl, "IN", "A", address))
    return reply.to_wire()


def test_ask_retries_over_tcp_when_the_udp_answer_is_truncated():
    with FakeServer(lambda q: a_reply(q, truncated=True), lambda q: a_reply(q, ttl=77)) as fake:
        reply = ask(fake.server, "www.opskit.test", "A", False, timeout=3)
    assert reply.status == "ok" and reply.addresses == [NEW] and reply.chain[0].ttl == 77


def test_ask_reports_garbage_and_a_mismatched_reply_as_malformed():
    with FakeServer(lambda q: b"\x12\x34garbage") as fake:
        reply = ask(fake.server, "www.opskit.test", "A", False, timeout=2)
    assert reply.status == "malformed", reply

    def other_question(query):
        wrong = dns.message.make_query("other.test", "A")
        wrong.id = query.id
        return a_reply(wrong)

    with FakeServer(other_question) as fake:
        reply = ask(fake.server, "www.opskit.test", "A", False, timeout=2)
    assert reply.status == "malformed", reply


def test_ask_times_out_on_a_silent_server_within_its_timeout():
    with FakeServer(lambda q: None) as fake:
        started = time.monotonic()
        reply = ask(fake.server, "www.opskit.test", "A", True, timeout=0.5)
    assert reply.status == "timeout" and reply.detail == "no answer in 0.5s"
    assert time.monotonic() - started < 2


def test_ask_sends_recursion_desired_only_to_resolvers():
    seen = []
    with FakeServer(lambda q: (seen.append(bool(q.flags & dns.flags.RD)), a_reply(q))[1]) as fake:
        ask(fake.server, "www.opskit.test", "A", False, timeout=2)
        ask(fake.server, "www.opskit.test", "A", True, timeout=2)
    assert seen == [False, True]


# -- inspect without the network ----------------------------------------------------------------------
def test_malformed_entries_are_reported_per_server_and_nothing_is_asked(monkeypatch):
    monkeypatch.setattr(check, "ask", lambda *a, **k: pytest.fail(f"asked {a}"))
    monkeypatch.setattr(check, "ask_all", lambda jobs, timeout: pytest.fail(f"asked {jobs}") if jobs else {})
    obs = inspect(DnsParams(domain="opskit.test", resolvers=["300.1.1.1", "1.2.3.4:0"], nameservers=["ns1.example.com"],
                            expect=["not-an-ip", NEW]))
    assert [(r.server, r.status) for r in obs.resolvers] == [("300.1.1.1", "malformed"), ("1.2.3.4:0", "malformed")]
    assert [(n.server, n.status) for n in obs.nameservers] == [("ns1.example.com", "malformed")]
    assert obs.problems == ["dns.expect: not an IP address: 'not-an-ip'"] and obs.expect == [NEW]
    assert judge(obs).verdict is Verdict.FAILED


def test_without_resolvers_the_documented_public_list_is_chosen(monkeypatch):
    """The default list is data (stack.dns.PUBLIC_RESOLVERS); here `ask` is replaced, so it is
    chosen and asked for the NS set, but nothing is sent."""
    asked: list[str] = []

    def fake_ask(server, qname, qtype, recursion, timeout, prepared=None):
        asked.append(server.address)
        return Reply(status="timeout", detail="not sent (test)")

    monkeypatch.setattr(check, "ask", fake_ask)
    obs = inspect(DnsParams(domain="example.com", expect=["192.0.2.1"]))
    public = [address for address, _ in knowledge.PUBLIC_RESOLVERS]
    assert obs.resolvers_source == "public-default" and [r.server for r in obs.resolvers] == public
    assert [r.label for r in obs.resolvers] == [label for _, label in knowledge.PUBLIC_RESOLVERS]
    assert obs.ns_source == "ns-set" and obs.nameservers == []
    assert set(asked) == set(public)
    assert "finding the nameservers" in obs.problems[0]


def test_judge_errors_when_there_is_nothing_to_ask_or_to_compare():
    empty = inspect(DnsParams())
    result = judge(empty)
    assert result.verdict is Verdict.ERROR and "set dns.domain" in result.summary
    assert result.observed["new_addresses"] == []            # the playbook's `when:` reads it
    nothing = knowledge.assess(Observation(names=["x.test"], resolvers=[resolver("r1", [NEW])]))
    assert judge(nothing).verdict is Verdict.ERROR


def test_parse_servers():
    good, bad = parse_servers(["127.0.0.1", "127.0.0.2:5353", "[::1]:53", "x"])
    assert [(s.address, s.port) for s in good] == [("127.0.0.1", 53), ("127.0.0.2", 5353), ("::1", 53)]
    assert [b.server for b in bad] == ["x"]


# -- the origin check's target -------------------------------------------------------------------------
def test_origin_at_keeps_scheme_port_and_path_of_the_origin():
    host = Host(name="site1", address="192.0.2.1", origin="https://192.0.2.1:8443/blog",
                wordpress={"url": "https://www.example.com/"})
    moved = origin_at(host, "198.51.100.7", None)
    assert moved.origin == "https://198.51.100.7:8443/blog" and moved.site_hostname == "www.example.com"
    assert origin_at(host, "2001:db8::7", None).origin == "https://[2001:db8::7]:8443/blog"


def test_origin_at_without_origin_uses_the_site_url_or_the_domain():
    with_url = Host(name="site1", address="192.0.2.1", wordpress={"url": "http://www.example.com/"})
    assert origin_at(with_url, "198.51.100.7", "example.com").origin == "http://198.51.100.7"
    bare = origin_at(Host(name="site1", address="192.0.2.1"), "198.51.100.7", "example.com")
    assert bare.origin == "https://198.51.100.7" and bare.site_hostname == "example.com"


def test_origin_check_needs_an_address():
    ctx = Context(Host(name="site1", address="192.0.2.1"), None, "test")
    result = DnsOrigin().run(DnsOriginParams(addresses=["nope"]), ctx)
    assert result.verdict is Verdict.ERROR and "not an IP address: 'nope'" in result.summary


# -- the inventory, the playbook, --watch's helpers ------------------------------------------------------
def test_inventory_dns_fields(tmp_path):
    from opskit import inventory

    path = tmp_path / "inventory.yaml"
    path.write_text("hosts:\n  site1:\n    address: 192.0.2.1\n    dns:\n      domain: example.com\n"
                    "      names: [example.com, shop.example.com]\n      timeout: 2\n"
                    "      move_at: 2026-12-05T22:00:00Z\n      move_ttl: 120\n"
                    "      resolvers: ['192.0.2.53', '192.0.2.54:5353']\n")
    settings = inventory.load(path).hosts["site1"].dns
    assert settings.names == ["example.com", "shop.example.com"] and settings.timeout == 2.0
    assert settings.move_at == "2026-12-05T22:00:00+00:00" and settings.move_ttl == 120
    assert knowledge.parse_when(settings.move_at).timestamp() == 1796508000


@pytest.mark.parametrize("field, value, message", [
    ("resolvers", "['192.0.2.53', 'dns.google']", "not an IP address"),
    ("nameservers", "['192.0.2.53:0']", "bad port"),
    ("move_at", "next tuesday", "isoformat"),
    ("names", "['bad name']", "not a host name"),
])
def test_inventory_refuses_malformed_dns_entries_with_their_line(tmp_path, field, value, message):
    from opskit import inventory
    from opskit.errors import InventoryError

    path = tmp_path / "inventory.yaml"
    path.write_text(f"hosts:\n  site1:\n    address: 192.0.2.1\n    dns:\n      domain: example.com\n      {field}: {value}\n")
    with pytest.raises(InventoryError, match=message) as caught:
        inventory.load(path)
    assert f"{path}:6" in str(caught.value)


def test_the_playbook_needs_no_host():
    from opskit import playbook
    from opskit.transaction.execute import needs_host

    book = playbook.load("dns-check")
    assert book.changes == "none" and not book.changes_things
    assert [needs_host(step) for step in book.steps] == [False] * len(book.steps)
    assert [s.names[0] for s in book.steps] == ["dns", "dns_authoritative", "dns_propagation", "dns_origin",
                                                 "dns_old_origin", "dns_advice"]


class _Outcome:
    def __init__(self, steps, status="ok", error=None):
        self.steps, self.status, self.error = steps, status, error


def test_watch_reads_the_dns_values_of_each_host():
    from opskit import watch

    stale = observe([resolver("r1", [OLD], 1200), resolver("r2", [NEW], 3600)]).model_dump(mode="json")
    done = observe([resolver("r1", [NEW]), resolver("r2", [NEW])]).model_dump(mode="json")
    step = lambda observed: {"kind": "check", "id": "dns", "value": {"verdict": "x", "observed": observed}}  # noqa: E731
    outcomes = {"site1": _Outcome([step(stale)]), "site2": _Outcome([step(done)])}
    assert not watch.propagated(outcomes)
    assert watch.propagated({"site2": outcomes["site2"]})
    assert not watch.propagated({"site3": _Outcome([], "unreachable", "no route")})
    rows = watch.rows(outcomes, elapsed=10)
    assert ("site1", "r1", "www.opskit.test", "old", f"A {OLD}", "1190s") in rows
    assert watch.eta_line(outcomes) == "site1: ETA 1200s; site2: propagated"


def test_watch_renders_a_live_table():
    from rich.console import Console

    from opskit import watch

    stale = observe([resolver("r1", [OLD], 1200)]).model_dump(mode="json")
    outcomes = {"site1": _Outcome([{"kind": "check", "id": "dns", "value": {"observed": stale}}])}
    console = Console(record=True, width=140)
    console.print(watch.render(outcomes, poll=3, elapsed=200, next_in=7, left=3000))
    text = console.export_text()
    assert "dns propagation — poll 3" in text and "1000s" in text
    assert "site1: ETA 1200s · next poll in 7s · gives up in 50m" in text
