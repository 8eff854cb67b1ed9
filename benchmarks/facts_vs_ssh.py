#!/usr/bin/env python3
"""Benchmark: `opskit run facts` on N hosts (default 20) vs. the same probes with plain OpenSSH.

Starts a private lab (lab/sshd.py: one real sshd per simulated host, on
127.0.30.1-N, users opskit-b1..N), then times, N rounds each:

  opskit-cli       `opskit -i INV run facts --all --json --forks F` as a subprocess
  ssh-xargs        one `ssh` per host running an equivalent sh script, `xargs -P N` (N = hosts)
  ssh-xargs-c25519 the same with -o KexAlgorithms=curve25519-sha256
  opskit-inproc    opskit.runner.Run(...).execute() inside this process (no start-up)
  startup:*        interpreter / import / `opskit --help` start-up alone

and prints min / median / max wall time, the client CPU (per host too) and the peak RSS,
and writes the figures (plus machine info) to
benchmarks/results/facts_vs_ssh-<date>[-<N>hosts].json.

The opskit measured is the one in --checkout (default: this script's own checkout), also
when the venv has another checkout installed in editable mode: the subprocesses run with
PYTHONPATH=CHECKOUT and the in-process runs import from it. --baseline DIR times another
tree's CLI in the same rounds (baseline:* methods), for a before/after under the same load.

Needs root (the lab creates users and starts sshd). The lab is always stopped
and its users removed, also on Ctrl-C or SIGTERM.

    /work/main/.venv/bin/python benchmarks/facts_vs_ssh.py --rounds 5 [--hosts 50 --forks 20 50]
"""

from __future__ import annotations

import argparse
import copy
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
# opskit also does its "hello" (home, clock, overdue rollbacks: folded into the probe
# batch's exec since 2026-12, a second exec before that) and fences each probe's output.
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
# With BENCH_TIME set (the untimed RSS pass only), ssh runs under GNU time, which writes the
# ssh process's peak RSS (KiB) and user/sys seconds to OUTDIR/ADDRESS.rusage.
PROBE_ONE = r"""out=$1 kex=$2 port=$3 user=$4 addr=$5
set -- ssh
[ "$kex" = default ] || set -- "$@" -o "KexAlgorithms=$kex"
[ -z "$BENCH_TIME" ] || set -- "$BENCH_TIME" -f "%M %U %S" -o "$out/$addr.rusage" "$@"
"$@" -F "$BENCH_SSH_CONFIG" -i "$BENCH_KEY" -o UserKnownHostsFile="$BENCH_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes \
    -p "$port" "$user@$addr" "$FACTS_SCRIPT" >"$out/$addr.out" 2>"$out/$addr.err"
echo $? >"$out/$addr.rc"
"""

# Run as `python -c PHASES opskit-args...` once per round (untimed) to see where the CLI's
# wall time goes: an audit hook notes (CLOCK_MONOTONIC, like the benchmark's own clock) when
# the interpreter is up, when the first and the last TCP connection start, and the exit.
PHASES = r"""
import atexit, json, os, sys, time
marks = {"interpreter": time.monotonic()}
connects = []
def hook(event, args):
    if event == "socket.connect":
        connects.append(time.monotonic())
sys.addaudithook(hook)
def done():
    with open("/proc/self/status") as fh:
        marks["vm_hwm_kib"] = next((int(l.split()[1]) for l in fh if l.startswith("VmHWM:")), None)
    marks["first_connect"] = connects[0] if connects else None
    marks["last_connect"] = connects[-1] if connects else None
    marks["connects"] = len(connects)
    marks["exit"] = time.monotonic()
    with open(os.environ["BENCH_PHASES_FILE"], "w") as fh:
        json.dump(marks, fh)
atexit.register(done)
sys.argv = ["opskit"] + sys.argv[1:]
from opskit.cli import main
main()
"""

class BenchmarkError(RuntimeError):
    pass


