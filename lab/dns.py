"""Real DNS servers on loopback (127.0.60.x) for dns-check's tests, demo and benchmark.

    nsd      Debian's NSD, authoritative: one process per server, its own config, zone files,
             pid file, log and control socket under `base_dir`; port 53 on its own address
             (so NS records and their glue work as on the internet)
    unbound  Debian's unbound, a caching resolver: one process per resolver on its own address
             and a free port, with stub zones for the lab's zones *and for "."* pointing at the
             lab's nsd servers, root hints naming only the lab's root server, and every query
             it sends leaving from its own loopback address: it has nothing else to ask, and a
             packet from 127.0.0.0/8 cannot leave the machine.
    Silent   a UDP and TCP socket that never answers (a resolver or nameserver that times out)

DnsLab puts them together (the addresses are fixed so tests and captures can name them):

    127.0.60.1   ns1   nsd: opskit.test, cdn.test, lame.test
    127.0.60.2   ns2   nsd: opskit.test, cdn.test (not lame.test: the NS set lists it, so it is lame there)
    127.0.60.3   root  nsd: "." (SOA and NS only: any other name is NXDOMAIN)
    127.0.60.11  r1    unbound
    127.0.60.12  r2    unbound
    127.0.60.13  silent
    dead.test    stubbed to ns2, which refuses it: the resolvers answer SERVFAIL
    127.0.60.20  NEW   the new origin's address (a test starts an nginx there)
    127.0.60.21  OLD   the old origin's address (nothing listens)

opskit.test: SOA TTL 120 and MINIMUM 45 (negative TTL 45), NS ns1/ns2, apex and www A OLD
(TTL 3600), fast A OLD (TTL 12, for --watch), shop CNAME shop.cdn.test (300) → CNAME
edge.cdn.test (300) → A NEW (60). cdn.test: SOA TTL 20, MINIMUM 600 (negative TTL 20).

    with DnsLab(tmp) as lab:
        lab.publish("opskit.test", {"www": ["3600 A 127.0.60.20"]})          # on ns1 and ns2, serial + 1
        lab.publish("opskit.test", {"www": ["3600 A 127.0.60.22"]}, on=("ns1",))   # out of sync
        lab.r2.flush()

`python -m lab.dns` runs the move scenario and prints what opskit says (the README's demo).
Every server is stopped by stop(), and at interpreter exit if a test run dies before that.
"""

from __future__ import annotations

import atexit
import copy
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DnsLab", "Nsd", "Unbound", "Silent", "NEW", "OLD", "SUBNET", "free_dns_port"]

SUBNET = "127.0.60."
NEW, OLD = SUBNET + "20", SUBNET + "21"
NSD = shutil.which("nsd") or "/usr/sbin/nsd"
NSD_CONTROL = shutil.which("nsd-control") or "/usr/sbin/nsd-control"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"

_RUNNING: set = set()


@atexit.register
def _stop_forgotten() -> None:
    """Safety net: never leave a DNS server behind when a run dies before stop()."""
    for server in list(_RUNNING):
        server.stop()


