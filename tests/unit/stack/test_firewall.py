"""opskit.stack.firewall on real iptables-save / nft output (tests/captures/firewall-debian12/) and on
CSF text written as its documentation shows it (CSF is not a Debian package); fail2ban and ufw as
they wrote it (tests/captures/firewall-debian12/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.stack import firewall as fw

CAPTURES = Path(__file__).parent.parent.parent / "captures" / "firewall-debian12"


def read(name: str) -> str:
    return (CAPTURES / name).read_text()


def test_iptables_save_keeps_drops_rejects_and_limits_with_their_lines():
    blocks = fw.parse_iptables_save(read("iptables-save.txt"), "iptables-save")
    shown = [(b.action, b.sources, b.ports, b.line, b.chain) for b in blocks]
    assert shown == [
        ("drop", ("162.158.0.0/15",), (80, 443), 9, "INPUT"),
        ("reject", ("203.0.113.7/32",), (), 10, "INPUT"),
        ("rate-limit", (), (443,), 11, "INPUT"),
        ("reject", ("104.16.5.9/32",), (), 14, "f2b-nginx-limit-req"),
    ]
    # ACCEPT and RETURN rules, and the jump to fail2ban's chain, are not blocks
    assert not any("ACCEPT" in b.text or "RETURN" in b.text for b in blocks)
    assert read("iptables-save.txt").split("\n")[8] == blocks[0].text


def test_ip6tables_save():
    [block] = fw.parse_iptables_save(read("ip6tables-save.txt"), "ip6tables-save", kind="ip6tables")
    assert (block.kind, block.action, block.sources, block.ports) == ("ip6tables", "drop", ("2606:4700::/32",), (443,))


def test_nft_ruleset_resolves_named_sets_and_keeps_rate_limits():
    text = read("nft-ruleset.txt")
    blocks = fw.parse_nft_ruleset(text, "nft list ruleset")
    by_line = {b.line: b for b in blocks}
    assert by_line[34].sources == ("172.64.0.0/13", "198.51.100.4") and by_line[34].ports == (80, 443)
    assert by_line[35].text == "ip saddr 127.0.80.2 tcp dport 8080 drop" and by_line[35].chain == "inet filter input"
    assert by_line[37].action == "rate-limit" and by_line[37].sources == ()
    assert by_line[13].action == "rate-limit"            # iptables' connlimit as nft shows it
    assert not any("192.0.2.1" in b.sources for b in blocks)   # an accept is not a block
    # nft warns (on stderr, which the probe keeps) that iptables-nft owns the ip tables
    probe_output = (CAPTURES.parent / "probes" / "firewall" / "iptables-and-nft-as-root.txt").read_text()
    assert fw.iptables_managed(probe_output) == {"ip filter"}
    assert fw.iptables_managed(text) == set()


def test_the_published_ranges_and_the_inventorys():
    ranges = fw.cdn_ranges("cloudflare", ["127.0.80.2/32"])
    networks = {r.network for r in ranges}
    assert {"173.245.48.0/20", "104.16.0.0/13", "2606:4700::/32", "127.0.80.2/32"} <= networks
    assert fw.published()["cloudflare"]["as_of"]
    assert fw.cdn_ranges(None) == ()
    with pytest.raises(ValueError, match="'not-a-net'"):
        fw.cdn_ranges("cloudflare", ["not-a-net"])


def test_against_keeps_what_stops_the_cdn():
    blocks = (fw.parse_iptables_save(read("iptables-save.txt"), "iptables-save")
              + fw.parse_nft_ruleset(read("nft-ruleset.txt"), "nft list ruleset"))
    hits = fw.against(blocks, fw.cdn_ranges("cloudflare"))
    texts = {h.block.text for h in hits}
    assert "-A INPUT -s 162.158.0.0/15 -p tcp -m multiport --dports 80,443 -j DROP" in texts
    assert "-A f2b-nginx-limit-req -s 104.16.5.9/32 -j REJECT --reject-with icmp-port-unreachable" in texts
    assert "ip saddr @blocked tcp dport { 80, 443 } drop" in texts
    assert not any("203.0.113.7" in t for t in texts)          # not a CDN address
    assert not any("127.0.80.2" in t for t in texts)           # only with the inventory's range
    assert any(h.block.action == "rate-limit" and not h.ranges for h in hits)
    mine = fw.against(blocks, fw.cdn_ranges(None, ["127.0.80.2/32"]))
    assert [h.block.text for h in mine if h.block.action != "rate-limit"] == ["ip saddr 127.0.80.2 tcp dport 8080 drop"]


def test_a_rule_on_another_port_or_a_negated_source():
    ssh_only = fw.Block("iptables", "drop", "-A INPUT -s 162.158.0.0/15 -p tcp --dport 22 -j DROP", "x", 1,
                        ("162.158.0.0/15",), (22,))
    all_but_cdn = fw.Block("iptables", "drop", "-A INPUT ! -s 162.158.0.0/15 -p tcp --dport 443 -j DROP", "x", 2,
                           ("162.158.0.0/15",), (443,), negated=True)
    everyone_but_one = fw.Block("iptables", "drop", "-A INPUT ! -s 10.0.0.1 -p tcp --dport 443 -j DROP", "x", 3,
                                ("10.0.0.1",), (443,), negated=True)
    ranges = fw.cdn_ranges(None, ["162.158.0.0/15"])
    assert [h.block.line for h in fw.against([ssh_only, all_but_cdn, everyone_but_one], ranges)] == [3]


def test_csf_deny_tempban_and_ct_limit():
    blocks = fw.parse_csf_deny(read("csf.deny"), "/etc/csf/csf.deny")
    assert [(b.sources, b.line) for b in blocks] == [(("162.158.77.12",), 11), (("198.51.100.23",), 12)]
    temp = fw.parse_csf_deny("1764584100|104.16.1.1|443|in|3600|lfd: CT limit\n", "/var/lib/csf/csf.tempban")
    assert temp[0].sources == ("104.16.1.1",)
    limit = fw.parse_csf_ct_limit(read("csf.conf"), "/etc/csf/csf.conf")
    assert (limit.action, limit.line, limit.ports, limit.text) == ("rate-limit", 3, (80, 443), 'CT_LIMIT = "300"')
    assert fw.parse_csf_ct_limit('CT_LIMIT = "0"\n', "csf.conf") is None


def test_fail2ban_status_of_real_jails():
    bans = fw.parse_fail2ban_status(read("fail2ban-status-nginx.txt"), "fail2ban-client status nginx-limit-req")
    assert [(b.sources, b.chain, b.line) for b in bans] == [(("104.23.12.7",), "nginx-limit-req", 9),
                                                             (("203.0.113.50",), "nginx-limit-req", 9)]
    [v6] = fw.parse_fail2ban_status(read("fail2ban-status-nginx-botsearch.txt"), "fail2ban-client status nginx-botsearch")
    assert v6.sources == ("2606:4700::6810:84e5",) and v6.action == "ban"
    hits = fw.against(bans + [v6], fw.cdn_ranges("cloudflare"))
    assert [h.block.sources for h in hits] == [("104.23.12.7",), ("2606:4700::6810:84e5",)]   # 203.0.113.50: no edge
    # the jail list is not a jail: no bans in it
    assert fw.parse_fail2ban_status(read("fail2ban-status.txt"), "fail2ban-client status") == []


def test_ufw_user_rules_as_ufw_wrote_them():
    blocks = fw.parse_iptables_save(read("ufw-user.rules"), "/etc/ufw/user.rules", kind="ufw")
    assert [(b.action, b.line, b.sources, b.ports) for b in blocks] == [
        ("drop", 21, ("104.16.0.0/13",), (443,)),       # ufw deny proto tcp from 104.16.0.0/13 to any port 443
        ("rate-limit", 25, (), (22,)),                  # ufw limit 22/tcp: the jump, not ufw-user-limit's REJECT
        ("reject", 32, ("198.51.100.7",), ())]          # ufw reject from 198.51.100.7
    assert [(h.block.line, [r.network for r in h.ranges]) for h in fw.against(blocks, fw.cdn_ranges("cloudflare"))] \
        == [(21, ["104.16.0.0/13"])]                    # the limit is on SSH, not the web ports
    [v6] = fw.parse_iptables_save(read("ufw-user6.rules"), "/etc/ufw/user6.rules", kind="ufw")[1:]
    assert (v6.action, v6.sources, v6.ports, v6.chain) == ("drop", ("2001:db8::/32",), (80,), "ufw6-user-input")


def test_ufw_limit_on_https_rate_limits_the_edges():
    """`ufw limit 443/tcp`: six new connections in 30 s from one address are refused, and a CDN
    edge opens far more than that."""
    [limit] = fw.parse_iptables_save(read("ufw-limit-443-user.rules"), "/etc/ufw/user.rules", kind="ufw")
    assert (limit.action, limit.line, limit.ports) == ("rate-limit", 22, (443,))
    [hit] = fw.against([limit], fw.cdn_ranges("cloudflare"))
    assert hit.block is limit
