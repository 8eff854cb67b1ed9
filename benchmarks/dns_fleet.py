#!/usr/bin/env python3
"""Benchmark: `opskit run dns-check --all` on a fleet of 200 domains × 4 resolvers, on loopback.

Starts its own DNS lab (lab/dns.py, offset 100 so it never meets the tests' 127.0.60.1-23):
Debian's nsd as ns1/ns2 on 127.0.60.101/102 (and the lab root on .103), four unbound resolvers
on 127.0.60.111-114, and 200 zones d1.fleet.test … d200.fleet.test served by both nameservers.
Every host of the inventory has one domain (its apex and www are asked, A and AAAA, at the 4
resolvers and both nameservers: 28 queries a host, 5600 for the fleet):

    d(4k)    not moved yet: the zone still says the old address
    d(4k+1)  moved; the resolvers cached the old address before the move (old, ETA ≈ 3600s)
    d(4k+2), d(4k+3)  moved, not cached before: the new address

Then, `--rounds` times (after an untimed warm-up):

    cli-cold       every resolver's cache flushed first (each one asks nsd; only the d(4k+1) names are
                   cached, with the old address, as set up again before every round), then
                   `opskit -i INV run dns-check --all --json --forks F` as a subprocess, start-up included
    cli-warm       the same right after (the resolvers answer from their caches)
    cli-dns-only   a playbook with the dns check alone (--playbook-path), warm: DNS without the origin checks
    inproc-dns-only  that playbook through opskit.runner.Run in this process (no start-up), warm

Each run's JSON is checked: 200 hosts, all ok, and each domain's verdicts at every resolver as
set up above. Figures go to benchmarks/results/dns_fleet-<date>.json.

Needs root (nsd binds port 53 on its loopback address). Every server is stopped at the end.

    sudo .venv/bin/python benchmarks/dns_fleet.py [--domains 200] [--rounds 3] [--forks 20 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from lab.dns import NEW, OLD, DnsLab  # noqa: E402

BIN = Path(sys.executable).parent
OPSKIT = [str(BIN / "opskit")] if (BIN / "opskit").exists() else [sys.executable, "-m", "opskit"]
DNS_ONLY = """name: dns-only
description: The dns check alone (benchmarks/dns_fleet.py).
changes: none
steps:
  - name: DNS answers
    id: dns
    check: dns
    with:
      domain: "{{ host.dns.domain }}"
      expect: "{{ host.dns.expect }}"
      old: "{{ host.dns.old }}"
      resolvers: "{{ host.dns.resolvers }}"
      nameservers: "{{ host.dns.nameservers }}"
      timeout: "{{ host.dns.timeout }}"
    on_fail: warn
"""


def zones(count: int) -> dict[str, dict[str, list[str]]]:
    return {f"d{i}.fleet.test": {"@": [f"3600 A {OLD}"], "www": [f"3600 A {OLD}"]} for i in range(1, count + 1)}


def inventory(lab: DnsLab, count: int) -> dict:
    resolvers = [r.endpoint for r in lab.unbound]
    hosts = {f"site{i}": {"address": "127.0.60.250",
                          "dns": {"domain": f"d{i}.fleet.test", "expect": [NEW], "old": [OLD], "resolvers": resolvers,
                                  "nameservers": [lab.ns1.endpoint, lab.ns2.endpoint], "timeout": 3}}
             for i in range(1, count + 1)}
    return {"hosts": hosts}


def expected(i: int) -> str:
    return "lagging" if i % 4 == 0 else "old" if i % 4 == 1 else "new"


def stage(lab: DnsLab, stale: list[int], count: int) -> None:
    """Every cache emptied, then the d(4k+1) domains cached with the old address just before
    their move: only those are in the resolvers' caches when a round starts."""
    zones_of = [f"d{i}.fleet.test" for i in stale]
    lab.publish_many({zone: {"@": [f"3600 A {OLD}"], "www": [f"3600 A {OLD}"]} for zone in zones_of})
    for resolver in lab.unbound:
        resolver.flush()
    lab.warm(*[f"{name}{zone}" for zone in zones_of for name in ("", "www.")])
    lab.publish_many({zone: {"@": [f"3600 A {NEW}"], "www": [f"3600 A {NEW}"]} for zone in zones_of})


def check(document: dict, count: int) -> dict:
    hosts = document["hosts"]
    assert len(hosts) == count, len(hosts)
    tally: dict[str, int] = {}
    for name, outcome in hosts.items():
        assert outcome["status"] == "ok", (name, outcome["status"], outcome["error"])
        i = int(name[4:])
        observed = next(s for s in outcome["steps"] if s["id"] == "dns")["value"]["observed"]
        verdicts = {a["verdict"] for r in observed["resolvers"] for a in r["answers"].values()}
        want = expected(i)
        if want == "lagging":
            assert observed["lagging"] and verdicts == {"old"}, (name, verdicts, observed["lagging"])
        else:
            assert verdicts == {want}, (name, want, verdicts)
        tally[want] = tally.get(want, 0) + 1
    return tally


