"""A local stand-in for a host's home, to run the real guard scripts with this machine's shells.

Nothing here touches the network or the real user's files: HOME is a temp dir,
and `crontab` is a shim that keeps the "crontab" in $HOME/.fake-crontab, so the
guard's disarm/arm code runs for real without editing anyone's crontab.
`sh` on PATH is the shell under test (dash, or bash in POSIX mode), so scripts
the guard starts with `sh` run in the same shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

FAKE_CRONTAB = """#!/bin/sh
f="$HOME/.fake-crontab"
case "$1" in
  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$f.tmp" && sleep "${FAKE_CRONTAB_DELAY:-0}" && mv "$f.tmp" "$f" ;;
  *) echo "fake crontab: unsupported $*" >&2; exit 2 ;;
esac
"""

SHELLS = [name for name in ("dash", "bash") if shutil.which(name)]


class Box:
    """A fake host home plus helpers to run scripts in it."""

    def __init__(self, root: Path, shell: str):
        self.root = root
        self.shell = shell
        self.home = root / "home"
        self.home.mkdir()
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "crontab").write_text(FAKE_CRONTAB)
        (self.bin / "crontab").chmod(0o755)
        # bash started under the name `sh` runs in POSIX mode, like `bash --posix`.
        (self.bin / "sh").symlink_to(shutil.which(shell))
        self.started: list[subprocess.Popen] = []
        self.extra_env: dict[str, str] = {}

    @property
    def argv0(self) -> list[str]:
        return [shutil.which("dash")] if self.shell == "dash" else [shutil.which("bash"), "--posix"]

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": f"{self.bin}:/usr/bin:/bin", "LC_ALL": "C", **self.extra_env}

    def run(self, script: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Run script text with the shell under test (cwd = the box root, so a stray
        `touch PWNED` would land there)."""
        return subprocess.run([*self.argv0, "-c", script, "sh", *args], capture_output=True, text=True,
                              env=self.env, cwd=self.root, timeout=timeout)

    def run_file(self, path: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv0, str(path), *args], capture_output=True, text=True,
                              env=self.env, cwd=self.root, timeout=timeout)

    # -- transactions -------------------------------------------------------
    def tx(self, run: str) -> Path:
        return self.home / ".opskit" / "tx" / run

    def install(self, run: str, script: str, state: str | None = "armed", deadline: int | None = None) -> Path:
        tx = self.tx(run)
        tx.mkdir(parents=True, exist_ok=True)
        (tx / "guard.sh").write_text(script)
        if state is not None:
            (tx / "state").write_text(state + "\n")
        if deadline is not None:
            (tx / "deadline").write_text(f"{deadline}\n")
        return tx

    def guard(self, run: str, mode: str | None = "now", timeout: float = 20) -> subprocess.CompletedProcess:
        args = () if mode is None else (mode,)
        return self.run_file(self.tx(run) / "guard.sh", *args, timeout=timeout)

    def state(self, run: str) -> str | None:
        file = self.tx(run) / "state"
        return file.read_text().strip() if file.exists() else None

    def take_lock(self, run: str | None, expires: int | None = None) -> Path:
        lock = self.home / ".opskit" / "lock"
        lock.mkdir(parents=True)
        if run is not None:
            (lock / "run").write_text(run + "\n")
        if expires is not None:
            (lock / "expires").write_text(f"{expires}\n")
        return lock

    @property
    def lock(self) -> Path:
        return self.home / ".opskit" / "lock"

    @property
    def crontab(self) -> Path:
        return self.home / ".fake-crontab"

    # -- processes we start ------------------------------------------------
    def sleeper(self) -> subprocess.Popen:
        proc = subprocess.Popen(["sleep", "60"])
        self.started.append(proc)
        return proc

    def dead_pid(self) -> int:
        proc = subprocess.Popen(["true"])
        proc.wait()
        return proc.pid

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # guards started by arm_script (they record their pid themselves, perhaps not yet):
        # every process whose command line names this box's home is ours
        found = subprocess.run(["pgrep", "-f", str(self.home)], capture_output=True, text=True).stdout.split()
        for pid in found:
            if _is_our_guard(int(pid), self.home):
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
        # and the recorded ones
        for pid_file in (self.home / ".opskit" / "tx").glob("*/guard.pid") if (self.home / ".opskit").exists() else ():
            try:
                pid = int(pid_file.read_text().split()[0])   # "pid starttime"
            except (ValueError, IndexError):
                continue
            if _is_our_guard(pid, self.home):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


def _is_our_guard(pid: int, home: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(home) in cmdline


@pytest.fixture(params=SHELLS)
def box(request, tmp_path):
    the_box = Box(tmp_path, request.param)
    yield the_box
    the_box.cleanup()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def wait_for():
    """wait_for(predicate, timeout, what): poll until predicate() is true, or fail saying what."""
    return _wait_for
