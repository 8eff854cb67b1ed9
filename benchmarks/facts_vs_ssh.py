#!/usr/bin/env python3
"""Benchmark: `opskit run facts` on 20 hosts vs. the same probes with plain OpenSSH.

Starts a private lab (lab/sshd.py: one real sshd per simulated host, on
127.0.30.1-20, users opskit-b1..20), then times, N rounds each:

  opskit-cli      `opskit -i INV run facts --all --json` as a subprocess
  ssh-xargs       one `ssh` per host running an equivalent sh script, `xargs -P 20`
  ssh-xargs-c25519 the same with -o KexAlgorithms=curve25519-sha256
  opskit-inproc   opskit.runner.Run(...).execute() inside this process (no start-up)
  startup:*       interpreter / import / `opskit --help` start-up alone

and prints min / median / max wall time, and writes the figures (plus machine
info) to benchmarks/results/facts_vs_ssh-<date>.json.

Needs root (the lab creates users and starts sshd). The lab is always stopped
and its users removed, also on Ctrl-C or SIGTERM.

    /work/main/.venv/bin/python benchmarks/facts_vs_ssh.py --rounds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import pwd
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.sshd import Lab  # noqa: E402

PREFIX = "opskit-b"        # users opskit-b1..N: never clash with the dev lab (opskit-h*) or the tests (opskit-t*)
SUBNET = "127.0.30."
BIN = Path(sys.executable).parent
OPSKIT = [str(BIN / "opskit")] if (BIN / "opskit").exists() else [sys.executable, "-m", "opskit"]

# The shell equivalent of the facts playbook (probes system, php, nginx, apache,
# wordpress with no wordpress.root in the inventory, i.e. search the usual roots).
# opskit additionally runs its "hello" script first (home, clock, overdue
# rollbacks; a second exec on the same connection) and fences each probe's output.
FACTS_SCRIPT = r"""
if [ -r /etc/os-release ]; then . /etc/os-release; echo "os=$PRETTY_NAME"; fi
echo "kernel=$(uname -r 2>/dev/null)"
echo "user=$(id -un 2>/dev/null)"
echo "home=$HOME"
echo "cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
[ -r /proc/loadavg ] && echo "loadavg=$(cat /proc/loadavg)"
PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
for b in php php8.3 php8.2 php8.1 php7.4; do p=$(command -v "$b" 2>/dev/null) && { echo "php.path=$p"; echo "php.version=$("$p" -v 2>&1 | head -n 1)"; break; }; done
for b in nginx; do p=$(command -v "$b" 2>/dev/null) && { echo "nginx.path=$p"; echo "nginx.version=$("$p" -v 2>&1 | head -n 1)"; break; }; done
for b in apache2 httpd; do p=$(command -v "$b" 2>/dev/null) && { echo "apache.path=$p"; echo "apache.version=$("$p" -v 2>&1 | head -n 1)"; break; }; done
for d in "$HOME/public_html" "$HOME/www" "$HOME/htdocs" "$HOME/httpdocs" "$HOME/web" "$HOME" /var/www/html /var/www/wordpress /var/www; do
  echo "searched=$d"
  if [ -f "$d/wp-config.php" ]; then echo "wordpress.root=$d"; break; fi
done
echo "facts=done"
"""

# Run by xargs once per host: one ssh, its output and exit status into OUTDIR.
# usage: sh probe-one.sh OUTDIR KEX PORT USER ADDRESS     (KEX "default" = OpenSSH's own order)
PROBE_ONE = r"""out=$1 kex=$2 port=$3 user=$4 addr=$5
set --
[ "$kex" = default ] || set -- -o "KexAlgorithms=$kex"
ssh -F "$BENCH_SSH_CONFIG" -i "$BENCH_KEY" -o UserKnownHostsFile="$BENCH_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes "$@" \
    -p "$port" "$user@$addr" "$FACTS_SCRIPT" >"$out/$addr.out" 2>"$out/$addr.err"
