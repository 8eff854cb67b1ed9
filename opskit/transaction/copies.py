"""Private local copies of what edits replace, kept in the run's journal folder until the
transaction ends, so the host's undo records can be rebuilt if they are lost there."""

from __future__ import annotations

import os

from opskit.journal import Journal


def _copies_dir(journal: Journal, run_id: str, host: str):
    return journal.run_dir(run_id) / f"{host}.files"


def save_copy(journal: Journal, run_id: str, host: str, name: str, data: bytes) -> None:
    folder = _copies_dir(journal, run_id, host)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_copies(journal: Journal, run_id: str, host: str) -> dict[str, str]:
    """{backup name: text} for the copies that can travel in a here-document (text without NUL)."""
    folder = _copies_dir(journal, run_id, host)
    out = {}
    for file in sorted(folder.iterdir()) if folder.exists() else ():
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue   # its undo reports the backup missing: a conflict for a human, nothing overwritten
        if "\x00" not in text:
            out[file.name] = text
    return out


def drop_copies(journal: Journal, run_id: str, host: str) -> None:
    folder = _copies_dir(journal, run_id, host)
    for file in folder.iterdir() if folder.exists() else ():
        file.unlink(missing_ok=True)
    if folder.exists():
        folder.rmdir()
