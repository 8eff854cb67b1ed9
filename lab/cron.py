"""A real cron daemon (Debian's Vixie cron, ``/usr/sbin/cron``) for the test suite.

``CronDaemon(users=[...]).start()`` runs ``cron -f -L 15`` as a child of the calling
Python process, never through systemctl/service, and ``stop()`` ends it (and any job
it started that is still running). It runs the *real* user crontabs the ``crontab``
command keeps in /var/spool/cron/crontabs, so a guard's crontab line is run exactly as
on a host, through the machine's own ``/etc/pam.d/cron``.

What it needs, and what it is given, here (root in a container without systemd or
syslog). Every change lives in a private mount namespace (``unshare --mount
--propagation private``; root with CAP_SYS_ADMIN) that only the daemon and its jobs see
and that goes away with them: no file of the machine is edited, not even for a while.

* **Only the lab's users.** Vixie cron runs every crontab in the spool whose owner
  ``getpwnam()`` knows, and the spool is shared with anything else on the machine (another
  checkout's suite runs its own lab users' guards there; a stray root crontab may hold a
  guard line). The namespace's /etc is a copy of the machine's in a tmpfs only it sees,
  with an ``/etc/passwd`` holding only ``users`` and an ``/etc/nsswitch.conf`` saying
  ``passwd: files`` (nss-systemd would otherwise still resolve ``root``): any other crontab
  is skipped with cron's ``ORPHAN (no passwd entry)`` (logged; the file is left alone).
  A copy, not a file bind-mounted on /etc/passwd: useradd/userdel (another suite's lab)
  rename a new passwd over the old one, and the kernel then drops a mount whose mountpoint
  was renamed over in another namespace — seen: cron went on to run root's crontab.
  /etc/crontab and /etc/cron.d are the daemon's own, so the machine's system jobs
  (php's sessionclean, e2scrub) do not run.
* **Its pid file.** Debian's cron takes an flock on /run/crond.pid and runs @reboot jobs
  only while /run/crond.reboot is absent; the namespace's /run is a private directory.
* **Its log.** Debian's cron logs only through syslog(3), to /dev/log; there is no syslog
  daemon (and no /dev/log) here, and ``-L`` only chooses *what* is logged. The namespace
  gets a minimal /dev (null, zero, full, random, urandom, tty, fd) whose ``log`` is a
  datagram socket this object reads: ``log_lines``, ``jobs()`` (also ``cron.log`` under
  base_dir while it runs). ``-L 15`` logs each job's start, end, non-zero exit and pid.
* **PAM.** Jobs go through /etc/pam.d/cron as shipped, and it does not block them here.
  pam_loginuid writes /proc/self/loginuid without complaint. pam_limits logs, for every
  job, ``Could not set limit for 'nofile' ... 'memlock' ...: Operation not permitted``:
  with nothing in limits.conf it resets limits to PID 1's (/proc/1/limits: nofile hard
  32768, memlock unlimited, above this process tree's 20000 and 8 MiB), raising a hard
  limit needs CAP_SYS_RESOURCE and this container lacks it. That is logged at LOG_ERR
  but does not fail the session (Linux-PAM 1.5.2), so it is noise. A real refusal is
  logged by cron's child as the bare pam_strerror() text ("Authentication failure",
  "Permission denied") and the job is not run; start() then fails at once with the log
  (``job_errors()``) rather than letting a test wait out a minute. ``pam_cron=`` replaces
  /etc/pam.d/cron inside the namespace only: the way out on a machine whose PAM refuses
  cron jobs, and how that diagnosis was checked (``account required pam_deny.so``).

Readiness is polled, never slept for: the daemon's /etc/crontab holds one ``@reboot``
job run as the first user, which writes a marker file. Its appearance proves the daemon
loaded the crontabs, opened a PAM session and ran a job as that user. start() then waits
for the wall clock to enter the next second: cron notices a changed crontab by the
spool directory's mtime in whole seconds, so a crontab written in the same second as
its last load would go unnoticed.

Only one cron daemon may run: start() refuses, naming it, when another is running
(a system cron would run the lab users' crontab lines too) — it never kills it. While
this one runs, every ``ps -e`` on the machine sees a ``cron``: a guard armed meanwhile,
by any suite, reports ``detached+crontab`` rather than ``detached+crontab-no-daemon``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from lab.sshd import end_process

CRON = shutil.which("cron") or "/usr/sbin/cron"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
# names a cron daemon runs under (Vixie/Debian, cronie, busybox, fcron, dcron)
CRON_NAMES = frozenset({"cron", "crond", "cronie", "fcron", "dcron"})
CRON_SPOOL = Path("/var/spool/cron/crontabs")


class CronError(RuntimeError):
    pass


def running_cron_daemons() -> list[tuple[int, str]]:
    """(pid, command line) of every live cron daemon on the machine (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in CRON_NAMES:
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue   # it ended while we looked
        found.append((int(entry.name), cmdline or comm))
    return sorted(found)


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


# Runs as root inside the new mount namespace, then becomes cron. "$1" is base_dir.
_NAMESPACE_SCRIPT = r"""set -eu
B=$1
# /etc: a copy in a tmpfs this namespace alone sees (a file bind-mounted on /etc/passwd
# would be dropped the moment useradd renames a new passwd over it, outside)
mount -t tmpfs -o mode=755,size=64m opskit-lab-cron-etc "$B/etc-view"
cp -a /etc/. "$B/etc-view/"
for f in passwd nsswitch.conf crontab; do cp "$B/etc/$f" "$B/etc-view/$f"; done
rm -rf "$B/etc-view/cron.d" && mkdir -m 755 "$B/etc-view/cron.d"
if [ -f "$B/etc/pam.d/cron" ]; then cp "$B/etc/pam.d/cron" "$B/etc-view/pam.d/cron"; fi
mount --bind "$B/etc-view" /etc
mount --bind "$B/run" /run
mount -t tmpfs -o mode=755,nosuid,size=1m opskit-lab-cron-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
: > /dev/log
mount --bind "$B/log.sock" /dev/log
exec "$2" -f -L "$3"
"""


class CronDaemon:
    """Debian's cron in the foreground, running only `users`' crontabs (see the module doc)."""

    def __init__(self, users: Iterable[str], base_dir: Path | None = None, loglevel: int = 15,
                 pam_cron: str | None = None):
        """`pam_cron`: text that replaces /etc/pam.d/cron inside the namespace only (the way to
        run jobs on a machine whose PAM refuses them, and how the PAM diagnosis is tested)."""
        self.users = list(users)
        self.pam_cron = pam_cron
        if not self.users:
            raise ValueError("CronDaemon needs at least one user (its readiness job runs as the first)")
        self.loglevel = loglevel
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="opskit-cron-"))
        self.process: subprocess.Popen | None = None
        self.log_lines: list[str] = []
        self._log_changed = threading.Condition()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._namespace: str | None = None
        self._stopping = threading.Event()

    # -- log ------------------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        return self.base_dir / "cron.log"

    @property
    def log(self) -> str:
        with self._log_changed:
            return "\n".join(self.log_lines)

    def _read_log(self, sock: socket.socket) -> None:
        with open(self.log_file, "a", encoding="utf-8") as out:
            while not self._stopping.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                text = data.decode(errors="replace").rstrip("\n\0")
                if text.startswith("<") and ">" in text[:5]:
                    text = text.split(">", 1)[1]   # the syslog priority
                out.write(text + "\n")
                out.flush()
                with self._log_changed:
                    self.log_lines.append(text)
                    self._log_changed.notify_all()

    def wait_for_log(self, needle: str, timeout: float) -> str:
        """The first log line containing `needle`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._log_changed:
            while True:
                for line in self.log_lines:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CronError(f"cron logged no line with {needle!r} in {timeout}s\n{self.describe()}")
                self._log_changed.wait(left)

    def job_errors(self) -> list[str]:
        """What cron's job children logged that is not a job's CMD/END line nor a PAM module's
        own note: Debian's cron logs a PAM refusal as the bare pam_strerror() text
        ("Permission denied", "Authentication failure", ...) and ends the job."""
        with self._log_changed:
            lines = list(self.log_lines)
        errors = []
        for line in lines:
            ident, _, message = line.partition("]: ")
            if ident.rsplit(" ", 1)[-1].startswith("CRON[") and not message.startswith(("(", "pam_")):
                errors.append(message)
        return errors

    def jobs(self) -> list[tuple[str, str]]:
        """(user, command) of every job the daemon started, from its CMD log lines."""
        with self._log_changed:
            lines = list(self.log_lines)
        found = []
        for line in lines:
            _, _, message = line.partition("]: ")
            user, sep, rest = message.partition(") CMD (")
            if sep and user.startswith("("):
                command = rest[:-1] if rest.endswith(")") else rest
                if command.startswith("[") and "] " in command:   # -L 8: the job's pid
                    command = command.split("] ", 1)[1]
                found.append((user[1:], command))
        return found

    def describe(self) -> str:
        """The daemon's log and stderr, for failure messages."""
        err = self.base_dir / "cron.stderr"
        stderr = err.read_text(errors="replace").strip() if err.exists() else ""
        return f"--- cron log ---\n{self.log or '(empty)'}\n--- cron stderr ---\n{stderr or '(empty)'}"

    # -- start / stop ---------------------------------------------------------------

    def _prepare(self) -> Path:
        base = self.base_dir
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)   # the readiness job (run as users[0]) writes below it
        etc = base / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (base / "etc-view").mkdir(exist_ok=True)
        (base / "run").mkdir(exist_ok=True)
        entries = []
        for user in self.users:
            entry = pwd.getpwnam(user)   # KeyError: not a user of this machine
            entries.append(":".join([entry.pw_name, "x", str(entry.pw_uid), str(entry.pw_gid),
                                     entry.pw_gecos, entry.pw_dir, entry.pw_shell]))
        (etc / "passwd").write_text("\n".join(entries) + "\n")
        (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nshadow: files\n")
        probe = base / "ready"
        probe.mkdir(exist_ok=True)
        first = pwd.getpwnam(self.users[0])
        os.chown(probe, first.pw_uid, first.pw_gid)
        marker = probe / "reboot-job-ran"
        marker.unlink(missing_ok=True)
        crontab = etc / "crontab"
        crontab.write_text(
            "# the lab cron daemon's /etc/crontab: its readiness job only\n"
            "SHELL=/bin/sh\nPATH=/usr/bin:/bin\n"
            f"@reboot {self.users[0]} : > {marker}\n")
        os.chmod(crontab, 0o644)   # cron skips a group/other-writable or non-root system crontab
        for path in (etc / "passwd", etc / "nsswitch.conf"):
            os.chmod(path, 0o644)
        if self.pam_cron is not None:
            (etc / "pam.d").mkdir(exist_ok=True)
            (etc / "pam.d" / "cron").write_text(self.pam_cron)
            os.chmod(etc / "pam.d" / "cron", 0o644)
        return marker

    def start(self, timeout: float = 15.0) -> "CronDaemon":
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()   # refused or failed: nothing of it stays (base_dir, socket, namespace)
            raise

    def _start(self, timeout: float) -> "CronDaemon":
        if os.geteuid() != 0:
            raise CronError("the lab cron daemon needs root (it runs cron in its own mount namespace)")
        if not Path(CRON).exists():
            raise CronError(f"{CRON} is not installed: apt-get install cron (see .ci/run)")
        others = running_cron_daemons()
        if others:
            listed = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in others)
            raise CronError(
                f"another cron daemon is already running ({listed}). It would run the lab users' "
                "crontab lines as well, so the test could not tell who ran them; the suite does not "
                "stop a cron it did not start. Stop it (or wait for another test run to end) and retry.")
        marker = self._prepare()
        sock_path = self.base_dir / "log.sock"
        sock_path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(sock_path))
        self._sock.settimeout(0.1)   # the reader looks at _stopping this often
        self._stopping.clear()
        os.chmod(sock_path, 0o666)
        self._reader = threading.Thread(target=self._read_log, args=(self._sock,), name="cron-log", daemon=True)
        self._reader.start()
        with open(self.base_dir / "cron.stderr", "wb") as stderr:
            self.process = subprocess.Popen(
                [UNSHARE, "--mount", "--propagation", "private", "--", "sh", "-c", _NAMESPACE_SCRIPT,
                 "opskit-lab-cron", str(self.base_dir), CRON, str(self.loglevel)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True)
        atexit.register(self.stop)   # a test run that dies early leaves no daemon behind
        self._wait_ready(marker, timeout)
        return self

    def _wait_ready(self, marker: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ours = _mount_ns(os.getpid())
        while not marker.exists():
            if self._namespace is None and _mount_ns(self.process.pid) not in (None, ours):
                self._namespace = _mount_ns(self.process.pid)   # so stop() finds its jobs, even now
            if self.process.poll() is not None:
                raise CronError(f"cron exited with status {self.process.returncode} while starting\n{self.describe()}")
            refused = self.job_errors()
            if refused:
                raise CronError(f"cron cannot run jobs: its child said {refused[0]!r} for the readiness job "
                                f"(PAM, see /etc/pam.d/cron; the log is below)\n{self.describe()}")
            if time.monotonic() > deadline:
                raise CronError(f"cron did not run its @reboot readiness job within {timeout}s\n{self.describe()}")
            time.sleep(0.02)
        self._namespace = self._namespace or _mount_ns(self.process.pid)
        # a crontab written from now on has a newer mtime (whole seconds) than cron's first load
        loaded = int(time.time())
        while int(time.time()) <= loaded:
            time.sleep(0.02)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _namespace_processes(self) -> list[int]:
        """Processes still in the daemon's mount namespace: the jobs it started."""
        if not self._namespace or self._namespace == _mount_ns(os.getpid()):
            return []
        return [int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and _mount_ns(int(p.name)) == self._namespace]

    def stop(self) -> None:
        """End the daemon and any job it started that is still running; the namespace (and
        everything mounted in it) goes with the last of them. Safe to call twice."""
        if self.process is not None:
            end_process(self.process)
            for pid in self._namespace_processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process = None
            self._namespace = None
        self._stopping.set()
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> "CronDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def crontab_of(user: str) -> str:
    """The user's crontab as `crontab -l` lists it ('' when there is none)."""
    proc = subprocess.run(["crontab", "-l", "-u", user], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""