def run_command(argv: list[str], env: dict | None = None, timeout: float = 120,
                cwd: str | Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run argv in its own process group; wall seconds and the result. On any
    exception (Ctrl-C, SIGTERM, timeout) the whole group is killed: xargs' ssh children too."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
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
    def __init__(self, lab: Lab, work: Path, inventory: Path, checkout: Path = ROOT, bytecode_cache: bool = True):
        self.lab = lab
        self.work = work
        self.inventory = inventory
        self.checkout = checkout
        self.state_dir = work / "opskit-state"
        self.hosts_file = work / "hosts.txt"
        self.hosts_file.write_text("".join(f"{h.port} {h.user} {h.address}\n" for h in lab.hosts))
        self.probe_one = work / "probe-one.sh"
        self.probe_one.write_text(PROBE_ONE)
        self.env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "OPSKIT_INVENTORY")}
        self.env["OPSKIT_STATE_DIR"] = str(self.state_dir)
        # The checkout under test comes first on the path: ahead of the cwd (the work dir, no
        # opskit in it) and of an editable install of another checkout (its finder comes last).
        self.env["PYTHONPATH"] = os.pathsep.join([str(checkout)] + ([self.env["PYTHONPATH"]] if self.env.get("PYTHONPATH") else []))
        if bytecode_cache:
            # Like an installed package (pip compiles it): byte code is cached, here under the
            # work dir (nothing is written into the checkout); the warm-up round fills it.
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        self.ssh_env = dict(self.env, FACTS_SCRIPT=FACTS_SCRIPT, BENCH_SSH_CONFIG=str(lab.ssh_config),
                            BENCH_KEY=str(lab.client_key), BENCH_KNOWN_HOSTS=str(lab.known_hosts))
        self.ssh_env.pop("BENCH_TIME", None)
        self.expected_users = {h.name: h.user for h in lab.hosts}
        self.rounds_done = 0

    def opskit_argv(self, forks: int) -> list[str]:
        return OPSKIT + ["-i", str(self.inventory), "run", "facts", "--all", "--json", "--forks", str(forks)]

    def which_opskit(self) -> str:
        """The opskit package the subprocesses import (must be the checkout's)."""
        _, result = run_command([sys.executable, "-c", "import opskit; print(opskit.__file__)"], env=self.env, cwd=self.work)
        where = result.stdout.strip()
        if result.returncode != 0 or not Path(where).resolve().is_relative_to(self.checkout.resolve()):
            raise BenchmarkError(f"the subprocesses import opskit from {where!r}, not from {self.checkout}: {result.stderr[-500:]}")
        return where

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

    def opskit_cli(self, forks: int) -> float:
        seconds, result = run_command(self.opskit_argv(forks), env=self.env, cwd=self.work)
        self._check_cli(result)
        return seconds

    def _check_cli(self, result: subprocess.CompletedProcess) -> None:
        if result.returncode != 0:
            raise BenchmarkError(f"opskit exited {result.returncode}\nstderr: {result.stderr[-3000:]}\nstdout: {result.stdout[-3000:]}")
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"opskit --json printed no JSON ({exc}): {result.stdout[:500]!r}") from None
        self.check_outcomes(document["hosts"], "opskit-cli")

    def phases(self, forks: int) -> dict:
        """One untimed CLI run with marks (see PHASES): milliseconds from the spawn to each, and
        the process's peak RSS. That comes from GNU time (its wait4 of the CLI): a child forked
        from this big benchmark process inherits this process's RSS as its own ru_maxrss."""
        marks_file, rss_file = self.work / "phases.json", self.work / "phases.rss"
        argv = [sys.executable, "-c", PHASES] + self.opskit_argv(forks)[len(OPSKIT):]
        if GNU_TIME:
            argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file)] + argv
        spawned = time.monotonic()
        seconds, result = run_command(argv, env=dict(self.env, BENCH_PHASES_FILE=str(marks_file)), cwd=self.work)
        self._check_cli(result)
        marks = json.loads(marks_file.read_text())
        marks_file.unlink()
        ms = {k: round((marks[k] - spawned) * 1000, 1)
              for k in ("interpreter", "first_connect", "last_connect", "exit") if marks.get(k) is not None}
        ms["reaped"] = round(seconds * 1000, 1)
        ms["connects"] = marks["connects"]
        ms["vm_hwm_mib"] = round(marks["vm_hwm_kib"] / 1024, 1) if marks.get("vm_hwm_kib") else None
        if GNU_TIME and rss_file.exists():
            ms["peak_rss_mib"] = round(int(rss_file.read_text().split()[-1]) / 1024, 1)
            rss_file.unlink()
        return ms

    def ssh_xargs(self, kex: str = "default", rusage_pass: bool = False) -> float | list[tuple[int, float, float]]:
        """Timed: wall seconds. rusage_pass: each ssh under GNU time, [(max RSS KiB, user, sys)] per ssh."""
        self.rounds_done += 1
        out = self.work / f"ssh-out-{self.rounds_done}"
        out.mkdir()
        argv = ["xargs", "-a", str(self.hosts_file), "-P", str(len(self.lab.hosts)), "-L", "1",
                "sh", str(self.probe_one), str(out), kex]
        env = dict(self.ssh_env, BENCH_TIME=GNU_TIME) if rusage_pass else self.ssh_env
        seconds, result = run_command(argv, env=env, cwd=self.work)
        problems = []
        if result.returncode != 0:
            problems.append(f"xargs exited {result.returncode}: {result.stderr.strip()[-500:]}")
        usages = []
        for host in self.lab.hosts:
            rc_file = out / f"{host.address}.rc"
            rc = rc_file.read_text().strip() if rc_file.exists() else "missing"
            text = (out / f"{host.address}.out").read_text() if (out / f"{host.address}.out").exists() else ""
            if rc != "0":
                err = (out / f"{host.address}.err").read_text(errors="replace").strip()[-300:]
                problems.append(f"{host.name}: ssh exit {rc}: {err}")
            elif f"user={host.user}\n" not in text or "facts=done\n" not in text:
                problems.append(f"{host.name}: unexpected output {text[:300]!r}")
            if rusage_pass:
                try:
                    rss, user, system = (out / f"{host.address}.rusage").read_text().split()[-3:]
                    usages.append((int(rss), float(user), float(system)))
                except (OSError, ValueError) as exc:
                    problems.append(f"{host.name}: no rusage from {GNU_TIME}: {exc}")
        if problems:
            raise BenchmarkError(f"ssh via xargs (kex {kex}):\n  " + "\n  ".join(problems))
        shutil.rmtree(out, ignore_errors=True)
        return usages if rusage_pass else seconds

    def cli_fixed_cost(self) -> float:
        """`opskit run facts` on one host whose port refuses (127.0.30.254:9, nothing listens
        there): the CLI's whole cost per invocation with no SSH work, start-up to teardown."""
        inventory = self.work / "refused.yaml"
        if not inventory.exists():
            inventory.write_text(f"defaults:\n  use_agent: false\n  known_hosts: {self.lab.known_hosts}\n"
                                 f"hosts:\n  refused:\n    address: {SUBNET}254\n    port: 9\n    user: nobody\n")
        argv = OPSKIT + ["-i", str(inventory), "run", "facts", "--all", "--json"]
        seconds, result = run_command(argv, env=self.env, cwd=self.work)
        try:
            status = json.loads(result.stdout)["hosts"]["refused"]["status"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise BenchmarkError(f"opskit on a refusing host: exit {result.returncode}, no outcome ({exc}): "
                                 f"{result.stderr[-1000:]}") from None
        if result.returncode != 1 or status != "unreachable":
            raise BenchmarkError(f"opskit on a refusing host: exit {result.returncode}, status {status}")
        return seconds

    def startup(self, argv: list[str]) -> float:
        seconds, result = run_command(argv, env=self.env, cwd=self.work)
        if result.returncode != 0:
            raise BenchmarkError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-1000:]}")
        return seconds


