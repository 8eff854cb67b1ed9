"""Shared fixtures: real sshd hosts on loopback and a way to run the opskit CLI.

The simulated hosts are started once per test session (one sshd per host on
127.0.11.x, each with its own unix user); every test gets their homes cleaned
of opskit state and its own local state dir. Tests need root (sshd, useradd):
on a machine without it they fail loudly instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.sshd import Lab  # noqa: E402

TEST_PLAYBOOKS = ROOT / "tests" / "playbooks"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Never read the developer's agent, ssh config or opskit state."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("OPSKIT_INVENTORY", raising=False)
    monkeypatch.setenv("OPSKIT_STATE_DIR", str(tmp_path / "state"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the real-server tests need root (they start sshd and create users); run them as root or in CI")
    for tool in ("sshd", "ssh-keygen", "useradd"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is not installed: apt-get install openssh-server (see .ci/run)")
    # pytest's own temp dirs are 0700: the hosts' users could not reach their homes there.
    base = Path(tempfile.mkdtemp(prefix="opskit-lab-"))
    # another checkout's suite (a helper's) may run beside this one: it picks its own users and addresses
    the_lab = Lab(base, count=4, prefix=os.environ.get("OPSKIT_LAB_PREFIX", "opskit-t"),
                  subnet=os.environ.get("OPSKIT_LAB_SUBNET", "127.0.11.")).start()
    yield the_lab
    the_lab.stop()
    the_lab.remove_users()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def hosts(lab):
    """The lab with every host's home emptied of opskit state and test files."""
    for host in lab.hosts:
        host.kill_user_processes()   # leftover guards from the previous test
        if shutil.which("crontab"):
            subprocess.run(["crontab", "-r", "-u", host.user], capture_output=True)
        for child in host.home.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        if host.process is None or host.process.poll() is not None:
            host.start()
    lab.write_known_hosts()
    return lab


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        try:
            document = json.loads(self.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"stdout is not JSON:\n{self.stdout}\n--- stderr ---\n{self.stderr}") from None
        if isinstance(document, dict) and "schema_version" in document:
            # every `opskit run --json` document a test reads is held to the published schema
            validate_run_document(document)
        return document


def validate_run_document(document: dict) -> None:
    import jsonschema

    from opskit.document import shipped_schema

    try:
        jsonschema.validate(document, shipped_schema(), cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path))
        raise AssertionError(f"--json document does not match opskit/schema/run-document.schema.json "
                             f"at {where or '(top)'}: {exc.message}") from None


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "opskit", *args]


def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> CliResult:
    """Run the real CLI in a subprocess (signals and worker threads behave as in production)."""
    proc = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def opskit():
    return run_cli


def make_tree(host, relative: str, owner: bool = True) -> Path:
    """Create a directory under a host's home, owned by the host's user."""
    path = host.home / relative
    path.mkdir(parents=True, exist_ok=True)
    if owner:
        subprocess.run(["chown", "-R", f"{host.user}:", str(host.home)], check=True)
    return path


def write_file(host, relative: str, text: str) -> Path:
    path = host.home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    subprocess.run(["chown", "-R", f"{host.user}:", str(host.home)], check=True)
    return path


def hold_started(host_name: str, hold: int) -> str | None:
    """The run id whose controller armed `host_name`'s hold window (the arm script finished:
    the controller journals 'armed' only after it returned), or None."""
    runs = Path(os.environ["OPSKIT_STATE_DIR"]) / "runs"
    for run in sorted(runs.glob("*")) if runs.exists() else []:
        file = run / f"{host_name}.jsonl"
        if not file.exists():
            continue
        events = []
        for line in file.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue   # being written right now
        armed = [e for e in events if e.get("event") == "armed"]
        ended = any(e.get("event") == "end" for e in events)
        if armed and not ended and armed[-1]["host_deadline"] <= time.time() + hold + 1:
            return run.name
    return None


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def cron_daemon(hosts):
    """A real cron daemon (Debian's /usr/sbin/cron, lab/cron.py) running only the lab hosts'
    users' crontabs, for one test. Function scope on purpose: while it runs, a guard whose
    detached process was killed is finished by cron within a minute, which the tests of the
    next-connection recovery must not see; and it starts in about a second. Requested after
    `hosts`, so it loads the users' crontabs after `hosts` emptied them."""
    from lab.cron import CronDaemon

    daemon = CronDaemon([host.user for host in hosts.hosts]).start()
    yield daemon
    daemon.stop()
