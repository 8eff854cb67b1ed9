"""SSH/SFTP sessions: one connection per host per run (Fabric + paramiko).

Errors from paramiko and sockets are mapped to opskit's own tree at this
boundary (see opskit.errors): UnreachableError, HostKeyError, AuthError,
RemoteCommandError. Nothing here interprets command output.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import socket
import stat as stat_module
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import paramiko

if TYPE_CHECKING:
    from fabric import Connection

from opskit import faults
from opskit.errors import AuthError, HostKeyError, InputError, RemoteCommandError, TransportError, UnreachableError
from opskit.inventory import Host
from opskit.shell import UnderHome

PREFERRED_KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org")
_known_hosts_lock = threading.Lock()


@dataclass(frozen=True)
class Result:
    """What one remote command did."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def tail(self, lines: int = 5) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=yes."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: record unknown keys; changed keys still fail."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Append, never rewrite: the file may hold hashed entries and comments.
            with open(self.known_hosts, "a", encoding="ascii") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())


def _transport_factory(sock, **kwargs) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = list(options.kex)
    first = [k for k in PREFERRED_KEX if k in offered]
    # curve25519 is several times cheaper than the post-quantum hybrid paramiko prefers.
    options.kex = tuple(first + [k for k in offered if k not in first])
    return transport