def free_dns_port(address: str) -> int:
    """A port free for both UDP and TCP on `address`, below the ephemeral range."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        sockets = [socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
        try:
            for sock in sockets:
                sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no free port on {address}")


def query(address: str, port: int, name: str, rdtype: str, recursion: bool = False, timeout: float = 1.0):
    """A dnspython query straight to a lab server (never the machine's resolver)."""
    import dns.flags
    import dns.message
    import dns.query

    message = dns.message.make_query(name, rdtype)
    if not recursion:
        message.flags &= ~dns.flags.RD
    return dns.query.udp(message, address, port=port, timeout=timeout)


class _Process:
    """A server we started: its own session, so its children end with it."""

    process: subprocess.Popen | None = None
    log: Path

    def _spawn(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        _RUNNING.add(self)

    def _wait_ready(self, address: str, port: int, name: str, rdtype: str, recursion: bool, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                query(address, port, name, rdtype, recursion, timeout=0.3)
                return
            except Exception:   # noqa: BLE001 — not up yet
                time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"{type(self).__name__} on {address}:{port} did not answer {name} {rdtype}\n{tail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        try:
            os.killpg(process.pid, signal.SIGKILL)   # nsd's children (xfrd, servers), if any lingered
        except (ProcessLookupError, PermissionError):
            pass


# -- the authoritative server ------------------------------------------------------------------------
@dataclass(eq=False)
class Nsd(_Process):
    base_dir: Path
    address: str
    zones: dict[str, str]              # zone name → zone file text
    port: int = 53
    name: str = "nsd"

    @property
    def conf(self) -> Path:
        return self.base_dir / "nsd.conf"

    @property
    def endpoint(self) -> str:
        return self.address if self.port == 53 else f"{self.address}:{self.port}"

    def zone_file(self, zone: str) -> Path:
        return self.base_dir / ("root.zone" if zone == "." else f"{zone}.zone")

    def start(self) -> "Nsd":
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.base_dir / "nsd.log"
        for zone, text in self.zones.items():
            self.zone_file(zone).write_text(text)
        self.conf.write_text(self._config())
        checked = subprocess.run(["nsd-checkconf", str(self.conf)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"nsd-checkconf refused {self.conf}: {checked.stderr}")
        self._spawn([NSD, "-d", "-c", str(self.conf)])
        self._wait_ready(self.address, self.port, next(iter(self.zones)), "SOA", False)
        return self

    def serial(self, zone: str) -> int | None:
        try:
            answer = query(self.address, self.port, zone, "SOA")
        except Exception:   # noqa: BLE001
            return None
        return answer.answer[0][0].serial if answer.answer else None

    def replace_zone(self, zone: str, text: str, serial: int) -> None:
        """Write the zone file and reload it; returns once the server serves `serial`."""
        file = self.zone_file(zone)
        file.write_text(text)
        for attempt in range(20):
            stamp = time.time() + attempt   # nsd reloads a file whose mtime changed
            os.utime(file, (stamp, stamp))
            subprocess.run([NSD_CONTROL, "-c", str(self.conf), "reload", zone], capture_output=True, timeout=10)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if self.serial(zone) == serial:
                    return
                time.sleep(0.02)
        raise RuntimeError(f"nsd {self.address} does not serve serial {serial} of {zone}:\n"
                           + self.log.read_text(errors="replace")[-2000:])

    def _config(self) -> str:
        base = self.base_dir
        zones = "".join(f'zone:\n  name: "{zone}"\n  zonefile: "{self.zone_file(zone)}"\n' for zone in self.zones)
        return f"""# written by opskit's lab (lab/dns.py)
server:
  ip-address: {self.address}@{self.port}
  port: {self.port}
  do-ip4: yes
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{base}"
  database: ""
  pidfile: "{base}/nsd.pid"
  logfile: "{base}/nsd.log"
  xfrdfile: "{base}/xfrd.state"
  zonelistfile: "{base}/zone.list"
  xfrdir: "{base}"
  server-count: 1
  reuseport: no
  verbosity: 1
  hide-version: yes
  identity: "{self.name}"
  rrl-ratelimit: 0           # response rate limiting would drop the benchmark's (and a fleet run's) queries
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: yes
  control-interface: "{base}/nsd.ctl"
{zones}"""


# -- the caching resolver ------------------------------------------------------------------------------
@dataclass(eq=False)
class Unbound(_Process):
    base_dir: Path
    address: str
    stubs: dict[str, list[str]]        # zone → ["ADDRESS@PORT", ...]; "." must be among them
    root_hint: str                     # the root server's address (root hints name only it)
    port: int = 0
    name: str = "unbound"

    @property
    def conf(self) -> Path:
        return self.base_dir / "unbound.conf"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> "Unbound":
        assert "." in self.stubs, "a stub zone for '.' keeps every query on loopback"
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.base_dir / "unbound.log"
        self.port = self.port or free_dns_port(self.address)
        (self.base_dir / "root.hints").write_text(f".  3600000  NS  root.lab.\nroot.lab.  3600000  A  {self.root_hint}\n")
        self.conf.write_text(self._config())
        checked = subprocess.run(["unbound-checkconf", str(self.conf)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"unbound-checkconf refused {self.conf}: {checked.stdout}{checked.stderr}")
        self._spawn([UNBOUND, "-d", "-c", str(self.conf)])
        self._wait_ready(self.address, self.port, ".", "SOA", True)
        self.flush()
        return self

    def control(self, *args: str) -> str:
        done = subprocess.run([UNBOUND_CONTROL, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"unbound-control {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def flush(self) -> None:
        """Forget everything cached (answers, negative answers, what it knows of servers)."""
        self.control("flush_zone", ".")
        self.control("flush_infra", "all")
        self.control("flush_requestlist")

    def _config(self) -> str:
        base = self.base_dir
        stubs = "".join(f'stub-zone:\n  name: "{zone}"\n' + "".join(f"  stub-addr: {a}\n" for a in addresses)
                        for zone, addresses in self.stubs.items())
        # RFC 6761 names (test., invalid., ...) are answered by unbound itself unless told otherwise
        tlds = sorted({zone.rstrip(".").split(".")[-1] for zone in self.stubs if zone != "."})
        local = "".join(f'  local-zone: "{tld}." nodefault\n' for tld in tlds)
        return f"""# written by opskit's lab (lab/dns.py)
server:
  interface: {self.address}@{self.port}
  port: {self.port}
  outgoing-interface: {self.address}
  do-ip4: yes
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{base}"
  pidfile: "{base}/unbound.pid"
  logfile: "{base}/unbound.log"
  use-syslog: no
  verbosity: 1
  num-threads: 1
  so-reuseport: no
  outgoing-range: 64
  num-queries-per-thread: 256
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  root-hints: "{base}/root.hints"
  qname-minimisation: no
  harden-referral-path: no
  prefetch: no
  serve-expired: no
  minimal-responses: no
{local}remote-control:
  control-enable: yes
  control-interface: "{base}/unbound.ctl"
{stubs}"""


# -- a server that never answers -----------------------------------------------------------------------
@dataclass(eq=False)
class Silent:
    """Takes UDP datagrams and TCP connections on address:port and never answers."""

    address: str
    port: int = 0
    sockets: list = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> "Silent":
        self.port = self.port or free_dns_port(self.address)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((self.address, self.port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((self.address, self.port))
        tcp.listen(64)
        self.sockets = [udp, tcp]
        _RUNNING.add(self)
        return self

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        _RUNNING.discard(self)


# -- the zones -----------------------------------------------------------------------------------------
SERIAL_BASE = 2026120100
SOA = {"opskit.test": (120, 45), "cdn.test": (20, 600), "lame.test": (300, 300)}   # zone → (SOA TTL, MINIMUM)
NS_SETS = {"opskit.test": ["ns1.opskit.test.", "ns2.opskit.test."], "cdn.test": ["ns1.opskit.test.", "ns2.opskit.test."],
           "lame.test": ["ns1.opskit.test.", "ns2.opskit.test."]}


def baseline_records(ns1: str = f"{SUBNET}1", ns2: str = f"{SUBNET}2") -> dict[str, dict[str, list[str]]]:
    """zone → owner (relative, '@' for the apex) → ["TTL TYPE DATA", ...]"""
    return {
        "opskit.test": {
            "ns1": [f"3600 A {ns1}"], "ns2": [f"3600 A {ns2}"],
            "@": [f"3600 A {OLD}"], "www": [f"3600 A {OLD}"],
            "fast": [f"12 A {OLD}"],
            "shop": ["300 CNAME shop.cdn.test."],
        },
        "cdn.test": {"shop": ["300 CNAME edge"], "edge": [f"60 A {NEW}"]},
        "lame.test": {"@": [f"300 A {NEW}"], "www": [f"300 A {NEW}"]},
    }


def zone_text(zone: str, serial: int, records: dict[str, list[str]]) -> str:
    soa_ttl, minimum = SOA.get(zone, (300, 300))
    lines = [f"$ORIGIN {zone}.", "$TTL 300",
             f"@ {soa_ttl} IN SOA ns1.opskit.test. hostmaster.opskit.test. {serial} 3600 600 86400 {minimum}"]
    lines += [f"@ 3600 IN NS {ns}" for ns in NS_SETS.get(zone, ["ns1.opskit.test."])]
    for owner, rrs in records.items():
        for rr in rrs:
            ttl, kind, data = rr.split(" ", 2)
            lines.append(f"{owner} {ttl} IN {kind} {data}")
    return "\n".join(lines) + "\n"


def root_zone(address: str) -> str:
    return (". 86400 IN SOA root.lab. hostmaster.lab. 1 1800 900 604800 300\n"
            ". 86400 IN NS root.lab.\n"
            f"root.lab. 86400 IN A {address}\n")


@dataclass(eq=False)
class DnsLab:
    base_dir: Path
    subnet: str = SUBNET
    resolvers: int = 2                 # unbound processes: r1, r2, ... on .11, .12, ...
    offset: int = 0                    # added to every address's last byte (the benchmark's lab: 100)
    extra_zones: dict[str, dict[str, list[str]]] = field(default_factory=dict)   # more zones on ns1 and ns2

    nsd: dict[str, Nsd] = field(default_factory=dict, init=False)
    unbound: list[Unbound] = field(default_factory=list, init=False)
    silent: Silent | None = field(default=None, init=False)
    records: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict, init=False)   # server → zone → ...
    serials: dict[str, dict[str, int]] = field(default_factory=dict, init=False)

    @property
    def ns1(self) -> Nsd:
        return self.nsd["ns1"]

    @property
    def ns2(self) -> Nsd:
        return self.nsd["ns2"]

    @property
    def r1(self) -> Unbound:
        return self.unbound[0]

    @property
    def r2(self) -> Unbound:
        return self.unbound[1]

    def address(self, last: int) -> str:
        return f"{self.subnet}{self.offset + last}"

    def __enter__(self) -> "DnsLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _served(self, server: str) -> dict[str, dict[str, list[str]]]:
        zones = {**baseline_records(self.address(1), self.address(2)), **copy.deepcopy(self.extra_zones)}
        if server == "ns2":
            zones.pop("lame.test")
        return zones

    def start(self) -> "DnsLab":
        self.base_dir = Path(self.base_dir)
        try:
            for server, last in (("ns1", 1), ("ns2", 2)):
                self.records[server] = self._served(server)
                self.serials[server] = {zone: SERIAL_BASE for zone in self.records[server]}
                texts = {zone: zone_text(zone, SERIAL_BASE, recs) for zone, recs in self.records[server].items()}
                self.nsd[server] = Nsd(self.base_dir / server, self.address(last), texts, name=server).start()
            self.nsd["root"] = Nsd(self.base_dir / "root", self.address(3), {".": root_zone(self.address(3))},
                                   name="root").start()
            stubs = {zone: [f"{self.address(1)}@53", f"{self.address(2)}@53"]
                     for zone in {**baseline_records(), **self.extra_zones}}
            stubs["."] = [f"{self.address(3)}@53"]
            stubs["dead.test"] = [f"{self.address(2)}@53"]   # ns2 refuses it: the resolvers answer SERVFAIL
            for index in range(self.resolvers):
                self.unbound.append(Unbound(self.base_dir / f"r{index + 1}", self.address(11 + index), stubs,
                                            root_hint=self.address(3), name=f"r{index + 1}").start())
            self.silent = Silent(self.address(10 + self.resolvers + 1)).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in [*self.unbound, *self.nsd.values(), *([self.silent] if self.silent else [])]:
            server.stop()

    def publish(self, zone: str, changes: dict[str, list[str] | None], on: tuple[str, ...] = ("ns1", "ns2")) -> int:
        """Change owners of `zone` (None removes one) on the named servers, bump their serial,
        reload, and wait until they serve it. Returns the new serial."""
        serial = 0
        for server in on:
            records = self.records[server][zone]
            for owner, rrs in changes.items():
                if rrs is None:
                    records.pop(owner, None)
                else:
                    records[owner] = list(rrs)
            self.serials[server][zone] += 1
            serial = self.serials[server][zone]
            self.nsd[server].replace_zone(zone, zone_text(zone, serial, records), serial)
        return serial

    def publish_many(self, changes: dict[str, dict[str, list[str] | None]], on: tuple[str, ...] = ("ns1", "ns2")) -> None:
        """publish() for many zones at once: every file written, one reload per server, then
        wait until each zone's new serial is served."""
        for server in on:
            wanted = {}
            for zone, owners in changes.items():
                records = self.records[server][zone]
                for owner, rrs in owners.items():
                    if rrs is None:
                        records.pop(owner, None)
                    else:
                        records[owner] = list(rrs)
                self.serials[server][zone] += 1
                wanted[zone] = self.serials[server][zone]
                self.nsd[server].zone_file(zone).write_text(zone_text(zone, wanted[zone], records))
            nsd = self.nsd[server]
            subprocess.run([NSD_CONTROL, "-c", str(nsd.conf), "reload"], capture_output=True, timeout=60)
            for zone, serial in wanted.items():
                if nsd.serial(zone) != serial:
                    nsd.replace_zone(zone, zone_text(zone, serial, self.records[server][zone]), serial)

    def reset(self) -> None:
        """Every zone back to its baseline (a new serial) and every resolver's cache emptied."""
        zones = {zone for server in ("ns1", "ns2") for zone in self._served(server)}
        for zone in sorted(zones):
            servers = [s for s in ("ns1", "ns2") if zone in self._served(s)]
            serials = {self.serials[s][zone] for s in servers}
            if len(serials) == 1 and all(self.records[s][zone] == self._served(s)[zone] for s in servers):
                continue
            serial = max(serials) + 1     # every server of the zone on the same, newer serial
            for server in servers:
                records = self._served(server)[zone]
                self.records[server][zone], self.serials[server][zone] = records, serial
                self.nsd[server].replace_zone(zone, zone_text(zone, serial, records), serial)
        for resolver in self.unbound:
            resolver.flush()

    def warm(self, *names: str, resolvers: list[Unbound] | None = None) -> None:
        """Ask each resolver for each name's A and AAAA, so its cache holds them."""
        for resolver in resolvers or self.unbound:
            for name in names:
                for rdtype in ("A", "AAAA"):
                    query(resolver.address, resolver.port, name, rdtype, recursion=True, timeout=3)


# -- the demo --------------------------------------------------------------------------------------------
def demo() -> int:
    """The move scenario, as the README shows it: both resolvers cached the old address, the
    zone moves to the new one, one resolver is flushed; opskit says who still serves what."""
    import sys
    import tempfile

    import yaml

    from lab.tls_nginx import TlsNginx

    root = Path(__file__).resolve().parent.parent
    base = Path(tempfile.mkdtemp(prefix="opskit-dns-demo-"))
    try:
        with DnsLab(base / "dns") as lab, TlsNginx(base / "nginx", address=NEW, hostname="www.opskit.test") as nginx:
            lab.warm("opskit.test", "www.opskit.test")
            lab.publish("opskit.test", {"@": [f"3600 A {NEW}"], "www": [f"3600 A {NEW}"]})
            lab.r2.flush()
            time.sleep(2)
            inventory = base / "inventory.yaml"
            inventory.write_text(yaml.safe_dump({"hosts": {"site1": {
                "address": NEW, "origin": f"https://{NEW}:{nginx.https_port}",
                "wordpress": {"url": "https://www.opskit.test/"}, "tls": {"ca_bundle": str(nginx.ca_pem)},
                "dns": {"domain": "opskit.test", "expect": [NEW], "old": [OLD],
                        "resolvers": [lab.r1.endpoint, lab.r2.endpoint], "nameservers": [lab.ns1.endpoint, lab.ns2.endpoint]},
            }}}))
            env = {**os.environ, "OPSKIT_STATE_DIR": str(base / "state"), "COLUMNS": "160"}
            command = [sys.executable, "-m", "opskit", "run", "dns-check", "--host", "site1", "-i", str(inventory)]
            print("$ opskit run dns-check --host site1", file=sys.stderr, flush=True)
            return subprocess.run(command, cwd=root, env=env).returncode
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(demo())