echo $? >"$out/$addr.rc"
"""


class BenchmarkError(RuntimeError):
    pass


def run_command(argv: list[str], env: dict | None = None, timeout: float = 120) -> tuple[float, subprocess.CompletedProcess]:
    """Run argv in its own process group; wall seconds and the result. On any
    exception (Ctrl-C, SIGTERM, timeout) the whole group is killed: xargs' ssh children too."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    seconds = time.perf_counter() - started
    return seconds, subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


# -- the measured methods ---------------------------------------------------
class Bench:
    def __init__(self, lab: Lab, work: Path, inventory: Path):
        self.lab = lab
        self.work = work
        self.inventory = inventory
        self.state_dir = work / "opskit-state"
        self.hosts_file = work / "hosts.txt"
        self.hosts_file.write_text("".join(f"{h.port} {h.user} {h.address}\n" for h in lab.hosts))
        self.probe_one = work / "probe-one.sh"
        self.probe_one.write_text(PROBE_ONE)
        self.env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "OPSKIT_INVENTORY")}
        self.env["OPSKIT_STATE_DIR"] = str(self.state_dir)
        self.ssh_env = dict(self.env, FACTS_SCRIPT=FACTS_SCRIPT, BENCH_SSH_CONFIG=str(lab.ssh_config),
                            BENCH_KEY=str(lab.client_key), BENCH_KNOWN_HOSTS=str(lab.known_hosts))
        self.expected_users = {h.name: h.user for h in lab.hosts}
        self.rounds_done = 0

    def opskit_argv(self) -> list[str]:
        return OPSKIT + ["-i", str(self.inventory), "run", "facts", "--all", "--json"]

    def check_outcomes(self, hosts: dict, where: str) -> None:
        if set(hosts) != set(self.expected_users):
            raise BenchmarkError(f"{where}: expected hosts {sorted(self.expected_users)}, got {sorted(hosts)}")
        bad = {name: (o["status"], o.get("error")) for name, o in hosts.items() if o["status"] != "ok"}
        if bad:
            raise BenchmarkError(f"{where}: hosts not ok: {bad}")
        for name, outcome in hosts.items():
            facts = outcome["steps"][0]["value"]
            if facts["system"]["user"] != self.expected_users[name]:
                raise BenchmarkError(f"{where}: {name}: facts say user {facts['system']['user']!r}")

    def opskit_cli(self) -> float:
        seconds, result = run_command(self.opskit_argv(), env=self.env)
        if result.returncode != 0:
            raise BenchmarkError(f"opskit exited {result.returncode}\nstderr: {result.stderr[-3000:]}\nstdout: {result.stdout[-3000:]}")
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"opskit --json printed no JSON ({exc}): {result.stdout[:500]!r}") from None
        self.check_outcomes(document["hosts"], "opskit-cli")
        return seconds

    def ssh_xargs(self, kex: str = "default") -> float:
        self.rounds_done += 1
        out = self.work / f"ssh-out-{self.rounds_done}"
        out.mkdir()
        argv = ["xargs", "-a", str(self.hosts_file), "-P", str(len(self.lab.hosts)), "-L", "1",
                "sh", str(self.probe_one), str(out), kex]
        seconds, result = run_command(argv, env=self.ssh_env)
        problems = []
        if result.returncode != 0:
            problems.append(f"xargs exited {result.returncode}: {result.stderr.strip()[-500:]}")
        for host in self.lab.hosts:
            rc_file = out / f"{host.address}.rc"
            rc = rc_file.read_text().strip() if rc_file.exists() else "missing"
            text = (out / f"{host.address}.out").read_text() if (out / f"{host.address}.out").exists() else ""
            if rc != "0":
                err = (out / f"{host.address}.err").read_text(errors="replace").strip()[-300:]
                problems.append(f"{host.name}: ssh exit {rc}: {err}")
            elif f"user={host.user}\n" not in text or "facts=done\n" not in text:
                problems.append(f"{host.name}: unexpected output {text[:300]!r}")
        if problems:
            raise BenchmarkError(f"ssh via xargs (kex {kex}):\n  " + "\n  ".join(problems))
        shutil.rmtree(out, ignore_errors=True)
        return seconds

    def startup(self, argv: list[str]) -> float:
        seconds, result = run_command(argv, env=self.env)
        if result.returncode != 0:
            raise BenchmarkError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-1000:]}")
        return seconds