# GNU time (not the shell keyword): the RSS pass of the ssh floor needs each ssh's ru_maxrss.
GNU_TIME = next((t for t in ("/usr/bin/time", shutil.which("time")) if t and os.access(t, os.X_OK)), None)

# Everything `opskit run facts` does before its first connection, minus the CLI itself.
UNTIL_CONNECT = """import sys
from opskit import cli, inventory, playbook
import opskit.report, opskit.runner
playbook.load("facts")
inventory.load(sys.argv[1]).select((), (), True)
"""


class InProcess:
    """opskit.runner.Run(...).execute() built like cli.run_cmd does, minus the CLI."""

    def __init__(self, bench: Bench, forks: int):
        os.environ.pop("SSH_AUTH_SOCK", None)
        os.environ["OPSKIT_STATE_DIR"] = str(bench.state_dir)
        from opskit import inventory, playbook
        from opskit.journal import Journal, new_run_id
        from opskit.runner import Run, RunOptions

        self.bench = bench
        self.forks = forks
        self.Run, self.RunOptions, self.new_run_id = Run, RunOptions, new_run_id
        self.book = playbook.load("facts")
        self.selected = inventory.load(bench.inventory).select((), (), True)
        self.journal = Journal(bench.work / "inproc-journal")

    def __call__(self) -> float:
        run = self.Run(self.new_run_id(), self.book, self.selected, self.RunOptions(forks=self.forks), self.journal,
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


def machine_info(checkout: Path | None = None) -> dict:
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
        **({"checkout": checkout_info(checkout)} if checkout else {}),
    }


