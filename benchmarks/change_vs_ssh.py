#!/usr/bin/env python3
"""Benchmark: a changing playbook with its rollback machinery vs. the same changes by plain OpenSSH.

Starts a private lab (lab/sshd.py: one real sshd per host on 127.0.31.1-N, users
opskit-e1..N), gives each host a plugin folder and a config file, then times,
N rounds each, interleaved so every method sees the same load:

  opskit-apply    `opskit run rename-hold --all --detach --json`: hello + lock, guard armed,
                  per change a write-ahead and an apply under the host's undo lock, the check,
                  the hold armed (tests/playbooks/rename-hold.yaml: rename a folder, edit a file)
  opskit-undo     `opskit rollback RUN`: the guard undoes both, then the after-rollback check
  ssh-apply       one `ssh` per host (xargs -P N, curve25519 like opskit) doing the same two
                  changes and the check, with no journal, guard or lock: the floor
  ssh-undo        one `ssh` per host undoing them

and writes the figures to benchmarks/results/change_vs_ssh-<date>.json. Needs root.

    /work/main/.venv/bin/python benchmarks/change_vs_ssh.py --rounds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from facts_vs_ssh import (OPSKIT, BenchmarkError, machine_info, measure, print_table, run_command,  # noqa: E402
                          stop_lab, summarize)
from lab.sshd import Lab  # noqa: E402

PREFIX = "opskit-e"
SUBNET = "127.0.31."
PLAYBOOKS = ROOT / "tests" / "playbooks"

APPLY = r"""set -e
mv "$HOME/wp/plugins/cdn-enabler" "$HOME/wp/plugins/.cdn-enabler.opskit"
cp -p "$HOME/conf.txt" "$HOME/.conf.txt.bak"
printf 'edited by opskit\n' > "$HOME/conf.txt"
[ ! -e "$HOME/wp/plugins/cdn-enabler" ] && echo applied"""
UNDO = r"""set -e
mv "$HOME/wp/plugins/.cdn-enabler.opskit" "$HOME/wp/plugins/cdn-enabler"
cp -p "$HOME/.conf.txt.bak" "$HOME/conf.txt"
[ -d "$HOME/wp/plugins/cdn-enabler" ] && echo undone"""

# usage: sh change-one.sh SCRIPTVAR PORT USER ADDRESS
CHANGE_ONE = r"""var=$1 port=$2 user=$3 addr=$4
eval "script=\$$var"
ssh -F "$BENCH_SSH_CONFIG" -i "$BENCH_KEY" -o UserKnownHostsFile="$BENCH_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o KexAlgorithms=curve25519-sha256 \
    -p "$port" "$user@$addr" "$script"