class InProcess:
    """opskit.runner.Run(...).execute() built like cli.run_cmd does, minus the CLI."""

    def __init__(self, bench: Bench):
        os.environ.pop("SSH_AUTH_SOCK", None)
        os.environ["OPSKIT_STATE_DIR"] = str(bench.state_dir)
        from opskit import inventory, playbook
        from opskit.journal import Journal, new_run_id
        from opskit.runner import Run, RunOptions

        self.bench = bench
        self.Run, self.RunOptions, self.new_run_id = Run, RunOptions, new_run_id
        self.book = playbook.load("facts")
        self.selected = inventory.load(bench.inventory).select((), (), True)
        self.journal = Journal(bench.work / "inproc-journal")

    def __call__(self) -> float:
        run = self.Run(self.new_run_id(), self.book, self.selected, self.RunOptions(forks=20), self.journal,
                       inventory_file=str(self.bench.inventory))
        started = time.perf_counter()
        try:
            outcomes = run.execute()
        except BaseException:
            run.interrupt.set()
            raise
        seconds = time.perf_counter() - started
        self.bench.check_outcomes({name: o.to_json() for name, o in outcomes.items()}, "opskit-inproc")
        return seconds


# -- facts about the setup (not timed) ----------------------------------------
def negotiated_kex_openssh(lab: Lab, kex: str | None) -> str | None:
    host = lab.hosts[0]
    argv = ["ssh", "-v", "-F", str(lab.ssh_config), "-i", str(lab.client_key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
    argv += ["-o", f"KexAlgorithms={kex}"] if kex else []
    argv += ["-p", str(host.port), f"{host.user}@{host.address}", "true"]
    _, result = run_command(argv, env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}, timeout=30)
    if result.returncode != 0:
        raise BenchmarkError(f"ssh to {host.name} exited {result.returncode}: {result.stderr.strip()[-1500:]}")
    for line in result.stderr.splitlines():
        if "kex: algorithm:" in line:
            return line.split("kex: algorithm:", 1)[1].strip()
    return None


def negotiated_kex_opskit(inventory: Path) -> str | None:
    from opskit import inventory as inv
    from opskit.transport import Session

    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Kex: "):
                seen.append(message[5:])

    logger = logging.getLogger("paramiko.transport")
    handler, level = Grab(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        host = inv.load(inventory).select((), (), True)[0]
        with Session(host) as session:
            session.exec("true")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return seen[0] if seen else None


def machine_info() -> dict:
    import paramiko

    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    try:
        from importlib.metadata import version
        opskit_version = version("opskit")
    except Exception:
        opskit_version = None
    return {
        "hostname": platform.node(),
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "openssh": (ssh_v.stderr or ssh_v.stdout).strip(),
        "paramiko": paramiko.__version__,
        "opskit": opskit_version,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def foreign_load_note() -> list[str]:
    """Other sshd labs or test runs on this machine share the CPUs: say so in the results."""
    result = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True)
    labs, notes = set(), []
    for line in result.stdout.splitlines():
        if "sshd -D -f" in line and "/opskit-bench-" not in line:
            labs.add(line.split(" -f ", 1)[1].split()[0].rsplit("/", 2)[0])
        elif "pytest" in line and "a pytest run is active" not in notes:
            notes.append("a pytest run is active")
    if labs:
        notes.insert(0, f"other sshd labs are running ({', '.join(sorted(labs))})")
    return notes


def another_instance(count: int) -> str | None:
    """A benchmark lab already running (or its users busy) would be hijacked by ours: say which."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in ps.splitlines():
        if "sshd -D -f " in line and "/opskit-bench-" in line:
            return f"a benchmark lab is running: {line.strip()[:160]}"
    for index in range(1, count + 1):
        user = f"{PREFIX}{index}"
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        if subprocess.run(["pgrep", "-u", user], capture_output=True).returncode == 0:
            return f"user {user} has running processes"
    return None


# -- main ------------------------------------------------------------------------
def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine so far (every process: client, lab sshds, anything else)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(fn, in_process: bool) -> tuple[float, float, float]:
    """(wall, client CPU, machine CPU) seconds of one call. Client CPU is this process's own
    (in-process runs) or that of the reaped process tree (opskit; xargs + sh + ssh)."""
    who = resource.RUSAGE_SELF if in_process else resource.RUSAGE_CHILDREN
    cpu0, busy0 = cpu_seconds(who), machine_busy_seconds()
    wall = fn()
    return wall, cpu_seconds(who) - cpu0, machine_busy_seconds() - busy0


def stats(values: list[float]) -> dict:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4), "max": round(max(values), 4),
            "samples": [round(v, 4) for v in values]}


def summarize(samples: list[tuple[float, float, float]]) -> dict:
    walls, cpus, busy = zip(*samples)
    return {**stats(list(walls)), "client_cpu": stats(list(cpus)), "machine_cpu": stats(list(busy))}


def print_table(results: dict, descriptions: dict) -> None:
    width = max(len(n) for n in results)
    print(f"\n{'method':<{width}}  {'min':>7}  {'median':>7}  {'max':>7}  {'client cpu':>10}  {'machine cpu':>11}   what")
    for name, f in results.items():
        print(f"{name:<{width}}  {f['min'] * 1000:>5.0f}ms  {f['median'] * 1000:>5.0f}ms  {f['max'] * 1000:>5.0f}ms  "
              f"{f['client_cpu']['median'] * 1000:>8.0f}ms  {f['machine_cpu']['median'] * 1000:>9.0f}ms   {descriptions[name]}")
    print("(wall: min/median/max; cpu: medians of user+sys seconds; machine cpu counts every process on the box,"
          " the lab's sshds included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per method (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--hosts", type=int, default=20, help="simulated hosts (default 20)")
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process Run.execute() timing")
    parser.add_argument("--output", type=Path, help="JSON file (default benchmarks/results/facts_vs_ssh-<date>.json)")
    args = parser.parse_args()
    if args.rounds < 1 or not 1 <= args.hosts <= 200:
        parser.error("--rounds must be >= 1 and --hosts between 1 and 200")
    if os.geteuid() != 0:
        print("facts_vs_ssh: needs root (the lab creates users and starts sshd)", file=sys.stderr)
        return 2
    for tool in ("ssh", "xargs", "useradd"):
        if not shutil.which(tool):
            print(f"facts_vs_ssh: {tool} not found", file=sys.stderr)
            return 2

    busy = another_instance(args.hosts)
    if busy:
        print(f"facts_vs_ssh: refusing to start, another run seems active ({busy}); "
              f"stop it first (its users are {PREFIX}1..N, its dir /tmp/opskit-bench-*)", file=sys.stderr)
        return 2

    # SIGTERM takes the same way out as Ctrl-C, so the finally below always runs.
    def on_sigterm(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_sigterm)

    work = Path(tempfile.mkdtemp(prefix="opskit-bench-"))
    os.chmod(work, 0o755)   # mkdtemp makes it 0700: the hosts' users must reach their homes and authorized_keys below
    lab = Lab(work / "lab", count=args.hosts, prefix=PREFIX, subnet=SUBNET)
    try:
        print(f"starting {args.hosts} sshd hosts on {SUBNET}1-{args.hosts} in {work} …", flush=True)
        started = time.perf_counter()
        lab.start()
        print(f"lab up in {time.perf_counter() - started:.1f}s", flush=True)
        inventory = lab.inventory(work / "inventory.yaml")
        bench = Bench(lab, work, inventory)

        python = sys.executable
        methods = {
            "opskit-cli": (bench.opskit_cli, "opskit -i INV run facts --all --json (subprocess)"),
            "ssh-xargs": (lambda: bench.ssh_xargs("default"), f"xargs -P {args.hosts}: one ssh per host, OpenSSH default kex"),
            "ssh-xargs-c25519": (lambda: bench.ssh_xargs("curve25519-sha256"), "the same with -o KexAlgorithms=curve25519-sha256"),
        }
        if not args.no_inprocess:
            methods["opskit-inproc"] = (InProcess(bench), "Run(...).execute() in this process (no start-up, imports done)")
        methods.update({
            "startup:python": (lambda: bench.startup([python, "-c", "pass"]), "python -c pass"),
            "startup:import-cli": (lambda: bench.startup([python, "-c", "import opskit.cli"]), 'python -c "import opskit.cli"'),
            "startup:import-runner": (lambda: bench.startup([python, "-c", "import opskit.runner"]),
                                      'python -c "import opskit.runner" (paramiko, fabric, pydantic)'),
            "startup:opskit-help": (lambda: bench.startup(OPSKIT + ["--help"]), "opskit --help"),
        })

        kex = {"openssh_default": negotiated_kex_openssh(lab, None),
               "openssh_forced": negotiated_kex_openssh(lab, "curve25519-sha256"),
               "opskit_paramiko": negotiated_kex_opskit(inventory)}
        print(f"negotiated kex: ssh default {kex['openssh_default']}; ssh forced {kex['openssh_forced']}; "
              f"opskit (paramiko) {kex['opskit_paramiko']}", flush=True)

        info = machine_info()
        load_before = loadavg()
        foreign = foreign_load_note()
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in methods}
        for round_number in range(-args.warmup + 1, args.rounds + 1):
            label = f"warm-up {round_number + args.warmup}/{args.warmup}" if round_number <= 0 else f"round {round_number}/{args.rounds}"
            line = []
            # Interleaved: every method sees the same background load in each round.
            for name, (fn, _) in methods.items():
                figures = measure(fn, in_process=name == "opskit-inproc")
                if round_number > 0:
                    samples[name].append(figures)
                line.append(f"{name} {figures[0] * 1000:.0f}ms")
            print(f"{label}: " + ", ".join(line), flush=True)
        load_after = loadavg()

        results = {name: summarize(values) for name, values in samples.items()}
        print_table(results, {name: d for name, (_, d) in methods.items()})
        if foreign:
            print("\nnote: " + "; ".join(foreign) + " — the CPUs were shared")

        document = {
            "benchmark": "facts_vs_ssh",
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "hosts": args.hosts,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "unit": "seconds: min/median/max wall clock; client_cpu = user+sys of opskit or of xargs+sh+ssh "
                    "(in-process: this process); machine_cpu = whole machine busy time from /proc/stat",
            "machine": info,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "concurrent_activity": foreign,
            "negotiated_kex": kex,
            "methods": {name: {"what": d, **results[name]} for name, (_, d) in methods.items()},
            "commands": {
                "opskit-cli": " ".join(bench.opskit_argv()),
                "ssh-xargs": f"xargs -a HOSTS -P {args.hosts} -L 1 sh probe-one.sh OUT default",
                "ssh-xargs-c25519": f"xargs -a HOSTS -P {args.hosts} -L 1 sh probe-one.sh OUT curve25519-sha256",
                "probe-one.sh": PROBE_ONE,
                "facts_script": FACTS_SCRIPT,
            },
        }
        output = args.output or ROOT / "benchmarks" / "results" / f"facts_vs_ssh-{dt.date.today().isoformat()}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {output}")
        return 0
    except Exception as exc:
        if not isinstance(exc, BenchmarkError):
            traceback.print_exc()
        print(f"\nfacts_vs_ssh: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nfacts_vs_ssh: interrupted", file=sys.stderr)
        return 130
    finally:
        print("stopping the lab and removing its users …", file=sys.stderr, flush=True)
        stop_lab(lab, work)


def stop_lab(lab: Lab, work: Path) -> None:
    """Stop the lab, remove its users and its folder; a second Ctrl-C must not cut that short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        lab.stop()
    finally:
        lab.remove_users()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
