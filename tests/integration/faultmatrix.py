"""The fault matrix: kill the controller, or cut its connection, at every boundary of a run,
and check the host ends exactly as it started.

The boundaries come from the code, not from this file: a clean run with
OPSKIT_FAULT_TRACE lists every point the runner passes between two interactions with a
host (opskit/faults.py), and each case faults one of them with OPSKIT_FAULT. A new step
kind, or a new playbook, is covered without touching the harness.

Faults:
    kill        SIGKILL the controller at the boundary (a dead laptop)
    cut         sever the SSH connection there; the controller may reconnect (a blip)
    partition   sever it and refuse every reconnect (the network stays down)
    kill+0.3    SIGKILL 0.3 s after a check or the rollback started: during it

After the fault, once the deadline has passed: the watched files are byte-identical with
the same owner, group and mode, no temp file is left, no lock, no guard process, no
crontab line, the run's transaction on the host is rolled back, and `opskit runs` says
what is true (after `opskit rollback RUN`, which must agree, it lists nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.conftest import ROOT, cli_command

HOLD = 2            # seconds of hold in every case
STEPS_MARGIN = 3    # OPSKIT_STEPS_MARGIN: the guard of a killed controller fires within seconds
FAULTS = ("kill", "cut", "partition")


def snapshot(roots: list[Path], skip: tuple[str, ...] = (".opskit",)) -> dict[str, tuple]:
    """Every path under roots: kind, mode, owner, group, content digest (or link target)."""
    out: dict[str, tuple] = {}
    for root in roots:
        paths = [root, *root.rglob("*")] if root.is_dir() else [root] if root.exists() or root.is_symlink() else []
        for path in paths:
            if any(part in skip for part in path.relative_to(root.parent).parts):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = "dir", None
            else:
                kind, content = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path)] = (kind, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, content)
    return out


def describe_difference(before: dict, after: dict) -> str:
    lines = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            lines.append(f"  {path}: {before.get(path)} → {after.get(path)}")
    return "\n".join(lines[:20])


def guard_processes(user: str) -> str:
    return subprocess.run(["pgrep", "-a", "-u", user, "-f", "guard.sh"], capture_output=True, text=True).stdout.strip()


def crontab_lines(user: str) -> str:
    out = subprocess.run(["crontab", "-l", "-u", user], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if "opskit-guard" in line)


@dataclass
class Target:
    """One simulated host the cases run on, and how to put its files back between cases."""

    name: str                     # inventory name
    user: str
    home: Path
    inventory: Path
    watched: Callable[[], list[Path]]
    prepare: Callable[[], None]   # (re)create the starting state
    extra_check: Callable[[], str] = lambda: ""   # "" when fine, else what is wrong (e.g. WordPress state)
    during: Callable[[], None] = lambda: None     # what the world does meanwhile (open wp-admin)


@dataclass
class Case:
    fault: str
    boundary: str
    outcome: str = ""             # the host after the deadline: "as it started" or what differs
    seconds: float = 0.0
    controller: str = ""          # what the controller said (status / killed)
    ok: bool = False


@dataclass
class Matrix:
    playbook: str
    playbook_path: Path
    state_root: Path
    cases: list[Case] = field(default_factory=list)
    boundaries: list[str] = field(default_factory=list)

    def cli(self, target: Target, state_dir: Path, *args: str, env: dict | None = None, timeout: float = 120):
        inherited = {k: v for k, v in os.environ.items() if k not in ("OPSKIT_FAULT", "OPSKIT_FAULT_TRACE")}
        full_env = {**inherited, "OPSKIT_STATE_DIR": str(state_dir), "OPSKIT_STEPS_MARGIN": str(STEPS_MARGIN),
                    **(env or {})}
        return subprocess.run(cli_command("-i", str(target.inventory), *args), capture_output=True, text=True,
                              env=full_env, cwd=ROOT, timeout=timeout)

    def run_args(self, target: Target) -> tuple[str, ...]:
        return ("run", self.playbook, "--playbook-path", str(self.playbook_path), "--host", target.name,
                "--hold", f"{HOLD}s", "--json", "--yes")

    def trace(self, target: Target) -> list[str]:
        """The boundaries a clean run passes, in order."""
        target.prepare()
        trace = self.state_root / "trace.txt"
        state = self.state_root / "trace-state"
        result = self.cli(target, state, *self.run_args(target), env={"OPSKIT_FAULT_TRACE": str(trace)})
        assert result.returncode == 0, f"the clean run failed:\n{result.stdout}\n{result.stderr}"
        doc = json.loads(result.stdout)["hosts"][target.name]
        assert doc["status"] == "rolled_back", doc
        names = [line.split(" ", 1)[1] for line in trace.read_text().splitlines() if line.startswith(target.name + " ")]
        assert len(names) == len(set(names)), f"a boundary was passed twice: {names}"
        self.boundaries = names
        return names

    def plan(self) -> list[Case]:
        cases = [Case(fault, name) for name in self.boundaries for fault in FAULTS]
        # during a check, during the rollback's guard exec
        cases += [Case("kill+0.3", name) for name in self.boundaries
                  if name == "rollback:start" or (name.startswith("step:") and ":check:start" in name)]
        return cases

    def run_case(self, target: Target, case: Case, index: int) -> Case:
        started = time.monotonic()
        target.prepare()
        before = snapshot(target.watched())
        state = self.state_root / f"case-{index}"
        fault, _, delay = case.fault.partition("+")
        spec = f"{fault}@{case.boundary}" + (f"+{delay}" if delay else "")
        result = self.cli(target, state, *self.run_args(target), env={"OPSKIT_FAULT": spec})
        problems = []
        if result.returncode == -9:
            case.controller = "killed"
        else:
            try:
                doc = json.loads(result.stdout)["hosts"][target.name]
                case.controller = f"{doc['status']} ({(doc.get('rollback') or {}).get('state') or '-'})"
                problems += self.controller_truth(case, doc)
            except (json.JSONDecodeError, KeyError):
                case.controller = f"exit {result.returncode}: {result.stderr.strip()[-300:]}"
                problems.append(f"the controller printed no report: {case.controller}")
        run_id = next((p.name for p in (state / "runs").iterdir()), None) if (state / "runs").exists() else None
        if run_id is None:
            problems.append("no run was journalled")
        else:
            target.during()
            problems += self.wait_settled(target, run_id)
            after = snapshot(target.watched())
            if after != before:
                problems.append("files differ:\n" + describe_difference(before, after))
            extra = target.extra_check()
            if extra:
                problems.append(extra)
            if case.controller == "killed":   # a surviving controller's own report was checked above
                problems += self.runs_truth(target, state, run_id)
        case.ok = not problems
        case.outcome = "as it started" if case.ok else "; ".join(problems)
        case.seconds = time.monotonic() - started
        return case

    @staticmethod
    def controller_truth(case: Case, doc: dict) -> list[str]:
        """What a surviving controller reports must match the host: after a cut it reconnects
        and rolls back itself; after a partition the guard's deadline is what is left."""
        problems = []
        rollback = doc.get("rollback") or {}
        applied = [c["summary"] for c in doc.get("changes", []) if c["state"] == "applied"]
        if case.fault == "cut":
            if rollback.get("state") != "rolled_back" or applied:
                problems.append(f"after a cut the controller reports rollback {rollback}, changes applied {applied}")
        elif case.fault == "partition" and applied and rollback.get("state") not in ("pending", "rolled_back"):
            problems.append(f"after a partition the controller reports rollback {rollback} with changes applied")
        if "disk may be full" in (doc.get("error") or ""):
            problems.append(f"a lost connection reported as a full disk: {doc['error']}")
        return problems

    def wait_settled(self, target: Target, run_id: str, timeout: float = HOLD + STEPS_MARGIN + 20) -> list[str]:
        tx = target.home / ".opskit" / "tx" / run_id
        deadline = time.monotonic() + timeout
        while True:
            state = (tx / "state").read_text().strip() if (tx / "state").exists() else "missing"
            lock = (target.home / ".opskit" / "lock").exists()
            guards = guard_processes(target.user)
            cron = crontab_lines(target.user)
            if state in ("rolled_back", "done") and not lock and not guards and not cron:
                return []
            if time.monotonic() > deadline:
                story = {n: (tx / n).read_text()[-600:] for n in ("guard.log", "result", "mechanism") if (tx / n).exists()}
                return [f"not settled after {timeout}s: state {state}, lock {lock}, guards {guards!r}, "
                        f"crontab {cron!r}, {story}"]
            time.sleep(0.2)

    def runs_truth(self, target: Target, state: Path, run_id: str) -> list[str]:
        """`opskit runs` may list the run only as expired (the guard's deadline passed: nobody
        told this machine how it ended); `opskit rollback` must agree the host rolled back,
        and then `opskit runs` lists nothing."""
        problems = []
        listed = json.loads(self.cli(target, state, "runs", "--json").stdout or "[]")
        # "held until D" is true until D (the host's clock counts whole seconds, so its guard
        # may finish a moment before this machine's D): ask again once D has passed
        pending = [r["deadline"] for r in listed if r["run_id"] == run_id and r["state"] in ("held", "stale")
                   and r["deadline"]]
        if pending:
            time.sleep(max(0.0, max(pending) - time.time()) + 0.5)
            listed = json.loads(self.cli(target, state, "runs", "--json").stdout or "[]")
        wrong = [r for r in listed if r["run_id"] == run_id and r["state"] != "expired"]
        if wrong:
            problems.append(f"`opskit runs` says {wrong}")
        rollback = self.cli(target, state, "rollback", run_id)
        if rollback.returncode != 0 or "rolled_back" not in rollback.stdout + rollback.stderr:
            problems.append(f"`opskit rollback` says: {rollback.stdout.strip()} {rollback.stderr.strip()}")
        after = json.loads(self.cli(target, state, "runs", "--json").stdout or "[]")
        if any(r["run_id"] == run_id for r in after):
            problems.append(f"`opskit runs` still lists it after the rollback: {after}")
        return problems

    def run_all(self, targets: list[Target], from_boundary: str | None = None, faults: tuple[str, ...] = FAULTS) -> list[Case]:
        """Every case, spread over the targets in parallel; from the first boundary starting
        with `from_boundary` on when given, and only these faults."""
        self.trace(targets[0])
        if from_boundary:
            first = next(i for i, b in enumerate(self.boundaries) if b.startswith(from_boundary))
            self.boundaries = self.boundaries[first:]
        planned = [case for case in self.plan() if case.fault in faults or case.fault.split("+")[0] in faults]
        by_target: dict[int, list[tuple[int, Case]]] = {i: [] for i in range(len(targets))}
        for index, case in enumerate(planned):
            by_target[index % len(targets)].append((index, case))

        def work(i: int) -> list[Case]:
            return [self.run_case(targets[i], case, index) for index, case in by_target[i]]

        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            for done in pool.map(work, range(len(targets))):
                self.cases += done
        self.report()
        return self.cases

    def table(self) -> str:
        faults = sorted({c.fault for c in self.cases}, key=lambda f: (FAULTS + ("kill+0.3",)).index(f))
        lines = [f"| boundary ({self.playbook}) | " + " | ".join(faults) + " |",
                 "|---|" + "---|" * len(faults)]
        for name in self.boundaries:
            row = []
            for fault in faults:
                case = next((c for c in self.cases if c.boundary == name and c.fault == fault), None)
                row.append("" if case is None else ("as it started" if case.ok else "**DIFFERS**"))
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        return "\n".join(lines)

    def report(self) -> None:
        out = os.environ.get("OPSKIT_FAULT_REPORT")
        if out:
            with open(out, "a", encoding="utf-8") as fh:
                fh.write(self.table() + f"\n\n{len(self.cases)} cases, "
                         f"{sum(c.ok for c in self.cases)} as they started\n\n")

    def failures(self) -> str:
        bad = [c for c in self.cases if not c.ok]
        return "\n".join(f"{c.fault}@{c.boundary} (controller: {c.controller}): {c.outcome}" for c in bad)
