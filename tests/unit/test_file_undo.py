"""Undo scripts of the file changes (opskit/changes/files.py), run for real inside a guard
(HOME = a temp dir; dash and bash in POSIX mode) against real temp files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from opskit.changes.files import WriteFile, rename_undo, sha256
from opskit.guard import guard_script, parse_output

RUN = "20260101-000000-abcd"

NASTY_NAMES = [
    "plain",
    "with space",
    "it's \"quoted\"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "semi;touch PWNED",
    "-n",
    "star*?[x]",
    "trailing space ",
    "é 漢字",
]


def undo(box, body: str):
    box.install(RUN, guard_script(RUN, [body]))
    proc = box.guard(RUN, "now")
    assert proc.returncode == 0, proc.stderr
    report = parse_output(proc.stdout)
    assert not any(p.name == "PWNED" for p in box.root.rglob("*")), "a path was executed as a command"
    return report


@pytest.fixture
def area(box) -> Path:
    path = box.root / "site"
    path.mkdir()
    return path


# -- rename ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NASTY_NAMES)
def test_rename_undo_restores_an_untouched_rename(box, area, name):
    src, dst = area / name, area / (name + ".opskit-off")
    dst.mkdir()
    (dst / "plugin.php").write_text("<?php // cdn enabler\n")
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.state == "rolled_back"
    assert report.steps[0] == ("undone", f"renamed {dst} back to {src}")
    assert (src / "plugin.php").read_text() == "<?php // cdn enabler\n"
    assert not dst.exists()


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_rename_undo_refuses_when_src_reappeared(box, area, name):
    src, dst = area / name, area / (name + ".off")
    dst.mkdir()
    (dst / "ours").write_text("ours")
    src.mkdir()                      # someone reinstalled the plugin meanwhile
    (src / "theirs").write_text("theirs")
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.state == "conflict"
    assert report.steps[0] == ("conflict", f"{src} exists again; left {dst} in place, nothing overwritten")
    assert sorted(p.name for p in src.iterdir()) == ["theirs"]
    assert sorted(p.name for p in dst.iterdir()) == ["ours"]


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_rename_undo_never_applied(box, area, name):
    src, dst = area / name, area / (name + ".off")
    src.mkdir()
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.state == "rolled_back"
    assert report.steps[0] == ("not_applied", f"{src} is in place")
    assert src.is_dir() and not dst.exists()


def test_rename_undo_when_both_are_gone(box, area):
    src, dst = area / "a", area / "b"
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.state == "conflict"
    assert report.steps[0] == ("conflict", f"neither {src} nor {dst} exists any more")


def test_rename_undo_moves_a_dangling_symlink_back(box, area):
    src, dst = area / "link", area / "link.off"
    dst.symlink_to(area / "does-not-exist")
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.steps[0][0] == "undone"
    assert src.is_symlink() and os.readlink(src) == str(area / "does-not-exist")


def test_rename_undo_a_dangling_symlink_at_src_is_a_conflict(box, area):
    src, dst = area / "link", area / "link.off"
    dst.mkdir()
    src.symlink_to(area / "nowhere")
    assert undo(box, rename_undo(str(src), str(dst))).steps[0][0] == "conflict"
    assert dst.is_dir() and src.is_symlink()


def test_rename_undo_is_idempotent(box, area):
    src, dst = area / "cdn-enabler", area / "cdn-enabler.off"
    dst.mkdir()
    body = rename_undo(str(src), str(dst))
    assert undo(box, body).state == "rolled_back"
    again = parse_output(box.guard(RUN, "now").stdout)
    assert again.state == "rolled_back" and again.steps[0][0] == "undone"   # the recorded result, repeated
    assert src.is_dir() and not dst.exists()


def folded(message: str) -> str:
    """What the guard prints for a message: newlines folded to spaces, so it stays on one line."""
    return message.replace("\n", " ")


@pytest.mark.parametrize("name", ["ends with \\c then more", "tab\\there", "double\\\\backslash", "\\n not a newline",
                                  "%s %d %%", "-e", "\\0101"])
def test_messages_keep_backslashes(box, area, name):
    # say() prints with printf '%s': dash's echo would interpret the backslashes (\\c cuts the line)
    src, dst = area / name, area / (name + ".off")
    dst.mkdir()
    proc_report = undo(box, rename_undo(str(src), str(dst)))
    assert proc_report.state == "rolled_back"
    assert proc_report.steps == {0: ("undone", f"renamed {dst} back to {src}")}
    assert (box.tx(RUN) / "result").read_text() == f"OPSKIT-UNDO 0 undone renamed {dst} back to {src}\n"


@pytest.mark.parametrize("name", ["new\nline", "\n", "a\n\nb", "ends\n"])
def test_rename_undo_with_a_newline_in_the_path(box, area, name):
    src, dst = area / name, area / (name + ".off")
    dst.mkdir()
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.state == "rolled_back"
    assert report.steps == {0: ("undone", folded(f"renamed {dst} back to {src}"))}
    assert src.is_dir() and not dst.exists()


@pytest.mark.parametrize("name", ["x\nOPSKIT-UNDO 7 undone forged", "x\nOPSKIT-STATE kept\n"])
def test_a_path_cannot_forge_guard_lines(box, area, name):
    src, dst = area / name, area / (name + ".off")
    dst.mkdir()
    report = undo(box, rename_undo(str(src), str(dst)))
    assert report.state == "rolled_back"
    assert report.steps == {0: ("undone", folded(f"renamed {dst} back to {src}"))}
    assert (box.tx(RUN) / "result").read_text().count("\n") == 1


@pytest.mark.parametrize("sep", ["\r", "\x0c", "\u2028"])
def test_a_path_cannot_forge_guard_lines_with_other_line_breaks(box, area, sep):
    name = f"x{sep}OPSKIT-UNDO 7 undone forged"
    src, dst = area / name, area / (name + ".off")
    dst.mkdir()
    report = undo(box, rename_undo(str(src), str(dst)))
    message = f"renamed {dst} back to {src}"
    # either fix is fine: parse_output splitting at '\n' only, or say() folding these breaks too
    assert report.steps in ({0: ("undone", message)}, {0: ("undone", message.replace(sep, " "))})
    assert report.state == "rolled_back"


# -- write_file -------------------------------------------------------------------------
ORIGINAL = b"[www]\nrequest_terminate_timeout = 30\n"
NEW = "[www]\nrequest_terminate_timeout = 300\n"


def edit_record(box, path: Path, index: int = 0) -> dict:
    """What WriteFile.plan + prepare record for an edit of an existing file (backup in the tx folder)."""
    backup = box.tx(RUN) / "files" / f"{index}.orig"
    backup.parent.mkdir(parents=True, exist_ok=True)
    backup.write_bytes(ORIGINAL)
    return {"path": str(path), "existed": True, "orig_sha256": sha256(ORIGINAL), "orig_mode": 0o640,
            "new_sha256": sha256(NEW.encode()), "mode": 0o640, "content": NEW, "backup": str(backup)}


def create_record(path: Path) -> dict:
    return {"path": str(path), "existed": False, "orig_sha256": None, "orig_mode": None,
            "new_sha256": sha256(NEW.encode()), "mode": 0o600, "content": NEW}


def apply(record: dict) -> None:
    path = Path(record["path"])
    path.write_text(record["content"])
    path.chmod(record["mode"])


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_write_undo_restores_the_original(box, area, name):
    path = area / name
    path.write_bytes(ORIGINAL)
    path.chmod(0o640)
    record = edit_record(box, path)
    apply(record)
    path.chmod(0o600)               # the mode we wrote does not matter: the original's comes back
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "rolled_back"
    assert report.steps[0] == ("undone", f"restored {path}")
    assert path.read_bytes() == ORIGINAL
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not Path(str(path) + ".opskit-restore").exists()
    assert Path(record["backup"]).read_bytes() == ORIGINAL


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_write_undo_refuses_a_file_edited_after_us(box, area, name):
    path = area / name
    path.write_bytes(ORIGINAL)
    record = edit_record(box, path)
    apply(record)
    path.write_text(NEW + "; edited by the admin\n")
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "conflict"
    assert report.steps[0] == ("conflict", f"{path} changed since opskit wrote it; left as is; original kept in {record['backup']}")
    assert path.read_text() == NEW + "; edited by the admin\n"
    assert Path(record["backup"]).read_bytes() == ORIGINAL


def test_write_undo_never_applied(box, area):
    path = area / "www.conf"
    path.write_bytes(ORIGINAL)
    record = edit_record(box, path)
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "rolled_back"
    assert report.steps[0] == ("not_applied", f"{path} has its original content")
    assert path.read_bytes() == ORIGINAL


def test_write_undo_file_removed_since(box, area):
    path = area / "www.conf"
    record = edit_record(box, path)
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "conflict"
    assert report.steps[0][1] == f"{path} was removed since opskit wrote it; original kept in {record['backup']}"
    assert not path.exists()


def test_write_undo_is_a_conflict_when_the_backup_is_gone(box, area):
    # retrying cannot bring a lost backup back: a human decides, nothing is overwritten
    path = area / "www.conf"
    path.write_bytes(ORIGINAL)
    record = edit_record(box, path)
    apply(record)
    Path(record["backup"]).unlink()
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "conflict"
    assert report.steps[0] == ("conflict", f"the backup of {path} is missing or damaged; left {path} as opskit wrote it")
    assert path.read_text() == NEW
    assert not Path(str(path) + ".opskit-restore").exists()


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_write_undo_removes_a_file_it_created(box, area, name):
    path = area / name
    record = create_record(path)
    apply(record)
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "rolled_back"
    assert report.steps[0] == ("undone", f"removed {path}")
    assert not path.exists()


def test_write_undo_created_file_never_applied(box, area):
    path = area / "new.conf"
    report = undo(box, WriteFile().undo_script(create_record(path)))
    assert report.steps[0] == ("not_applied", f"{path} is absent")


def test_write_undo_created_file_edited_after_us(box, area):
    path = area / "new.conf"
    record = create_record(path)
    apply(record)
    path.write_text("admin's now\n")
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "conflict"
    assert report.steps[0] == ("conflict", f"{path} changed since opskit created it; left as is")
    assert path.read_text() == "admin's now\n"


@pytest.mark.parametrize("name", ["new\nline", "back\\slash", "both\\n\n"])
def test_write_undo_with_a_newline_or_backslash_in_the_path(box, area, name):
    # digest() reads the file on stdin: GNU sha256sum FILE escapes such names and prefixes the hash with '\\'
    path = area / name
    path.write_bytes(ORIGINAL)
    path.chmod(0o640)
    record = edit_record(box, path)
    apply(record)
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "rolled_back"
    assert report.steps == {0: ("undone", folded(f"restored {path}"))}
    assert path.read_bytes() == ORIGINAL and stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("name", ["new\nline", "back\\slash"])
def test_write_undo_with_an_odd_path_still_sees_an_edit(box, area, name):
    path = area / name
    path.write_bytes(ORIGINAL)
    record = edit_record(box, path)
    apply(record)
    path.write_text(NEW + "; edited\n")
    report = undo(box, WriteFile().undo_script(record))
    assert report.state == "conflict"
    assert report.steps == {0: ("conflict", folded(f"{path} changed since opskit wrote it; left as is; "
                                                  f"original kept in {record['backup']}"))}
    assert path.read_text() == NEW + "; edited\n"


def test_two_changes_undo_in_reverse_order(box, area):
    """Rename a folder, then write a file inside the renamed folder: undo must first restore the file."""
    src, dst = area / "plugin", area / "plugin.off"
    src.mkdir()
    inside = dst / "settings.php"
    src.rename(dst)
    record = create_record(inside)
    apply(record)
    box.install(RUN, guard_script(RUN, [rename_undo(str(src), str(dst)), WriteFile().undo_script(record)]))
    report = parse_output(box.guard(RUN, "now").stdout)
    assert report.state == "rolled_back"
    assert report.steps == {1: ("undone", f"removed {inside}"), 0: ("undone", f"renamed {dst} back to {src}")}
    assert src.is_dir() and list(src.iterdir()) == []