def checkout_info(checkout: Path) -> dict:
    """Which code was measured: the checkout's commit and whether its tree had changes."""
    def git(*args: str) -> str | None:
        result = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", "opskit")
    return {"path": str(checkout), "commit": git("rev-parse", "HEAD"),
            "opskit_changed_since_commit": None if status is None else bool(status)}


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


def print_table(results: dict, descriptions: dict, hosts: int | None = None) -> None:
    width = max(len(n) for n in results)
    per_host = f"  {'cpu/host':>8}" if hosts else ""
    print(f"\n{'method':<{width}}  {'min':>7}  {'median':>7}  {'max':>7}  {'client cpu':>10}{per_host}  {'machine cpu':>11}   what")
    for name, f in results.items():
        cpu = f["client_cpu"]["median"]
        print(f"{name:<{width}}  {f['min'] * 1000:>5.0f}ms  {f['median'] * 1000:>5.0f}ms  {f['max'] * 1000:>5.0f}ms  "
              f"{cpu * 1000:>8.0f}ms" + (f"  {cpu * 1000 / hosts:>6.1f}ms" if hosts and "startup:" not in name else
                                         " " * 10 if hosts else "")
              + f"  {f['machine_cpu']['median'] * 1000:>9.0f}ms   {descriptions[name]}")
    print("(wall: min/median/max; cpu: medians of user+sys seconds; machine cpu counts every process on the box,"
          " the lab's sshds included)")