class Session:
    """One SSH connection to one host, reused for every exec and SFTP call of a run."""

    def __init__(self, host: Host, accept_new_host_keys: bool = False):
        self.host = host
        self.accept_new_host_keys = accept_new_host_keys
        self._conn: Connection | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None
        self.home_on_host = False   # see path()
        self.connect_seconds: float | None = None

    # -- connection -------------------------------------------------------
    def _connection(self) -> Connection:
        from fabric import Config, Connection   # here, not at import: commands that never connect skip it

        host = self.host
        config = Config(runtime_ssh_path=os.path.expanduser(host.ssh_config)) if host.ssh_config else Config()
        connect_kwargs: dict = {
            "allow_agent": host.use_agent,
            "look_for_keys": host.identity_file is None,
            "transport_factory": _transport_factory,
            "banner_timeout": host.connect_timeout,
            "auth_timeout": host.connect_timeout,
        }
        if host.identity_file:
            connect_kwargs["key_filename"] = [os.path.expanduser(host.identity_file)]
        if host.passphrase_env:
            connect_kwargs["passphrase"] = _secret_from_env(host.passphrase_env, "key passphrase")
        if host.password_env:
            connect_kwargs["password"] = _secret_from_env(host.password_env, "password")
        return Connection(
            host=host.ssh_alias or host.address,
            user=host.user,
            port=host.port,
            config=config,
            connect_timeout=host.connect_timeout,
            connect_kwargs=connect_kwargs,
        )

    def open(self) -> "Session":
        if self._conn is not None and self._conn.is_connected:
            return self
        if faults.refuses(self.host.name):
            raise UnreachableError(f"{self.host.name}: the network is down (fault injection: partition)")
        from fabric import Connection

        started = time.monotonic()
        conn = self._connection()
        known_hosts = Path(os.path.expanduser(self.host.known_hosts))
        # Fabric builds ProxyJump hops as Connections of its own, which accept any host
        # key: every hop gets the same known_hosts and policy as the target.
        hop = conn
        while isinstance(hop, Connection):
            self._verify_host_keys(hop, known_hosts)
            if hop is not conn:
                hop.connect_kwargs.setdefault("transport_factory", _transport_factory)
                if self.host.identity_file and not hop.connect_kwargs.get("key_filename"):
                    hop.connect_kwargs["key_filename"] = [os.path.expanduser(self.host.identity_file)]
            hop = hop.gateway
        where = f"{conn.host}:{conn.port}"
        with self._errors(where, conn, known_hosts):
            if not conn.gateway:
                sock = socket.create_connection((conn.host, conn.port), timeout=self.host.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.connect_kwargs["sock"] = sock
            conn.open()
        self._conn = conn
        self.connect_seconds = time.monotonic() - started
        return self

    def _verify_host_keys(self, conn: Connection, known_hosts: Path) -> None:
        client = conn.client
        client.get_host_keys().clear()
        if known_hosts.exists():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(f"cannot read known_hosts {known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(_AcceptNew(known_hosts) if self.accept_new_host_keys else _RefuseUnknown())

    @contextmanager
    def _errors(self, where: str, conn: Connection, known_hosts: Path) -> Iterator[None]:
        try:
            yield
        except _UnknownHostKey as exc:
            hop = exc.hostname.replace("[", "").replace("]", "")   # the target or a ProxyJump hop
            hop = hop if ":" in hop else f"{hop}:22"
            raise HostKeyError(
                f"unknown host key for {hop} ({exc.key.get_name()} {exc.key.fingerprint}); refusing to connect. "
                f"Check the fingerprint, then run again with --accept-new-host-keys to record it in {known_hosts}"
            ) from None
        except paramiko.BadHostKeyException as exc:
            # paramiko names the host without its port; known_hosts keys a non-22 port as [host]:port
            host, port = _hop_address(conn, exc.hostname)
            entry = host if port == 22 else f"[{host}]:{port}"
            raise HostKeyError(
                f"HOST KEY CHANGED for {host}:{port}: known_hosts has {exc.expected_key.get_name()} "
                f"{exc.expected_key.fingerprint}, the server offered {exc.key.fingerprint}. Refusing to connect "
                f"(possible man-in-the-middle). If the change is expected: ssh-keygen -f {known_hosts} -R '{entry}'"
            ) from None
        except paramiko.AuthenticationException as exc:
            raise AuthError(f"authentication failed for {conn.user}@{where}: {exc}") from None
        except socket.timeout:
            raise UnreachableError(f"timed out connecting to {where} after {self.host.connect_timeout:g}s") from None
        except ConnectionRefusedError:
            raise UnreachableError(f"connection refused by {where}") from None
        except socket.gaierror as exc:
            raise UnreachableError(f"cannot resolve {conn.host}: {exc.strerror}") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            raise UnreachableError(f"cannot connect to {where}: {exc}") from None
        except paramiko.SSHException as exc:
            raise UnreachableError(f"SSH error with {where}: {exc}") from None
        except (EOFError, OSError) as exc:
            raise UnreachableError(f"connection to {where} failed: {exc or type(exc).__name__}") from None

    @property
    def transport(self) -> paramiko.Transport:
        if self._conn is None:
            raise UnreachableError(f"{self.host.name}: not connected")
        transport = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise UnreachableError(f"{self.host.name}: the SSH connection was lost")
        return transport

    def sever(self) -> None:
        """Cut the connection under paramiko's feet, as a network failure would (fault tests)."""
        try:
            sock = self._conn.client.get_transport().sock if self._conn else None
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    def close(self) -> None:
        for closer in (self._sftp, self._conn):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # closing a dead connection must not hide the real error
                pass
        self._sftp = None
        self._conn = None

    def __enter__(self) -> "Session":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- exec -------------------------------------------------------------
    def exec(self, command: str, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        """Run one command through `sh -c` semantics of the login shell; returns its Result."""
        timeout = timeout or self.host.command_timeout
        started = time.monotonic()
        try:
            channel = self.transport.open_session(timeout=self.host.connect_timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            # stdout to EOF, then stderr (paramiko buffers stderr meanwhile).
            stdout = _read_all(channel.recv, started + timeout, self.host.name, "stdout")
            stderr = _read_all(channel.recv_stderr, started + timeout, self.host.name, "stderr")
            if not channel.status_event.wait(max(0.0, started + timeout - time.monotonic())):
                raise socket.timeout()
            status = channel.recv_exit_status()
            channel.close()
            if status == -1:
                # paramiko's answer when the channel closed without an exit status: the
                # connection was cut mid-command, whatever the output says so far
                raise EOFError("the channel closed without an exit status")
        except socket.timeout:
            raise UnreachableError(f"{self.host.name}: command timed out after {timeout:g}s") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise UnreachableError(f"{self.host.name}: the SSH connection was lost ({exc or type(exc).__name__})") from None
        return Result(command, status, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), time.monotonic() - started)

    # -- sftp -------------------------------------------------------------
    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self.transport.open_sftp_client()
            except paramiko.sftp.SFTPError as exc:
                raise RemoteCommandError(
                    f"{self.host.name}: SFTP does not work on this host ({exc}): its login shell prints "
                    "something for non-interactive sessions (a .bashrc or .profile echo?), which corrupts "
                    "SFTP (OpenSSH's sftp and scp fail the same way); print only in interactive shells "
                    "(`case $- in *i*) ...; esac`)") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise UnreachableError(f"{self.host.name}: cannot open SFTP: {exc}") from None
        return self._sftp

    @property
    def home(self) -> str:
        if self._home is None:
            self._home = self._sftp_call(lambda: self.sftp.normalize("."), ".")
        return self._home

    @home.setter
    def home(self, value: str) -> None:
        """Set when the home directory is already known (from the first exec)."""
        self._home = value

    def path(self, path: str) -> str:
        """Absolute remote path: '~' and '~/x' are the login user's home; relative paths are under it.
        While `home_on_host` is set and the home is not known yet, a path under it is an
        UnderHome the host's shell expands (no SFTP round trip to ask for the home)."""
        if path.startswith("~") and path != "~" and not path.startswith("~/"):
            raise InputError(f"{self.host.name}: '~user' paths are not supported: {path!r}")
        if path.startswith("/"):
            return path
        rest = path[2:] if path.startswith("~/") else "" if path == "~" else path
        if self._home is None and self.home_on_host:
            return UnderHome(rest.rstrip("/"))
        return posixpath.join(self.home, rest) if rest else self.home

    def _sftp_call(self, fn, path: str):
        try:
            return fn()
        except PermissionError:
            raise RemoteCommandError(f"{self.host.name}: permission denied: {path}") from None
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno is not None:
                raise RemoteCommandError(f"{self.host.name}: {exc.strerror or exc} ({path})") from None
            if not self._alive():
                # paramiko's "Socket is closed" and friends: the connection, not the disk
                raise UnreachableError(f"{self.host.name}: the SSH connection was lost ({exc})") from None
            # sftp-server reports ENOSPC / EDQUOT as a generic SSH_FX_FAILURE ("Failure")
            raise RemoteCommandError(f"{self.host.name}: SFTP refused the operation on {path} "
                                     f"({exc}; the disk may be full or over quota)") from None
        except (paramiko.SSHException, EOFError) as exc:
            raise UnreachableError(f"{self.host.name}: the SSH connection was lost ({exc})") from None

    def _alive(self) -> bool:
        try:
            self.transport
        except UnreachableError:
            return False
        channel = getattr(self._sftp, "sock", None)
        return not (channel is not None and channel.closed)

    def stat(self, path: str) -> paramiko.SFTPAttributes | None:
        full = self.path(path)
        try:
            return self._sftp_call(lambda: self.sftp.lstat(full), full)
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def read(self, path: str) -> bytes:
        full = self.path(path)

        def _read() -> bytes:
            with self.sftp.open(full, "rb") as fh:
                return fh.read()

        try:
            return self._sftp_call(_read, full)
        except FileNotFoundError:
            raise RemoteCommandError(f"{self.host.name}: no such file: {full}") from None

    def write_atomic(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Write to a temp file beside `path`, then rename over it: readers see old or new, never half."""
        full = self.path(path)
        directory, name = posixpath.split(full)
        temp = posixpath.join(directory, f".{name}.opskit-tmp-{secrets.token_hex(4)}")
        existing = self.stat(full)
        final_mode = mode if mode is not None else (stat_module.S_IMODE(existing.st_mode) if existing else 0o600)

        def _write() -> None:
            with self.sftp.open(temp, "wbx") as fh:
                fh.chmod(0o600)   # sftp-server creates it 0644: private before it holds any byte
                fh.write(data)
                fh.flush()
            self.sftp.chmod(temp, final_mode)
            self.sftp.posix_rename(temp, full)

        try:
            self._sftp_call(_write, full)
        except BaseException:
            try:
                self.sftp.remove(temp)
            except Exception:  # best effort: the temp file may never have been created
                pass
            raise

    def rename(self, src: str, dst: str) -> None:
        """Rename that refuses to overwrite anything at `dst`."""
        full_src, full_dst = self.path(src), self.path(dst)
        if self.stat(full_dst) is not None:
            raise RemoteCommandError(f"{self.host.name}: refusing to rename onto existing {full_dst}")
        try:
            self._sftp_call(lambda: self.sftp.rename(full_src, full_dst), full_src)
        except FileNotFoundError:
            raise RemoteCommandError(f"{self.host.name}: no such file: {full_src}") from None

    def mkdir_p(self, path: str, mode: int = 0o700) -> None:
        full = self.path(path)
        parts = full.strip("/").split("/")
        current = ""
        for part in parts:
            current += "/" + part
            if self.stat(current) is None:
                try:
                    self._sftp_call(lambda: self.sftp.mkdir(current, mode), current)
                except FileNotFoundError:
                    raise RemoteCommandError(f"{self.host.name}: cannot create {current}") from None

    def remove(self, path: str) -> None:
        full = self.path(path)
        try:
            self._sftp_call(lambda: self.sftp.remove(full), full)
        except FileNotFoundError:
            pass


# No answer of ours is near this; a login shell that prints without end is cut off here
# instead of filling the controller's memory.
MAX_OUTPUT = 32 * 1024 * 1024


def _read_all(recv, deadline: float, host: str = "", what: str = "output") -> bytes:
    chunks = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise socket.timeout()
        chunk = recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise OutputTooLarge(f"{host}: the host sent more than {MAX_OUTPUT // (1024 * 1024)} MiB on {what}; "
                                 "stopped reading (a login script printing without end?)")
        chunks.append(chunk)


class OutputTooLarge(RemoteCommandError):
    def __init__(self, message: str):
        super().__init__(message)


def _hop_address(conn: Connection, name: str) -> tuple[str, int]:
    """(host, port) of the target or ProxyJump hop that paramiko calls `name`."""
    from fabric import Connection

    bare = name.strip("[").split("]")[0] if name.startswith("[") else name
    hop = conn
    while isinstance(hop, Connection):
        if hop.host == bare:
            return bare, int(hop.port)
        hop = hop.gateway
    if name.startswith("[") and "]:" in name:
        return bare, int(name.rsplit(":", 1)[1])
    return bare, int(conn.port) if bare == conn.host else 22


def _secret_from_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise AuthError(f"the {what} is read from ${name}, which is not set")
    return value
