"""The local write-ahead journal: one folder per run in the state directory.

    <state dir>/runs/RUN/run.json        playbook, hosts (connection settings, no secrets), hold
    <state dir>/runs/RUN/HOST.jsonl      events, one JSON object a line, fsync'd before we act

The state dir is $OPSKIT_STATE_DIR, else platformdirs' user state dir. The
host keeps its own copy of every undo record under ~/.opskit (see guard.py),
so a rollback never depends on this folder surviving.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from opskit.errors import InputError


def state_dir() -> Path:
    path = Path(os.environ.get("OPSKIT_STATE_DIR") or platformdirs.user_state_dir("opskit"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


@dataclass
class Journal:
    root: Path

    @classmethod
    def default(cls) -> "Journal":
        return cls(state_dir() / "runs")

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def create(self, run_id: str, meta: dict) -> None:
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, mode=0o700)
        _write_json_atomic(folder / "run.json", meta)

    def meta(self, run_id: str) -> dict:
        file = self.run_dir(run_id) / "run.json"
        if not file.exists():
            known = self.run_ids()[-5:]
            hint = f" (recent runs: {', '.join(known)})" if known else ""
            raise InputError(f"no run {run_id!r} in {self.root}{hint}")
        return json.loads(file.read_text())

    def append(self, run_id: str, host: str, event: dict) -> None:
        """Append one event and fsync it: it is on disk before we act on it."""
        line = json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), **event}, sort_keys=True)
        path = self.run_dir(run_id) / f"{host}.jsonl"
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
        file = self.run_dir(run_id) / f"{host}.jsonl"
        if not file.exists():
            return []
        out = []
        for line in file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a crash mid-write
        return out

    def run_ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "run.json").exists())


def host_state(events: list[dict]) -> dict:
    """Pure: a host's events → {"state", "deadline", "changes"} as last known locally.

    state: running | held | kept | rolled_back | failed | conflict | ok | changed | unreachable
    """
    state = {"state": "running", "deadline": None, "changes": 0}
    for event in events:
        kind = event.get("event")
        if kind == "applied":
            state["changes"] += 1
        elif kind == "armed":
            state["deadline"] = event.get("deadline")
            state["state"] = "held"
        elif kind == "end":
            state["state"] = event.get("status", state["state"])
    return state


def _write_json_atomic(path: Path, data: dict) -> None:
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
