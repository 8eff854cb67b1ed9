"""Firewall rules that block or rate-limit a CDN's edge addresses, read from what the host prints.

    rules = parse_iptables_save(text, "iptables-save")        # also ufw's user.rules (same format)
    rules += parse_nft_ruleset(text, "nft list ruleset")
    rules += parse_csf_deny(text, "/etc/csf/csf.deny") + parse_fail2ban_status(text, "fail2ban-client status sshd")
    limit = parse_csf_ct_limit(csf_conf_text, "/etc/csf/csf.conf")   # CT_LIMIT, or None when 0/unset
    hits = against(rules, cdn_ranges("cloudflare", extra=["127.0.80.2/32"]))

Each rule is a Block: what it stops (`sources`, networks; empty = every source), which ports
(empty = all), how (drop, reject, rate-limit, ban), and where it was read (file/command, line,
the text verbatim). `against` keeps the blocks whose sources overlap a CDN range, and the
rate limits that apply to every source on the web ports: a CDN funnels many visitors through
few edge addresses, so a per-source limit (connlimit, `ct count`, CSF CT_LIMIT) bans its edges
first.

Captured for real on Debian 12 (iptables 1.8.9 nf_tables, nftables 1.0.6):
tests/captures/firewall-debian12/. CSF, ufw and fail2ban are parsed from the formats their
documentation shows (not installed here): csf.deny "IP # comment" lines, ufw's user.rules
(iptables-save format), fail2ban-client's "Banned IP list:" line.

The CDN's published ranges are package data (opskit/data/cdn_ranges.json, with their date).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Literal

Action = Literal["drop", "reject", "rate-limit", "ban"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WEB_PORTS = frozenset({80, 443})


@dataclass(frozen=True)
class Block:
    kind: str                       # iptables, ip6tables, nft, ufw, csf, fail2ban
    action: Action
    text: str                       # the rule as printed
    file: str                       # the file or command it was read from
    line: int | None = None
    sources: tuple[str, ...] = ()   # networks it applies to; () = every source
    ports: tuple[int, ...] = ()     # destination ports; () = all
    chain: str | None = None
    negated: bool = False           # "! -s X": every source but X

    def networks(self) -> list[Network]:
        out = []
        for source in self.sources:
            try:
                out.append(ipaddress.ip_network(source, strict=False))
            except ValueError:
                continue
        return out

    def hits_web(self) -> bool:
        return not self.ports or bool(WEB_PORTS & set(self.ports)) or any(p >= 1024 for p in self.ports)

    def to_json(self) -> dict:
        return {**asdict(self), "sources": list(self.sources), "ports": list(self.ports)}


@dataclass(frozen=True)
class Range:
    cdn: str
    network: str
    source: str          # "cloudflare (as of 2023-09-28)", "inventory cdn.ranges"


@dataclass(frozen=True)
class Hit:
    block: Block
    ranges: tuple[Range, ...]     # the CDN ranges it overlaps (empty for a rate limit on every source)

    def to_json(self) -> dict:
        return {"block": self.block.to_json(), "ranges": [asdict(r) for r in self.ranges]}


# -- the CDN's ranges ---------------------------------------------------------------------------

@functools.cache
def published() -> dict:
    """opskit/data/cdn_ranges.json: {cdn: {as_of, ipv4, ipv6, published, note}}."""
    return json.loads(resources.files("opskit").joinpath("data/cdn_ranges.json").read_text())


def cdn_ranges(provider: str | None, extra: list[str] | tuple[str, ...] = ()) -> tuple[Range, ...]:
    """The published ranges of `provider` (when opskit ships them) and the inventory's own.
    Raises ValueError naming a malformed extra range."""
    out = []
    data = published().get((provider or "").lower())
    if data:
        label = f"{provider.lower()} (published, as of {data['as_of']})"
        out += [Range(provider.lower(), n, label) for n in (*data["ipv4"], *data["ipv6"])]
    for text in extra:
        try:
            network = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError:
            raise ValueError(f"cdn.ranges: {text!r} is not an address or network") from None
        out.append(Range(provider or "cdn", str(network), "inventory cdn.ranges"))
    return tuple(out)


def against(blocks: list[Block], ranges: tuple[Range, ...]) -> list[Hit]:
    """The blocks that stop (or rate-limit) a CDN edge reaching the web server."""
    nets = [(r, ipaddress.ip_network(r.network)) for r in ranges]
    hits = []
    for block in blocks:
        if not block.hits_web():
            continue
        if not block.sources:
            if block.action == "rate-limit" and nets:
                hits.append(Hit(block, ()))
            continue
        mine = block.networks()
        if block.negated:
            overlapping = tuple(r for r, n in nets if not any(_overlaps(n, m) and _within(n, m) for m in mine))
        else:
            overlapping = tuple(r for r, n in nets if any(_overlaps(n, m) for m in mine))
        if overlapping:
            hits.append(Hit(block, overlapping))
    return hits


def _overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


def _within(a: Network, b: Network) -> bool:
    return a.version == b.version and a.subnet_of(b)


# -- iptables-save (and ufw's user.rules) -------------------------------------------------------

_DROPS = {"DROP": "drop", "REJECT": "reject"}
# chains that fail2ban, CSF and ufw fill with bans: a RETURN/REJECT there is theirs
# the chain `ufw limit` jumps to (it logs and REJECTs): the jump, with its port, is the limit
_UFW_LIMIT = ("ufw-user-limit", "ufw6-user-limit")
_BAN_CHAIN = re.compile(r"^(f2b-|fail2ban-|DENYIN|DENYOUT|ufw-user-input|LOCALINPUT)")


def parse_iptables_save(text: str, source: str, kind: str = "iptables") -> list[Block]:
    """DROP/REJECT rules of the filter table (and rate limits ending in them), from iptables-save."""
    blocks: list[Block] = []
    table = None
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table not in (None, "filter") or not line.startswith("-A "):
            continue
        words = line.split()
        chain = words[1]
        if chain in _UFW_LIMIT:
            continue   # reached only through a limit's jump, which stands for it
        target = _option(words, "-j")
        action = _DROPS.get(target or "")
        if target in _UFW_LIMIT and "--hitcount" in words:
            action = "rate-limit"   # `ufw limit PORT`: over 6 new connections in 30 s from one address → REJECT
        if action is None:
            continue
        limited = any(m in words for m in ("connlimit", "hashlimit", "recent")) or "--connlimit-above" in words
        source_text, negated = _source(words, "-s")
        ports = _ports(_option(words, "--dport") or _option(words, "--dports"))
        sources = tuple(source_text.split(",")) if source_text else ()
        if ("--match-set" in words) and not sources:
            continue   # an ipset's members are not in iptables-save: `ipset list` would say
        blocks.append(Block(kind, "rate-limit" if limited and not sources else action, line, source, number,
                            sources, ports, chain, negated))
    return blocks


def _option(words: list[str], flag: str) -> str | None:
    for index, word in enumerate(words[:-1]):
        if word == flag:
            return words[index + 1]
    return None


def _source(words: list[str], flag: str) -> tuple[str | None, bool]:
    for index, word in enumerate(words[:-1]):
        if word == flag:
            return words[index + 1], index > 0 and words[index - 1] == "!"
    return None, False


def _ports(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    out = []
    for part in text.replace(":", "-").split(","):
        if "-" in part:
            low, _, high = part.partition("-")
            if low.isdigit() and high.isdigit() and int(high) - int(low) < 70000:
                out += [int(low), int(high)]
        elif part.strip().isdigit():
            out.append(int(part))
    return tuple(out)


# -- nft list ruleset ---------------------------------------------------------------------------

_SET_START = re.compile(r"^\s*set (\S+) \{")
_CHAIN_START = re.compile(r"^\s*chain (\S+) \{")
_TABLE_START = re.compile(r"^\s*table (\S+) (\S+) \{")
_SADDR = re.compile(r"\b(?:ip6?) saddr (!= )?(\{[^}]*\}|@\S+|\S+)")
_DPORT = re.compile(r"\b(?:tcp|udp|th) dport (\{[^}]*\}|\S+)")
_VERDICT = re.compile(r"\b(drop|reject)\b")
_NFT_LIMIT = re.compile(r"\b(ct count over|limit rate over|meter \S+ |xt match connlimit|xt match hashlimit)")


def parse_nft_ruleset(text: str, source: str) -> list[Block]:
    """drop/reject rules (and rate limits) of every chain, from `nft list ruleset`;
    named sets (`ip saddr @blocked`) are resolved from the same dump."""
    lines = text.split("\n")
    sets = _nft_sets(lines)
    blocks: list[Block] = []
    chain, table = None, None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if match := _TABLE_START.match(raw):
            table = f"{match.group(1)} {match.group(2)}"
            continue
        if match := _CHAIN_START.match(raw):
            chain = match.group(1)
            continue
        if chain is None or not line or line.startswith("#"):
            continue
        if line == "}":
            chain = None
            continue
        if line.startswith("type ") or line.startswith("policy "):
            continue   # a chain's header; every chain counts (a jump target like fail2ban's too)
        verdict = _VERDICT.search(_strip_counters(line))
        if verdict is None or "accept" in line.split():
            continue
        saddr = _SADDR.search(line)
        sources: tuple[str, ...] = ()
        negated = False
        if saddr:
            negated = bool(saddr.group(1))
            value = saddr.group(2)
            if value.startswith("@"):
                sources = sets.get((table, value[1:]), sets.get((None, value[1:]), ()))
            else:
                sources = tuple(v.strip() for v in value.strip("{} ").split(",") if v.strip())
        dport = _DPORT.search(line)
        ports = _ports(dport.group(1).strip("{} ").replace(" ", "")) if dport else ()
        limited = bool(_NFT_LIMIT.search(line))
        action: Action = "rate-limit" if limited and not sources else verdict.group(1)   # type: ignore[assignment]
        blocks.append(Block("nft", action, _strip_counters(line), source, number, sources, ports,
                            f"{table} {chain}" if table else chain, negated))
    return blocks


_MANAGED = re.compile(r"# Warning: table (\S+) (\S+) is managed by iptables-nft")


def iptables_managed(text: str) -> set[str]:
    """The tables of an `nft list ruleset` that iptables-nft owns ("ip filter"): iptables-save
    shows the same rules, so they are read from there once."""
    return {f"{m.group(1)} {m.group(2)}" for m in _MANAGED.finditer(text)}


def _strip_counters(line: str) -> str:
    return re.sub(r"\s*counter packets \d+ bytes \d+", "", line).strip()


def _nft_sets(lines: list[str]) -> dict[tuple[str | None, str], tuple[str, ...]]:
    sets: dict[tuple[str | None, str], tuple[str, ...]] = {}
    table, current, collecting, elements = None, None, False, ""
    for raw in lines:
        if match := _TABLE_START.match(raw):
            table = f"{match.group(1)} {match.group(2)}"
        if match := _SET_START.match(raw):
            current, collecting, elements = match.group(1), False, ""
            continue
        if current is None:
            continue
        stripped = raw.strip()
        if stripped.startswith("elements = {"):
            collecting, elements = True, stripped[len("elements = {"):]
        elif collecting:
            elements += " " + stripped
        if collecting and "}" in elements:
            values = tuple(v.strip() for v in elements.split("}")[0].split(",") if v.strip())
            sets[(table, current)] = values
            sets.setdefault((None, current), values)
            collecting = False
        if stripped == "}" and not collecting:
            sets.setdefault((table, current), ())
            current = None
    return sets


# -- CSF, fail2ban ------------------------------------------------------------------------------

def parse_csf_deny(text: str, source: str, kind: str = "csf") -> list[Block]:
    """csf.deny (and csf.tempban's "time|ip|..." lines): each address or network is a ban."""
    blocks = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split("#", 1)[0].strip()
        if "|" in first:   # tempban: time|ip|port|inout|timeout|message
            parts = first.split("|")
            first = parts[1] if len(parts) > 1 else ""
        address = first.split()[0] if first.split() else ""
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            continue
        blocks.append(Block(kind, "ban", line, source, number, (address,)))
    return blocks


_CT_LIMIT = re.compile(r'^\s*CT_LIMIT\s*=\s*"?(\d+)"?')
_CT_PORTS = re.compile(r'^\s*CT_PORTS\s*=\s*"([^"]*)"')


def parse_csf_ct_limit(text: str, source: str) -> Block | None:
    """csf.conf's CT_LIMIT: lfd bans every address with more connections than it (0 = off)."""
    limit, ports, where, shown = None, (), None, ""
    for number, raw in enumerate(text.split("\n"), 1):
        if match := _CT_LIMIT.match(raw):
            limit, where, shown = int(match.group(1)), number, raw.strip()
        elif match := _CT_PORTS.match(raw):
            ports = _ports(match.group(1))
    if not limit:
        return None
    return Block("csf", "rate-limit", shown, source, where, (), ports)


_BANNED = re.compile(r"Banned IP list:\s*(.*)$")
_JAIL = re.compile(r"Status for the jail:\s*(\S+)")


def parse_fail2ban_status(text: str, source: str) -> list[Block]:
    """`fail2ban-client status JAIL` output (one or several jails): each banned address."""
    blocks, jail = [], None
    for number, raw in enumerate(text.split("\n"), 1):
        if match := _JAIL.search(raw):
            jail = match.group(1)
        if match := _BANNED.search(raw):
            for address in match.group(1).split():
                try:
                    ipaddress.ip_network(address, strict=False)
                except ValueError:
                    continue
                blocks.append(Block("fail2ban", "ban", f"jail {jail}: {address} banned", source, number,
                                    (address,), (), jail))
    return blocks


@dataclass
class Readings:
    """What the probe could read, and what it could not (and why)."""

    blocks: list[Block] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
