"""SSH/SFTP sessions: one connection per host per run (paramiko).

Errors from paramiko and sockets are mapped to opskit's own tree at this
boundary (see opskit.errors): UnreachableError, HostKeyError, AuthError,
RemoteCommandError. Nothing here interprets command output.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import secrets
import shlex
import socket
import stat as stat_module
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
import sys
from typing import Iterator

# paramiko.config imports invoke for `Match exec`, which opskit leaves to `ssh -G`
# (opskit.sshconfig), and invoke pulls in asyncio and unittest.mock: about 0.2 s of CPU on
# every run before the first connection. It is kept out while paramiko loads (and only then).
_keep_invoke_out = "invoke" not in sys.modules
if _keep_invoke_out:
    sys.modules["invoke"] = None   # `import invoke` raises ImportError; paramiko copes
try:
    import paramiko
finally:
    if _keep_invoke_out and sys.modules.get("invoke", False) is None:
        del sys.modules["invoke"]

from opskit import faults
from opskit.errors import AuthError, HostKeyError, InputError, RemoteCommandError, UnreachableError
from opskit.inventory import Host
from opskit.shell import UnderHome

PREFERRED_KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org")
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# paramiko logs a traceback at ERROR for every failed handshake, which Python's last-resort
# handler prints on stderr when nobody configured logging; opskit reports the error itself.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
_log = logging.getLogger("opskit.transport")   # -v: each command sent, its exit status and time
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
    # AES-GCM carries its own authentication: no separate HMAC per packet, whose check paramiko
    # does byte by byte in Python (a third of a fleet run's transport CPU with aes-ctr).
    ciphers = list(options.ciphers)
    first = [c for c in PREFERRED_CIPHERS if c in ciphers]
    options.ciphers = tuple(first + [c for c in ciphers if c not in first])
    return transport


class Connection:
    """One SSH client to one address, opened through its gateway (a ProxyJump hop) if any:
    the little of Fabric's Connection opskit used (its import alone cost more than a handshake)."""

    def __init__(self, host: str, user: str | None, port: int | None, connect_timeout: float,
                 connect_kwargs: dict, gateway: "Connection | None" = None):
        self.host, self.user, self.port = host, user, int(port or 22)
        self.connect_timeout, self.connect_kwargs, self.gateway = connect_timeout, connect_kwargs, gateway
        self.client = paramiko.SSHClient()

    @property
    def is_connected(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def open(self) -> None:
        kwargs = dict(self.connect_kwargs)
        if self.gateway is not None:   # ssh -J: a direct-tcpip channel of the hop is the socket
            if not self.gateway.is_connected:
                self.gateway.open()
            kwargs["sock"] = self.gateway.client.get_transport().open_channel(
                "direct-tcpip", (self.host, self.port), ("", 0), timeout=self.connect_timeout)
        self.client.connect(hostname=self.host, port=self.port, username=self.user, timeout=self.connect_timeout,
                            **kwargs)

    def close(self) -> None:
        self.client.close()
        if self.gateway is not None:
            self.gateway.close()


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
        """The Connection for the host, from its fields alone: the ssh config was applied to
        them already (Inventory.select → opskit.sshconfig, as `ssh -G` reads it)."""
        host = self.host
        if host.address is None:
            # a host read back from an older run's journal: resolve its alias now
            from opskit.inventory import apply_ssh_config
            host = self.host = apply_ssh_config([host])[0]
        passphrase = _secret_from_env(host.passphrase_env, "key passphrase") if host.passphrase_env else None
        connect_kwargs = self._auth_kwargs(host.identity_file, host.identities_only, passphrase)
        if passphrase is not None:
            connect_kwargs["passphrase"] = passphrase
        if host.password_env:
            connect_kwargs["password"] = _secret_from_env(host.password_env, "password")
        gateway = None
        if host.proxy_jump:
            gateway = self._jump_chain(host.proxy_jump, host.ssh_config)
        elif host.proxy_command:   # the command's stdin/stdout is the connection (paramiko.ProxyCommand)
            connect_kwargs["sock"] = _proxy_command(host.proxy_command, host.address, host.port or 22, host.user)
        return Connection(host.address, host.user, host.port, host.connect_timeout, connect_kwargs, gateway)

    def _auth_kwargs(self, identity_file: str | None, identities_only: bool | None,
                     passphrase: str | None = None) -> dict:
        host = self.host
        kwargs: dict = {
            "allow_agent": host.use_agent and not (identities_only and identity_file),
            "look_for_keys": identity_file is None and not identities_only,
            "transport_factory": _transport_factory,
            "banner_timeout": host.connect_timeout,
            "auth_timeout": host.connect_timeout,
        }
        if identity_file:
            path = os.path.expanduser(identity_file)
            key = _identity(path, passphrase)
            if key is not None:
                kwargs["pkey"] = key
            else:
                kwargs["key_filename"] = [path]
        return kwargs

    def _jump_chain(self, spec: str, config: str | None, depth: int = 0) -> Connection:
        """ProxyJump `[user@]host[:port],...`: one Connection per hop, the first hop outermost; each
        hop's name is read from the same ssh config (HostName, Port, User, IdentityFile, its own
        ProxyJump for the first hop)."""
        from opskit import sshconfig

        if depth > 8:
            raise InputError(f"{self.host.name}: ProxyJump hops nest more than 8 deep (a loop?)")
        gateway = None
        for index, hop in enumerate(part.strip() for part in spec.split(",") if part.strip()):
            user, _, rest = hop.rpartition("@")
            name, port = rest, None
            if rest.startswith("[") and "]" in rest:
                name, _, tail = rest[1:].partition("]")
                port = tail[1:] if tail.startswith(":") else None
            elif rest.count(":") == 1:
                name, port = rest.split(":")
            if port is not None and not port.isdigit():
                raise InputError(f"{self.host.name}: ProxyJump {spec!r}: bad port in {hop!r}")
            found = sshconfig.resolver().resolve_many([(name, config, False)])[(name, config)].values
            if index == 0 and found.get("proxy_jump") and found["proxy_jump"] != spec:
                gateway = self._jump_chain(found["proxy_jump"], config, depth + 1)
            kwargs = self._auth_kwargs(found.get("identity_file") or self.host.identity_file, found.get("identities_only"))
            gateway = Connection(found.get("address", name), user or found.get("user") or self.host.user,
                                 int(port) if port else found.get("port", 22), self.host.connect_timeout, kwargs, gateway)
        if gateway is None:
            raise InputError(f"{self.host.name}: ProxyJump {spec!r} names no host")
        return gateway

    def open(self) -> "Session":
        if self._conn is not None and self._conn.is_connected:
            return self
        if faults.refuses(self.host.name):
            raise UnreachableError(f"{self.host.name}: the network is down (fault injection: partition)")
        started = time.monotonic()
        conn = self._connection()   # first: it may resolve the host's alias
        known_hosts = Path(os.path.expanduser(self.host.known_hosts))
        # The ProxyJump hops (_jump_chain) are Connections whose clients would accept any host
        # key: every hop gets the same known_hosts and policy as the target.
        hop = conn
        while isinstance(hop, Connection):
            self._verify_host_keys(hop, known_hosts)
            hop = hop.gateway
        where = f"{conn.host}:{conn.port}"
        with self._errors(where, conn, known_hosts):
            if not conn.gateway and "sock" not in conn.connect_kwargs:
                sock = socket.create_connection((conn.host, conn.port), timeout=self.host.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.connect_kwargs["sock"] = sock
            conn.open()
            if self.host.server_alive_interval:
                conn.client.get_transport().set_keepalive(self.host.server_alive_interval)
        self._conn = conn
        self.connect_seconds = time.monotonic() - started
        return self

    def _verify_host_keys(self, conn: Connection, known_hosts: Path) -> None:
        client = conn.client
        client.get_host_keys().clear()
        if known_hosts.exists():
            try:
                recorded = _parsed_known_hosts(known_hosts)
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(f"cannot read known_hosts {known_hosts}: {exc}") from None
            # the name paramiko looks the server's key up by (SSHClient.connect)
            name = conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"
            for keytype, key in recorded.keys_for(name).items():
                client.get_host_keys().add(name, keytype, key)
        accept_new = self.accept_new_host_keys or self.host.strict_host_key_checking in ("accept-new", "no")
        client.set_missing_host_key_policy(_AcceptNew(known_hosts) if accept_new else _RefuseUnknown())

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
            if "protocol banner" in str(exc):
                cause = exc.__context__
                if isinstance(cause, socket.timeout) or "timeout" in type(cause).__name__.lower():
                    raise UnreachableError(f"{where} sent no SSH banner within {self.host.connect_timeout:g}s") from None
                if self.host.proxy_command and not self.host.proxy_jump and not conn.gateway:
                    raise UnreachableError(f"the ProxyCommand to {where} ended before the SSH banner "
                                           f"({self.host.proxy_command})") from None
                raise UnreachableError(f"{where} closed the connection before the SSH banner (sshd MaxStartups?)") from None
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
        result = Result(command, status, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"),
                        time.monotonic() - started)
        if _log.isEnabledFor(logging.INFO):   # opskit run -v / -vv
            first = command.strip().splitlines()[0][:100] if command.strip() else ""
            _log.info("%s: exec %s… (%d bytes) → exit %d in %.3fs, %d bytes out", self.host.name, shlex.quote(first),
                      len(command), status, result.seconds, len(stdout))
            _log.debug("%s: the command was:\n%s", self.host.name, command)
        return result

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
    bare = name.strip("[").split("]")[0] if name.startswith("[") else name
    hop = conn
    while isinstance(hop, Connection):
        if hop.host == bare:
            return bare, int(hop.port)
        hop = hop.gateway
    if name.startswith("[") and "]:" in name:
        return bare, int(name.rsplit(":", 1)[1])
    return bare, int(conn.port) if bare == conn.host else 22


class _KnownHosts:
    """A known_hosts file read once per run and indexed by name: looking a host up costs the
    same for a 500-line file as for a 5-line one. Lines are read as paramiko.HostKeys.load reads
    them; hashed names (|1|salt|hash) can only be matched by hashing, so they stay in a
    paramiko.HostKeys of their own (usually empty)."""

    def __init__(self, file: Path):
        from paramiko.hostkeys import HostKeyEntry

        self.plain: dict[str, dict[str, paramiko.PKey]] = {}
        self.hashed = paramiko.HostKeys()
        with open(file, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    entry = HostKeyEntry.from_line(line, number)
                except paramiko.SSHException:
                    continue
                if entry is None or entry.key is None:
                    continue
                for name in entry.hostnames:
                    if name.startswith("|1|"):
                        self.hashed.add(name, entry.key.get_name(), entry.key)
                    else:   # the first key of a type wins, as in HostKeys.lookup
                        self.plain.setdefault(name, {}).setdefault(entry.key.get_name(), entry.key)

    def keys_for(self, name: str) -> dict[str, paramiko.PKey]:
        """keytype → key recorded for `name` (`host`, or `[host]:port` off port 22)."""
        keys = dict(self.plain.get(name, {}))
        hashed = self.hashed.lookup(name) if len(self.hashed) else None
        for keytype in hashed.keys() if hashed else ():
            keys.setdefault(keytype, hashed[keytype])
        return keys


_known_hosts_cache: dict[str, tuple[tuple, _KnownHosts]] = {}


def _parsed_known_hosts(file: Path) -> _KnownHosts:
    """known_hosts parsed once per run, not once per host (each line is a key to decode: ~3 ms
    of CPU per connection for a 50-host file); parsed again when the file changes (a key
    recorded by --accept-new-host-keys)."""
    stat = file.stat()
    signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _known_hosts_lock:
        cached = _known_hosts_cache.get(str(file))
        if cached is None or cached[0] != signature:
            cached = _known_hosts_cache[str(file)] = (signature, _KnownHosts(file))
        return cached[1]


_identity_cache: dict[tuple, paramiko.PKey] = {}
_identity_lock = threading.Lock()


def _identity(path: str, passphrase: str | None) -> paramiko.PKey | None:
    """The private key at `path` (and its -cert.pub), loaded once per run: given as
    key_filename, paramiko reads and decodes the file again for every connection, trying one
    key class after another. None when it cannot be loaded here: paramiko then gets the file
    name and reports the problem in its own words, as before."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    signature = (path, stat.st_ino, stat.st_mtime_ns, passphrase)
    with _identity_lock:
        key = _identity_cache.get(signature)
        if key is None:
            try:
                key = paramiko.PKey.from_path(path, passphrase)
                if os.path.isfile(path + "-cert.pub"):
                    key.load_certificate(path + "-cert.pub")
            except (paramiko.SSHException, OSError, ValueError, TypeError):
                return None
            _identity_cache[signature] = key
        return key


def _secret_from_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise AuthError(f"the {what} is read from ${name}, which is not set")
    return value


def _proxy_command(command: str, host: str, port: int, user: str | None) -> paramiko.ProxyCommand:
    """ProxyCommand with OpenSSH's %h %p %r %% tokens expanded (values quoted for the shell)."""
    import shlex

    tokens = {"h": shlex.quote(host), "p": str(port), "r": shlex.quote(user or ""), "%": "%"}
    expanded = re.sub(r"%(.)", lambda m: tokens.get(m.group(1), m.group(0)), command)
    return paramiko.ProxyCommand(expanded)