"""


class Bench:
    def __init__(self, lab: Lab, work: Path):
        self.lab, self.work = lab, work
        for host in lab.hosts:
            plugin = host.home / "wp" / "plugins" / "cdn-enabler"
            plugin.mkdir(parents=True)
            (plugin / "cdn-enabler.php").write_text("<?php\n")
            (host.home / "conf.txt").write_text("original\n")
            subprocess.run(["chown", "-R", f"{host.user}:", str(host.home)], check=True)
        self.inventory = lab.inventory(work / "inventory.yaml", hosts={h.name: {"vars": {
            "src": "~/wp/plugins/cdn-enabler", "dst": "~/wp/plugins/.cdn-enabler.opskit", "file": "~/conf.txt",
            "expect": "absent"}} for h in lab.hosts})
        self.hosts_file = work / "hosts.txt"
        self.hosts_file.write_text("".join(f"{h.port} {h.user} {h.address}\n" for h in lab.hosts))
        (work / "change-one.sh").write_text(CHANGE_ONE)
        self.env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "OPSKIT_INVENTORY")}
        self.env["OPSKIT_STATE_DIR"] = str(work / "opskit-state")
        self.ssh_env = dict(self.env, APPLY=APPLY, UNDO=UNDO, BENCH_SSH_CONFIG=str(lab.ssh_config),
                            BENCH_KEY=str(lab.client_key), BENCH_KNOWN_HOSTS=str(lab.known_hosts))
        self.run_id: str | None = None

    def opskit_apply(self) -> float:
        argv = OPSKIT + ["-i", str(self.inventory), "run", "rename-hold", "--playbook-path", str(PLAYBOOKS), "--all",
                         "--hold", "10m", "--detach", "--json", "--yes", "--forks", str(len(self.lab.hosts))]
        seconds, result = run_command(argv, env=self.env)
        doc = json.loads(result.stdout or "{}")
        bad = {h: o["status"] for h, o in doc.get("hosts", {}).items() if o["status"] != "held"}
        if result.returncode != 0 or bad or len(doc.get("hosts", {})) != len(self.lab.hosts):
            raise BenchmarkError(f"opskit run: exit {result.returncode}, not held: {bad}\n{result.stderr[-2000:]}")
        self.run_id = doc["run_id"]
        return seconds

    def opskit_undo(self) -> float:
        seconds, result = run_command(OPSKIT + ["rollback", str(self.run_id)], env=self.env)
        if result.returncode != 0 or result.stdout.count(": rolled_back") != len(self.lab.hosts):
            raise BenchmarkError(f"opskit rollback: exit {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return seconds

    def ssh(self, var: str, word: str) -> float:
        argv = ["xargs", "-a", str(self.hosts_file), "-P", str(len(self.lab.hosts)), "-L", "1",
                "sh", str(self.work / "change-one.sh"), var]
        seconds, result = run_command(argv, env=self.ssh_env)
        if result.returncode != 0 or result.stdout.split().count(word) != len(self.lab.hosts):
            raise BenchmarkError(f"ssh {var}: exit {result.returncode}: {result.stdout[-500:]} {result.stderr[-1000:]}")
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("change_vs_ssh: needs root (the lab creates users and starts sshd)", file=sys.stderr)
        return 2

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="opskit-bench-change-"))
    os.chmod(work, 0o755)
    lab = Lab(work / "lab", count=args.hosts, prefix=PREFIX, subnet=SUBNET)
    try:
        lab.start()
        bench = Bench(lab, work)
        methods = {
            "opskit-apply": (bench.opskit_apply, "opskit run rename-hold --all --detach (2 changes + check, guarded)"),
            "opskit-undo": (bench.opskit_undo, "opskit rollback RUN (guard undoes both, after-rollback check)"),
            "ssh-apply": (lambda: bench.ssh("APPLY", "applied"), f"xargs -P {args.hosts}: one ssh per host, same changes"),
            "ssh-undo": (lambda: bench.ssh("UNDO", "undone"), f"xargs -P {args.hosts}: one ssh per host, undo"),
        }
        samples: dict[str, list] = {name: [] for name in methods}
        for number in range(0, args.rounds + 1):   # round 0 warms up
            line = []
            for name, (fn, _) in methods.items():
                figures = measure(fn, in_process=False)
                if number:
                    samples[name].append(figures)
                line.append(f"{name} {figures[0] * 1000:.0f}ms")
            print(("warm-up" if not number else f"round {number}/{args.rounds}") + ": " + ", ".join(line), flush=True)
        results = {name: summarize(values) for name, values in samples.items()}
        print_table(results, {name: d for name, (_, d) in methods.items()})
        ratios = {"apply": results["opskit-apply"]["median"] / results["ssh-apply"]["median"],
                  "undo": results["opskit-undo"]["median"] / results["ssh-undo"]["median"]}
        print(f"\nratio opskit / OpenSSH floor (medians): apply {ratios['apply']:.2f}, undo {ratios['undo']:.2f}")
        document = {"benchmark": "change_vs_ssh", "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "hosts": args.hosts, "rounds": args.rounds, "machine": machine_info(),
                    "methods": {name: {"what": d, **results[name]} for name, (_, d) in methods.items()},
                    "ratios": {k: round(v, 3) for k, v in ratios.items()}, "apply_script": APPLY, "undo_script": UNDO}
        output = args.output or ROOT / "benchmarks" / "results" / f"change_vs_ssh-{dt.date.today().isoformat()}.json"
        output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {output}")
        return 0
    except BenchmarkError as exc:
        print(f"change_vs_ssh: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop_lab(lab, work)


if __name__ == "__main__":
    sys.exit(main())
