"""Simulated hosts: one real OpenSSH sshd per host on its own 127.0.10.x address.

Each host gets its own unix user (so each has its own home and ~/.opskit),
its own host key, key-only login with a generated client key. Everything lives
under a private base directory; nothing of the machine's own sshd is used.
Must run as root (it creates users and starts sshd, which needs root).
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server") if os.path.exists(p)), "internal-sftp")


def free_port(address: str) -> int:
    """A TCP port free on `address`, below the kernel's ephemeral range: a port from
    bind(0) can be taken by an outgoing connection's source port before the server
    binds it (seen: nginx failing with 'Address already in use')."""
    low = 20000
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32768
    high = max(low + 1000, low_ephemeral)
    for _ in range(200):
        port = random.randrange(low, high)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {address} in {low}-{high}")


def wait_for_port(address: str, port: int, timeout: float = 10.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"nothing listening on {address}:{port} after {timeout}s\n{tail}")


def end_process(process: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM a server we started, SIGKILL it if it lingers; reap it either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def ensure_user(name: str, home: Path) -> None:
    """Create (or re-home) a login user with no password and a usable account."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        pwd.getpwnam(name)
        # a crashed earlier lab may have left this user's processes (guards, php-fpm workers)
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        for _ in range(50):
            if subprocess.run(["usermod", "-d", str(home), name], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)   # usermod refuses while the killed processes are still exiting
        else:
            raise RuntimeError(f"usermod -d {home} {name} keeps failing (processes of {name} still running?)")
    except KeyError:
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", name], check=True, capture_output=True)
    # '!' marks a locked account, which sshd refuses even for keys; '*' is "no password".
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o755)


def remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    subprocess.run(["userdel", name], capture_output=True)


@dataclass
class SshHost:
    name: str
    address: str
    user: str
    base_dir: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def home(self) -> Path:
        return self.base_dir / "home"

    @property
    def log(self) -> Path:
        return self.base_dir / "sshd.log"

    def prepare(self, client_pubkey: str) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ensure_user(self.user, self.home)
        key = self.base_dir / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        keys_dir = self.base_dir / "authorized_keys"
        keys_dir.mkdir(exist_ok=True)
        (keys_dir / self.user).write_text(client_pubkey)
        os.chmod(keys_dir / self.user, 0o644)

    def write_config(self) -> Path:
        if not self.port:
            self.port = free_port(self.address)
        config = self.base_dir / "sshd_config"
        config.write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            f"HostKey {self.base_dir / 'ssh_host_ed25519_key'}\n"
            f"PidFile {self.base_dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.base_dir / 'authorized_keys'}/%u\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nPermitRootLogin no\nStrictModes no\nUseDNS no\nX11Forwarding no\n"
            f"AllowUsers {self.user}\n"
            "MaxStartups 200:30:400\nMaxSessions 64\nLogLevel INFO\n"
            f"Subsystem sftp {SFTP_SERVER}\n"
        )
        return config

    def host_key_line(self) -> str:
        pub = (self.base_dir / "ssh_host_ed25519_key.pub").read_text().split()
        return f"[{self.address}]:{self.port} {pub[0]} {pub[1]}"

    def start(self) -> "SshHost":
        config = self.write_config()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.address, self.port, log=self.log)
        return self

    def stop(self) -> None:
        """Stop sshd (the connections it serves go with it)."""
        if self.process:
            end_process(self.process)
        self.process = None
        # sshd -D's per-connection children survive the listener; end them too.
        subprocess.run(["pkill", "-TERM", "-f", f"sshd: {self.user}"], capture_output=True)

    def kill_user_processes(self) -> None:
        subprocess.run(["pkill", "-KILL", "-u", self.user], capture_output=True)


@dataclass
class Lab:
    """A set of simulated hosts plus the client side (key, known_hosts, ssh_config)."""

    base_dir: Path
    count: int = 3
    prefix: str = "opskit-h"
    subnet: str = "127.0.10."
    hosts: list[SshHost] = field(default_factory=list)

    @property
    def client_key(self) -> Path:
        return self.base_dir / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.base_dir / "client" / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.base_dir / "client" / "ssh_config"

    def start(self) -> "Lab":
        client = self.base_dir / "client"
        client.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)  # each host's user must reach its home and authorized_keys below
        os.chmod(client, 0o700)
        if not self.client_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)], check=True)
        if not self.ssh_config.exists():
            self.ssh_config.write_text("# empty on purpose: the tests never read the developer's ~/.ssh/config\n")
        pubkey = self.client_key.with_suffix(".pub").read_text()
        for index in range(1, self.count + 1):
            host = SshHost(f"h{index}", f"{self.subnet}{index}", f"{self.prefix}{index}", self.base_dir / f"h{index}")
            host.prepare(pubkey)
            self.hosts.append(host)
        try:
            for host in self.hosts:
                host.start()
        except BaseException:
            self.stop()
            raise
        self.write_known_hosts()
        return self

    def write_known_hosts(self) -> None:
        self.known_hosts.write_text("".join(h.host_key_line() + "\n" for h in self.hosts))

    def stop(self, timeout: float = 5) -> None:
        # All at once: every sshd is told, then given one shared timeout, then the ones still
        # running are killed, so a 200-host lab stops in the time of one host. (The benchmark's
        # `unshare --fork` wrapper ignores SIGTERM: one by one, that was 5 s per host.)
        running = [h.process for h in self.hosts if h.process is not None and h.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in running:
            if process.poll() is None:
                process.kill()
        for host in self.hosts:
            host.stop()
            host.kill_user_processes()

    def remove_users(self) -> None:
        for host in self.hosts:
            remove_user(host.user)

    def host(self, name: str) -> SshHost:
        return next(h for h in self.hosts if h.name == name)

    def inventory(self, path: Path, hosts: dict | None = None, defaults: dict | None = None, groups: dict | None = None) -> Path:
        """Write an inventory for these hosts; `hosts` adds/overrides per-host fields."""
        data = {
            "defaults": {
                "identity_file": str(self.client_key),
                "known_hosts": str(self.known_hosts),
                "ssh_config": str(self.ssh_config),
                "use_agent": False,
                "connect_timeout": 5,
                **(defaults or {}),
            },
            "hosts": {
                h.name: {"address": h.address, "port": h.port, "user": h.user, **((hosts or {}).get(h.name, {}))}
                for h in self.hosts
            },
        }
        if groups:
            data["groups"] = groups
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


def stop_on_signal(lab: Lab) -> None:
    """Make SIGTERM stop the lab cleanly (for the demo and benchmarks)."""
    def handler(signum, frame):
        lab.stop()
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
