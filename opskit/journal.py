"""The local write-ahead journal: one folder per run in the state directory.

    <state dir>/runs/RUN/run.json        playbook, hosts (connection settings, no secrets), hold
    <state dir>/runs/RUN/HOST.jsonl      events, one JSON object a line, fsync'd before we act

The state dir is $OPSKIT_STATE_DIR, else platformdirs' user state dir. The
host keeps its own copy of every undo record under ~/.opskit (see guard.py),
so a rollback never depends on this folder surviving.

Run ids and host names come from the command line and from run.json, so they are
checked before they become paths: `opskit rollback ../../x` must not load (and
connect with) some other folder's run.json. A corrupt run.json (a crash, a full
disk, a hand edit) is reported by name and never hides the other runs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from opskit.errors import InputError


# what new_run_id() makes: YYYYMMDD-HHMMSS-hex (no '/', no '..': always one folder under runs/)
RUN_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4,32}")
# inventory.NAME_RE: a host's events file is HOST.jsonl in the run folder
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RUN_ID_EXAMPLE = "20260101-093000-1a2b"


class CorruptRunError(InputError):
    """A run folder whose run.json cannot be used; names the file and why."""

    def __init__(self, run_id: str, file: Path, reason: str):
        super().__init__(f"run {run_id}: {file} is corrupt ({reason}); move the folder aside, then "
                         f"`opskit rollback {run_id} --host NAME -i INVENTORY` asks the hosts, which keep their own records")
        self.run_id, self.file, self.reason = run_id, file, reason


def state_dir() -> Path:
    path = Path(os.environ.get("OPSKIT_STATE_DIR") or platformdirs.user_state_dir("opskit"))
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        # mkdir's mode is masked by the umask; a folder $OPSKIT_STATE_DIR names but we did not
        # make is left alone (it could be /tmp)
        path.chmod(0o700)
    return path


def _private_dir(path: Path, created: bool) -> None:
    """Our own folders are 0700 whatever the umask: the journal names hosts, paths and users."""
    if created or path.stat().st_mode & 0o077:
        path.chmod(0o700)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


@dataclass
class Journal:
    root: Path
    # (run id, host) → its journal file, once checked: append runs for every event of every host
    _files: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def default(cls) -> "Journal":
        return cls(state_dir() / "runs")

    def _recent(self) -> str:
        known = self.run_ids()[-5:]
        return f" (recent runs: {', '.join(known)})" if known else ""

    def run_dir(self, run_id: str) -> Path:
        """The run's folder; InputError unless run_id is a run id and the folder is inside root."""
        if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
            raise InputError(f"no run {run_id!r}: not a run id (run ids look like {RUN_ID_EXAMPLE}){self._recent()}")
        folder = self.root / run_id
        # a symlinked run folder could still lead elsewhere
        if folder.exists() and not folder.resolve().is_relative_to(self.root.resolve()):
            raise InputError(f"run {run_id}: {folder} leads outside {self.root}; refusing to use it")
        return folder

    def _host_file(self, run_id: str, host: str) -> Path:
        if not isinstance(host, str) or not HOST_RE.fullmatch(host):
            raise InputError(f"run {run_id}: {host!r} is not a host name")
        return self.run_dir(run_id) / f"{host}.jsonl"

    def forget(self, run_id: str) -> None:
        """Remove a run's folder (one adopted by mistake: no host knew it)."""
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def create(self, run_id: str, meta: dict) -> None:
        folder = self.run_dir(run_id)
        created = not self.root.is_dir()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private_dir(self.root, created)   # runs/ made 0755 by an older opskit is tightened too
        folder.mkdir(mode=0o700)
        _private_dir(folder, True)
        _write_json_atomic(folder / "run.json", meta)

    def meta(self, run_id: str) -> dict:
        """run.json of a run: InputError if there is none, CorruptRunError if it is unusable."""
        file = self.run_dir(run_id) / "run.json"
        if not file.exists():
            raise InputError(f"no run {run_id!r} in {self.root}{self._recent()}")
        try:
            data = json.loads(file.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CorruptRunError(run_id, file, _reason(exc)) from None
        if not isinstance(data, dict):
            kind = {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(type(data), "a number")
            raise CorruptRunError(run_id, file, f"{kind}, not a JSON object")
        hosts = data.get("hosts")
        # every reader (opskit runs, confirm, rollback) needs the hosts: name → connection settings
        if not isinstance(hosts, dict):
            raise CorruptRunError(run_id, file, "no \"hosts\" object" if hosts is None else "\"hosts\" is not an object")
        for name, settings in hosts.items():
            if not HOST_RE.fullmatch(name) or not isinstance(settings, dict):
                raise CorruptRunError(run_id, file, f"bad entry {name!r} in \"hosts\"")
        return data

    def append(self, run_id: str, host: str, event: dict) -> None:
        """Append one event and fsync it: it is on disk before we act on it."""
        line = json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), **event}, sort_keys=True)
        path = self._files.get((run_id, host))
        if path is None:
            path = self._host_file(run_id, host)
            if path.parent.is_dir():   # checked: the run's folder exists and lies inside root
                self._files[(run_id, host)] = path
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            # a crash mid-write leaves a torn last line: end it, so this event stays whole
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, (("\n" if torn else "") + line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def events(self, run_id: str, host: str) -> list[dict]:
        file = self._host_file(run_id, host)
        if not file.exists():
            return []
        out = []
        # bytes that are not UTF-8 (a crash can leave NULs or garbage) spoil their line only
        for line in file.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a torn last line from a crash mid-write
            if isinstance(event, dict):
                out.append(event)
        return out

    def run_ids(self) -> list[str]:
        """Folders that look like runs (a run id with a run.json); meta() says if one is corrupt."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if RUN_ID_RE.fullmatch(p.name) and (p / "run.json").exists())


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text at byte {exc.start}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "not JSON: nested too deeply"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def host_state(events: list[dict]) -> dict:
    """Pure: a host's events → {"state", "deadline", "changes"} as last known locally.

    state: running | held | kept | rolled_back | failed | conflict | ok | changed | unreachable
    """
    state = {"state": "running", "deadline": None, "changes": 0}
    for event in events:
        kind = event.get("event")
        if kind == "applied":
            state["changes"] += 1
        elif kind == "lease" and state["state"] == "running":
            # armed at connection, before any change: when the guard gives the lock back
            state["deadline"] = _epoch(event.get("deadline"))
        elif kind == "armed":
            state["deadline"] = _epoch(event.get("deadline"))
            state["state"] = "held"
        elif kind == "end":
            state["state"] = event.get("status", state["state"])
    return state


def _epoch(value) -> int | float | None:
    """A deadline as written (epoch seconds), or None for a damaged one: `opskit runs`
    compares, subtracts and formats it (and json.loads accepts NaN and Infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if 0 <= value < 10**11 else None   # finite, before the year 5138


def _write_json_atomic(path: Path, data: dict) -> None:
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