def cli(inv: Path, state: Path, forks: int, *extra: str) -> tuple[float, float, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([*OPSKIT, "-i", str(inv), "run", *extra, "--all", "--json", "--forks", str(forks)],
                          capture_output=True, text=True, env={**os.environ, "OPSKIT_STATE_DIR": str(state)}, cwd=ROOT,
                          timeout=600)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"opskit exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout)


def inproc(inv: Path, playbook_dir: Path, forks: int) -> tuple[float, float, dict]:
    from opskit import inventory as inventory_module
    from opskit import playbook, report
    from opskit.journal import Journal, new_run_id
    from opskit.runner import Run, RunOptions

    book = playbook.load("dns-only", (str(playbook_dir),))
    hosts = inventory_module.load(inv).select(everything=True)
    started, cpu0 = time.monotonic(), time.process_time()
    outcomes = Run(new_run_id(), book, hosts, RunOptions(forks=forks), Journal.default()).execute()
    wall, cpu = time.monotonic() - started, time.process_time() - cpu0
    return wall, cpu, report.json_document("x", book.name, outcomes, False)


def calibration(lab: DnsLab) -> dict:
    """What one query costs this machine in dnspython alone (build, parse), and one answer
    parsed by opskit: the fleet figures are roughly queries × these, spread over the cores."""
    import timeit

    import dns.message
    import dns.query

    from opskit.stack.dns import parse_reply

    query = dns.message.make_query("www.d1.fleet.test", "A")
    wire = dns.query.udp(query, lab.ns1.address, port=53, timeout=3).to_wire()
    message = dns.message.from_wire(wire)
    n = 2000
    return {
        "dnspython_make_query_to_wire_us": round(timeit.timeit(
            lambda: dns.message.make_query("www.d1.fleet.test", "A", id=1).to_wire(), number=n) / n * 1e6, 1),
        "dnspython_from_wire_us": round(timeit.timeit(lambda: dns.message.from_wire(wire), number=n) / n * 1e6, 1),
        "opskit_parse_reply_us": round(timeit.timeit(lambda: parse_reply(message, "www.d1.fleet.test", "A"),
                                                     number=n) / n * 1e6, 1),
        "reply_bytes": len(wire),
    }


def stats(values: list[float]) -> dict:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)   # run the finally that stops the lab


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--resolvers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, nargs="+", default=[20])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="opskit-dns-bench-"))
    state = base / "state"
    os.environ["OPSKIT_STATE_DIR"] = str(state)
    results: dict = {"benchmark": "dns_fleet", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "domains": args.domains, "resolvers": args.resolvers, "nameservers": 2, "rounds": args.rounds,
                     "queries_per_run": args.domains * (2 * 2 * args.resolvers + 2 * (2 + 2 * 2)),
                     "unit": "seconds of wall clock (min/median/max over rounds); cpu = user+sys of the opskit process",
                     "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                                 "kernel": platform.release()},
                     "loadavg_before": os.getloadavg(), "methods": {}}
    lab = DnsLab(base / "dns", resolvers=args.resolvers, offset=100, extra_zones=zones(args.domains))
    try:
        started = time.monotonic()
        lab.start()
        results["lab_start_seconds"] = round(time.monotonic() - started, 2)
        stale = [i for i in range(1, args.domains + 1) if i % 4 == 1]
        lab.publish_many({f"d{i}.fleet.test": {"@": [f"3600 A {NEW}"], "www": [f"3600 A {NEW}"]}
                          for i in range(1, args.domains + 1) if i % 4 > 1})
        inv = base / "inventory.yaml"
        inv.write_text(yaml.safe_dump(inventory(lab, args.domains)))
        books = base / "playbooks"
        books.mkdir()
        (books / "dns-only.yaml").write_text(DNS_ONLY)
        for forks in args.forks:
            timings: dict[str, dict[str, list[float]]] = {}

            def record(method: str, wall: float, cpu: float, document: dict) -> None:
                tally = check(document, args.domains)
                entry = timings.setdefault(method, {"wall": [], "cpu": []})
                entry["wall"].append(wall)
                entry["cpu"].append(cpu)
                entry["verdicts"] = tally
                print(f"forks {forks} {method:16} {wall:6.2f}s wall  {cpu:5.2f}s cpu  {tally}", flush=True)

            for round_ in range(args.rounds + 1):
                timed = round_ > 0
                stage(lab, stale, args.domains)
                for method, extra in (("cli-cold", ("dns-check",)), ("cli-warm", ("dns-check",)),
                                      ("cli-dns-only", ("--playbook-path", str(books), "dns-only"))):
                    wall, cpu, document = cli(inv, state, forks, *extra)
                    if timed:
                        record(method, wall, cpu, document)
                wall, cpu, document = inproc(inv, books, forks)
                if timed:
                    record("inproc-dns-only", wall, cpu, document)
            results["methods"][f"forks={forks}"] = {
                method: {"wall": stats(t["wall"]), "cpu": stats(t["cpu"]), "verdicts": t["verdicts"]}
                for method, t in timings.items()}
        results["calibration"] = calibration(lab)
        results["loadavg_after"] = os.getloadavg()
    finally:
        lab.stop()
    output = args.output or ROOT / "benchmarks" / "results" / f"dns_fleet-{dt.date.today().isoformat()}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
