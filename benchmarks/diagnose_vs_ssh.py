#!/usr/bin/env python3
"""Benchmark: `opskit run diagnose --all` on N hosts (default 50) vs. the same host-side commands with OpenSSH.

Starts a private lab (lab/sshd.py: one real sshd per simulated host on 127.0.110.1-N, users
opskit-bd1..N, each sshd in its own PID namespace so a host's `ps` sees its own processes only),
then times, --rounds times each, in the same rounds (same load):

  opskit-cli        `opskit -i INV run diagnose --all --json --forks F` as a subprocess: start-up,
                    one SSH connection and the two probe execs per host, the public-side requests
                    (refused at once here: the inventory's URL and origin point at a closed port)
                    and the DNS question (to a resolver address where nothing listens)
  opskit-cli-one-host  the same on host 1 alone (`--host h1`): the CLI's fixed cost, so that the CPU
                    each added host costs can be told apart from start-up
  ssh-xargs-c25519  one `ssh -o KexAlgorithms=curve25519-sha256` per host under `xargs -P N`, running
                    the very two scripts opskit sent to host 1 (recorded from an in-process run: the
                    hello, every probe, the fences), one after the other in that one session

and reports min / median / max wall time, the ratio (of the medians and the median of the
per-round ratios), the controller's CPU per host (user+sys of the reaped process tree) and the
CLI's peak RSS (GNU time, one untimed run). `--memory-hosts 200` also starts 200 hosts for one
untimed CLI run and reports its peak RSS. Figures go to
benchmarks/results/diagnose_vs_ssh-<date>-<N>hosts.json.

Helpers (run_command, measure, ratio_figures, machine_info …) are benchmarks/facts_vs_ssh.py's.
Needs root. The lab is always stopped and its users removed, also on Ctrl-C.

    /work/main/.venv/bin/python benchmarks/diagnose_vs_ssh.py --hosts 50 --rounds 3 [--memory-hosts 200]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import facts_vs_ssh as base  # noqa: E402
from lab.dns import Nsd, zone_text  # noqa: E402
from lab.sshd import Lab, stop_on_signal  # noqa: E402

PREFIX = "opskit-bd"
SUBNET = "127.0.110."
CLOSED = f"{SUBNET}254"          # nothing listens: the public URL and the origin are refused at once
DNS = f"{SUBNET}253"             # nsd, authoritative for bench.example.test (the site's name → host 1's address)
KEX = "curve25519-sha256"

RUN_SCRIPTS = r"""out=$1 port=$2 user=$3 addr=$4
[ -z "$BENCH_TIME" ] && set -- ssh || set -- "$BENCH_TIME" -f "%M %U %S" -o "$out/$addr.rusage" ssh
"$@" -o "KexAlgorithms=$BENCH_KEX" -F "$BENCH_SSH_CONFIG" -i "$BENCH_KEY" -o UserKnownHostsFile="$BENCH_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -p "$port" "$user@$addr" \
    'sh -c "$1"; sh -c "$2"' sh "$BENCH_SCRIPT_1" "$BENCH_SCRIPT_2" >"$out/$addr.out" 2>"$out/$addr.err"
