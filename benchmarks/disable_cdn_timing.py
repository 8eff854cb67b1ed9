"""How long disable-cdn takes on a real WordPress host on loopback.

    sudo .venv/bin/python benchmarks/disable_cdn_timing.py [--rounds 3] [--hold 3]

Measures, per round:
  run → verified disabled     from starting `opskit run disable-cdn` to the moment its
                              "Origin after" check saw a page without CDN URLs
  deadline → verified restored (controller alive) from the hold deadline on the host to the
                              "Origin after rollback" check seeing the CDN URLs again
  deadline → restored by guard (controller SIGKILLed during the hold) from the deadline to
                              the first page with CDN URLs and the plugin active again, polled
                              every 50 ms from outside
Wall times include Python start-up of the CLI (~0.3 s). Results go to stdout and
benchmarks/results/disable_cdn_timing-DATE.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.demo import wordpress_host  # noqa: E402
from lab.wordpress import CDN_HOSTNAME, PLUGIN_FILE  # noqa: E402


def hidden(site) -> list[Path]:
    return [p for p in site.plugins_dir.iterdir() if p.name.startswith(".cdn-enabler.opskit-")]


def restored(site) -> bool:
    try:
        page = site.fetch_home(timeout=5)
    except Exception:
        return False
    return page.status_code == 200 and CDN_HOSTNAME in page.text and PLUGIN_FILE in site.active_plugins()


def wait_for(predicate, timeout: float, step: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(step)
    raise RuntimeError("timed out")


def command(inventory: Path, hold: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "opskit", "-i", str(inventory), "run", "disable-cdn", "--host", "site1",
            "--hold", f"{hold}s", *extra]


def round_alive(inventory: Path, hold: int, home: Path) -> tuple[float, float]:
    started = time.time()
    result = subprocess.run(command(inventory, hold, "--json"), capture_output=True, text=True, cwd=ROOT, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    doc = json.loads(result.stdout)["hosts"]["site1"]
    steps = {s.get("id"): s for s in doc["steps"]}
    run_id = json.loads(result.stdout)["run_id"]
    deadline = int((home / ".opskit" / "tx" / run_id / "deadline").read_text())
    return steps["origin_after"]["at"] - started, steps["origin_restored"]["at"] - deadline


def round_killed(inventory: Path, hold: int, site, home: Path) -> float:
    tx_dir = home / ".opskit" / "tx"
    earlier = {t.name for t in tx_dir.glob("*")}
    proc = subprocess.Popen(command(inventory, hold), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)

    def hold_started() -> bool:
        # this run's transaction, re-armed with the hold's own deadline (the hold window proper)
        for t in tx_dir.glob("*"):
            try:
                if t.name not in earlier and int((t / "deadline").read_text()) <= time.time() + hold + 1:
                    return True
            except (OSError, ValueError):
                pass
        return False

    wait_for(hold_started, 30)
    proc.kill()
    proc.wait()
    latest = next(t for t in tx_dir.glob("*") if t.name not in earlier)
    deadline = int((latest / "deadline").read_text())
    try:
        return wait_for(lambda: restored(site), hold + 30) - deadline
    except RuntimeError:
        story = {n: (latest / n).read_text() for n in ("state", "guard.log", "result") if (latest / n).exists()}
        raise RuntimeError(f"not restored by the guard of {latest.name}: {story}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=int, default=3)
    args = parser.parse_args()
    os.environ["OPSKIT_STATE_DIR"] = tempfile.mkdtemp(prefix="opskit-bench-state-")
    figures: dict[str, list[float]] = {"run_to_verified_disabled": [], "deadline_to_verified_restored": [],
                                       "deadline_to_restored_by_guard": []}
    with wordpress_host(prefix="opskit-d", subnet="127.0.50.") as (lab, site, inventory):
        home = lab.hosts[0].home
        for _ in range(args.rounds):
            disabled, restored_after = round_alive(inventory, args.hold, home)
            figures["run_to_verified_disabled"].append(disabled)
            figures["deadline_to_verified_restored"].append(restored_after)
            figures["deadline_to_restored_by_guard"].append(round_killed(inventory, args.hold, site, home))
    print(f"{'measure':34} {'min':>7} {'median':>7} {'max':>7}  (seconds, {args.rounds} rounds, hold {args.hold}s)")
    for name, values in figures.items():
        print(f"{name:34} {min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}")
    out = ROOT / "benchmarks" / "results" / f"disable_cdn_timing-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "hold": args.hold, "seconds": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