def ratio_figures(samples: dict, name: str, floor: str) -> dict:
    """name / floor: of the medians, and the median of the per-round ratios (same round, same load)."""
    walls = [s[0] for s in samples[name]]
    floors = [s[0] for s in samples[floor]]
    return {"of_medians": round(statistics.median(walls) / statistics.median(floors), 3),
            "median_of_rounds": round(statistics.median(w / f for w, f in zip(walls, floors)), 3),
            "rounds": [round(w / f, 3) for w, f in zip(walls, floors)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per method (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--hosts", type=int, default=20, help="simulated hosts (default 20); the ssh floor runs xargs -P HOSTS")
    parser.add_argument("--forks", type=int, nargs="+", default=[20], metavar="N",
                        help="opskit --forks for the CLI and in-process runs (default 20, opskit's default); "
                             "each further value adds opskit-cli-forksN / opskit-inproc-forksN")
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="the opskit source tree to measure (default: this script's checkout)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another opskit source tree (e.g. a clone at the last commit) whose CLI runs in the same "
                             "rounds, interleaved: baseline:* methods, for a before/after under the same load")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run the opskit subprocesses with the environment's byte-code settings (with "
                             "PYTHONDONTWRITEBYTECODE=1 an uninstalled checkout is compiled on every start)")
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process Run.execute() timing")
    parser.add_argument("--no-phases", action="store_true", help="skip the untimed CLI phase marks")
    parser.add_argument("--output", type=Path,
                        help="JSON file (default benchmarks/results/facts_vs_ssh-<date>.json; -<N>hosts is added for N != 20)")
    args = parser.parse_args()
    if args.rounds < 1 or not 1 <= args.hosts <= 200 or any(not 1 <= f <= 500 for f in args.forks):
        parser.error("--rounds must be >= 1, --hosts between 1 and 200, --forks between 1 and 500")
    checkout = args.checkout.resolve()
    if not (checkout / "opskit" / "__init__.py").is_file():
        parser.error(f"--checkout {checkout}: no opskit/__init__.py there")
    baseline_dir = args.baseline.resolve() if args.baseline else None
    if baseline_dir and not (baseline_dir / "opskit" / "__init__.py").is_file():
        parser.error(f"--baseline {baseline_dir}: no opskit/__init__.py there")
    if os.geteuid() != 0:
        print("facts_vs_ssh: needs root (the lab creates users and starts sshd)", file=sys.stderr)
        return 2
    for tool in ("ssh", "xargs", "useradd"):
        if not shutil.which(tool):
            print(f"facts_vs_ssh: {tool} not found", file=sys.stderr)
            return 2
    # The in-process runs import the checkout's opskit (lab/ stays this script's own).
    sys.path.insert(0, str(checkout))
    forks_values = list(dict.fromkeys(args.forks))

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
        bench = Bench(lab, work, inventory, checkout, bytecode_cache=not args.no_bytecode_cache)
        opskit_file = bench.which_opskit()
        print(f"measuring opskit from {opskit_file}", flush=True)
        baseline = baseline_file = None
        if baseline_dir:
            # the same benchmark (lab, work dir, byte-code cache) with the other tree on the path
            baseline = copy.copy(bench)
            baseline.checkout = baseline_dir
            baseline.env = dict(bench.env, PYTHONPATH=os.pathsep.join(
                [str(baseline_dir)] + bench.env["PYTHONPATH"].split(os.pathsep)[1:]))
            baseline_file = baseline.which_opskit()
            print(f"baseline opskit from {baseline_file}", flush=True)

        def suffix(forks: int) -> str:
            return "" if forks == forks_values[0] else f"-forks{forks}"

        python = sys.executable
        methods: dict = {}
        for forks in forks_values:
            methods[f"opskit-cli{suffix(forks)}"] = (
                (lambda f=forks: bench.opskit_cli(f)), f"opskit -i INV run facts --all --json --forks {forks} (subprocess)")
        if baseline:
            methods["baseline:opskit-cli"] = ((lambda: baseline.opskit_cli(forks_values[0])),
                                              f"the same as opskit-cli (--forks {forks_values[0]}) with --baseline's opskit")
        methods.update({
            "ssh-xargs": (lambda: bench.ssh_xargs("default"), f"xargs -P {args.hosts}: one ssh per host, OpenSSH default kex"),
            "ssh-xargs-c25519": (lambda: bench.ssh_xargs("curve25519-sha256"), "the same with -o KexAlgorithms=curve25519-sha256"),
        })
        if not args.no_inprocess:
            for forks in forks_values:
                methods[f"opskit-inproc{suffix(forks)}"] = (
                    InProcess(bench, forks), f"Run(...).execute() in this process, forks={forks} (no start-up, imports done)")
            import opskit
            if not Path(opskit.__file__).resolve().is_relative_to(checkout):
                raise BenchmarkError(f"the in-process runs imported opskit from {opskit.__file__}, not from {checkout}")
        methods.update({
            "startup:python": (lambda: bench.startup([python, "-c", "pass"]), "python -c pass"),
            "startup:import-cli": (lambda: bench.startup([python, "-c", "import opskit.cli"]), 'python -c "import opskit.cli"'),
            "startup:import-runner": (lambda: bench.startup([python, "-c", "import opskit.runner"]),
                                      'python -c "import opskit.runner" (paramiko, pydantic)'),
            "startup:until-connect": (lambda: bench.startup([python, "-c", UNTIL_CONNECT, str(inventory)]),
                                      "imports of the run path, load the facts playbook and the inventory"),
            "startup:opskit-refused": (bench.cli_fixed_cost,
                                       f"opskit run facts --json on one host that refuses ({SUBNET}254:9): the CLI's fixed cost"),
            **({"baseline:startup:until-connect": (lambda: baseline.startup([python, "-c", UNTIL_CONNECT, str(inventory)]),
                                                   "startup:until-connect with --baseline's opskit"),
                "baseline:startup:opskit-refused": (baseline.cli_fixed_cost, "startup:opskit-refused with --baseline's opskit")}
               if baseline else {}),
            "startup:opskit-help": (lambda: bench.startup(OPSKIT + ["--help"]), "opskit --help"),
            "startup:opskit-run-help": (lambda: bench.startup(OPSKIT + ["run", "--help"]), "opskit run --help"),
        })

        kex = {"openssh_default": negotiated_kex_openssh(lab, None),
               "openssh_forced": negotiated_kex_openssh(lab, "curve25519-sha256"),
               "opskit_paramiko": negotiated_kex_opskit(inventory)}
        print(f"negotiated kex: ssh default {kex['openssh_default']}; ssh forced {kex['openssh_forced']}; "
              f"opskit (paramiko) {kex['opskit_paramiko']}", flush=True)

        info = machine_info(checkout)
        load_before = loadavg()
        foreign = foreign_load_note()
        samples: dict[str, list[tuple]] = {name: [] for name in methods}
        round_loads, phases, baseline_phases = [], [], []
        for round_number in range(-args.warmup + 1, args.rounds + 1):
            label = f"warm-up {round_number + args.warmup}/{args.warmup}" if round_number <= 0 else f"round {round_number}/{args.rounds}"
            line = []
            # Interleaved: every method sees the same background load in each round.
            for name, (fn, _) in methods.items():
                figures = measure(fn, in_process=name.startswith("opskit-inproc"))
                if round_number > 0:
                    samples[name].append(figures)
                line.append(f"{name} {figures[0] * 1000:.0f}ms")
            if round_number > 0:
                round_loads.append(loadavg())
                if not args.no_phases:
                    phases.append(bench.phases(forks_values[0]))
                    if baseline:
                        baseline_phases.append(baseline.phases(forks_values[0]))
            print(f"{label}: " + ", ".join(line) + f" (load {loadavg()[0]:.2f})", flush=True)
        load_after = loadavg()

        ssh_rusage = None
        if GNU_TIME:
            # Untimed: each ssh under GNU time, for the sum of the ssh processes' peak RSS.
            usages = bench.ssh_xargs("curve25519-sha256", rusage_pass=True)
            rss = [u[0] / 1024 for u in usages]
            ssh_rusage = {"what": f"one untimed ssh-xargs-c25519 pass, each ssh under {GNU_TIME}",
                          "ssh_peak_rss_mib_sum": round(sum(rss), 1), "ssh_peak_rss_mib_max": round(max(rss), 1),
                          "ssh_peak_rss_mib_median": round(statistics.median(rss), 2),
                          "ssh_cpu_seconds_sum": round(sum(u[1] + u[2] for u in usages), 3)}

        results = {name: summarize(values) for name, values in samples.items()}
        for name, figures in results.items():
            if "startup:" not in name:
                figures["client_cpu_per_host_ms"] = round(figures["client_cpu"]["median"] * 1000 / args.hosts, 2)
        print_table(results, {name: d for name, (_, d) in methods.items()}, hosts=args.hosts)
        ratios = {}
        for name in results:
            if name.startswith(("opskit-cli", "opskit-inproc", "baseline:opskit-cli")):
                ratios[f"{name} / ssh-xargs-c25519"] = ratio_figures(samples, name, "ssh-xargs-c25519")
        print()
        for name, r in ratios.items():
            print(f"ratio {name}: {r['of_medians']:.2f} (medians), {r['median_of_rounds']:.2f} (median of the rounds' ratios)")
        if ssh_rusage:
            print(f"ssh floor, {args.hosts} ssh processes: peak RSS {ssh_rusage['ssh_peak_rss_mib_sum']:.1f} MiB summed "
                  f"({ssh_rusage['ssh_peak_rss_mib_max']:.1f} MiB the largest)")
        def summarize_phases(samples: list[dict], label: str) -> dict | None:
            if not samples:
                return None
            summary = {key: round(statistics.median(p[key] for p in samples), 1)
                       for key in samples[0] if all(p.get(key) is not None for p in samples)}
            summary["samples"] = samples
            print(f"{label} phases (median ms from the spawn): " + ", ".join(
                f"{k} {summary[k]:.0f}" for k in ("interpreter", "first_connect", "last_connect", "exit", "reaped")
                if k in summary) + (f"; peak RSS {summary['peak_rss_mib']:.1f} MiB" if "peak_rss_mib" in summary else ""))
            return summary

        phase_summary = summarize_phases(phases, "CLI")
        baseline_phase_summary = summarize_phases(baseline_phases, "baseline CLI")
        if foreign:
            print("\nnote: " + "; ".join(foreign) + " — the CPUs were shared")

        document = {
            "benchmark": "facts_vs_ssh",
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "hosts": args.hosts,
            "forks": forks_values,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "bytecode_cache": not args.no_bytecode_cache,
            "opskit_imported_from": opskit_file,
            "baseline": {**checkout_info(baseline_dir), "imported_from": baseline_file} if baseline_dir else None,
            "unit": "seconds: min/median/max wall clock; client_cpu = user+sys of opskit or of xargs+sh+ssh "
                    "(in-process: this process); machine_cpu = whole machine busy time from /proc/stat; "
                    "client_cpu_per_host_ms = client_cpu median / hosts; cli_phases_ms: ms from the spawn, "
                    "peak_rss_mib = ru_maxrss of the CLI process (GNU time, untimed run); ssh_floor_rusage: "
                    "ru_maxrss of each ssh process (GNU time, untimed pass), summed",
            "machine": info,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "loadavg_after_each_round": round_loads,
            "concurrent_activity": foreign,
            "negotiated_kex": kex,
            "methods": {name: {"what": d, **results[name]} for name, (_, d) in methods.items()},
            "ratios": ratios,
            "ssh_floor_rusage": ssh_rusage,
            "cli_phases_ms": phase_summary,
            "baseline_cli_phases_ms": baseline_phase_summary,
            "commands": {
                **{f"opskit-cli{suffix(f)}": " ".join(bench.opskit_argv(f)) for f in forks_values},
                "ssh-xargs": f"xargs -a HOSTS -P {args.hosts} -L 1 sh probe-one.sh OUT default",
                "ssh-xargs-c25519": f"xargs -a HOSTS -P {args.hosts} -L 1 sh probe-one.sh OUT curve25519-sha256",
                "probe-one.sh": PROBE_ONE,
                "facts_script": FACTS_SCRIPT,
                "phases": PHASES,
                "until_connect": UNTIL_CONNECT,
            },
        }
        name = f"facts_vs_ssh-{dt.date.today().isoformat()}" + ("" if args.hosts == 20 else f"-{args.hosts}hosts")
        output = args.output or ROOT / "benchmarks" / "results" / f"{name}.json"
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