echo $? >"$out/$addr.rc"
"""


def inventory_for(lab: Lab, path: Path) -> Path:
    fields = {"wordpress": {"url": "http://bench.example.test/", "resolve": f"{CLOSED}:9"},
              "origin": f"http://{CLOSED}:9", "dns": {"resolvers": [DNS], "timeout": 2}}
    return lab.inventory(path, hosts={h.name: fields for h in lab.hosts})


def record_scripts(inventory: Path, work: Path) -> list[str]:
    """The commands opskit sends to host 1, recorded from an in-process run (nothing else runs)."""
    os.environ.pop("SSH_AUTH_SOCK", None)
    os.environ["OPSKIT_STATE_DIR"] = str(work / "record-state")
    from opskit import inventory as inv
    from opskit import playbook
    from opskit import transport
    from opskit.journal import Journal, new_run_id
    from opskit.runner import Run, RunOptions

    sent: list[str] = []
    original = transport.Session.exec

    def recording(self, command, *args, **kwargs):
        sent.append(command)
        return original(self, command, *args, **kwargs)

    transport.Session.exec = recording
    try:
        hosts = [h for h in inv.load(inventory).select((), (), True) if h.name == "h1"]
        run = Run(new_run_id(), playbook.load("diagnose"), hosts, RunOptions(forks=1), Journal(work / "record-journal"),
                  inventory_file=str(inventory))
        outcome = run.execute()["h1"]
    finally:
        transport.Session.exec = original
    if outcome.status != "ok" or len(sent) != 2:
        raise base.BenchmarkError(f"recording: status {outcome.status} ({outcome.error}), {len(sent)} execs (want 2)")
    return sent


class Diagnose:
    def __init__(self, lab: Lab, work: Path, inventory: Path, scripts: list[str], forks: int):
        self.lab, self.work, self.inventory, self.forks = lab, work, inventory, forks
        # PYTHONDONTWRITEBYTECODE off: with it, an uninstalled checkout is compiled from source on
        # every start (1.5-2 s of CPU that an installed opskit never pays)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SSH_AUTH_SOCK", "OPSKIT_INVENTORY", "PYTHONDONTWRITEBYTECODE")}
        self.env.update(OPSKIT_STATE_DIR=str(work / "opskit-state"), PYTHONPATH=str(ROOT),
                        PYTHONPYCACHEPREFIX=str(work / "pycache"))
        self.hosts_file = work / "hosts.txt"
        self.hosts_file.write_text("".join(f"{h.port} {h.user} {h.address}\n" for h in lab.hosts))
        self.runner = work / "run-scripts.sh"
        self.runner.write_text(RUN_SCRIPTS)
        self.ssh_env = dict(self.env, BENCH_KEX=KEX, BENCH_SSH_CONFIG=str(lab.ssh_config), BENCH_KEY=str(lab.client_key),
                            BENCH_KNOWN_HOSTS=str(lab.known_hosts), BENCH_SCRIPT_1=scripts[0], BENCH_SCRIPT_2=scripts[1])
        self.round = 0

    def argv(self, one: bool = False) -> list[str]:
        chosen = ["--host", self.lab.hosts[0].name] if one else ["--all"]
        return base.OPSKIT + ["-i", str(self.inventory), "run", "diagnose", *chosen, "--json", "--forks", str(self.forks)]

    def cli(self, one: bool = False) -> float:
        """The command on every host, or (`one`) on host 1 alone: that run's CPU is the fixed cost
        (start-up, imports, the playbook and inventory); the rest of an N-host run's CPU is what
        each host adds."""
        seconds, result = base.run_command(self.argv(one), env=self.env, cwd=self.work, timeout=600)
        check_document(result, {self.lab.hosts[0].name} if one else {h.name for h in self.lab.hosts})
        return seconds

    def peak_rss_mib(self) -> float | None:
        if not base.GNU_TIME:
            return None
        rss = self.work / "cli.rss"
        _, result = base.run_command([base.GNU_TIME, "-f", "%M", "-o", str(rss), *self.argv()], env=self.env,
                                     cwd=self.work, timeout=900)
        check_document(result, {h.name for h in self.lab.hosts})
        return round(int(rss.read_text().split()[-1]) / 1024, 1)

    def floor(self) -> float:
        self.round += 1
        out = self.work / f"ssh-{self.round}"
        out.mkdir()
        argv = ["xargs", "-a", str(self.hosts_file), "-P", str(len(self.lab.hosts)), "-L", "1", "sh", str(self.runner),
                str(out)]
        seconds, result = base.run_command(argv, env=self.ssh_env, cwd=self.work, timeout=600)
        bad = [h.name for h in self.lab.hosts if (out / f"{h.address}.rc").read_text().strip() != "0"
               or "OPSKIT-" not in (out / f"{h.address}.out").read_text(errors="replace")]
        if result.returncode != 0 or bad:
            raise base.BenchmarkError(f"ssh floor: xargs exit {result.returncode}, hosts failed: {bad[:5]} "
                                      f"{(out / (self.lab.hosts[0].address + '.err')).read_text()[-500:]}")
        shutil.rmtree(out, ignore_errors=True)
        return seconds


def check_document(result, expected: set[str]) -> None:
    try:
        hosts = json.loads(result.stdout)["hosts"]
    except (json.JSONDecodeError, KeyError):
        raise base.BenchmarkError(f"opskit exited {result.returncode}: {result.stderr[-2000:]}") from None
    bad = {n: (o["status"], o.get("error")) for n, o in hosts.items() if o["status"] != "ok"}
    if set(hosts) != expected or bad:
        raise base.BenchmarkError(f"opskit: hosts {sorted(set(hosts) ^ expected)[:5]} missing or extra; not ok: "
                                  f"{dict(list(bad.items())[:5])}")
    for name, doc in hosts.items():
        if not any(s.get("id") == "diagnosis" and s["status"] == "ok" for s in doc["steps"]):
            raise base.BenchmarkError(f"opskit: {name}: no diagnosis step")


def own_pid_namespace(work: Path) -> None:
    """Each simulated host's sshd in a PID namespace of its own (`unshare --pid --mount-proc`), so
    that `ps` on a host shows that host's processes only, as on a real one. Without it every host's
    probes list (and the check-timeouts probes walk) the processes of all N hosts: N² work that
    pushed a 50-host run past opskit's 120 s command timeout."""
    import lab.sshd as lab_sshd

    wrapper = work / "sshd-own-pid-namespace"
    wrapper.write_text(f"#!/bin/sh\nexec unshare --pid --fork --mount-proc --kill-child {base_sshd()} \"$@\"\n")
    wrapper.chmod(0o755)
    lab_sshd.SSHD = str(wrapper)


def base_sshd() -> str:
    return shutil.which("sshd") or "/usr/sbin/sshd"


@contextlib.contextmanager
def running_lab(count: int):
    """(work dir, lab, inventory): N sshd hosts and the site's nsd, stopped and removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="opskit-bench-diag-"))
    os.chmod(work, 0o755)
    lab = dns = None
    try:
        zone = zone_text("example.test", 1, {"bench": [f"60 A {SUBNET}1"]})
        dns = Nsd(work / "dns", DNS, {"example.test": zone}).start()
        lab = Lab(work / "lab", count=count, prefix=PREFIX, subnet=SUBNET)
        stop_on_signal(lab)
        own_pid_namespace(work)
        lab.start()
        yield work, lab, inventory_for(lab, work / "inventory.yaml")
    finally:
        if dns is not None:
            dns.stop()
        if lab is not None:
            base.stop_lab(lab, work)
        shutil.rmtree(work, ignore_errors=True)


def memory_at(hosts: int, forks: int) -> dict:
    with running_lab(hosts) as (work, lab, inventory):
        bench = Diagnose(lab, work, inventory, ["true", "true"], forks)
        return {"hosts": hosts, "forks": forks, "peak_rss_mib": bench.peak_rss_mib()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, default=50, help="opskit --forks (default 50: all hosts at once, like xargs -P)")
    parser.add_argument("--memory-hosts", type=int, default=0, help="also one untimed run on this many hosts for the peak RSS")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the lab creates users and starts sshd)", file=sys.stderr)
        return 2
    load_before = base.loadavg()
    results: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "hosts": args.hosts,
                     "forks": args.forks, "rounds": args.rounds, "load_before": load_before,
                     "other_load": base.foreign_load_note(), "machine": base.machine_info(ROOT)}
    with running_lab(args.hosts) as (work, lab, inventory):
        scripts = record_scripts(inventory, work)
        results["scripts_bytes"] = [len(s) for s in scripts]
        bench = Diagnose(lab, work, inventory, scripts, args.forks)
        bench.cli()            # warm-up: byte code, the lab's sshd caches
        bench.floor()
        samples = {"opskit-cli": [], "ssh-xargs-c25519": [], "opskit-cli-one-host": []}
        for _ in range(args.rounds):
            samples["opskit-cli"].append(base.measure(bench.cli, in_process=False))
            samples["ssh-xargs-c25519"].append(base.measure(bench.floor, in_process=False))
            samples["opskit-cli-one-host"].append(base.measure(lambda: bench.cli(one=True), in_process=False))
        results["methods"] = {name: base.summarize(s) for name, s in samples.items()}
        results["ratio"] = base.ratio_figures(samples, "opskit-cli", "ssh-xargs-c25519")
        cpu = statistics.median(c for _, c, _ in samples["opskit-cli"])
        floor_cpu = statistics.median(c for _, c, _ in samples["ssh-xargs-c25519"])
        fixed_cpu = statistics.median(c for _, c, _ in samples["opskit-cli-one-host"])
        results["controller_cpu_ms_per_host"] = round(cpu * 1000 / args.hosts, 1)
        results["floor_cpu_ms_per_host"] = round(floor_cpu * 1000 / args.hosts, 1)
        results["controller_fixed_cpu_ms"] = round(fixed_cpu * 1000, 1)
        # what each host adds beyond the one-host run's fixed cost
        results["controller_cpu_ms_per_added_host"] = round((cpu - fixed_cpu) * 1000 / max(1, args.hosts - 1), 1)
        results["cli_peak_rss_mib"] = bench.peak_rss_mib()
        results["load_after"] = base.loadavg()
    if args.memory_hosts:
        results["memory"] = memory_at(args.memory_hosts, args.forks)
    m = results["methods"]
    print(f"{args.hosts} hosts, {args.rounds} rounds, --forks {args.forks}, load before {load_before}")
    for name, figures in m.items():
        print(f"  {name:<18} median {figures['median']:.2f}s (min {figures['min']:.2f}, max {figures['max']:.2f}), "
              f"client cpu {figures['client_cpu']['median'] * 1000 / args.hosts:.1f} ms/host")
    print(f"  ratio {results['ratio']['of_medians']}x of medians, {results['ratio']['median_of_rounds']}x median of rounds")
    print(f"  controller cpu {results['controller_cpu_ms_per_host']} ms/host: fixed {results['controller_fixed_cpu_ms']} ms "
          f"(one host) + {results['controller_cpu_ms_per_added_host']} ms per added host; "
          f"the OpenSSH clients {results['floor_cpu_ms_per_host']} ms/host")
    print(f"  CLI peak RSS {results['cli_peak_rss_mib']} MiB" + (
        f"; at {args.memory_hosts} hosts {results['memory']['peak_rss_mib']} MiB" if args.memory_hosts else ""))
    out = ROOT / "benchmarks" / "results" / f"diagnose_vs_ssh-{dt.date.today().isoformat()}-{args.hosts}hosts.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"  → {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
